"""One benchmark table: synthesis, transfer, streaming, training, memory, against the peer.

Every case runs in its own subprocess (so its peak RSS is its own). Prints a Markdown table
and writes ``bench/results.json``:

    python bench/run_all.py [--quick]

``--quick`` skips the slow cases (transfer with CREPE full, the 10-minute transfer).
The peer figures are acids-ircam/ddsp_pytorch at its published defaults (16 kHz, 100
harmonics, 65 noise bands, hidden 512, 1 s reverb, 3.79 M parameters), measured on this
machine kind with 2 threads; they are constants here, not re-measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "train"
sys.path.insert(0, str(HERE))
from bench_core import case_synth  # noqa: E402
from machine import machine_line as machine  # noqa: E402

PEER = {  # acids-ircam/ddsp_pytorch defaults, same machine kind, 2 threads
    "train_step_b16_s": 3.15,
    "train_step_b16_peak_rss_mb": 3150,
    "train_step_b4_s": 0.93,
    "inference_rtf": 0.031,
    "inference_60s_peak_rss_mb": 1860,
    "n_parameters": 3_790_000,
}
DDSP_VST_LATENCY_MS = 64.0
MODEL = "violin"


def input_audio(seconds: float, name: str = "flute") -> np.ndarray:
    """``seconds`` of a shared recording (looped), or a synthetic melody without ../shared."""
    import soundfile as sf

    if (SHARED / f"{name}.flac").exists():
        y, sr = sf.read(SHARED / f"{name}.flac", dtype="float32")
    else:
        sr = 16000
        t = np.arange(int(60 * sr)) / sr
        f0 = 440 * 2 ** (np.floor(2 * t) % 12 / 12)
        y = (0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr)).astype(np.float32)
    reps = int(np.ceil(seconds * sr / len(y)))
    return np.tile(y, reps)[: int(seconds * sr)]


def write_input(seconds: float, path: Path) -> Path:
    """A 44.1 kHz stereo WAV, as a user's recording would be (so resampling is included)."""
    import librosa
    import soundfile as sf

    y = librosa.resample(input_audio(seconds), orig_sr=16000, target_sr=44100)
    sf.write(path, np.stack([y, y], axis=1), 44100)
    return path


# ----------------------------------------------------------------------------- cases
def case_transfer(pitch_model: str, seconds: float) -> dict:
    """End to end, as ``ddsp-synth transfer`` does it: read, resample, analyse (no cache),
    auto-adjust, render, write; f0 compared with CREPE full on the same input."""
    import torch

    from ddsp_synth.audio_io import write_audio
    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.pitch import crepe_runner
    from ddsp_synth.model import load_model, models_dir
    from ddsp_synth.transfer import transfer_audio

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(os.environ["BENCH_TMP"]) / f"in_{seconds:g}s.wav"  # written by the parent
        model, meta = load_model(models_dir() / MODEL)
        crepe_runner(pitch_model)  # the one-off ONNX export is cached on disk, not timed
        t = time.perf_counter()
        audio = load_audio(src, 16000)
        out, info = transfer_audio(model, meta, audio, pitch_model=pitch_model, cache=False)
        write_audio(Path(tmp) / "out.wav", out, 16000)
        dt = time.perf_counter() - t
        result = {"pitch_model": pitch_model, "seconds_audio": seconds, "time_s": dt,
                  "rtf": dt / seconds}
        if pitch_model == "full":
            np.save(Path(os.environ["BENCH_TMP"]) / "f0_full.npy",
                    np.stack([info["input"]["f0_hz"], info["input"]["confidence"]]))
        else:
            np.save(Path(os.environ["BENCH_TMP"]) / f"f0_{pitch_model}.npy",
                    info["input"]["f0_hz"])
    return result


