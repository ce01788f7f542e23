"""Train the shipped neural proxies (``models/proxies/<device>/``) at 16 kHz.

    python scripts/train_proxies.py                       # compressor and distortion, 28 min each
    python scripts/train_proxies.py distortion --minutes 5 --out /tmp/proxies

Each proxy uses its device's recipe (``ddsp_synth.gradients.proxy.train.RECIPES``: architecture,
segment length, batch) and trains on one core (one torch thread, one device worker) from the
shared recordings (``../shared/data/train/*.flac``, last 20 s of each held out), then
measures its accuracy against the real device on held-out audio and parameters and writes
``proxy.safetensors``, ``proxy.json`` and ``MODEL_CARD.md``. Runs of one device are
reproducible step for step with ``--steps`` (the shipped cards give the step counts their
time budget reached).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DEVICES = ("compressor", "distortion")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("devices", nargs="*", default=list(DEFAULT_DEVICES),
                        help="devices to train (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "models" / "proxies"),
                        help="parent folder; each proxy goes to OUT/<device> "
                             "(default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=28.0,
                        help="training time budget per device (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None,
                        help="exact number of steps instead of a time budget")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite existing proxies")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
    from ddsp_synth.errors import UserError
    from ddsp_synth.gradients.proxy.train import train_proxy

    for name in args.devices:
        try:
            result = train_proxy(name, Path(args.out) / name, sample_rate=args.sample_rate,
                                 steps=args.steps,
                                 max_minutes=None if args.steps else args.minutes,
                                 seed=args.seed, force=args.force, progress=True)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        acc = result["accuracy"]
        print(f"{name}: {result['steps']} steps, {result['minutes']} min, rel_spec "
              f"{acc['rel_spec']:.3f}, SNR {acc['snr_db_median']:.1f} dB, grad cosine "
              f"{acc.get('grad_cosine_median', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
