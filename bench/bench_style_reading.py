"""What a style controller can read from its reference (issue 19, docs/control.md "Inputs as
recorded").

On the held-out style examples of ``bench/bench_control.py experiment`` (same seed, so the
same windows, levels and style settings B), with inputs processed (``--input-processed 1``)
or as recorded (0):

* **partial oracles**: the input rendered with B's gain, EQ or compressor alone or in pairs,
  the rest neutral (gain 0 dB, compressor ratio 1): where the distance to the target lies;
* **EQ readings**: the rule baseline's long-term-spectrum EQ, smoothed over 1-4 octaves and
  bounded to +-6/12 dB, then a loudness match, read from the reference (other notes) and
  from the target itself (the input's own notes); and an EQ read from the mean upper
  envelope of each frame's spectrum (a max filter, then a box filter, of ``width`` Hz), which
  moves less with the notes than the average spectrum;
* with ``--run``: each of the controller's predicted settings against B (mean absolute error
  and correlation).

Prints a table; writes section ``reading`` (``--key``) of ``bench/results_control.json``.

    python bench/bench_style_reading.py --input-processed 0 --run data/runs/clean_autodiff
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_control import SR, _save, heldout_examples  # noqa: E402
from machine import machine_info  # noqa: E402

N_FFT = 4096
EQ_DEVICES = ("lowshelf", "peak", "highshelf")
PARTS = {"gain": ("gain",), "eq": EQ_DEVICES, "compressor": ("compressor",),
         "gain+eq": ("gain", *EQ_DEVICES), "gain+compressor": ("gain", "compressor")}


def _names(declared, devices) -> list[str]:
    """'device:parameter' of every parameter value."""
    out = []
    for p, device in zip(declared, devices):
        out += [f"{device}:{p.name.split('.')[-1]}"] * p.size
    return out


def partial_settings(settings: np.ndarray, names: list[str], keep: tuple[str, ...]):
    """[N, P] B's settings with every device outside ``keep`` neutral."""
    s = settings.copy()
    for j, name in enumerate(names):
        device, param = name.split(":")
        if device not in keep:
            if param == "gain_db":
                s[:, j] = 0.0
            elif param == "ratio":
                s[:, j] = 1.0
    return s


def upper_envelope_db(audio: np.ndarray, width_hz: float, gate_db: float = 50.0) -> np.ndarray:
    """[N_FFT // 2 + 1] mean over active frames of each frame's dB spectrum under a max filter
    of +-width_hz then a box filter of the same width."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    hop = N_FFT // 4
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, (0, N_FFT)), N_FFT)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=-1)) ** 2
    energy = power.sum(-1)
    db = 10.0 * np.log10(power[energy >= energy.max() * 10 ** (-gate_db / 10)] + 1e-12)
    size = 2 * max(1, int(width_hz / (SR / N_FFT))) + 1
    return uniform_filter1d(maximum_filter1d(db, size, axis=-1), size, axis=-1).mean(0)


def long_term_db(audio: np.ndarray) -> np.ndarray:
    from ddsp_synth.control.baselines import average_spectrum

    return 10.0 * np.log10(average_spectrum(audio, N_FFT) + 1e-20)


def smoothed_db(spectrum_db: np.ndarray, fraction: float) -> np.ndarray:
    """A dB spectrum's power averaged over ``fraction`` of an octave around every bin."""
    from ddsp_synth.control.baselines import smooth_octaves

    return 10.0 * np.log10(smooth_octaves(10.0 ** (spectrum_db / 10.0), SR, fraction) + 1e-20)


def apply_eq_curve(audio: np.ndarray, reference: np.ndarray, curve_db: np.ndarray,
                   max_db: float) -> np.ndarray:
    """The input through the curve (median removed, bounded to +-max_db) as the rule
    baseline's linear-phase FIR, then at the reference's integrated loudness."""
    from ddsp_synth.control.baselines import apply_fir, eq_fir, match_loudness

    y = apply_fir(np.asarray(audio, np.float64), eq_fir(curve_db, max_db))
    return match_loudness(y, reference, SR).astype(np.float32)


