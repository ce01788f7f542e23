"""ddsp_synth web demo: play a recording or a MIDI file with a trained instrument (Gradio).

A thin layer over :mod:`ddsp_synth.transfer` and :mod:`ddsp_synth.midi`: no DSP here.

    python app.py [--host 127.0.0.1] [--port 7860] [--models-dir DIR] [--max-seconds 60]
                  [--max-upload-mb 25]

The port defaults to ``$GRADIO_SERVER_PORT`` or 7860 (``make demo PORT=7861``).
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
_port_env = os.environ.get("GRADIO_SERVER_PORT")
if _port_env is not None and not (_port_env.isdigit() and 1 <= int(_port_env) <= 65535):
    # Gradio reads it when imported, and fails with a traceback
    sys.exit(f"app.py: error: GRADIO_SERVER_PORT={_port_env!r} is not a port (1 to 65535)")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see README, "Busy machines"

import gradio as gr  # noqa: E402

from ddsp_synth.audio_io import (AudioError, header_seconds, limit_peak, load_audio,  # noqa: E402
                                 write_audio)
from ddsp_synth.midi import (MidiError, MidiOptions, is_midi_file, midi_message,  # noqa: E402
                             midi_to_curves)
from ddsp_synth.errors import UserError  # noqa: E402
from ddsp_synth.model import (ModelFileError, available_models, load_model,  # noqa: E402
                              read_model_config)
from ddsp_synth.stages.chain import unique_labels  # noqa: E402
from ddsp_synth.stages.registry import parse_entry  # noqa: E402
from ddsp_synth.stages.synth import stage_kind  # noqa: E402
from ddsp_synth.stages.room import Reverb  # noqa: E402
from ddsp_synth.plots import curves_figure, piano_roll_figure, spectrograms_figure  # noqa: E402
from ddsp_synth.transfer import (NoPitchError, TransferOptions, render,  # noqa: E402
                                 shift_summary, transfer_audio)
from ddsp_synth.ui.rack_panel import RackPanel  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = [HERE / "examples" / "singing_scale.flac", HERE / "examples" / "clarinet_melody.flac"]
MIDI_EXAMPLES = [HERE / "examples" / "ode_to_joy.mid"]
KEEP_OUTPUTS = 32  # rendered files kept on disk for playback/download; older ones are deleted


def _quiet(component):
    """``component`` whose input checks (a value out of range or not a choice: only a script
    can send one) are user errors: shown to the caller, no traceback in the terminal. (The
    instance's method is wrapped: subclassing a Gradio component writes a .pyi file.)"""
    checked = component.preprocess

    def preprocess(payload):
        try:
            return checked(payload)
        except gr.Error as err:
            raise gr.Error(err.message, print_exception=False) from None

    component.preprocess = preprocess
    return component


def _named(fn, components):
    """``fn(*args)``, its API parameters named after the components' ``elem_id`` with their
    values on the page as defaults (the API page and ``gradio_client`` show ``instrument``,
    ``pitch_shift``… instead of ``param_0``, ``param_1``…; a client passes only what it
    changes, by name)."""
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(re.sub(r"\W", "_", c.elem_id), inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default=c.value) for c in components])
    return fn


@lru_cache(maxsize=8)
def _model(path: str):
    return load_model(path)


def _fail(message: str):
    """A user-facing error: shown in the page, no traceback in the terminal."""
    raise gr.Error(message, print_exception=False)


def _render_input(audio_path, midi_path, model, meta, options, loudness_shift, max_seconds):
    """(output audio, input audio or None, curves dict for the plots, notes or None)."""
    sr = model.config.synth.sample_rate
    if midi_path:
        name = Path(midi_path).name
        if not is_midi_file(midi_path):
            _fail(f"{name} is not a MIDI file.")
        try:
            curves = midi_to_curves(midi_path, meta.get("dataset_stats"),
                                    model.config.synth.frame_rate_hz,
                                    MidiOptions(max_duration_s=max_seconds,
                                                loudness_shift_db=float(loudness_shift)),
                                    transpose=options.pitch_shift_semitones)
        except MidiError as err:
            _fail(f"Cannot play {name}: {err}.")
        out = render(model, curves["f0_hz"], curves["loudness_db"], options)
        adjusted = {"f0_hz": curves["f0_hz"], "loudness_db": curves["loudness_db"]}
        text = midi_message(curves["info"], None, "a pitch shift of {:+g}")
        return out, None, {"input": adjusted, "adjusted": adjusted}, curves["notes"], text
    name = Path(audio_path).name
    seconds = _header_seconds(audio_path)  # refuse long inputs before decoding
    if seconds is not None and seconds > max_seconds:
        _fail(f"{name} is {seconds:.0f} s long; this demo takes at most {max_seconds:g} s. "
              "Trim it, or use the ddsp-synth command line.")
    try:
        audio = load_audio(audio_path, sr)
    except AudioError as err:
        _fail(f"Could not read {name}: {str(err).removeprefix(f'{audio_path}: ')}.")
    if len(audio) > (max_seconds + 0.01) * sr:  # a header that did not tell its length
        _fail(f"{name} is {len(audio) / sr:.0f} s long; this demo takes at most "
              f"{max_seconds:g} s. Trim it, or use the ddsp-synth command line.")
    try:
        out, info = transfer_audio(model, meta, audio, options, advice=PAGE_ADVICE)
    except NoPitchError:
        _fail(f"No pitch found in {name}: try a monophonic, pitched recording (one voice or "
              "instrument).")
    except UserError as err:
        _fail(f"Cannot transfer {name}: {err}.")
    return out, audio, info, None, info.get("warning")


