"""The web demo: through gradio_client, and in a real headless Chromium."""

import io
import shutil
import socket
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from conftest import synth_tone

gr = pytest.importorskip("gradio")


def median_pitch_hz(y, sr=16000):
    from ddsp_synth.features import FeatureConfig, compute_f0

    f0, conf = compute_f0(np.asarray(y, np.float32), FeatureConfig())
    return float(np.median(f0[conf > 0.5]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(exported, tmp_path_factory):
    import app

    models = tmp_path_factory.mktemp("models")
    shutil.copytree(exported, models / "testviolin")
    demo = app.build(str(models), max_seconds=5.0)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                max_file_size="2mb")
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(p, synth_tone(2.0, 16000, 300.0, vibrato_cents=0.0), 16000)
    return str(p)


def _rack_values(rack: dict | None, bypass: bool = False) -> list:
    """The rack panel's values: bypass, then per device of the layout its switch and knobs
    (``rack``: {device: {knob: value}}; devices left out are off)."""
    from ddsp_synth.rack import RACK_LAYOUT

    values = [bypass]
    for device, neutral in RACK_LAYOUT:
        knobs = (rack or {}).get(device)
        values += [knobs is not None, *[{**neutral, **(knobs or {})}[k] for k in neutral]]
    return values


def _predict(client, audio=None, midi=None, instrument="testviolin", auto=True, pitch=0.0,
             loud=0.0, quiet=40.0, harm=1.0, noise=1.0, reverb=1.0, rack=None, bypass=False):
    """The page's amounts follow its models' chains: harmonic, noise, reverb here."""
    from gradio_client import handle_file

    return client.predict(handle_file(str(audio)) if audio else None,
                          handle_file(str(midi)) if midi else None, instrument, auto, pitch,
                          loud, quiet, harm, noise, reverb, *_rack_values(rack, bypass),
                          api_name="/transfer")


def test_api_transfer(app_url, wav_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    names = [p["parameter_name"] for p in
             client.view_api(return_format="dict")["named_endpoints"]["/transfer"]["parameters"]]
    assert names[:7] == ["audio_in", "midi_in", "instrument", "auto_adjust", "pitch_shift",
                         "loudness_shift", "quiet_db"] and "rack_gain_gain_db" in names
    # by name, the others at the page's values
    out, curves, specs, roll, info = client.predict(
        audio_in=handle_file(wav_path), instrument="testviolin", auto_adjust=False,
        pitch_shift=12.0, amount_reverb=0.5, api_name="/transfer")
    y, sr = sf.read(out)
    assert sr == 16000 and len(y) == 32000 and np.abs(y).max() > 1e-3
    assert "pitch shift +12 semitones (+12 asked)" in info and curves is not None \
        and specs is not None
    assert roll is None  # the piano roll is for MIDI input
    # the pitch shift reached the model: the output plays an octave up (600 Hz)
    assert abs(1200 * np.log2(median_pitch_hz(y) / 600.0)) < 30


def test_api_rack_plays_after_the_instrument_and_bypass_compares(app_url, wav_path):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    dry, *_ = _predict(client, wav_path, auto=False)
    quieter = {"gain": {"gain_db": -12.0}}
    wet, *_, info = _predict(client, wav_path, auto=False, rack=quieter)
    bypassed, *_ = _predict(client, wav_path, auto=False, rack=quieter, bypass=True)
    y_dry, y_wet, y_byp = (sf.read(p)[0] for p in (dry, wet, bypassed))
    assert "rack: gain gain_db=-12 dB" in info
    np.testing.assert_allclose(y_wet, y_dry * 10 ** (-12 / 20), atol=2e-4)  # 16-bit files
    np.testing.assert_array_equal(y_byp, y_dry)


def test_api_midi_input_plays_the_notes_with_a_piano_roll(app_url, tmp_path):
    import pretty_midi
    from gradio_client import Client

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=40)
    for i, pitch in enumerate((62, 66, 69, 66)):  # D4 F#4 A4 F#4, 0.5 s each
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.5 * i,
                                           end=0.5 * i + 0.45))
    pm.instruments.append(inst)
    song = tmp_path / "song.mid"
    pm.write(str(song))
    client = Client(app_url, verbose=False)
    out, curves, specs, roll, info = _predict(client, midi=song)
    y, sr = sf.read(out)
    assert sr == 16000 and len(y) == int(round((1.95 + 0.2) * 100)) * 160  # last note-off + release
    assert "MIDI" in info and roll is not None and curves is not None
    # the third note (A4, 1.0-1.45 s) sounds at 440 Hz
    assert abs(1200 * np.log2(median_pitch_hz(y[int(1.1 * sr): int(1.4 * sr)]) / 440.0)) < 30