def eq_reading(ex, source: str, reader: str, fraction: float, max_db: float,
               width_hz: float = 500.0) -> float:
    """rel_spec of the input EQ'd by the difference of ``reader`` spectra of ``source``
    ("reference" or "target") and the input."""
    import torch

    from ddsp_synth.control.train import scores

    def read(a):
        db = upper_envelope_db(a, width_hz) if reader == "envelope" else long_term_db(a)
        return smoothed_db(db, fraction)

    outs = [apply_eq_curve(x, r, read(r) - read(x), max_db)
            for x, r in zip(ex.input.numpy(), getattr(ex, source).numpy())]
    return scores(torch.from_numpy(np.stack(outs)), ex, SR)["rel_spec"]


def settings_against_truth(run: str, ex, truth: np.ndarray, names: list[str]) -> list[dict]:
    from ddsp_synth.control import load_controller
    from ddsp_synth.control.apply import predict_settings

    net, _ = load_controller(run)
    pred = np.stack([predict_settings(net, x.numpy(), SR, r.numpy())
                     for x, r in zip(ex.input, ex.reference)])
    rows = []
    for j, name in enumerate(names):
        varies = pred[:, j].std() > 1e-9 and truth[:, j].std() > 1e-9
        rows.append({"parameter": name, "mae": float(np.abs(pred[:, j] - truth[:, j]).mean()),
                     "correlation": float(np.corrcoef(pred[:, j], truth[:, j])[0, 1])
                     if varies else None})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input-processed", type=float, default=0.0)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--seconds", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    ap.add_argument("--run", help="a trained style controller: its settings against B (2 s)")
    ap.add_argument("--key", default="reading")
    args = ap.parse_args(argv)
    import torch

    from ddsp_synth.control.devices import build_chain, declared_params
    from ddsp_synth.control.train import scores

    torch.set_num_threads(1)
    chain = build_chain("lowshelf,peak,peak,highshelf,compressor,gain", SR, "autodiff")
    declared, _, devices = declared_params(chain)
    chain.close()
    names = _names(declared, devices)
    result = {"input_processed": args.input_processed, "examples": args.examples,
              "by_seconds": {}, "machine": machine_info()}
    for seconds in args.seconds:
        ex, renderer, _, _, settings = heldout_examples(args.examples, seconds,
                                                        args.input_processed)
        truth = settings[len(ex):]
        row = {}
        with torch.no_grad():
            for part, keep in PARTS.items():
                out, _ = renderer(ex.input, torch.from_numpy(
                    partial_settings(truth, names, keep)).float())
                row[f"oracle_{part}"] = scores(out, ex, SR)["rel_spec"]
        renderer.close()
        for fraction in (1.0, 4.0):
            for max_db in (6.0, 12.0):
                for source in ("reference", "target"):
                    row[f"ltas_{source}_{fraction:g}oct_{max_db:g}db"] = eq_reading(
                        ex, source, "ltas", fraction, max_db)
        for source in ("reference", "target"):
            row[f"envelope_{source}_2oct_12db"] = eq_reading(ex, source, "envelope", 2.0, 12.0)
        if args.run and seconds == 2.0:
            result["settings"] = settings_against_truth(args.run, ex, truth, names)
            result["run"] = args.run
        result["by_seconds"][f"{seconds:g}"] = row
        print(f"{seconds:g} s: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
              file=sys.stderr, flush=True)
    keys = list(next(iter(result["by_seconds"].values())))
    print("| reading | " + " | ".join(f"{s} s" for s in result["by_seconds"]) + " |")
    print("|---|" + "---|" * len(result["by_seconds"]))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k]:.3f}" for r in result["by_seconds"].values())
              + " |")
    for r in result.get("settings", []):
        c = "-" if r["correlation"] is None else f"{r['correlation']:.2f}"
        print(f"| {r['parameter']} | mae {r['mae']:.2f} | corr {c} |")
    _save(args.key, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
