"""Live playing through a real audio server: latency, per-block compute and late blocks.

A JACK server with its dummy backend (``jackd -d dummy -r 48000 -p BLOCK``) stands in for the
sound card; ``ddsp-synth live`` runs on it with its defaults (the margin from its warm-up) and
a second client plays into it and records it (``ddsp_synth.soundcard.loopback``). For each
block size, idle and next to a busy neighbour (a process spinning on one core, started here):

* audio in: the sung scale, looped, into ``ddsp-synth:in`` with the violin; the round-trip
  latency reported, and measured from the recording (the lag at which it matches the same
  input rendered offline by the same path, over its first ``--measure-seconds``);
* MIDI in: a note every 0.5 s (random pitch, every phase of the 10 ms frame grid) into
  ``ddsp-synth:midi_in`` with the trumpet; note-on to the note's first output sample (what
  live playing adds) and to its audible onset (-50 dBFS: with the trumpet's own attack, the
  same offline), each measured in the recording where the engine said;
* the model's compute per hop and the callback's per block (median, p99, maximum), late
  blocks per minute (ours: output not ready), those after the first ``SETTLE_S`` (with the
  warm-up's margin each late block slips the schedule by what it missed, so they come early
  and the latency grows: its start and end are both in the row), and the xruns JACK reported
  (any client's, or the dummy driver's own timing: on a virtual machine it wakes late at small
  periods).

Prints a table and writes ``bench/results_live.json`` with the machine (``bench/machine.py``);
``--run NAME`` keeps the table there and files this run under ``runs`` / NAME instead (the goal
run, or a margin forced with ``--margin-ms`` to see what a shorter schedule costs in late blocks):

    python bench/bench_live.py [--seconds 30] [--blocks 64,128,256] [--loads idle,busy]
    python bench/bench_live.py --seconds 300 --blocks 128 --loads idle --paths audio --run goal
    python bench/bench_live.py --blocks 128,256 --loads idle --paths audio --margin-ms 1 --run one-block
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from machine import machine_info, machine_line  # noqa: E402

from ddsp_synth.soundcard.loopback import DummyJackServer, LiveProcess, Loopback  # noqa: E402
from ddsp_synth.soundcard.measure import (lag_by_reference, offset_by_equality,  # noqa: E402
                                          without_late_blocks)
from ddsp_synth.soundcard.status import onset_after  # noqa: E402

RATE = 48000
ENV = {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
GOALS = "audio round trip <= 50 ms (DDSP-VST 64 ms); MIDI-to-sound <= 15 ms at 128; 0 late/5 min idle"


def melody(seconds: float) -> np.ndarray:
    from ddsp_synth.audio_io import load_audio

    x = load_audio(ROOT / "examples" / "singing_scale.flac", RATE)
    return np.tile(x, int(np.ceil(seconds * RATE / len(x))))[: int(seconds * RATE)]


def note_events(seconds: float, seed: int = 0) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    events, t = [], 0.1
    while t + 0.5 < seconds:
        note = int(rng.integers(58, 75))
        on = int(t * RATE)
        events += [(on, bytes([0x90, note, 100])), (on + int(0.3 * RATE), bytes([0x80, note, 0]))]
        t += 0.5 + 0.0013 * rng.integers(0, 8)
    return events


def run_live(server, probe, argv, seconds, audio=None, events=(), margin_ms=None):
    """One performance. Returns the report, what the engine sent (``--record``) and got
    (``--record-input``, audio path) on its own clock, the next client's recording on the same
    clock, and the JACK frame of the engine's sample 0 (found from the samples both saw:
    JACK's frame time of a late callback can be a period off) and of the played offset 0."""
    tmp = Path(tempfile.mkdtemp())
    extra = [] if audio is None else ["--record-input", str(tmp / "in.wav")]
    if margin_ms is not None:
        extra += ["--margin-ms", f"{margin_ms:g}"]
    live = LiveProcess(server, *argv, *extra, "--seconds", f"{seconds:g}", "--output",
                       "probe-rec:in", "--record", str(tmp / "out.wav"), "--report",
                       str(tmp / "live.json"), "--quiet", env=ENV, cwd=ROOT)
    live.header()
    start = probe.play(audio, events, delay_s=0.3)
    code, out, err = live.finish(timeout_s=seconds + 120)
    if code != 0:
        raise RuntimeError(f"live failed ({code}): {err.strip()[-400:]}")
    rep = json.loads((tmp / "live.json").read_text())
    sent = sf.read(tmp / "out.wav", dtype="float32")[0]
    got = sf.read(tmp / "in.wav", dtype="float32")[0] if audio is not None else None
    lead = 4 * rep["block_samples"]
    first = rep["first_frame"] - lead
    heard = probe.recording(first, len(sent) + 2 * lead)
    d, share = offset_by_equality(heard, sent, lead, lead)
    clocks = {"output_samples_as_sent": share}
    if got is not None:
        d_in, share_in = offset_by_equality(probe.recording(first, len(got) + 2 * lead,
                                                            played=True), got, lead, lead)
        clocks.update({"input_samples_as_played": share_in, "same_block_in_and_out": d_in == d})
    return rep, sent, got, heard[d : d + len(sent)], start - (first + d), clocks


