"""``ddsp-synth``: command-line entry point. Each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .audio_io import AudioError


def _known_errors():
    from .model import ModelFileError
    from .train import TrainingError

    return (AudioError, ValueError, ModelFileError, TrainingError, FileExistsError)


def _cmd_demo(args) -> int:
    from .audio_io import check_writable, write_audio
    from .demo import render_demo
    from .processors import SynthConfig

    check_writable(args.output, args.force)
    audio = render_demo(args.seconds, SynthConfig(sample_rate=args.sample_rate,
                                                  hop=args.sample_rate // 100), args.seed)
    write_audio(args.output, audio, args.sample_rate, force=args.force)
    print(f"wrote {args.output} ({len(audio) / args.sample_rate:.2f} s at {args.sample_rate} Hz)")
    return 0


def _cmd_prepare(args) -> int:
    from .data import PrepareConfig, prepare
    from .features import FeatureConfig

    hop = args.hop or int(round(args.sample_rate / args.frame_rate))
    n_fft = 1024 * 2 ** round(__import__("math").log2(args.sample_rate / 16000))
    cfg = PrepareConfig(
        features=FeatureConfig(sample_rate=args.sample_rate, hop=hop, crepe_model=args.pitch_model,
                               loudness_n_fft=n_fft),
        example_seconds=args.example_seconds, example_hop_seconds=args.example_hop_seconds,
        val_seconds=args.val_seconds)
    manifest = prepare(args.inputs, args.output, cfg, show_progress=not args.quiet)
    n_train, n_val = len(manifest["examples"]["train"]), len(manifest["examples"]["val"])
    print(f"prepared {len(manifest['files'])} file(s) into {args.output}: {n_train} training and "
          f"{n_val} validation examples of {args.example_seconds:g} s")
    for s in manifest["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    return 0


def _cmd_train(args) -> int:
    from .model import ModelConfig
    from .train import TrainConfig, train

    overrides = {}
    if args.config:
        overrides = json.loads(Path(args.config).read_text())
    train_kw = dict(overrides.get("train", {}))
    for name in ("steps", "batch_size", "learning_rate", "seed", "max_minutes", "val_every",
                 "checkpoint_every", "num_threads", "precision"):
        value = getattr(args, name)
        if value is not None:
            train_kw[name] = value
    model_config = None
    if "model" in overrides:
        model_config = ModelConfig.from_dict(overrides["model"])
    summary = train(args.data_dir, args.output, model_config, TrainConfig(**train_kw),
                    resume=args.resume, show_progress=not args.quiet, force=args.force,
                    init_from=args.init_from)
    if summary["interrupted"]:
        print(f"interrupted at step {summary['step']}; checkpoint {summary['checkpoint']}; "
              "continue with --resume", file=sys.stderr)
        return 128 + summary["signal"]
    if summary["checkpoint"]:
        print(f"trained to step {summary['step']} ({summary['wall_s'] / 60:.1f} min); "
              f"checkpoint {summary['checkpoint']}")
    if summary["val"]:
        print("validation: " + json.dumps({k: round(v, 4) for k, v in summary["val"].items()}))
    return 0


def _cmd_export(args) -> int:
    from .model import save_model
    from .train import load_run_model, summarize_history

    model, run_meta, state = load_run_model(args.run_dir)
    training = {"steps": state["step"], "wall_s": state["wall_s"],
                "train_config": run_meta["train"], "data_dir": run_meta["data_dir"],
                "loss_history": summarize_history(state.get("history", []))}
    save_model(model, args.output, run_meta["dataset_stats"], training, force=args.force)
    print(f"exported step {state['step']} of {args.run_dir} to {args.output} "
          f"({model.n_parameters():,} parameters)")
    return 0


def _cmd_eval(args) -> int:
    from .audio_io import atomic_write_bytes, check_writable, write_audio
    from .audio_io import find_audio_files, load_audio
    from .data import DDSPDataset
    from .evaluate import audio_as_batch, evaluate_batches
    from .features import compute_features
    from .model import load_model
    from .data import collate

    model, meta = load_model(args.model)
    sr = model.config.synth.sample_rate
    src = Path(args.data)
    names, batches = [], []
    if (src / "manifest.json").exists():
        ds = DDSPDataset(src, args.split)
        if not len(ds):
            raise AudioError(f"{src}: no {args.split} examples")
        n = len(ds) if args.max_examples is None else min(len(ds), args.max_examples)
        for i in range(0, n, 8):
            items = [ds[j] for j in range(i, min(n, i + 8))]
            batches.append(collate(items))
            names += [f"{args.split}-{j:04d}" for j in range(i, min(n, i + 8))]
    else:
        for path in find_audio_files([src]):
            audio = load_audio(path, sr)
            batches.append(audio_as_batch(audio, model, compute_features(audio, model.config.features)))
            names.append(path.stem)
    outputs = [] if args.out else None
    if args.out:
        for name in names:
            check_writable(Path(args.out) / f"{name}.wav", args.force)
    metrics = evaluate_batches(model, batches, pitch_model=args.pitch_model, outputs=outputs)
    metrics.update({"model": str(args.model), "data": str(src), "examples": len(names),
                    "pitch_model": args.pitch_model or model.config.features.crepe_model})
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        for name, y in zip(names, outputs):
            write_audio(out / f"{name}.wav", y, sr, force=args.force)
        atomic_write_bytes(out / "metrics.json", lambda tmp: Path(tmp).write_text(text + "\n"))
    return 0


def _transfer_outputs(inputs: list[Path], output: Path, ext: str) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path (a folder in gives a folder out)."""
    from .audio_io import find_audio_files

    single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single and output.suffix.lower() in (".wav", ".flac"):
        return [(Path(inputs[0]), output)]
    pairs = []
    for item in inputs:
        item = Path(item)
        for f in find_audio_files([item]):
            rel = f.relative_to(item).with_suffix(ext) if item.is_dir() else Path(f.stem + ext)
            pairs.append((f, output / rel))
    return pairs