def case_f0_vs_full(seconds: float) -> dict:
    """Median |f0 - f0_full| in cents on frames CREPE full finds voiced (conf >= 0.85), for
    the default offline tracker and the streaming front end."""
    from ddsp_synth.features import FeatureConfig, compute_f0
    from ddsp_synth.streaming import StreamingFeatures

    tmp = Path(os.environ["BENCH_TMP"])
    full_path = tmp / "f0_full.npy"
    x = input_audio(seconds)
    if full_path.exists():
        f0_full, conf = np.load(full_path)
    else:
        f0_full, conf = compute_f0(x, FeatureConfig(crepe_model="full"))
    voiced = conf >= 0.85
    res = {"voiced_frames": int(voiced.sum())}

    def med(f0):
        n = min(len(f0), len(f0_full))
        v = voiced[:n]
        return float(np.median(np.abs(1200 * np.log2(f0[:n][v] / f0_full[:n][v]))))

    if (tmp / "f0_tiny.npy").exists():
        res["offline_tiny_median_cents"] = med(np.load(tmp / "f0_tiny.npy"))
    sf_ = StreamingFeatures(FeatureConfig())
    frames = []
    for i in range(0, len(x), 160):
        frames += sf_.push(x[i : i + 160])
    frames += sf_.finish()
    res["streaming_tiny_median_cents"] = med(np.array([f.f0_hz for f in frames]))
    return res


def case_stream(engine: str, seconds: float) -> dict:
    """Per-block compute on one thread: synthesis alone (frames in), and the whole live path
    (audio in: features + synthesis) over ``seconds`` of a recording, 10 ms blocks."""
    import torch

    from ddsp_synth.model import load_model, models_dir
    from ddsp_synth.streaming import StreamingSynth, stream_audio

    torch.set_num_threads(1)
    model, _ = load_model(models_dir() / MODEL)
    synth = StreamingSynth(model, engine=engine)
    n = 3000
    t = np.arange(n) / 100
    f0 = 440 * 2 ** (np.floor(2 * t) % 12 / 12)
    loud = -30 + 10 * np.sin(2 * np.pi * 0.3 * t)
    times = []
    for i in range(n):
        a = time.perf_counter()
        synth.process_frame(f0[i], loud[i])
        times.append(time.perf_counter() - a)
    times = np.array(times[100:]) * 1e3
    res = {"engine": engine, "synth_median_ms": float(np.median(times)),
           "synth_p99_ms": float(np.percentile(times, 99))}
    if engine == "onnx":
        _, report = stream_audio(model, input_audio(seconds), 160, engine=engine)
        res.update({"live_median_ms": report["compute_total"]["median_ms"],
                    "live_p99_ms": report["compute_total"]["p99_ms"],
                    "features_median_ms": report["compute_features"]["median_ms"],
                    "late_blocks": report["late_blocks"], "blocks": report["blocks"],
                    "latency_ms": report["latency_ms"]})
    return res


