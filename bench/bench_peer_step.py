"""Training step against the peer, side by side in one process: ddsp_synth vs
acids-ircam/ddsp_pytorch at the peer's size (hidden 512, 100 harmonics, 65 noise bands,
16 kHz, batch 16 x 4 s), float32, on the CPU.

The peer runs from its own checkout, unmodified (``git clone
https://github.com/acids-ircam/ddsp_pytorch`` beside this repository, or ``--peer-dir``): its
``ddsp.model.DDSP`` with ``config.yaml``'s model settings and the body of its ``train.py`` loop
(forward, ``multiscale_fft`` of both signals at its scales and overlap, linear + log L1,
``zero_grad``, ``backward``, Adam ``step``). Its ``ddsp/core.py`` imports ``crepe`` (TensorFlow)
for preprocessing only, which the step never calls, so a stand-in module is registered under
that name. Ours is :func:`ddsp_synth.train.train_step`'s body (forward, training loss with the
loudness term, backward, gradient clipping, Adam). The two alternate, step by step, so a
change in machine speed hits both; the table gives medians and their ratio. Writes
``bench/results_peer_step.json``.

    python bench/bench_peer_step.py [--peer-dir ../ddsp_pytorch] [--threads 2] [--steps 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peer_step_fn(peer_dir: Path, batch: int, seconds: float):
    import torch
    import yaml

    sys.modules.setdefault("crepe", types.ModuleType("crepe"))  # preprocessing only
    sys.path.insert(0, str(peer_dir))
    from ddsp.core import multiscale_fft, safe_log
    from ddsp.model import DDSP

    config = yaml.safe_load((peer_dir / "config.yaml").read_text())
    model = DDSP(**config["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sr, block = config["model"]["sampling_rate"], config["model"]["block_size"]
    n = int(seconds * sr)
    g = torch.Generator().manual_seed(0)
    s = 0.1 * torch.randn(batch, n, generator=g)
    p = (150 + 300 * torch.rand(batch, 1, 1, generator=g)).expand(batch, n // block, 1)
    l = torch.randn(batch, n // block, 1, generator=g)

    def step():
        y = model(p, l).squeeze(-1)
        ori_stft = multiscale_fft(s, config["train"]["scales"], config["train"]["overlap"])
        rec_stft = multiscale_fft(y, config["train"]["scales"], config["train"]["overlap"])
        loss = 0
        for s_x, s_y in zip(ori_stft, rec_stft):
            lin_loss = (s_x - s_y).abs().mean()
            log_loss = (safe_log(s_x) - safe_log(s_y)).abs().mean()
            loss = loss + lin_loss + log_loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    n_params = sum(q.numel() for q in model.parameters())
    return step, n_params


def our_step_fn(batch: int, seconds: float, precision: str):
    import torch

    from ddsp_synth.losses import training_loss
    from ddsp_synth.model import DDSPModel, ModelConfig

    cfg = ModelConfig.for_sample_rate(16000, hidden=512)
    model = DDSPModel(cfg)
    model.decoder_bf16 = precision == "bf16"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n_frames = int(seconds * cfg.synth.frame_rate_hz)
    g = torch.Generator().manual_seed(0)
    target = 0.1 * torch.randn(batch, n_frames * cfg.synth.hop, generator=g)
    f0 = (150 + 300 * torch.rand(batch, 1, 1, generator=g)).expand(batch, n_frames, 1)
    loud = -30 + 5 * torch.randn(batch, n_frames, 1, generator=g)

    def step():
        out = model(f0, loud, audio=target)
        loss = training_loss(out, target, cfg.loss, cfg.features)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()

    return step, model.n_parameters()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-dir", default=os.environ.get("DDSP_PEER_DIR",
                                                         str(ROOT.parent / "ddsp_pytorch")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=16, help="timed steps of each (after 2 warm-up)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_peer_step.json"))
    args = ap.parse_args(argv)
    peer_dir = Path(args.peer_dir)
    if not (peer_dir / "ddsp" / "model.py").exists():
        print(f"no ddsp_pytorch checkout at {peer_dir}: git clone "
              "https://github.com/acids-ircam/ddsp_pytorch there, or pass --peer-dir",
              file=sys.stderr)
        return 2
    import ddsp_synth  # noqa: F401  (sets the OpenMP wait policy before torch loads)
    import torch

    torch.set_num_threads(args.threads)
    ours, ours_params = our_step_fn(args.batch, args.seconds, args.precision)
    peer, peer_params = peer_step_fn(peer_dir, args.batch, args.seconds)
    times = {"ours": [], "peer": []}
    for i in range(args.steps + 2):
        for name, fn in (("ours", ours), ("peer", peer)):
            t = time.perf_counter()
            fn()
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratios = [o / p for o, p in zip(times["ours"], times["peer"])]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "torch": torch.__version__,
        "threads": args.threads, "batch": args.batch, "seconds": args.seconds,
        "precision": args.precision, "date": time.strftime("%Y-%m-%d"),
        "ours_step_s": med["ours"], "peer_step_s": med["peer"],
        "ratio_median": float(np.median(ratios)), "ratio_min": float(np.min(ratios)),
        "ratio_max": float(np.max(ratios)), "ours_parameters": ours_params,
        "peer_parameters": peer_params, "steps": times,
    }
    print(f"| | step (median of {args.steps}) | parameters |\n|---|---|---|\n"
          f"| ddsp_synth ({args.precision}) | {med['ours']:.2f} s | {ours_params:,} |\n"
          f"| acids ddsp_pytorch | {med['peer']:.2f} s | {peer_params:,} |\n"
          f"ratio ours/peer: median {result['ratio_median']:.2f} (min {result['ratio_min']:.2f}, "
          f"max {result['ratio_max']:.2f}); {args.threads} threads, batch {args.batch} x "
          f"{args.seconds:g} s")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