def case_audio(server, probe, seconds, measure_s, margin_ms=None):
    from ddsp_synth.model import load_model
    from ddsp_synth.soundcard.paths import AudioPath

    x = melody(seconds - 1.0)
    rep, sent, got, heard, offset, clocks = run_live(
        server, probe, ["--model", "violin", "--backend", "jack", "--input", "probe-play:out"],
        seconds, audio=x, margin_ms=margin_ms)
    n = min(len(sent), int((measure_s + 1.0) * RATE))
    reference = AudioPath(load_model("violin")[0], RATE).process(got[:n])
    out = without_late_blocks(sent[:n], rep)
    prefill = round(rep["latency_ms"]["prefill"] * RATE / 1000)
    lags = []  # per second: a late block spoils its own second, not the others
    for w0 in range(offset + RATE // 2, n - RATE, RATE):
        lag, corr = lag_by_reference(out, reference, range(prefill - 2000, prefill + 2001),
                                     slice(w0, w0 + RATE))
        if corr > 0.95:
            lags.append(lag)
    delay = rep["latency_samples"] - prefill
    measured = 1e3 * (np.median(lags) + delay) / RATE if lags else float("nan")
    return rep, {"latency_reported_ms": rep["latency_ms"]["engine"],
                 "latency_measured_ms": float(measured),
                 "seconds_at_reported_latency": int(sum(lag == prefill for lag in lags)),
                 "seconds_matched": len(lags),
                 "seconds_measured": len(range(offset + RATE // 2, n - RATE, RATE)), **clocks}


def case_midi(server, probe, seconds, margin_ms=None):
    events = note_events(seconds - 0.5)
    rep, sent, _, heard, offset, clocks = run_live(
        server, probe, ["--model", "trumpet", "--backend", "jack", "--midi",
                        "probe-play:midi_out"], seconds, events=events, margin_ms=margin_ms)
    notes = rep["note_on_to_sound"]["notes"]
    measured = []
    for m in notes:  # the onset in the next client's recording, where the engine said
        stamp = round(m["time_s"] * RATE)
        hit = onset_after(heard, stamp, RATE)
        measured.append(np.nan if hit is None else 1e3 * (hit - stamp) / RATE)
    first = [m["first_sample_ms"] for m in notes]
    agree = np.nanmax(np.abs(np.array(measured) - [m["latency_ms"] for m in notes])) if notes else np.nan
    return rep, {"notes": len(notes), "sent": sum(1 for _, d in events if d[0] == 0x90),
                 "first_sample_ms": _stats(first), "onset_ms": _stats(measured),
                 "onset_measured_vs_reported_max_ms": float(agree), **clocks}


def _stats(v) -> dict:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


SETTLE_S = 10.0


def one(block, load, path, seconds, measure_s, margin_ms=None):
    load_before = os.getloadavg()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
    try:
        with DummyJackServer(RATE, block) as server:
            probe = Loopback(server, max_seconds=seconds + 120)  # + the engine's start
            probe.start()
            try:
                t0 = time.monotonic()
                rep, extra = (case_audio(server, probe, seconds, measure_s, margin_ms)
                              if path == "audio" else case_midi(server, probe, seconds, margin_ms))
            finally:
                probe.close()
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    minutes = rep["seconds"] / 60
    row = {"block": block, "load": load, "path": path, "seconds": rep["seconds"],
           "wall_s": time.monotonic() - t0,
           "load_average_before": load_before, "load_average": os.getloadavg(),
           "latency_ms": rep["latency_ms"], "margin_blocks": rep["margin_blocks"],
           "margin": "from the warm-up" if margin_ms is None else f"--margin-ms {margin_ms:g}",
           "worker_realtime": rep["worker_realtime"],
           "compute_per_hop": rep["compute_per_hop"], "callback": rep["callback"],
           "late_blocks": rep["late_blocks"], "late_per_minute": rep["late_blocks"] / minutes,
           # late blocks after the first SETTLE_S (the schedule slips on the first ones)
           "late_after_settling": sum(t >= SETTLE_S for t in rep["late_block_times_s"]),
           "slips": len(rep.get("slips", [])), "slip_ms": rep.get("slip_ms", 0.0),
           "latency_start_ms": rep["latency_ms"]["engine"] - rep.get("slip_ms", 0.0),
           "xruns_reported_by_jack": rep["xruns"], **extra}
    return row


def print_row(r):
    c, cb = r["compute_per_hop"], r["callback"]
    if r["path"] == "audio":
        lat = (f"round trip {r['latency_reported_ms']:.1f} ms reported, "
               f"{r['latency_measured_ms']:.1f} measured ({r['seconds_at_reported_latency']}/"
               f"{r['seconds_measured']} s exactly as reported)")
    else:
        f, o = r["first_sample_ms"], r["onset_ms"]
        lat = (f"note-on->first sample median {f['median']:.1f} (max {f['max']:.1f}) ms, "
               f"->onset {o['median']:.1f} ms; {r['notes']}/{r['sent']} notes")
    print(f"{r['path']:5s} {r['block']:4d} {r['load']:4s} | {lat} | hop {c['median_ms']:.2f}/"
          f"{c['p99_ms']:.2f}/{c['max_ms']:.2f} ms | callback {1e3 * cb['median_ms']:.0f}/"
          f"{1e3 * cb['p99_ms']:.0f}/{1e3 * cb['max_ms']:.0f} us | late {r['late_per_minute']:.1f}"
          f"/min, {r['late_after_settling']} after {SETTLE_S:g} s (margin {r['margin_blocks']}, "
          f"{r['slips']} slips: {r['latency_start_ms']:.1f} -> {r['latency_ms']['engine']:.1f} ms)"
          f" | JACK xruns {r['xruns_reported_by_jack']} | load "
          f"{r['load_average'][0]:.2f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each performance")
    ap.add_argument("--blocks", default="64,128,256")
    ap.add_argument("--loads", default="idle,busy")
    ap.add_argument("--paths", default="audio,midi")
    ap.add_argument("--measure-seconds", type=float, default=20.0,
                    help="audio: how much of the recording the offline reference covers")
    ap.add_argument("--margin-ms", type=float, default=None,
                    help="pass --margin-ms to live (default: its warm-up sets the margin)")
    ap.add_argument("--run", default=None,
                    help="file this run under runs/NAME in the JSON, keeping the main table")
    ap.add_argument("--json", default=str(HERE / "results_live.json"))
    args = ap.parse_args(argv)
    print(f"{machine_line()}; goals: {GOALS}")
    print("path block load | latency | hop median/p99/max | callback median/p99/max | late")
    rows = []
    for block in [int(b) for b in args.blocks.split(",")]:
        for load in args.loads.split(","):
            for path in args.paths.split(","):
                rows.append(one(block, load, path, args.seconds, args.measure_seconds,
                                args.margin_ms))
                print_row(rows[-1])
    result = {"machine": machine_info(), "goals": GOALS, "seconds": args.seconds,
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    path = Path(args.json)
    if args.run is not None:
        kept = json.loads(path.read_text()) if path.exists() else {}
        result["argv"] = sys.argv[1:] if argv is None else list(argv)
        kept.setdefault("runs", {})[args.run] = result
        result = kept
    elif path.exists():  # the named runs stay beside a new table
        result["runs"] = json.loads(path.read_text()).get("runs", {})
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
