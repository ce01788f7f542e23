"""ddsp_synth web demo: play a recording with a trained instrument (Gradio Blocks).

A thin layer over :mod:`ddsp_synth.transfer`: no DSP here.

    python app.py [--host 127.0.0.1] [--port 7860] [--models-dir DIR] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from ddsp_synth.audio_io import AudioError, limit_peak, write_audio  # noqa: E402
from ddsp_synth.audio_io import load_audio  # noqa: E402
from ddsp_synth.model import ModelFileError, available_models, load_model  # noqa: E402
from ddsp_synth.plots import curves_figure, spectrograms_figure  # noqa: E402
from ddsp_synth.transfer import NoPitchError, TransferOptions, transfer_audio  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = [HERE / "examples" / "singing_scale.flac", HERE / "examples" / "clarinet_melody.flac"]


@lru_cache(maxsize=8)
def _model(path: str):
    return load_model(path)


def run_transfer(audio_path, instrument, auto_adjust, pitch_shift, loudness_shift,
                 harmonic_gain, noise_gain, reverb_mix, *, models: dict, max_seconds: float):
    """Gradio handler: returns (output wav path, curves figure, spectrogram figure, info)."""
    if not audio_path:
        raise gr.Error("Upload or record some audio first.")
    if instrument not in models:
        raise gr.Error(f"Unknown instrument {instrument!r}.")
    try:
        model, meta = _model(str(models[instrument]))
    except ModelFileError as err:
        raise gr.Error(f"Could not load the {instrument} model: {err}") from None
    sr = model.config.synth.sample_rate
    try:
        audio = load_audio(audio_path, sr)
    except AudioError as err:
        raise gr.Error(f"Could not read that file: {err}") from None
    seconds = len(audio) / sr
    if seconds > max_seconds:
        raise gr.Error(f"The input is {seconds:.0f} s long; this demo takes at most "
                       f"{max_seconds:g} s. Trim it, or use the ddsp-synth command line.")
    options = TransferOptions(auto_adjust=bool(auto_adjust), pitch_shift_semitones=float(pitch_shift),
                              loudness_shift_db=float(loudness_shift),
                              harmonic_gain=float(harmonic_gain), noise_gain=float(noise_gain),
                              reverb_mix=float(reverb_mix))
    try:
        out, info = transfer_audio(model, meta, audio, options)
    except NoPitchError:
        raise gr.Error("No pitch found in the input: try a monophonic, pitched recording "
                       "(one voice or instrument).") from None
    except ValueError as err:
        raise gr.Error(f"Cannot transfer this input: {err}.") from None
    out = limit_peak(out)
    out_path = Path(tempfile.mkdtemp(prefix="ddsp_")) / f"{instrument}.wav"
    write_audio(out_path, out, sr)
    adj = info["adjusted"]
    text = (f"{seconds:.1f} s in, {instrument} out; octave shift {adj['octave_shift']:+d}, "
            f"voiced {adj['voiced_fraction']:.0%}, muted {adj['muted_fraction']:.0%}")
    return (str(out_path), curves_figure(model.config.synth.frame_rate_hz, info["input"], adj),
            spectrograms_figure(audio, out, sr), text)


def build(models_dir: str | None = None, max_seconds: float = 60.0) -> gr.Blocks:
    models = available_models(models_dir)
    if not models:
        raise SystemExit("no models found: the repository's models/ folder is empty and no "
                         "--models-dir was given")
    names = list(models)
    default = "violin" if "violin" in models else names[0]

    def handler(*args):
        return run_transfer(*args, models=models, max_seconds=max_seconds)

    with gr.Blocks(title="ddsp_synth timbre transfer") as demo:
        gr.Markdown("# ddsp_synth — timbre transfer\nUpload or record a monophonic melody "
                    "(singing, whistling, one instrument) and hear it played by a trained "
                    f"instrument. Inputs up to {max_seconds:g} s.")
        with gr.Row():
            with gr.Column():
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                    label="Input audio", elem_id="audio_in")
                instrument = gr.Dropdown(names, value=default, label="Instrument",
                                         elem_id="instrument")
                auto = gr.Checkbox(True, label="Auto-adjust pitch register and loudness",
                                   elem_id="auto_adjust")
                pitch = gr.Slider(-24, 24, value=0, step=0.5, label="Pitch shift (semitones)",
                                  elem_id="pitch_shift")
                loud = gr.Slider(-20, 20, value=0, step=1, label="Loudness shift (dB)",
                                 elem_id="loudness_shift")
                harm = gr.Slider(0, 2, value=1, step=0.05, label="Harmonic gain",
                                 elem_id="harmonic_gain")
                noise = gr.Slider(0, 2, value=1, step=0.05, label="Noise gain",
                                  elem_id="noise_gain")
                reverb = gr.Slider(0, 2, value=1, step=0.05, label="Reverb amount",
                                   elem_id="reverb_mix")
                run = gr.Button("Transfer", variant="primary", elem_id="run_btn")
            with gr.Column():
                audio_out = gr.Audio(type="filepath", label="Output", elem_id="audio_out",
                                     interactive=False)
                info = gr.Textbox(label="Summary", elem_id="info", interactive=False)
                curves = gr.Plot(label="Pitch and loudness", elem_id="curves_plot")
                specs = gr.Plot(label="Spectrograms", elem_id="spec_plot")
        inputs = [audio_in, instrument, auto, pitch, loud, harm, noise, reverb]
        gr.Examples([[str(p), default] for p in EXAMPLES if p.exists()], [audio_in, instrument],
                    label="Examples (MIT-licensed clips)")
        run.click(handler, inputs, [audio_out, curves, specs, info], api_name="transfer")
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ddsp_synth web demo")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--models-dir", help="also offer every model folder in this folder")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest input accepted")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo = build(args.models_dir, args.max_seconds)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