def _cmd_transfer(args) -> int:
    from tqdm import tqdm

    from .audio_io import check_writable, limit_peak, write_audio
    from .audio_io import load_audio
    from .model import load_model, resolve_model
    from .transfer import TransferOptions, transfer_audio

    model, meta = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    out_sr = args.sample_rate or sr
    resynth = args.command == "resynth"
    options = TransferOptions(
        auto_adjust=not (resynth or args.no_auto_adjust),
        pitch_shift_semitones=0.0 if resynth else args.pitch_shift,
        loudness_shift_db=0.0 if resynth else args.loudness_shift,
        quiet_db=args.quiet_db, harmonic_gain=args.harmonic_gain, noise_gain=args.noise_gain,
        reverb_mix=args.reverb_mix, seed=args.seed)
    pairs = _transfer_outputs(args.inputs, Path(args.output), "." + args.format)
    if not pairs:
        raise AudioError("no audio files found in the inputs")
    for _, dst in pairs:
        check_writable(dst, args.force)
    failures = 0
    for src, dst in tqdm(pairs, desc=args.command, unit="file", disable=args.quiet or len(pairs) < 2):
        try:
            audio = load_audio(src, sr)
            with tqdm(total=round(len(audio) / sr, 1), unit="s audio", leave=False,
                      disable=args.quiet, desc=src.name) as bar:
                out, info = transfer_audio(model, meta, audio, options, bar,
                                           cache=not args.no_cache, pitch_model=args.pitch_model)
            if out_sr != sr:
                import librosa

                out = librosa.resample(out, orig_sr=sr, target_sr=out_sr, res_type="soxr_hq")
            write_audio(dst, limit_peak(out), out_sr, force=args.force)
            adj = info["adjusted"]
            print(f"{src} -> {dst} (octave shift {adj['octave_shift']:+d}, voiced "
                  f"{adj['voiced_fraction']:.0%})")
        except (AudioError, ValueError) as err:
            failures += 1
            print(f"ddsp-synth {args.command}: error: {src}: {err}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_stream(args) -> int:
    from tqdm import tqdm

    from .audio_io import atomic_write_bytes, check_writable, limit_peak, write_audio
    from .audio_io import load_audio
    from .model import load_model, resolve_model
    from .streaming import LiveOptions, stream_audio

    import torch

    torch.set_num_threads(args.threads)
    check_writable(Path(args.output), args.force)
    model, _ = load_model(resolve_model(args.model))
    sr = model.config.synth.sample_rate
    audio = load_audio(args.input, sr)
    block = int(round(args.block_ms * sr / 1000))
    if block < 1:
        raise ValueError(f"--block-ms {args.block_ms} is shorter than one sample")
    options = LiveOptions(pitch_shift_semitones=args.pitch_shift,
                          loudness_shift_db=args.loudness_shift, gate_db=args.gate_db)
    with tqdm(total=-(-len(audio) // block), unit="block", disable=args.quiet,
              desc="stream") as bar:
        out, report = stream_audio(model, audio, block, options, engine=args.engine,
                                   crepe_model=args.pitch_model, progress=bar)
    write_audio(args.output, limit_peak(out), sr, force=args.force)
    report.update({"input": str(args.input), "output": str(args.output), "threads": args.threads,
                   "seconds": len(audio) / sr})
    text = json.dumps(report, indent=2)
    if args.report:
        check_writable(Path(args.report), args.force)
        atomic_write_bytes(args.report, lambda tmp: Path(tmp).write_text(text + "\n"))
    c, lat = report["compute_total"], report["latency_ms"]
    print(f"{args.input} -> {args.output}: {report['blocks']} blocks of {report['block_ms']:.1f} "
          f"ms; compute per block median {c['median_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms "
          f"({report['late_blocks']} late); latency {lat['total']:.1f} ms (features "
          f"{lat['features_lookahead']:.0f} + synthesis {lat['synthesis']:.0f} + block "
          f"{lat['block_buffer']:.0f})")
    return 0


def _cmd_export_runtime(args) -> int:
    from .audio_io import check_writable
    from .model import load_model, resolve_model
    from .streaming import export_runtime

    check_writable(Path(args.output), args.force)
    model, _ = load_model(resolve_model(args.model))
    export_runtime(model, args.output, args.format)
    print(f"wrote the streaming step of {args.model} as {args.format} to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddsp-synth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render a synthesized phrase (no model) to a WAV/FLAC file")
    demo.add_argument("-o", "--output", default="demo.wav", help="output .wav or .flac")
    demo.add_argument("--seconds", type=float, default=4.0)
    demo.add_argument("--sample-rate", type=int, default=16000,
                      choices=[16000, 22050, 44100, 48000])
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="overwrite an existing output")
    demo.set_defaults(func=_cmd_demo)

    prep = sub.add_parser("prepare", help="turn recordings into a training dataset")
    prep.add_argument("inputs", nargs="+", help="audio files or folders")
    prep.add_argument("-o", "--output", required=True, help="dataset folder")
    prep.add_argument("--sample-rate", type=int, default=16000)
    prep.add_argument("--frame-rate", type=float, default=100.0, help="feature frames per second")
    prep.add_argument("--hop", type=int, help="samples per frame (overrides --frame-rate)")
    prep.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny")
    prep.add_argument("--example-seconds", type=float, default=4.0)
    prep.add_argument("--example-hop-seconds", type=float, default=1.0)
    prep.add_argument("--val-seconds", type=float, default=20.0,
                      help="held-out tail of every file")
    prep.add_argument("--quiet", action="store_true")
    prep.set_defaults(func=_cmd_prepare)

    tr = sub.add_parser("train", help="train a model on a prepared dataset")
    tr.add_argument("data_dir")
    tr.add_argument("-o", "--output", required=True, help="run folder")
    tr.add_argument("--config", help='JSON with "model" and/or "train" settings')
    tr.add_argument("--steps", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--learning-rate", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--max-minutes", type=float, help="stop after this much wall time")
    tr.add_argument("--val-every", type=int)
    tr.add_argument("--checkpoint-every", type=int)
    tr.add_argument("--num-threads", type=int)
    tr.add_argument("--precision", choices=["fp32", "bf16"],
                    help="bf16: decoder under bfloat16 autocast (faster on CPUs with "
                         "AVX512-BF16/AMX and on GPUs; default fp32)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    tr.add_argument("--init-from", help="start from an exported model's weights (fine-tune)")
    tr.add_argument("--force", action="store_true", help="start over in an existing run folder")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=_cmd_train)

    ex = sub.add_parser("export", help="write a run's latest checkpoint as a model folder")
    ex.add_argument("run_dir")
    ex.add_argument("-o", "--output", required=True, help="model folder")
    ex.add_argument("--force", action="store_true")
    ex.set_defaults(func=_cmd_export)

    ev = sub.add_parser("eval", help="resynthesize and measure a model")
    ev.add_argument("model", help="model folder")
    ev.add_argument("data", help="prepared dataset folder, audio file or folder")
    ev.add_argument("--split", choices=["train", "val"], default="val")
    ev.add_argument("--max-examples", type=int)
    ev.add_argument("--pitch-model", choices=["tiny", "full"],
                    help="CREPE model that measures the output (default: the model's)")
    ev.add_argument("--out", help="also write the resynthesized audio and metrics.json here")
    ev.add_argument("--force", action="store_true")
    ev.set_defaults(func=_cmd_eval)

    for name, help_text in (("transfer", "play recordings with a trained instrument"),
                            ("resynth", "resynthesize recordings with their own instrument's "
                                        "model, unadjusted (to check a model)")):
        t = sub.add_parser(name, help=help_text)
        t.add_argument("inputs", nargs="+", help="audio files or folders")
        t.add_argument("--model", required=True, help="shipped model name or model folder")
        t.add_argument("-o", "--output", required=True,
                       help="output .wav/.flac for one file, else a folder")
        t.add_argument("--format", choices=["wav", "flac"], default="wav",
                       help="format of files written into an output folder")
        t.add_argument("--sample-rate", type=int, help="output rate (default: the model's)")
        if name == "transfer":
            t.add_argument("--no-auto-adjust", action="store_true")
            t.add_argument("--pitch-shift", type=float, default=0.0, help="semitones")
            t.add_argument("--loudness-shift", type=float, default=0.0, help="dB")
        t.add_argument("--quiet-db", type=float, default=40.0,
                       help="auto-adjust mutes frames this far below the input's loud level")
        t.add_argument("--harmonic-gain", type=float, default=1.0)
        t.add_argument("--noise-gain", type=float, default=1.0)
        t.add_argument("--reverb-mix", type=float, default=1.0)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--pitch-model", choices=["tiny", "full"],
                       help="CREPE size for the input's pitch (default: the model's, tiny; "
                            "full is ~8x slower, for quality)")
        t.add_argument("--no-cache", action="store_true",
                       help="do not reuse or store the input's features (see README)")
        t.add_argument("--force", action="store_true")
        t.add_argument("--quiet", action="store_true", help="no progress bars")
        t.set_defaults(func=_cmd_transfer)
    st = sub.add_parser("stream", help="simulate live playing from a file, block by block, "
                                       "and report per-block compute time and latency")
    st.add_argument("input", help="audio file")
    st.add_argument("-o", "--output", required=True, help="output .wav or .flac")
    st.add_argument("--model", required=True, help="shipped model name or model folder")
    st.add_argument("--block-ms", type=float, default=10.0, help="sound-card block length")
    st.add_argument("--engine", choices=["torch", "torchscript", "onnx"], default="onnx",
                    help="how the synthesis step runs (same audio; onnx is fastest)")
    st.add_argument("--pitch-model", choices=["tiny", "full"], default="tiny")
    st.add_argument("--pitch-shift", type=float, default=0.0, help="semitones")
    st.add_argument("--loudness-shift", type=float, default=0.0, help="dB")
    st.add_argument("--gate-db", type=float, default=-60.0, help="mute frames quieter than this")
    st.add_argument("--threads", type=int, default=1, help="torch threads (live use: 1)")
    st.add_argument("--report", help="also write the timing report as JSON here")
    st.add_argument("--force", action="store_true")
    st.add_argument("--quiet", action="store_true")
    st.set_defaults(func=_cmd_stream)

    er = sub.add_parser("export-runtime", help="write the streaming step as TorchScript or "
                                               "ONNX for a C++ or plugin host")
    er.add_argument("model", help="shipped model name or model folder")
    er.add_argument("-o", "--output", required=True, help="output file (.pt or .onnx)")
    er.add_argument("--format", choices=["torchscript", "onnx"], default="onnx")
    er.add_argument("--force", action="store_true")
    er.set_defaults(func=_cmd_export_runtime)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _known_errors() as err:
        print(f"ddsp-synth {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddsp-synth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
