"""Benchmark of the device layer: differentiable IIR speed and SPSA throughput.

IIR: forward + backward (to the EQ parameters) of a 6-band EQ (low shelf, 4 peaks, high
shelf) over batch 8 x 4 s at 16 kHz, with constant and per-frame (hop 160) parameters:
the exact time-domain recursion (numba kernels, the default), the same through torchlpc's
C++ extension, philtorch, a naive PyTorch loop over samples (timed on a shorter signal and
scaled linearly to 4 s, which the loop is), and the frequency-sampling FIR. The error column
is the max abs difference from scipy's float64 ``sosfilt`` (per-frame: the float64 exact
recursion with the same per-sample coefficients), relative to the output peak; the float32
variants differ from it by float32 rounding.

SPSA: one training step (forward + SPSA backward with 1 perturbation pair per item) of
``peak,compressor,distortion`` (pedalboard) over batch 8 x 4 s, i.e. 8 + 16 device runs,
with the device in-process and in 1 and 2 worker processes.

Prints a Markdown table and writes ``bench/results_effects.json`` with the machine, the
thread settings and the load average (timings taken while other jobs run are noisy: re-run
on a quiet machine).

    python bench/bench_effects.py                 # everything
    python bench/bench_effects.py --quick         # fewer repeats, shorter naive loop
    python bench/bench_effects.py --only iir      # or: spsa
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from machine import machine_info  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

SR = 16000
BATCH = 8
SECONDS = 4.0
HOP = 160
EQ = ["lowshelf", "peak", "peak", "peak", "peak", "highshelf"]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (numba compile, allocator)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def eq_setup(n_samples: int, per_frame: bool, seed: int = 0):
    from ddsp_synth.chains import make_chain

    chain = make_chain(",".join(EQ), SR, hop=HOP)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, n_samples, generator=g) * 0.1
    if per_frame:
        n_frames = -(-n_samples // HOP)
        u = torch.rand(BATCH, 1, len(chain.params), generator=g)
        drift = 0.05 * torch.randn(BATCH, n_frames, len(chain.params), generator=g).cumsum(1)
        u = (u + drift / n_frames ** 0.5).clamp(0.05, 0.95)
    else:
        u = torch.rand(BATCH, len(chain.params), generator=g) * 0.9 + 0.05
    return chain, x, u


def eq_sos(chain, u, n_samples):
    """Per-section coefficients [B, S, 6], or per sample [B, T, S, 6] for per-frame
    parameters: one section per frame, interpolated linearly per sample (the twins' rule)."""
    from ddsp_synth.dsp.interpolation import frames_to_samples
    from ddsp_synth.stages.params import denormalise

    p = denormalise(chain.params, u)
    sos = torch.stack([s.coefficients(q) for s, q in zip(chain.stages(), chain.split(p))], -2)
    if sos.dim() == 4:
        b, f, s_, c = sos.shape
        sos = frames_to_samples(sos.reshape(b, f, s_ * c), HOP,
                                n_samples=n_samples).reshape(b, -1, s_, c)
    return sos


def iir_case(variant: str, per_frame: bool, repeats: int, n_samples: int) -> dict:
    from ddsp_synth.dsp import iir
    from ddsp_synth.stages.params import denormalise

    chain, x, u = eq_setup(n_samples, per_frame)
    hop = HOP if per_frame else None

    def step():
        uu = u.clone().requires_grad_(True)
        if variant in ("numba", "torchlpc", "loop"):
            previous = iir.set_default_backend(variant)
            try:
                y, _ = chain(x, denormalise(chain.params, uu))
            finally:
                iir.set_default_backend(previous)
        elif variant == "freq_sampling":
            p = denormalise(chain.params, uu)
            sos = torch.stack([s.coefficients(q) for s, q in zip(chain.stages(), chain.split(p))],
                              -2)
            y = iir.sosfilt_freq_sampling(x, sos, hop=hop, n_fft=1024)
        elif variant == "philtorch":
            y = _philtorch_eq(chain, x, uu, per_frame)
        y.square().mean().backward()
        return y

    seconds = _time(step, repeats)
    y = step().detach().double()
    ref = _reference(chain, x, u, per_frame)
    err = float((y - ref).abs().max() / ref.abs().max())
    return {"variant": variant, "per_frame": per_frame, "seconds_measured": seconds,
            "n_samples_measured": n_samples, "rel_error": err}


def _philtorch_eq(chain, x, u, per_frame):
    from philtorch.lpv import filtering as lpv
    from philtorch.lti import filtering as lti

    sos = eq_sos(chain, u, x.shape[1]).to(x.dtype)
    y = x
    for s in range(sos.shape[-2]):
        sec = sos[..., s, :]
        if per_frame:
            y = lpv.lfilter(sec[..., 0:3], sec[..., 4:6], y)
        else:
            y = lti.lfilter(sec[:, 0:3], sec[:, 4:6], y)
    return y


def _reference(chain, x, u, per_frame):
    import scipy.signal

    from ddsp_synth.dsp import iir

    sos = eq_sos(chain, u.double(), x.shape[1])
    if per_frame:
        previous = iir.set_default_backend("numba")
        try:
            return iir.sosfilt(x.double(), sos)
        finally:
            iir.set_default_backend(previous)
    return torch.tensor(np.stack([scipy.signal.sosfilt(sos[b].numpy(), x[b].double().numpy())
                                  for b in range(x.shape[0])]))


def run_iir(args) -> list[dict]:
    n = int(SECONDS * SR)
    rows = []
    variants = ["numba", "torchlpc", "philtorch", "freq_sampling", "loop"]
    for per_frame in (False, True):
        for variant in variants:
            if variant == "philtorch":
                try:
                    import philtorch  # noqa: F401
                except ImportError:
                    continue
            short = variant == "loop"
            n_used = int(args.naive_seconds * SR) if short else n
            try:
                row = iir_case(variant, per_frame, 1 if short else args.repeats, n_used)
            except Exception as err:  # a backend that is missing here: say so, go on
                rows.append({"variant": variant, "per_frame": per_frame,
                             "error": f"{type(err).__name__}: {err}"})
                continue
            row["seconds_4s"] = row["seconds_measured"] * n / n_used
            row["extrapolated"] = short
            rows.append(row)
            print(f"  iir {variant:14s} per_frame={per_frame!s:5s} "
                  f"{1000 * row['seconds_4s']:10.1f} ms", flush=True)
    base = {r["per_frame"]: r["seconds_4s"] for r in rows if r.get("variant") == "numba"}
    for r in rows:
        if "seconds_4s" in r:
            r["x_slower_than_exact"] = r["seconds_4s"] / base[r["per_frame"]]
    return rows


def run_spsa(args) -> list[dict]:
    from ddsp_synth.chains import make_chain
    from ddsp_synth.gradients.spsa import SPSAConfig
    from ddsp_synth.stages.params import denormalise

    twins = make_chain("peak,compressor,distortion", SR)
    g = torch.Generator().manual_seed(0)
    n = int(SECONDS * SR)
    x = torch.randn(BATCH, n, generator=g) * 0.2
    u = torch.rand(BATCH, len(twins.params), generator=g)
    rows = []
    for workers in (0, 1, 2):
        with make_chain("peak,compressor,distortion", SR, method="spsa", n_workers=workers,
                        spsa=SPSAConfig(n_pairs=1)) as chain:
            stage = chain.stages()[0]  # the three real devices: one SPSA stage

            def step():
                uu = u.clone().requires_grad_(True)
                chain(x, denormalise(chain.params, uu))[0].square().mean().backward()

            step()
            calls0 = stage.calls
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                step()
            seconds = (time.perf_counter() - t0) / args.repeats
            runs = (stage.calls - calls0) / args.repeats
        rows.append({"workers": workers, "seconds_per_step": seconds, "device_runs_per_step": runs,
                     "device_runs_per_s": runs / seconds,
                     "audio_seconds_per_s": runs * SECONDS / seconds})
        print(f"  spsa workers={workers}: {seconds:.3f} s/step, {runs / seconds:.1f} runs/s",
              flush=True)
    return rows


def table(result: dict) -> str:
    lines = []
    if "iir" in result:
        lines += ["6-band EQ, forward + backward, batch 8 x 4 s at 16 kHz, 1 thread", "",
                  "| variant | parameters | time (ms) | x exact | max rel. error |",
                  "|---|---|---|---|---|"]
        for r in result["iir"]:
            kind = "per frame (hop 160)" if r["per_frame"] else "constant"
            if "error" in r:
                lines.append(f"| {r['variant']} | {kind} | failed: {r['error'][:60]} | | |")
                continue
            scale = SECONDS * SR / r["n_samples_measured"]
            note = f" (from {r['n_samples_measured'] / SR:g} s, x{scale:.0f})" \
                if r["extrapolated"] else ""
            lines.append(f"| {r['variant']} | {kind} | {1000 * r['seconds_4s']:.1f}{note} | "
                         f"{r['x_slower_than_exact']:.1f} | {r['rel_error']:.1e} |")
    if "spsa" in result:
        lines += ["", "SPSA step (forward + backward, 1 pair/item) of peak,compressor,distortion "
                      "(pedalboard), batch 8 x 4 s", "",
                  "| workers | s/step | device runs/step | runs/s | audio s/s |",
                  "|---|---|---|---|---|"]
        for r in result["spsa"]:
            w = "in-process" if r["workers"] == 0 else str(r["workers"])
            lines.append(f"| {w} | {r['seconds_per_step']:.3f} | {r['device_runs_per_step']:.0f} "
                         f"| {r['device_runs_per_s']:.1f} | {r['audio_seconds_per_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is kept)")
    parser.add_argument("--naive-seconds", type=float, default=0.25,
                        help="signal length for the naive loop, scaled to 4 s (default 0.25)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 0.05 s naive loop")
    parser.add_argument("--only", choices=["iir", "spsa"], help="run one part")
    parser.add_argument("--out", default=str(HERE / "results_effects.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.naive_seconds = 2, 0.05
    torch.set_num_threads(1)
    result = {"machine": machine_info(), "settings": vars(args)}
    out = Path(args.out)
    if args.only and out.exists():
        # Keep the part that was not re-run (with the machine record it was measured on).
        previous = json.loads(out.read_text())
        other = "spsa" if args.only == "iir" else "iir"
        if other in previous:
            result[other] = previous[other]
            result[f"machine_{other}"] = previous.get(f"machine_{other}", previous["machine"])
    if args.only in (None, "iir"):
        result["iir"] = run_iir(args)
    if args.only in (None, "spsa"):
        result["spsa"] = run_spsa(args)
    result["load_average_end"] = os.getloadavg()
    text = table(result)
    print(text)
    result["table"] = text
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
