"""Controllers benchmark: the seed's experiment (issue 19, part 3) and the figures of part 4.

``experiment``: style controllers of one chain (``lowshelf,peak,peak,highshelf,compressor,
gain``) trained with each gradient method on the same data, the same seed and the same
wall-clock budget (``control train --max-minutes M --seed 0``: their run folders are given),
evaluated on held-out recordings that no training saw (``data/style_material/heldout``:
render seeds 9200-9299, instruments never seen in training, new voices, a real sung scale)
by DeepAFx-ST's protocol: a window of a recording, shifted to a random level, is rendered
by the real devices twice with random settings; the input is one half of the first
rendering, the target the same half of the second and the reference the other half of the
second. Each is judged by

* ``rel_spec`` = mean MR log-spectral distance(output, target) / that of doing nothing
  (the input itself), DeepAFx-ST's figure of merit as a ratio;
* the loudness error |L(output) - L(target)| in LU (BS.1770);
* the training step time of each method (median ``step_s`` of the run's log).

``--input-processed 0`` gives the inputs as recorded instead (only the target and the
reference are processed; the same windows, levels and style settings for the same seed).

Baselines: doing nothing (1 by definition), the rule baseline (long-term-average-spectrum
match EQ + loudness match, :func:`ddsp_synth.control.rule_baseline`), an oracle that reads
the reference perfectly (the target's own settings applied to the processed input: what is
left is the input's own processing, which only a controller that undoes it removes) and
the rule reading the target itself instead of the reference (its EQ without the difference
in notes between the input's part and the reference's) and ``match`` run per example on the
true target (a ceiling: it sees the target, the controllers only a reference), on the first
``--match-examples`` examples.

``steps``: training step time per method and worker count, peak memory of each run.

``style``: ``ddsp-synth style`` on a 3-minute 44.1 kHz stereo song made of held-out
recordings (wall time of the whole command, real-time factor, peak memory of the process).

Prints Markdown tables; writes ``bench/results_control.json`` (merged per section).

    python bench/bench_control.py experiment --runs autodiff=RUN spsa=RUN proxy=RUN hybrid=RUN
    python bench/bench_control.py steps
    python bench/bench_control.py style
    python bench/bench_control.py proxy RUN_DIR     # the compressor proxy where RUN_DIR goes
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from machine import machine_info  # noqa: E402

import numpy as np  # noqa: E402

CHAIN = "lowshelf,peak,peak,highshelf,compressor,gain"
SR = 16000
HELDOUT = ROOT / "data" / "style_material" / "heldout"
RESULTS = HERE / "results_control.json"
SEED = 9200
# DeepAFx-ST (Steinmetz et al. 2022), LibriTTS, MR-STFT relative to the unprocessed input
DEEPAFX_ST = {"none": 1.0, "rule": 0.943 / 1.187, "autodiff": 0.388 / 1.187,
              "spsa": 0.635 / 1.187, "proxy": 0.676 / 1.187, "hybrid": 1.058 / 1.187}
GOALS = {"autodiff": 0.25, "spsa": 0.35, "proxy": 0.40, "hybrid": 0.40}


def _save(section: str, data: dict) -> None:
    from ddsp_synth.audio_io import atomic_write_text

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[section] = data
    atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")


def heldout_examples(n: int, seconds: float, input_processed: float = 1.0):
    """Style examples from the held-out recordings, rendered by the real devices (the
    inputs processed too, ``input_processed`` 1, or as recorded, 0)."""
    from ddsp_synth.control.config import ControlDataConfig
    from ddsp_synth.control.data import StyleSource
    from ddsp_synth.control.devices import build_chain, declared_params, render_chain

    chain = build_chain(CHAIN, SR, "autodiff")
    declared, fixed, devices = declared_params(chain)
    chain.close()
    renderer, kind = render_chain(CHAIN.split(","), SR)
    cfg = ControlDataConfig(segment_seconds=seconds, reference_seconds=seconds,
                            held_out_fraction=0.0, input_processed=input_processed)
    source = StyleSource([HELDOUT], SR, renderer, declared, devices, cfg, fixed)
    examples = source.batch(np.random.default_rng(SEED), n)
    # the settings: [2 n, P] natural, the inputs' rows, then the targets'
    return examples, renderer, kind, source.names, source.last_settings


def material(name: str) -> str:
    """The kind of recording an example was cut from (``file@start``): speech, singing
    (sung voices: the real sung scale and the rendered choir/voice 'oohs') or instrument."""
    stem = name.split("@")[0].lower()
    if stem.startswith("speech"):
        return "speech"
    if "singing" in stem or stem.startswith(("voiceoohs", "choiraahs")):
        return "singing"
    return "instrument"


def log_level_db(audio, n_fft: int = 1024, hop: int = 256, gate_db: float = 40.0):
    """[batch] mean log-magnitude (dB) over the STFT bins and the frames within ``gate_db``
    of the loudest: a level as the log-spectral distance sees it (every linear-frequency bin
    counts the same, so the quiet high bands weigh more than in a loudness)."""
    import torch

    mag = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft),
                     return_complex=True).abs()
    energy = 10.0 * torch.log10(mag.square().sum(1) + 1e-20)
    mask = (energy > energy.max(-1, keepdim=True).values - gate_db).float()
    frames = (20.0 * torch.log10(mag + 1e-5)).mean(1)
    return (frames * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def by_material(output, examples) -> dict:
    """rel_spec and the loudness error of each kind of material (:func:`material`)."""
    from ddsp_synth.control.metrics import loudness_errors, spectral_errors

    kinds = np.array([material(n) for n in examples.names])
    d, d0 = spectral_errors(output, examples.target, examples.input)
    lu = loudness_errors(output.numpy(), examples.target.numpy(), SR)
    return {k: {"rel_spec": float(d[kinds == k].mean() / max(d0[kinds == k].mean(), 1e-12)),
                "loudness_lu": float(lu[kinds == k].mean()), "examples": int((kinds == k).sum())}
            for k in sorted(set(kinds))}


def _step_times(run_dir: Path) -> dict:
    """Median step time, steps and the best in-training validation of a run."""
    steps, times, best = 0, [], None
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "step_s" in rec and rec["step"] > 1:
            times.append(rec["step_s"])
        if "step" in rec:
            steps = max(steps, rec["step"])
        if "val" in rec and (best is None or rec["val"]["rel_spec"] < best):
            best = rec["val"]["rel_spec"]
    settings = json.loads((run_dir / "run.json").read_text())
    return {"steps": steps, "step_s": float(np.median(times)) if times else None,
            "loss": settings.get("loss", "mr"),
            "segment_seconds": settings["data"]["segment_seconds"],
            "batch_size": settings["train"]["batch_size"],
            "max_minutes": settings["train"]["max_minutes"], "val_rel_spec_best": best}


def _match_ceiling(examples, n: int, max_seconds: float) -> np.ndarray:
    from ddsp_synth.match import match

    outs = []
    for i in range(n):
        x, y = examples.input[i].numpy(), examples.target[i].numpy()
        res = match(x, y, SR, CHAIN, method="autodiff", max_seconds=max_seconds, seed=0)
        out = np.asarray(res.matched, np.float32)
        outs.append(np.pad(out, (0, max(0, len(x) - len(out))))[: len(x)])
        print(f"  match {i + 1}/{n}", file=sys.stderr, flush=True)
    return np.stack(outs)


def experiment(args) -> dict:
    import torch

    from ddsp_synth.control import load_controller, rule_baseline
    from ddsp_synth.control.data import Examples
    from ddsp_synth.control.train import render_examples, scores

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ex, renderer, kind, names, settings = heldout_examples(args.examples, args.seconds,
                                                           args.input_processed)
    print(f"{len(ex)} held-out examples of {args.seconds:g} s from {len(names)} recordings "
          f"({kind} devices, {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    rows, outputs = {}, {"none": ex.input}
    rows["none"] = {**scores(ex.input, ex, SR), "by_material": by_material(ex.input, ex)}
    rule = np.stack([rule_baseline(x.numpy(), r.numpy(), SR)
                     for x, r in zip(ex.input, ex.reference)])
    outputs["rule"] = torch.from_numpy(rule)
    rows["rule"] = {**scores(outputs["rule"], ex, SR),
                    "by_material": by_material(outputs["rule"], ex)}
    # the rule reading the target itself (same notes as the input): what its EQ would do
    # without the difference in content between the input's part and the reference's
    same = np.stack([rule_baseline(x.numpy(), t.numpy(), SR)
                     for x, t in zip(ex.input, ex.target)])
    outputs["rule_same_content"] = torch.from_numpy(same)
    rows["rule_same_content"] = {**scores(outputs["rule_same_content"], ex, SR),
                                 "by_material": by_material(outputs["rule_same_content"], ex)}
    # the rule's loudness stage alone (no EQ): the input at the reference's loudness
    from ddsp_synth.control.baselines import match_loudness
    lev = [match_loudness(x, r, SR) for x, r in zip(ex.input.numpy(), ex.reference.numpy())]
    outputs["loudness"] = torch.from_numpy(np.stack(lev).astype(np.float32))
    rows["loudness"] = {**scores(outputs["loudness"], ex, SR),
                        "by_material": by_material(outputs["loudness"], ex)}
    # one gain matching the mean log-magnitude spectrum (what rel_spec measures) instead
    gain_db = log_level_db(ex.reference) - log_level_db(ex.input)
    outputs["logmatch"] = ex.input * (10.0 ** (gain_db / 20.0))[:, None]
    rows["logmatch"] = {**scores(outputs["logmatch"], ex, SR),
                        "by_material": by_material(outputs["logmatch"], ex)}
    # the oracle that reads the reference perfectly: the target's own settings, applied to
    # the (already processed) input; what is left is the input's processing
    with torch.no_grad():
        outputs["oracle"], _ = renderer(ex.input, torch.from_numpy(settings[len(ex):]).float())
    rows["oracle"] = {**scores(outputs["oracle"], ex, SR),
                      "by_material": by_material(outputs["oracle"], ex)}
    for spec in args.runs:
        method, path = spec.split("=", 1)
        net, meta = load_controller(path)
        out = outputs[method] = render_examples(net, ex, renderer)
        rows[method] = {**scores(out, ex, SR), **_step_times(Path(path)),
                        "by_material": by_material(out, ex), "run": str(path),
                        "level_match": bool(net.config.level_match)}
        print(f"  {method}: {rows[method]['rel_spec']:.3f}", file=sys.stderr)
    if args.match_examples:
        k = min(args.match_examples, len(ex))
        sub = Examples(ex.input[:k], ex.target[:k], ex.reference[:k], ex.names[:k])
        matched = _match_ceiling(ex, k, args.match_seconds)
        rows["match"] = {**scores(torch.from_numpy(matched), sub, SR),
                         "match_seconds": args.match_seconds}
        # the other rows on the same examples, for a like-for-like comparison
        for key, out in outputs.items():
            rows[key]["rel_spec_on_match_examples"] = scores(out[:k], sub, SR)["rel_spec"]
    renderer.close()
    result = {"chain": CHAIN, "sample_rate": SR, "examples": len(ex),
              "input_processed": args.input_processed,
              "example_seconds": args.seconds, "heldout_files": names, "seed": SEED,
              "rows": rows, "deepafx_st": DEEPAFX_ST, "goals": GOALS, "machine": machine_info()}
    _save(args.key, result)
    print(experiment_table(result))
    print(material_table(result))
    return result


def proxy_where(args) -> dict:
    """The compressor proxy against the real compressor on the held-out examples, at the
    settings a trained controller predicts and at settings drawn uniformly (what the proxy
    was trained on): its output's MR log-spectral distance to the device's (and the dry
    input's, for scale), and the cosine between its parameter gradient of a spectral
    matching loss and the exact one (the twin, equal to pedalboard's compressor to 1e-7).
    The matching target is the device at settings moved by N(0, 0.15) in normalised units."""
    import torch

    from ddsp_synth.control import load_controller
    from ddsp_synth.control.devices import build_chain
    from ddsp_synth.dsp.spectral import spectral_distance
    from ddsp_synth.gradients.proxy.files import load_proxy
    from ddsp_synth.stages.params import denormalise, expand, normalise

    torch.set_num_threads(1)
    ex, renderer, _, _, _ = heldout_examples(args.examples, args.seconds)
    renderer.close()
    net, _ = load_controller(args.run)
    with torch.no_grad():
        settings = net.predict(ex.input, ex.reference)
    eq = build_chain("lowshelf,peak,peak,highshelf", SR, "autodiff")
    twin = build_chain("compressor", SR, "autodiff")
    real = build_chain("compressor", SR, "spsa")
    proxy = load_proxy(Path(args.proxy) if args.proxy else
                       ROOT / "models" / "proxies" / "compressor", twin.hop)
    n_eq, n_c = sum(eq.sizes), sum(twin.sizes)
    with torch.no_grad():
        x, _ = eq(ex.input, settings[:, :n_eq])  # what the compressor hears
    declared = expand(tuple(twin.params))
    rng = np.random.default_rng(0)

    def natural(u: np.ndarray) -> torch.Tensor:
        return denormalise(declared, torch.from_numpy(u)).float()

    def log_distance(a, b) -> np.ndarray:
        return spectral_distance(a, b, linear_weight=0.0).numpy()

    def gradient(model, p, target) -> torch.Tensor:
        q = p.clone().requires_grad_(True)
        y, _ = model(x, q)
        (g,) = torch.autograd.grad(spectral_distance(y, target, linear_weight=0.0).sum(), q)
        return g

    kinds = np.array([material(n) for n in ex.names])
    result = {"run": str(args.run), "proxy": args.proxy or "models/proxies/compressor",
              "examples": len(ex), "example_seconds": args.seconds,
              "settings": {}, "machine": machine_info()}
    for label, p in (("controller", settings[:, n_eq:n_eq + n_c].float()),
                     ("uniform", natural(rng.uniform(size=(len(ex), n_c))))):
        u = normalise(tuple(twin.params), p.double()).numpy()
        moved = natural(np.clip(u + rng.normal(0.0, 0.15, u.shape), 0.0, 1.0))
        with torch.no_grad():
            y_real, _ = real(x, p)
            y_proxy, _ = proxy(x, p)
            target, _ = real(x, moved)
        cos = torch.nn.functional.cosine_similarity(
            gradient(proxy, p, target), gradient(twin, p, target), dim=-1).numpy()
        d_proxy, d_dry = log_distance(y_proxy, y_real), log_distance(x, y_real)
        rows = {"all": np.ones(len(ex), bool), **{k: kinds == k for k in sorted(set(kinds))}}
        result["settings"][label] = {
            "median_settings": dict(zip([q.name for q in declared],
                                        np.median(p.numpy(), 0).round(3).tolist())),
            **{k: {"examples": int(m.sum()),
                   "proxy_vs_device": float(np.median(d_proxy[m])),
                   "dry_vs_device": float(np.median(d_dry[m])),
                   "gradient_cosine_median": float(np.median(cos[m])),
                   "gradient_cosine_mean": float(np.mean(cos[m]))} for k, m in rows.items()}}
    real.close()
    _save(args.key, result)
    print("| settings | material | examples | proxy vs device (MR log) | dry vs device | "
          "gradient cosine with the exact one, median / mean |\n|---|---|---|---|---|---|")
    for label, r in result["settings"].items():
        for k, v in r.items():
            if k != "median_settings":
                print(f"| {label} | {k} | {v['examples']} | {v['proxy_vs_device']:.3f} | "
                      f"{v['dry_vs_device']:.3f} | {v['gradient_cosine_median']:.2f} / "
                      f"{v['gradient_cosine_mean']:.2f} |")
        print(f"| {label} | median settings: {r['median_settings']} | | | | |")
    return result


LABELS = {"none": "do nothing", "rule": "rule baseline (LTAS EQ + loudness)",
          "loudness": "loudness match only (the rule without its EQ)",
          "logmatch": "one gain matching the mean log spectrum",
          "autodiff": "autodiff (twins)", "spsa": "SPSA (real devices)",
          "proxy": "proxy (compressor proxy, EQ twins)",
          "hybrid": "hybrid (real forward, proxy backward)",
          "autodiff_level": "autodiff with the level path (--level-match)",
          "autodiff_log": "autodiff, log-magnitude loss (--loss log)",
          "autodiff_5s": "autodiff, trained on 5 s clips (--segment-seconds 5)",
          "oracle": "the target's own settings on the input (knows B, not A)",
          "rule_same_content": "the rule reading the target itself (no content difference)",
          "match": "match per example (sees the target: ceiling)"}


def experiment_table(result: dict) -> str:
    rows = result["rows"]
    ref = DEEPAFX_ST
    lines = ["| method | rel_spec (ours) | median | DeepAFx-ST | goal | loudness error (LU) | "
             "step time (s, batch 8) | steps in budget |",
             "|---|---|---|---|---|---|---|---|"]
    order = ("none", "rule", "loudness", "logmatch", "rule_same_content", "oracle", "autodiff",
             "spsa", "proxy", "hybrid")
    for key in [*order, *(k for k in rows if k not in order and k != "match"), "match"]:
        if key not in rows:
            continue
        r = rows[key]
        step = f"{r['step_s']:.2f}" if r.get("step_s") else "-"
        deep = f"{ref[key]:.2f}" if key in ref else "-"
        goal = f"<= {GOALS[key]:.2f}" if key in GOALS else "-"
        n = f" (n={r['examples']})" if key == "match" else ""
        lines.append(f"| {LABELS.get(key, key)} | {r['rel_spec']:.3f}{n} | "
                     f"{r['rel_spec_median']:.3f} | {deep} | {goal} | "
                     f"{r['loudness_lu']:.2f} | {step} | {r.get('steps', '-')} |")
    return "\n".join(lines)


def material_table(result: dict) -> str:
    """rel_spec (loudness error) per kind of material, one row per method."""
    rows = result["rows"]
    kinds = sorted(rows["none"]["by_material"])
    counts = ", ".join(f"{k} n={rows['none']['by_material'][k]['examples']}" for k in kinds)
    lines = [f"| method | {' | '.join(kinds)} |", "|---" * (len(kinds) + 1) + "|"]
    for key, r in rows.items():
        if "by_material" in r:
            cells = [f"{r['by_material'][k]['rel_spec']:.3f} ({r['by_material'][k]['loudness_lu']:.1f} LU)"
                     for k in kinds]
            lines.append(f"| {LABELS.get(key, key)} | {' | '.join(cells)} |")
    return "\n".join(lines) + f"\n\n({counts})"


# --------------------------------------------------------------------------------- steps
STEP_CODE = """
import json, resource, sys, tempfile, time
import torch
from ddsp_synth.control import ControlDataConfig, control_train_config, train_controller
method, workers, steps, material = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as run:
    t0 = time.perf_counter()
    train_controller(run + "/r", "%s", method, style=material,
                     data=ControlDataConfig(workers=workers),
                     config=control_train_config(steps=steps, val_every=0, audio_every=0,
                                                 checkpoint_every=10**6, log_every=1, seed=0),
                     workers=workers, show_progress=False)
    times = [json.loads(l)["step_s"] for l in open(run + "/r/log.jsonl") if '"step_s"' in l]
print(json.dumps({"step_s": sorted(times[2:])[len(times[2:]) // 2],
                  "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""" % CHAIN


def steps_bench(args) -> dict:
    """Training step time per method and worker count (batch 8 x 2 s, no validation), each
    in a fresh process (its peak memory with it)."""
    material = [str(ROOT / "data" / "style_material" / "train"),
                str(ROOT.parent / "shared" / "data" / "train")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rows = []
    for method in args.methods.split(","):
        for workers in map(int, args.workers.split(",")):
            proc = subprocess.run([sys.executable, "-c", STEP_CODE, method, str(workers),
                                   str(args.steps), *material], env=env, capture_output=True,
                                  text=True)
            if proc.returncode:
                sys.exit(f"{method}: {proc.stderr.strip().splitlines()[-1]}")
            r = {"method": method, "workers": workers,
                 **json.loads(proc.stdout.strip().splitlines()[-1])}
            r["steps_per_s"] = 1.0 / r["step_s"]
            rows.append(r)
            print(f"  {method} x{workers}: {r['step_s']:.3f} s", file=sys.stderr)
    auto = {r["workers"]: r["step_s"] for r in rows if r["method"] == "autodiff"}
    for r in rows:
        r["vs_autodiff"] = r["step_s"] / auto[r["workers"]] if r["workers"] in auto else None
    result = {"batch_size": 8, "segment_seconds": 2.0, "steps": args.steps, "rows": rows,
              "machine": machine_info()}
    _save("steps", result)
    print("| method | workers | step time (s) | steps/s | vs autodiff | peak memory (MB) |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['vs_autodiff']:.2f}" if r["vs_autodiff"] else "-"
        print(f"| {r['method']} | {r['workers']} | {r['step_s']:.3f} | {r['steps_per_s']:.2f} | "
              f"{vs} | {r['peak_memory_mb']:.0f} |")
    return result


# --------------------------------------------------------------------------------- style
def make_song(path: Path, seconds: float = 180.0, sr: int = 44100) -> None:
    """A stereo song from held-out recordings: two instruments panned apart."""
    from ddsp_synth.audio_io import load_audio
    import soundfile as sf

    files = sorted(HELDOUT.glob("*.wav"))
    a = np.concatenate([load_audio(f, sr) for f in files[::2]])
    b = np.concatenate([load_audio(f, sr) for f in files[1::2]])
    n = int(seconds * sr)
    a, b = np.resize(a, n), np.resize(b, n)
    song = np.stack([0.7 * a + 0.3 * b, 0.3 * a + 0.7 * b]).T * 0.8
    sf.write(path, song.astype(np.float32), sr, subtype="PCM_16")


def style_bench(args) -> dict:
    with tempfile.TemporaryDirectory() as work:
        song, ref, out = Path(work) / "song.wav", Path(work) / "ref.wav", Path(work) / "out.wav"
        make_song(song, args.song_seconds)
        import soundfile as sf

        from ddsp_synth.audio_io import load_audio
        sf.write(ref, load_audio(HELDOUT / "speech_9221.wav", 44100)[: 44100 * 10], 44100)
        cmd = [sys.executable, "-c", "import sys; from ddsp_synth.cli import main; "
               "sys.exit(main())", "style", str(song), "--reference", str(ref), "-o", str(out)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"style failed: {proc.stderr.strip()}")
        info = sf.info(out)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    result = {"song_seconds": args.song_seconds, "sample_rate": 44100, "channels": 2,
              "wall_s": wall, "real_time_factor": args.song_seconds / wall,
              "peak_memory_mb": peak_mb, "goal_s": 10.0, "output_frames": info.frames,
              "machine": machine_info()}
    _save("style", result)
    print("| song | wall time (s) | real-time factor | peak memory (MB) | goal |\n"
          "|---|---|---|---|---|\n"
          f"| {args.song_seconds:g} s, 44.1 kHz stereo | {wall:.1f} | {result['real_time_factor']:.0f}x"
          f" | {peak_mb:.0f} | <= 10 s: {'met' if wall <= 10 else 'not met'} |")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    e = sub.add_parser("experiment")
    e.add_argument("--runs", nargs="*", default=[], help="METHOD=RUN_DIR ...")
    e.add_argument("--examples", type=int, default=64)
    e.add_argument("--seconds", type=float, default=2.0)
    e.add_argument("--input-processed", type=float, default=1.0,
                   help="inputs processed with random settings of their own (1, the seed's "
                        "protocol) or as recorded (0, the issue's wording)")
    e.add_argument("--match-examples", type=int, default=16)
    e.add_argument("--match-seconds", type=float, default=6.0)
    e.add_argument("--key", default="experiment",
                   help="section of results_control.json the results go to")
    t = sub.add_parser("steps")
    t.add_argument("--methods", default="autodiff,spsa,proxy,hybrid")
    t.add_argument("--workers", default="1,2")
    t.add_argument("--steps", type=int, default=12)
    q = sub.add_parser("proxy", help="the compressor proxy where a controller goes")
    q.add_argument("run", help="a trained controller (its run folder)")
    q.add_argument("--examples", type=int, default=64)
    q.add_argument("--seconds", type=float, default=2.0)
    q.add_argument("--proxy", help="a compressor proxy folder (default: the shipped one)")
    q.add_argument("--key", default="proxy_where",
                   help="section of results_control.json the results go to")
    s = sub.add_parser("style")
    s.add_argument("--song-seconds", type=float, default=180.0)
    args = ap.parse_args(argv)
    {"experiment": experiment, "steps": steps_bench, "style": style_bench,
     "proxy": proxy_where}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