# The transfer's advice in this page's words (its controls, not command-line options).
PAGE_ADVICE = {"quieter": "raise the quiet threshold", "auto_off": "turn auto-adjust off",
               "auto_on": "turn auto-adjust on", "louder": "raise the loudness shift"}


def _chosen_model(models: dict, instrument: str):
    """(model, meta) of the instrument chosen on the page; a friendly error otherwise."""
    if instrument not in models:
        _fail(f"Unknown instrument {instrument!r}.")
    try:
        return _model(str(models[instrument]))
    except ModelFileError as err:
        _fail(f"Could not load the {instrument} model: {err}")


def chain_stages(models: dict) -> list[tuple[str, str]]:
    """(label, kind) of the sources and the room of the models' chains, in chain order, each
    once: the live amounts the page offers. A model's own effect stages (learned with it,
    e.g. the tenor sax's amp) are part of its sound and get no slider here; the effects rack
    is where a person adds and sets effects."""
    seen: dict[str, str] = {}
    for path in models.values():
        try:
            names = read_model_config(path)["model"].get("synth", {}).get("processors")
        except ModelFileError:
            continue  # offered anyway; choosing it says what is wrong
        for name, label in zip(names or (), unique_labels(list(names or ()))):
            kind = stage_kind(name)
            if kind == "source" or parse_entry(name).name == Reverb.name:
                seen.setdefault(label, kind)
    return list(seen.items())


# A header that claims more than this is not telling the length (a streamed FLAC says 2^59
# frames): the length is then taken from the decoded audio.
MAX_CREDIBLE_SECONDS = 7 * 24 * 3600
MAX_REFERENCE_SECONDS = 600.0  # a tone match's reference: a whole song, not an album


def _header_seconds(path) -> float | None:
    """The length a file's header states, or None when it does not know, cannot be read
    (load_audio says why) or states an incredible length."""
    seconds = header_seconds(path)
    return seconds if 0 < seconds <= MAX_CREDIBLE_SECONDS else None


def run_transfer(audio_path, midi_path, instrument, auto_adjust, pitch_shift, loudness_shift,
                 quiet_db, *rest, models: dict, stages: list, max_seconds: float,
                 workdir: Path, rack=None):
    """Gradio handler: (output wav path, curves figure, spectrograms, piano roll, summary).
    ``rest``: one amount per entry of ``stages`` (the model's own stages are used), then the
    rack panel's values (``rack``: the :class:`RackPanel`, None: no rack)."""
    amounts, rack_values = rest[: len(stages)], rest[len(stages):]
    if not audio_path and not midi_path:  # a note, not an error on every output
        gr.Warning("Upload or record some audio, or choose a MIDI file, first.")
        return (gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                "Upload or record some audio, or choose a MIDI file, first.")
    model, meta = _chosen_model(models, instrument)
    sr = model.config.synth.sample_rate
    own = set(model.synth.labels)
    options = TransferOptions(auto_adjust=bool(auto_adjust),
                              pitch_shift_semitones=float(pitch_shift),
                              loudness_shift_db=float(loudness_shift), quiet_db=float(quiet_db),
                              amounts={label: float(a) for (label, _), a in zip(stages, amounts)
                                       if label in own},
                              effects=rack.preset(rack_values) if rack and rack_values else None)
    out, audio, info, notes, note = _render_input(audio_path, midi_path, model, meta, options,
                                                  loudness_shift, max_seconds)
    out = limit_peak(out)
    out_path = workdir / f"{instrument}-{uuid.uuid4().hex[:8]}.wav"
    write_audio(out_path, out, sr)
    _prune(workdir)
    adj = info["adjusted"]
    frame_rate = model.config.synth.frame_rate_hz
    if notes is None:
        text = (f"{len(out) / sr:.1f} s in, {instrument} out; {shift_summary(adj, options)}, "
                f"sounding {adj['sounding_fraction']:.0%} of the time (auto-adjust muted "
                f"{adj['muted_fraction']:.0%}: quiet and unpitched frames)")
        roll = None
    else:
        text = f"MIDI, {len(out) / sr:.1f} s, {instrument} out; {note}"
        note = None
        roll = piano_roll_figure(notes, frame_rate, adj["f0_hz"], adj["loudness_db"])
    if options.effects is not None:
        text += f"; rack: {options.effects.describe()}"
    if note:
        text += f". Warning: {note}"
    return (str(out_path), curves_figure(frame_rate, info["input"], adj),
            spectrograms_figure(audio, out, sr), roll, text)


