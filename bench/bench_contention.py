"""Speed when the machine is doing something else: every command, quiet and next to one busy
process, with OpenMP's default spin-waiting and with the passive waiting ddsp_synth sets.

Each case runs in a fresh process (so the OpenMP runtime reads the setting), five ways:
``quiet`` / ``busy`` (a competing process spinning on one core, started by this script) x
``spin`` (``OMP_WAIT_POLICY=ACTIVE``: torch's threads spin while they wait, as without
ddsp_synth's setting on this machine) / ``passive`` (what ``import ddsp_synth`` sets). The
goal: busy passive <= 2.5 x quiet passive, and quiet passive no slower than quiet spin.
Prints a table and writes ``bench/results_contention.json``.

    python bench/bench_contention.py [--cases loss,train,prepare,transfer,stream,app] [--repeats 3]

``app`` is a repeated request of the web demo (the handler the page calls: a 20 s clarinet clip
played by the violin, with its plots), in a warm process as the server is: the clip's pitch and
loudness come from the feature cache after the first request, so it times synthesis and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "clarinet_melody.flac"  # 20 s

# Code each case runs in its own process; it prints the seconds its work took.
SNIPPETS = {
    "loss": """
import time, torch, ddsp_synth
from ddsp_synth.losses import multi_resolution_stft_loss
g = torch.Generator().manual_seed(0)
pred = (0.1 * torch.randn(8, 64000, generator=g)).requires_grad_()
target = 0.1 * torch.randn(8, 64000, generator=g)
times = []
for _ in range(4):
    t = time.perf_counter(); multi_resolution_stft_loss(pred, target).backward()
    times.append(time.perf_counter() - t)
print(min(times[1:]))
""",
    "train": """
import time, torch, ddsp_synth
from ddsp_synth.losses import training_loss
from ddsp_synth.model import DDSPModel, ModelConfig
cfg = ModelConfig(); model = DDSPModel(cfg); opt = torch.optim.Adam(model.parameters(), 1e-3)
g = torch.Generator().manual_seed(0)
f0 = 150 + 300 * torch.rand(8, 1, 1, generator=g).expand(8, 400, 1)
loud = -30 + 5 * torch.randn(8, 400, 1, generator=g)
target = 0.1 * torch.randn(8, 64000, generator=g)
times = []
for _ in range(4):
    t = time.perf_counter()
    loss = training_loss(model(f0, loud), target, cfg.loss, cfg.features)
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t)
print(min(times[1:]))
""",
    "app": """
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
import app
from ddsp_synth.model import available_models
models, work = available_models(), Path(tempfile.mkdtemp())
args = ("examples/clarinet_melody.flac", None, "violin", True, 0, 0, 40, 1, 1, 1)
app.run_transfer(*args, models=models, max_seconds=60, workdir=work)  # warm: model, CREPE
times = []
for _ in range(2):
    t = time.perf_counter(); app.run_transfer(*args, models=models, max_seconds=60, workdir=work)
    times.append(time.perf_counter() - t)
print(min(times))
""",
}
CLI_CASES = {
    "prepare": ["prepare", str(EXAMPLE), "-o", "{tmp}/data", "--quiet"],
    "transfer": ["transfer", str(EXAMPLE), "--model", "violin", "-o", "{tmp}/out.wav", "--quiet",
                 "--no-cache"],
    "stream": ["stream", str(ROOT / "examples" / "singing_scale.flac"), "--model", "violin",
               "-o", "{tmp}/live.wav", "--quiet", "--engine", "onnx"],
}


def run_case(case: str, wait_policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": wait_policy, "DDSP_SYNTH_CACHE":
           tempfile.mkdtemp(prefix="bench_cache_")}
    with tempfile.TemporaryDirectory() as tmp:
        if case in SNIPPETS:
            out = subprocess.run([sys.executable, "-c", SNIPPETS[case]], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            return float(out.strip().splitlines()[-1])
        # warm the CREPE graph cache of this environment first (not timed)
        subprocess.run([sys.executable, "-c", "from ddsp_synth.pitch import crepe_runner; "
                        "crepe_runner('tiny')"], env=env, cwd=ROOT, check=True)
        argv = [a.format(tmp=tmp) for a in CLI_CASES[case]]
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ddsp_synth", *argv], env=env, cwd=ROOT,
                       capture_output=True, check=True)
        return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="loss,train,prepare,transfer,stream,app")
    ap.add_argument("--repeats", type=int, default=3, help="runs per condition (median)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_contention.json"))
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    results = {}
    for case in cases:
        row = {}
        for load in ("quiet", "busy"):
            hog = None
            if load == "busy":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                for policy, value in (("spin", "ACTIVE"), ("passive", "PASSIVE")):
                    times = [run_case(case, value) for _ in range(args.repeats)]
                    row[f"{load}_{policy}_s"] = float(np.median(times))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
        row["busy_over_quiet_passive"] = row["busy_passive_s"] / row["quiet_passive_s"]
        row["busy_over_quiet_spin"] = row["busy_spin_s"] / row["quiet_spin_s"]
        results[case] = row
        print(f"{case:9s} quiet: spin {row['quiet_spin_s']:7.2f} s, passive "
              f"{row['quiet_passive_s']:7.2f} s | busy: spin {row['busy_spin_s']:7.2f} s, "
              f"passive {row['busy_passive_s']:7.2f} s | busy/quiet passive "
              f"{row['busy_over_quiet_passive']:.2f} (spin {row['busy_over_quiet_spin']:.1f})",
              flush=True)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
           "repeats": args.repeats, "cases": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