def case_train(hidden: int, n_harmonics: int, batch: int, precision: str = "fp32",
               threads: int = 2) -> dict:
    """One optimisation step (forward, spectral loss, backward, Adam) of batch x 4 s."""
    import torch

    from ddsp_synth.losses import multi_resolution_stft_loss
    from ddsp_synth.model import DDSPModel, ModelConfig
    from ddsp_synth.stages.synth import SynthConfig

    torch.set_num_threads(threads)
    base = ModelConfig.for_sample_rate(16000, hidden=hidden)
    cfg = ModelConfig(synth=SynthConfig(**{**base.synth.__dict__, "n_harmonics": n_harmonics}),
                      decoder=base.decoder, features=base.features, loss=base.loss)
    model = DDSPModel(cfg)
    model.decoder_bf16 = precision == "bf16"
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    n_frames = int(4 * cfg.synth.frame_rate_hz)
    gen = torch.Generator().manual_seed(0)
    f0 = 150 + 300 * torch.rand(batch, 1, 1, generator=gen).expand(batch, n_frames, 1)
    loud = -30 + 5 * torch.randn(batch, n_frames, 1, generator=gen)
    target = 0.1 * torch.randn(batch, n_frames * cfg.synth.hop, generator=gen)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        loss = multi_resolution_stft_loss(model(f0, loud), target, cfg.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = float(np.median(times[2:]))
    return {"hidden": hidden, "n_harmonics": n_harmonics, "batch": batch,
            "precision": precision, "step_s": step,
            "steps_per_s": 1 / step, "n_parameters": model.n_parameters()}


def case_transfer_rss(minutes: float) -> dict:
    """Peak RSS of ``ddsp-synth transfer`` on a ``minutes``-long 44.1 kHz stereo file."""
    from ddsp_synth.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(os.environ["BENCH_TMP"]) / f"in_{minutes * 60:g}s.wav"  # written by the parent
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        rc = main(["transfer", str(src), "--model", MODEL, "-o", str(Path(tmp) / "out.wav"),
                   "--quiet", "--no-cache"])
        return {"minutes": minutes, "exit": rc, "time_s": time.perf_counter() - t,
                "rss_before_transfer_mb": before}


CASES = {"synth": lambda a: case_synth(int(a[0]), 3), "transfer": lambda a: case_transfer(a[0], float(a[1])),
         "f0": lambda a: case_f0_vs_full(float(a[0])), "stream": lambda a: case_stream(a[0], float(a[1])),
         "train": lambda a: case_train(int(a[0]), int(a[1]), int(a[2]), a[3]),
         "rss": lambda a: case_transfer_rss(float(a[0])),
         "write": lambda a: {"path": str(write_input(float(a[0]), Path(a[1])))}}


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slow cases")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CASES[args.child[0]](args.child[1:])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    tmp = tempfile.mkdtemp(prefix="ddsp_bench_")
    os.environ["BENCH_TMP"] = tmp
    os.environ.setdefault("DDSP_SYNTH_CACHE", str(Path(tmp) / "cache"))
    r = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "peer": PEER}
    steps = [("synth_1t", ("synth", 1)), ("synth_2t", ("synth", 2)),
             ("transfer_tiny_60s", ("transfer", "tiny", 60))]
    if not args.quick:
        steps.append(("transfer_full_60s", ("transfer", "full", 60)))
    steps += [("f0_vs_full_60s", ("f0", 60)),
              ("stream_torch", ("stream", "torch", 10)),
              ("stream_torchscript", ("stream", "torchscript", 10)),
              ("stream_onnx", ("stream", "onnx", 30)),
              ("train_default_b16", ("train", 256, 100, 16, "fp32")),
              ("train_peer_size_b16", ("train", 512, 100, 16, "fp32")),
              ("train_peer_size_b16_bf16", ("train", 512, 100, 16, "bf16")),
              ("train_peer_size_b4", ("train", 512, 100, 4, "fp32"))]
    if not args.quick:
        steps.append(("transfer_10min_rss", ("rss", 10)))
    for seconds in (60, 600):  # inputs written by a child of their own: a child inherits its
        # parent's peak RSS, so the parent must stay small for the cases' figures to be theirs
        run_child("write", seconds, Path(tmp) / f"in_{seconds:g}s.wav")
    for name, case in steps:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        r[name] = run_child(*case)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print(table(r))
    return 0