def run_tone_match(audio_path, midi_path, instrument, auto_adjust, pitch_shift, loudness_shift,
                   quiet_db, *rest, models: dict, stages: list, max_seconds: float, rack):
    """Gradio handler of the rack's tone match: the input played dry (the same settings as
    Transfer, no rack), the rack estimated from it and the reference. ``rest``: the stage
    amounts, then the reference, the amount (%) and the aspects. Returns the rack panel's
    new values and the summary line."""
    amounts, (reference, amount, aspects) = rest[: len(stages)], rest[len(stages):]
    if not audio_path and not midi_path:
        gr.Warning("Upload or record some audio, or choose a MIDI file, first: the tone is "
                   "matched on what the instrument plays.")
        return [gr.skip()] * (len(rack.inputs) + 1)
    if not reference:
        gr.Warning("Upload a reference recording first.")
        return [gr.skip()] * (len(rack.inputs) + 1)
    seconds = _header_seconds(reference)
    if seconds is not None and seconds > MAX_REFERENCE_SECONDS:
        gr.Warning(f"{Path(reference).name} is {seconds / 60:.0f} minutes long; the tone match "
                   f"reads at most {MAX_REFERENCE_SECONDS / 60:.0f} minutes: use an excerpt.")
        return [gr.skip()] * (len(rack.inputs) + 1)
    model, meta = _chosen_model(models, instrument)
    own = set(model.synth.labels)
    options = TransferOptions(auto_adjust=bool(auto_adjust),
                              pitch_shift_semitones=float(pitch_shift),
                              loudness_shift_db=float(loudness_shift), quiet_db=float(quiet_db),
                              amounts={label: float(a) for (label, _), a in zip(stages, amounts)
                                       if label in own})
    dry, *_ = _render_input(audio_path, midi_path, model, meta, options, loudness_shift,
                            max_seconds)
    return rack.match_file(dry, model.config.synth.sample_rate, reference, amount, aspects)


