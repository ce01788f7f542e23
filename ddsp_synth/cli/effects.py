"""Commands of the effects: ``match`` and ``proxy train``."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import SECONDS_MAX, Formatter, Parser, add_command, chain_help, number

# ----------------------------------------------------------------------------- match
def _cmd_match(args) -> int:
    from ..match import identifiability_line, match_files, summary_line

    report = match_files(args.dry, args.target, args.chain, args.method, args.output,
                         steps=args.steps, max_seconds=args.max_seconds, seed=args.seed,
                         force=args.force, progress=not args.quiet,
                         proxy_dirs=args.proxy_dir or ())
    for note in report["notes"]:
        print(f"ddsp-synth match: note: {note}", file=sys.stderr)
    print(summary_line(report, args.output))
    sentence = identifiability_line(report)
    if sentence:
        print(sentence)
    return 0


def _add_match(sub) -> None:
    from ..gradients.methods import METHODS

    p = add_command(sub, "match", "estimate the settings of an effect chain from a dry and a processed "
             "recording (writes preset.json, matched.wav, report.json and match.png)",
             "ddsp-synth match dry.wav processed.wav --chain peak,compressor,distortion "
             "--method autodiff -o matched/", _cmd_match)
    p.add_argument("dry", help="the unprocessed recording")
    p.add_argument("target", help="the processed recording (resampled and aligned to the dry "
                                  "one within 50 ms when needed)")
    p.add_argument("--chain", required=True, help=chain_help())
    p.add_argument("--method", choices=list(METHODS), default="autodiff",
                   help="how the gradient crosses the devices: autodiff (PyTorch twins), spsa "
                        "(real devices, gradient estimates), proxy (neural proxies), hybrid "
                        "(real devices forward, proxies backward), cma (CMA-ES, no gradient)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--steps", type=number(int, 1, 1_000_000),
                   help="iterations (default: per method, 300 to 3000; most runs stop earlier)")
    p.add_argument("--max-seconds", type=number(float, 0.1, SECONDS_MAX),
                   help="time budget in s for the informed starts, the search and the "
                        "identifiability report (default: 45; loading and writing come on top)")
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0,
                   help="seed of the random starts, perturbations and CMA-ES")
    p.add_argument("--proxy-dir", action="append",
                   help="folder of trained proxies (DIR/DEVICE/proxy.json), searched before "
                        "the shipped ones; may be repeated")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- proxy
def _cmd_proxy(args) -> int:
    from ..gradients.proxy.train import train_proxy

    if args.steps is None and args.max_minutes is None:
        args.max_minutes = 30.0
    result = train_proxy(args.device, args.output, sample_rate=args.sample_rate,
                         steps=args.steps, max_minutes=args.max_minutes, seed=args.seed,
                         force=args.force, progress=not args.quiet, audio_paths=args.audio,
                         n_workers=args.workers)
    acc = result["accuracy"]
    print(f"{args.output}: proxy of {result['device']}, {result['steps']} steps in "
          f"{result['minutes']:.1f} min; held-out rel_spec {acc['rel_spec']:.3f}, median SNR "
          f"{acc['snr_db_median']:.1f} dB (see {Path(args.output) / 'MODEL_CARD.md'})")
    return 0


def _add_proxy(sub) -> None:
    p = sub.add_parser("proxy", help="neural proxies of effect devices (for match --method "
                                     "proxy/hybrid)", formatter_class=Formatter,
                       description="Neural proxies of effect devices.")
    p.error = Parser.error.__get__(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = add_command(actions, "train", "train a neural proxy of a device from its own input/output "
             "pairs over random parameters, and report its accuracy on held-out ones",
             "ddsp-synth proxy train compressor -o proxies/compressor --max-minutes 20",
             _cmd_proxy)
    t.prog = "ddsp-synth proxy train"
    t.add_argument("device", help="a built-in device name, a JSON device file or a .vst3 path")
    t.add_argument("-o", "--output", required=True,
                   help="output folder (proxy.safetensors, proxy.json, MODEL_CARD.md); "
                        "give DIR/DEVICE and pass --proxy-dir DIR to match")
    t.add_argument("--steps", type=number(int, 1, 10_000_000),
                   help="training steps (default: train for --max-minutes)")
    t.add_argument("--max-minutes", type=number(float, 0.01, 10_000.0),
                   help="training time budget in minutes (default: 30 unless --steps)")
    t.add_argument("--sample-rate", type=number(int, 8000, 192000), default=16000, help="Hz")
    t.add_argument("--audio", nargs="+",
                   help="training recordings (default: the shared data if present, else "
                        "synthetic tones)")
    t.add_argument("--workers", type=number(int, 1, 64), default=1,
                   help="worker processes running the device")
    t.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0, help="random seed")
    t.add_argument("--force", action="store_true", help="overwrite an existing proxy")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


COMMANDS = (_add_match, _add_proxy)