def test_api_friendly_errors_without_tracebacks(app_url, tmp_path, capfd):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    long = tmp_path / "long.wav"
    sf.write(long, synth_tone(6.0, 16000), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    fake_midi = tmp_path / "fake.mid"
    fake_midi.write_text("not midi")
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    capfd.readouterr()
    for kwargs, message in (({"audio": long}, "long.wav is 6 s long; this demo takes at most 5 s"),
                            ({"audio": silent}, "silent"),
                            ({"audio": broken}, "Could not read broken.wav: unreadable audio"),
                            ({"audio": zero}, r"Could not read zero.wav: empty file \(0 bytes\)"),
                            ({"midi": fake_midi}, "Cannot play fake.mid: not a MIDI file"),
                            ({"midi": silent}, "Invalid file type")):  # Gradio's own check
        with pytest.raises(Exception, match=message) as err:
            _predict(client, **kwargs)
        assert str(tmp_path) not in str(err.value)  # the upload's temporary path is not shown
    # a click with no input is a note in the summary, not an error on every output
    *_, info = _predict(client)
    assert "Upload or record some audio" in info
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out


@pytest.mark.parametrize("argv, env, message", [
    (["--port", "70000"], {}, "--port: must be from 1 to 65535, got 70000"),
    (["--max-seconds", "nan"], {}, "--max-seconds: "),
    ([], {"GRADIO_SERVER_PORT": "http"}, "GRADIO_SERVER_PORT='http' is not a port"),
])
def test_bad_app_arguments_are_one_line_before_serving(argv, env, message):
    """(Each start imports Gradio: a few cases only; the number checks are the CLI's own.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "app.py"), *argv], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env}, cwd=repo)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 if not env else proc.returncode == 1, proc.stderr
    assert lines and message in lines[-1] and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) <= 2  # argparse: usage line + error line


def test_upload_over_the_size_limit_is_refused(app_url, tmp_path):
    from gradio_client import Client

    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((12 * 48000, 2), np.float32) + 0.1, 48000, subtype="FLOAT")  # 4.6 MB
    with pytest.raises(Exception, match="(?i)size|large"):
        _predict(Client(app_url, verbose=False), big)


def test_eight_concurrent_users_all_get_their_output(app_url, wav_path):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def one(i):
        client = Client(app_url, verbose=False)
        out, *_ = _predict(client, wav_path, auto=False, pitch=float(i % 3))
        return sf.info(out).frames

    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(one, range(8)))
    assert frames == [32000] * 8


def test_port_in_use_is_one_line(capsys):
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert app.main(["--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"port {port}" in err and "make demo PORT=" in err


def test_app_binds_localhost_by_default(monkeypatch):
    import app

    args = app.parse_args([])
    assert args.host == "127.0.0.1" and not args.share and args.max_seconds == 60.0
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert app.parse_args([]).port == 7999 and app.parse_args(["--port", "7000"]).port == 7000


pw = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (make test installs it)")
def test_browser_upload_transfer_and_play(app_url, wav_path, tmp_path):
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage",
                                          "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url)
        page.wait_for_selector("#run_btn")
        page.set_input_files("#audio_in input[type=file]", wav_path)
        page.wait_for_selector("#audio_in a[data-testid=download-link][href*='file=']")
        # the test model, auto-adjust off: the -12 slider alone sets the output's octave
        # (auto-adjust chooses its octave after the manual shift and would undo it)
        page.click("#instrument input[role=combobox]")
        page.get_by_role("option", name="testviolin").click()
        assert page.input_value("#instrument input[role=combobox]") == "testviolin"
        page.uncheck("#auto_adjust input[type=checkbox]")
        page.fill("#pitch_shift input[type=number]", "-12")
        page.press("#pitch_shift input[type=number]", "Tab")  # commit the number (blur)
        # the slider itself moved: the value is in the page's state before the click
        pw.expect(page.locator("#pitch_shift input[type=range]")).to_have_value("-12")
        page.click("#run_btn")
        link = page.wait_for_selector("#audio_out a[data-testid=download-link][href*='file=']")
        pw.expect(page.locator("#audio_out #duration")).to_have_text("0:02")
        data = urllib.request.urlopen(link.get_attribute("href")).read()
        y, sr = sf.read(io.BytesIO(data))
        assert sr == 16000 and len(y) == 32000 and np.isfinite(y).all()
        info = page.locator("#info textarea").input_value()
        assert "testviolin out; pitch shift -12 semitones (-12 asked)" in info, info
        assert abs(1200 * np.log2(median_pitch_hz(y) / 150.0)) < 30  # the -12 st slider arrived
        for plot in ("#curves_plot img", "#spec_plot img"):
            img = page.wait_for_selector(plot)
            assert img.evaluate("i => i.complete && i.naturalWidth > 0")
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        # an example fills the audio input and keeps the chosen instrument
        page.get_by_text("clarinet_melody.flac").first.click()
        page.wait_for_selector("#audio_in a[data-testid=download-link][href*='clarinet_melody']")
        assert page.input_value("#instrument input[role=combobox]") == "testviolin"
        browser.close()
    assert not errors, errors


def test_a_file_whose_header_does_not_know_its_length_is_measured(exported, tmp_path):
    """A FLAC written to a pipe states 2^63 frames: the app says the decoded length, not
    "576460752303424 s long", and still refuses it over the limit."""
    import subprocess

    import app
    from ddsp_synth.model import load_model
    from ddsp_synth.transfer import TransferOptions

    if shutil.which("sox") is None:
        pytest.skip("sox not installed (make system)")
    path = tmp_path / "streamed.flac"
    with open(path, "wb") as f:  # through a pipe: sox cannot go back to write the length
        sox = subprocess.Popen(["sox", "-n", "-r", "16000", "-c", "1", "-t", "flac", "-",
                                "synth", "6", "sine", "300"], stdout=subprocess.PIPE)
        shutil.copyfileobj(sox.stdout, f)
        assert sox.wait() == 0
    assert sf.info(path).frames > 10**15 and app._header_seconds(path) is None
    model, meta = load_model(exported)
    with pytest.raises(gr.Error, match=r"streamed.flac is 6 s long; this demo takes at most 5 s"):
        app._render_input(str(path), None, model, meta, TransferOptions(), 0.0, 5.0)


def test_bad_numbers_in_the_app_arguments_are_refused_in_one_line(capsys):
    import app

    for argv, message in ((["--port", "-1"], "--port: must be from 1 to 65535"),
                          (["--max-upload-mb", "-1"], "--max-upload-mb: must be from"),
                          (["--max-seconds", "inf"], "--max-seconds: ")):
        with pytest.raises(SystemExit) as err:
            app.parse_args(argv)
        assert err.value.code == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert message in lines[-1] and len(lines) <= 2, lines


def test_rack_panel_loads_and_saves_presets(tmp_path):
    import json

    from ddsp_synth.rack import PresetError, check_preset
    from ddsp_synth.ui.rack_panel import RackPanel

    with gr.Blocks():
        panel = RackPanel()
    preset = check_preset({"chain": [
        {"device": "peak", "params": {"cutoff_frequency_hz": 2500, "gain_db": -4, "q": 2}},
        {"device": "compressor", "params": {"threshold_db": -20, "ratio": 3}},
        {"device": "gain", "params": {"gain_db": 2}}]})
    values = panel.values_of(preset)
    assert len(values) == len(panel.inputs)
    assert panel.preset(values) == preset
    assert panel.preset([True, *values[1:]]) is None  # bypassed
    saved = panel.save_file(tmp_path, *values)
    assert check_preset(json.loads(open(saved).read())) == preset
    with pytest.raises(PresetError, match="not this rack's layout"):
        panel.values_of(check_preset({"chain": [{"device": "gain"}, {"device": "peak"}]}))


def test_rack_panel_tone_match_sets_the_knobs(tmp_path):
    """The tone match on a real recording: the knobs show the estimate, and the rack they
    make brings the output's spectrum and loudness close to the reference's."""
    from pathlib import Path

    from ddsp_synth.errors import InputError
    from ddsp_synth.rack import Rack
    from ddsp_synth.tone import bands_for_rates, integrated_loudness, ltas_db, shape_error_db
    from ddsp_synth.ui.rack_panel import RackPanel

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
    if not (shared / "flute.flac").exists():
        pytest.skip("the shared recordings are not here")
    dry, sr = sf.read(shared / "flute.flac", dtype="float32")
    ref, ref_sr = sf.read(shared / "trumpet.flac", dtype="float32")
    dry, ref = dry[-6 * sr:], 0.3 * ref[-6 * ref_sr:]
    ref_path = tmp_path / "reference.flac"
    sf.write(ref_path, ref, ref_sr)
    with gr.Blocks():
        panel = RackPanel()
    values, text = panel.tone_values(dry, sr, str(ref_path), 100, ["eq", "dynamics",
                                                                   "loudness"])
    assert len(values) == len(panel.inputs) and values[0] is False  # not bypassed
    preset = panel.preset(values)
    assert preset.names == ("lowshelf", "peak", "highshelf", "compressor", "gain")
    assert "tone match (100 %" in text and "gain gain_db=" in text
    matched = Rack(preset, sr).process(dry)
    bands = bands_for_rates(sr, ref_sr)

    def errors(y):
        y64, r64 = np.asarray(y, np.float64)[None], np.asarray(ref, np.float64)[None]
        return (shape_error_db(ltas_db(y64, sr, bands), ltas_db(r64, ref_sr, bands)),
                integrated_loudness(y64, sr) - integrated_loudness(r64, ref_sr))

    (ltas0, loud0), (ltas1, loud1) = errors(dry), errors(matched)
    assert ltas1 < 0.6 * ltas0 and abs(loud1) < 0.5 < abs(loud0)
    # only the loudness, at half the amount: the EQ and compressor stay neutral
    values, _ = panel.tone_values(dry, sr, str(ref_path), 50, ["loudness"])
    half = panel.preset(values)
    assert half.names == ("lowshelf", "peak", "highshelf", "compressor", "gain")
    assert [v[1] for v in half.values[:3]] == [0.0, 0.0, 0.0] and half.values[3][1] == 1.0
    assert abs(errors(Rack(half, sr).process(dry))[1] - loud0 / 2) < 0.5
    with pytest.raises(InputError, match="choose at least one"):
        panel.tone_values(dry, sr, str(ref_path), 100, [])
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * sr, np.float32), sr)
    with pytest.raises(InputError, match="the reference is silent"):
        panel.tone_values(dry, sr, str(silent), 100, ["eq"])


def test_the_apps_tone_match_button_plays_the_input_dry_and_sets_the_rack():
    """The handler behind *Set the rack from the reference*: a MIDI input played by a shipped
    model, matched to the clarinet example; the rack's knobs come back set."""
    from pathlib import Path

    import app
    from ddsp_synth.model import available_models
    from ddsp_synth.ui.rack_panel import RackPanel

    models = available_models()
    if "violin" not in models:
        pytest.skip("the shipped violin model is not installed")
    models = {"violin": models["violin"]}
    stages = app.chain_stages(models)
    with gr.Blocks():
        panel = RackPanel()
    repo = Path(app.__file__).resolve().parent
    out = app.run_tone_match(None, str(repo / "examples" / "ode_to_joy.mid"), "violin", True,
                             0.0, 0.0, 40.0, *[1.0] * len(stages),
                             str(repo / "examples" / "clarinet_melody.flac"), 100,
                             ["eq", "dynamics", "loudness"], models=models, stages=stages,
                             max_seconds=60.0, rack=panel)
    values, text = out[:-1], out[-1]
    assert len(values) == len(panel.inputs) and values[0] is False
    preset = panel.preset(values)
    assert preset.names == ("lowshelf", "peak", "highshelf", "compressor", "gain")
    assert any(v[1] != 0 for v in preset.values[:3])  # the EQ moved
    assert text.startswith("tone match (100 %, eq, dynamics, loudness): lowshelf ")
    # no reference: a note, nothing changed
    skipped = app.run_tone_match(None, str(repo / "examples" / "ode_to_joy.mid"), "violin",
                                 True, 0.0, 0.0, 40.0, *[1.0] * len(stages), None, 100, ["eq"],
                                 models=models, stages=stages, max_seconds=60.0, rack=panel)
    assert len(skipped) == len(panel.inputs) + 1
    assert all(type(v) is type(gr.skip()) for v in skipped)