def _prune(workdir: Path, keep: int = KEEP_OUTPUTS) -> None:
    """Delete all but the newest ``keep`` rendered files (the folder does not grow)."""
    files = sorted(workdir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
    for old in files[:-keep]:
        old.unlink(missing_ok=True)


# A minute of 48 kHz stereo float WAV is 23 MB: the default upload limit holds it.
MAX_UPLOAD_MB = 25.0


def build(models_dir: str | None = None, max_seconds: float = 60.0,
          max_upload_mb: float | None = None) -> gr.Blocks:
    models = available_models(models_dir)
    if not models:
        raise SystemExit("no models found: the repository's models/ folder is empty and no "
                         "--models-dir was given")
    names = list(models)
    default = "violin" if "violin" in models else names[0]
    stages = chain_stages(models)
    workdir = Path(tempfile.mkdtemp(prefix="ddsp_synth_app_"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # its outputs go with it

    panel = None

    def handler(*args):
        return run_transfer(*args, models=models, stages=stages, max_seconds=max_seconds,
                            workdir=workdir, rack=panel)

    def tone_handler(*args):
        return run_tone_match(*args, models=models, stages=stages, max_seconds=max_seconds,
                              rack=panel)

    # Gradio's own upload/output cache: files older than 30 min go, checked every 10 min.
    with gr.Blocks(title="ddsp_synth timbre transfer", delete_cache=(600, 1800)) as demo:
        gr.Markdown("# ddsp_synth — timbre transfer\nUpload or record a monophonic melody "
                    "(singing, whistling, one instrument), or choose a MIDI file, and hear it "
                    f"played by a trained instrument. Inputs up to {max_seconds:g} s"
                    + (f" and {max_upload_mb:g} MB." if max_upload_mb else "."))
        with gr.Row():
            with gr.Column():
                audio_in = _quiet(gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label="Input audio", elem_id="audio_in"))
                midi_in = _quiet(gr.File(label="…or a MIDI file (played instead of the audio)",
                                         file_types=[".mid", ".midi"], type="filepath",
                                         elem_id="midi_in"))
                instrument = _quiet(gr.Dropdown(names, value=default, label="Instrument",
                                                elem_id="instrument"))
                auto = gr.Checkbox(True, label="Auto-adjust pitch register and loudness",
                                   elem_id="auto_adjust")
                pitch = _quiet(gr.Slider(-24, 24, value=0, step=0.5,
                                         label="Pitch shift (semitones; with auto-adjust, its "
                                               "octaves then bring the result into the "
                                               "instrument's range)", elem_id="pitch_shift"))
                loud = _quiet(gr.Slider(-20, 20, value=0, step=1, label="Loudness shift (dB)",
                                        elem_id="loudness_shift"))
                quiet = _quiet(gr.Slider(10, 100, value=40, step=1,
                                         label="Quiet threshold (dB below the loud level: "
                                               "quieter frames are muted by auto-adjust)",
                                         elem_id="quiet_db"))
                amount_sliders = [
                    _quiet(gr.Slider(0, 2, value=1, step=0.05, elem_id=f"amount_{label}",
                                     label=f"{label}: " + ("gain" if kind == "source" else
                                                           "wet/dry mix (0 = dry)")))
                    for label, kind in stages]
                with gr.Accordion("Effects rack (after the instrument; off by default)",
                                  open=False, elem_id="rack"):
                    panel = RackPanel(_quiet)
                run = gr.Button("Transfer", variant="primary", elem_id="run_btn")
            with gr.Column():
                audio_out = gr.Audio(type="filepath", label="Output", elem_id="audio_out",
                                     interactive=False)
                info = gr.Textbox(label="Summary", elem_id="info", interactive=False)
                curves = gr.Plot(label="Pitch and loudness", elem_id="curves_plot")
                roll = gr.Plot(label="Piano roll (MIDI input)", elem_id="roll_plot")
                specs = gr.Plot(label="Spectrograms", elem_id="spec_plot")
        inputs = [audio_in, midi_in, instrument, auto, pitch, loud, quiet, *amount_sliders,
                  *panel.inputs]
        # Examples fill the input only: the chosen instrument stays.
        gr.Examples([[str(p)] for p in EXAMPLES if p.exists()], [audio_in],
                    label="Examples (MIT-licensed clips)")
        gr.Examples([[str(p)] for p in MIDI_EXAMPLES if p.exists()], [midi_in],
                    label="MIDI example (Ode to Joy)")
        # one input at a time: choosing one clears the other, so it is clear which one plays
        midi_in.upload(lambda: None, None, audio_in, api_name=False)
        audio_in.upload(lambda: None, None, midi_in, api_name=False)
        audio_in.stop_recording(lambda: None, None, midi_in, api_name=False)
        panel.load.upload(panel.load_file, panel.load, panel.inputs, api_name=False)
        panel.save.click(lambda *v: panel.save_file(workdir, *v), panel.inputs, panel.save,
                         api_name=False)
        run.click(_named(handler, inputs), inputs, [audio_out, curves, specs, roll, info],
                  api_name="transfer")
        panel.tone_button.click(tone_handler, [*inputs[: -len(panel.inputs)], *panel.tone_inputs],
                                [*panel.inputs, info], api_name=False)
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from ddsp_synth.cli.common import Parser, number

    parser = Parser(prog="app.py", description="ddsp_synth web demo")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    parser.add_argument("--port", type=number(int, 1, 65535),
                        default=os.environ.get("GRADIO_SERVER_PORT", "7860"),
                        help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--models-dir", help="also offer every model folder in this folder")
    parser.add_argument("--max-seconds", type=number(float, 1.0, 3600.0), default=60.0,
                        help="longest input accepted (s)")
    parser.add_argument("--max-upload-mb", type=number(float, 0.1, 10_000.0),
                        default=MAX_UPLOAD_MB,
                        help="largest upload accepted (MB)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    return parser.parse_args(argv)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not port_free(args.host, args.port):
        print(f"ddsp_synth demo: port {args.port} on {args.host} is in use; choose another with "
              f"'make demo PORT={args.port + 1}' or 'python app.py --port {args.port + 1}'",
              file=sys.stderr)
        return 1
    demo = build(args.models_dir, args.max_seconds, args.max_upload_mb)
    # a service manager's stop (SIGTERM) exits like Ctrl-C, so the atexit cleanup of the
    # outputs' folder runs (left behind otherwise: one folder per server start)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=f"{args.max_upload_mb:g}mb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
