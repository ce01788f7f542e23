"""Web demo under sustained use: memory and disk of the app process over many requests.

Starts ``app.py`` in its own process on a free port, sends ``--requests`` ordinary transfer
requests (the shipped example clip, the default instrument, varying settings) through
gradio_client, and samples the app's resident memory (VmRSS) and the number of files the app
and Gradio keep on disk. Prints a table and writes ``bench/results_app.json``.

    python bench/bench_app.py [--requests 110]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root)) if root.exists() else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=110)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_app.json"))
    args = ap.parse_args(argv)
    from gradio_client import Client, handle_file

    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                client = Client(url, verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        clip = handle_file(str(ROOT / "examples" / "singing_scale.flac"))
        samples = [{"request": 0, "rss_mb": _rss_mb(proc.pid), "files": _files(tmp)}]
        t0 = time.perf_counter()
        for i in range(1, args.requests + 1):
            client.predict(clip, None, "violin", True, float(i % 5 - 2), 0.0, 40.0, 1.0, 1.0,
                           1.0, api_name="/transfer")
            if i % 10 == 0 or i == args.requests:
                samples.append({"request": i, "rss_mb": _rss_mb(proc.pid), "files": _files(tmp),
                                "elapsed_s": time.perf_counter() - t0})
                print(f"request {i:4d}: RSS {samples[-1]['rss_mb']:.0f} MB, "
                      f"{samples[-1]['files']} files on disk", flush=True)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "requests": args.requests, "samples": samples,
        "rss_first_mb": samples[1]["rss_mb"], "rss_last_mb": samples[-1]["rss_mb"],
        "tracebacks_in_app_log": err.decode(errors="replace").count("Traceback"),
    }
    print(f"\nRSS after the first 10 requests {result['rss_first_mb']:.0f} MB, after "
          f"{args.requests}: {result['rss_last_mb']:.0f} MB; files kept "
          f"{samples[-1]['files']}; tracebacks in the app's log: "
          f"{result['tracebacks_in_app_log']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