def table(r: dict) -> str:
    def ratio(ours, peer):
        return f"{peer / ours:.1f}x faster" if ours < peer else f"{ours / peer:.1f}x slower"

    p = r["peer"]
    rows = [("measure", "ddsp_synth", "peak RSS", "peer (acids ddsp_pytorch defaults) / target")]
    rows.append(("synthesis RTF, 60 s, 1 thread", f"{r['synth_1t']['rtf']:.4f}",
                 f"{r['synth_1t']['peak_rss_mb']:.0f} MB",
                 f"whole inference {p['inference_rtf']} ({ratio(r['synth_1t']['rtf'], p['inference_rtf'])})"))
    rows.append(("synthesis RTF, 60 s, 2 threads", f"{r['synth_2t']['rtf']:.4f}",
                 f"{r['synth_2t']['peak_rss_mb']:.0f} MB",
                 f"{p['inference_rtf']} ({ratio(r['synth_2t']['rtf'], p['inference_rtf'])})"))
    for key, label in (("transfer_tiny_60s", "default (CREPE tiny, ONNX)"),
                       ("transfer_full_60s", "--pitch-model full")):
        if key in r:
            t = r[key]
            rows.append((f"transfer 60 s end to end, {label}, 2 threads",
                         f"{t['time_s']:.1f} s (RTF {t['rtf']:.3f})", f"{t['peak_rss_mb']:.0f} MB",
                         "target <= 10 s" if "tiny" in key else "quality option"))
    f = r["f0_vs_full_60s"]
    if "offline_tiny_median_cents" in f:
        rows.append(("f0 of default tracker vs CREPE full (median, voiced)",
                     f"{f['offline_tiny_median_cents']:.1f} cents", "", "target <= 10 cents"))
    rows.append(("f0 of streaming front end vs CREPE full (median)",
                 f"{f['streaming_tiny_median_cents']:.1f} cents", "", ""))
    for eng in ("torch", "torchscript", "onnx"):
        s = r[f"stream_{eng}"]
        rows.append((f"streaming synthesis per 10 ms block, {eng}, 1 thread",
                     f"median {s['synth_median_ms']:.2f} ms, p99 {s['synth_p99_ms']:.2f} ms",
                     f"{s['peak_rss_mb']:.0f} MB", "target <= 2.5 ms"))
    s = r["stream_onnx"]
    lat = s["latency_ms"]
    rows.append(("live path per 10 ms block (features + synthesis), 1 thread",
                 f"median {s['live_median_ms']:.2f} ms, p99 {s['live_p99_ms']:.2f} ms, "
                 f"{s['late_blocks']}/{s['blocks']} late", "", ""))
    rows.append(("algorithmic latency", f"synthesis {lat['synthesis']:.0f} ms; live total "
                 f"{lat['total']:.0f} ms (features {lat['features_lookahead']:.0f} + synthesis "
                 f"{lat['synthesis']:.0f} + block {lat['block_buffer']:.0f})", "",
                 f"target <= 10 ms synthesis; DDSP-VST {DDSP_VST_LATENCY_MS:.0f} ms"))
    for key, label, peer_s in (("train_default_b16", "default size", None),
                               ("train_peer_size_b16", "peer's size (hidden 512)", p["train_step_b16_s"]),
                               ("train_peer_size_b16_bf16", "peer's size, --precision bf16",
                                p["train_step_b16_s"]),
                               ("train_peer_size_b4", "peer's size, batch 4", p["train_step_b4_s"])):
        t = r[key]
        b = t["batch"]
        rows.append((f"training step, batch {b} x 4 s, {label}, 2 threads",
                     f"{t['step_s']:.2f} s ({t['steps_per_s']:.2f} steps/s), "
                     f"{t['n_parameters'] / 1e6:.2f} M params", f"{t['peak_rss_mb']:.0f} MB",
                     "" if peer_s is None else f"{peer_s} s ({ratio(t['step_s'], peer_s)}; "
                                              f"target <= 0.5x = {peer_s / 2:.2f} s)"))
    if "transfer_10min_rss" in r:
        t = r["transfer_10min_rss"]
        rows.append(("transfer of a 10-minute file, peak RSS", f"{t['time_s']:.0f} s",
                     f"{t['peak_rss_mb']:.0f} MB", "target <= 1 GB"))
    lines = [f"Machine: {r['machine']} ({r['date']})", ""]
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(row) + " |")
        if i == 0:
            lines.append("|" + "---|" * len(row))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
