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
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(p, synth_tone(2.0, 16000, 300.0, vibrato_cents=0.0), 16000)
    return str(p)


def test_api_transfer(app_url, wav_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    out, curves, specs, info = client.predict(handle_file(wav_path), "testviolin", False, 12.0,
                                              0.0, 1.0, 1.0, 0.5, api_name="/transfer")
    y, sr = sf.read(out)
    assert sr == 16000 and len(y) == 32000 and np.abs(y).max() > 1e-3
    assert "octave shift +0" in info and curves is not None and specs is not None
    # the pitch shift reached the model: the output plays an octave up (600 Hz)
    assert abs(1200 * np.log2(median_pitch_hz(y) / 600.0)) < 30


def test_api_friendly_errors(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    long = tmp_path / "long.wav"
    sf.write(long, synth_tone(6.0, 16000), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    for path, message in ((long, "at most 5 s"), (silent, "silent")):
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(path)), "testviolin", True, 0.0, 0.0, 1.0, 1.0, 1.0,
                           api_name="/transfer")


def test_app_binds_localhost_by_default():
    import app

    args = app.parse_args([])
    assert args.host == "127.0.0.1" and not args.share and args.max_seconds == 60.0


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
        # the test model (auto-adjust keeps this tone's octave for it; the shipped violin,
        # the default choice, would move it up one)
        page.click("#instrument input[role=combobox]")
        page.get_by_role("option", name="testviolin").click()
        assert page.input_value("#instrument input[role=combobox]") == "testviolin"
        page.fill("#pitch_shift input[type=number]", "-12")
        page.press("#pitch_shift input[type=number]", "Enter")
        page.click("#run_btn")
        link = page.wait_for_selector("#audio_out a[data-testid=download-link][href*='file=']")
        pw.expect(page.locator("#audio_out #duration")).to_have_text("0:02")
        data = urllib.request.urlopen(link.get_attribute("href")).read()
        y, sr = sf.read(io.BytesIO(data))
        assert sr == 16000 and len(y) == 32000 and np.isfinite(y).all()
        info = page.locator("#info textarea").input_value()
        assert "testviolin out; octave shift +0" in info, info
        assert abs(1200 * np.log2(median_pitch_hz(y) / 150.0)) < 30  # the -12 st slider arrived
        for plot in ("#curves_plot img", "#spec_plot img"):
            img = page.wait_for_selector(plot)
            assert img.evaluate("i => i.complete && i.naturalWidth > 0")
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        browser.close()
    assert not errors, errors
