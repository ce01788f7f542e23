"""What the musician sees while playing, and the figures afterwards: levels, pitch or notes
held, latency (input to output, and each note-on to its sound, measured on the output), late
blocks; the status line, the summary and the JSON report.
"""

from __future__ import annotations

import math

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: a note-on "sounds" when the output's 1 ms RMS first reaches this level and is at least
#: ONSET_RISE_DB above its highest in the ONSET_LEAD_S before the note-on (a note that
#: starts under a louder one is not measured)
ONSET_DB = -50.0
ONSET_RISE_DB = 6.0
ONSET_LEAD_S = 0.01
ONSET_WINDOW_S = 0.25  # a note-on with no onset this soon after it is not measured
RMS_WINDOW_S = 0.001


def note_name(midi: float) -> str:
    """``69`` -> ``A4``."""
    n = int(round(midi))
    return f"{NOTE_NAMES[n % 12]}{n // 12 - 1}"


def level_db(x: np.ndarray) -> float:
    """Peak level in dBFS (-inf for silence)."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def _rms(x: np.ndarray, window: int) -> np.ndarray:
    """Moving RMS over ``window`` samples ending at each sample: [len(x)]."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, np.float64) ** 2)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    return np.sqrt((c[i] - c[lo]) / (i - lo))


def onset_after(audio: np.ndarray, index: int, sample_rate: int) -> int | None:
    """The first sample at or after ``index`` where ``audio`` sounds (see ONSET_DB), or None.

    Args:
        audio: [n] samples around the event, ``index`` the event's position in it.
    """
    window = max(1, int(RMS_WINDOW_S * sample_rate))
    lo = max(0, index - int(ONSET_LEAD_S * sample_rate))
    env = _rms(audio[lo : index + int(ONSET_WINDOW_S * sample_rate)], window)
    before = float(env[: index - lo].max()) if index > lo else 0.0
    threshold = max(10 ** (ONSET_DB / 20), before * 10 ** (ONSET_RISE_DB / 20))
    hits = np.flatnonzero(env[index - lo :] >= threshold)
    return index + int(hits[0]) if len(hits) else None


class Timings:
    """Running median / 99th percentile / maximum of many durations in bounded memory: a
    histogram with 1 % wide bins from 1 us to 100 s (the maximum is kept exactly)."""

    BINS_PER_DECADE = 232  # 10 ** (1 / 232) = 1.0100

    def __init__(self):
        self.counts = np.zeros(8 * self.BINS_PER_DECADE + 1, np.int64)
        self.n = 0
        self.max_ms = 0.0

    def add(self, values_ms) -> None:
        v = np.asarray(values_ms, np.float64)
        if not len(v):
            return
        b = np.clip(np.floor((np.log10(np.maximum(v, 1e-3)) + 3) * self.BINS_PER_DECADE),
                    0, len(self.counts) - 1).astype(np.int64)
        np.add.at(self.counts, b, 1)
        self.n += len(v)
        self.max_ms = max(self.max_ms, float(v.max()))

    def percentile(self, q: float) -> float:
        if not self.n:
            return math.nan
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n))
        return min(10 ** ((i + 0.5) / self.BINS_PER_DECADE - 3), self.max_ms)

    def summary(self) -> dict:
        return {"count": self.n, "median_ms": self.percentile(50), "p99_ms": self.percentile(99),
                "max_ms": self.max_ms if self.n else math.nan}


class NoteLatency:
    """Note-on to sound, for each note-on (stamped in card samples):

    * ``first_sample_ms``: to the first output sample computed with the note (the start of
      its first block at the port): what live playing adds, from the schedule;
    * ``latency_ms``: to the onset measured on what went to the card (see
      :func:`onset_after`): that plus the instrument's own attack.

    Args:
        sample_rate: the card's rate in Hz.
        first_port_sample: hop index -> card sample where a note played in that hop starts.
    """

    def __init__(self, sample_rate: int, first_port_sample):
        self.rate = sample_rate
        self.first_port_sample = first_port_sample
        self.measured: list[dict] = []  # {"time_s", "note", "first_sample_ms", "latency_ms"}
        self.missed = 0
        self._next = 0

    def update(self, note_ons: list[tuple[int, int, int]], sent) -> None:
        """Measure the note-ons whose window has gone to the card (``sent``: the runner's
        ring of card output)."""
        reach = int(ONSET_WINDOW_S * self.rate)
        while self._next < len(note_ons):
            stamp, note, hop = note_ons[self._next]
            if sent.written < stamp + reach:
                return
            self._next += 1
            start = max(0, stamp - int(ONSET_LEAD_S * self.rate))
            hit = None
            if sent.written - start <= sent.capacity:  # else it left the ring unmeasured
                hit = onset_after(sent.read(start, stamp + reach), stamp - start, self.rate)
            if hit is None:
                self.missed += 1
                continue
            self.measured.append({
                "time_s": stamp / self.rate, "note": note,
                "first_sample_ms": 1e3 * (self.first_port_sample(hop) - stamp) / self.rate,
                "latency_ms": 1e3 * (hit - (stamp - start)) / self.rate})

    def summary(self) -> dict:
        out = {"notes": self.measured, "n_measured": len(self.measured),
               "n_not_measured": self.missed}
        for key in ("latency_ms", "first_sample_ms"):
            v = [m[key] for m in self.measured]
            out[key] = {"median": float(np.median(v)) if v else math.nan,
                        "min": float(np.min(v)) if v else math.nan,
                        "max": float(np.max(v)) if v else math.nan}
        return out


def _db(x: float) -> str:
    return f"{x:5.1f}" if math.isfinite(x) else "  -inf"


def status_line(s: dict) -> str:
    """One line from a snapshot (see :meth:`~.session.Session.snapshot`)."""
    parts = [f"{s['elapsed_s']:6.1f} s"]
    if s["kind"] == "audio":
        d = s["display"]
        if d.get("pitched"):
            midi = 69 + 12 * math.log2(d["f0_hz"] / 440.0)
            pitch = f"{note_name(midi):>4} {d['f0_hz']:6.1f} Hz"
        else:
            pitch = "   -         "
        parts.append(f"in {_db(s['in_db'])} dB  pitch {pitch}")
    else:
        held = " ".join(note_name(n) for n in s["display"].get("held", ())) or "-"
        parts.append(f"notes {held:<12}")
    parts.append(f"out {_db(s['out_db'])} dB")
    parts.append(f"latency in->out {s['latency_ms']:.1f} ms")
    if s["kind"] == "midi":
        last = s.get("note_latency_ms")
        parts.append("note-on->sound " + (f"{last:.1f} ms" if last is not None else "-"))
    parts.append(f"late {s['late_blocks']}")
    if s["xruns"]:
        parts.append(f"xruns {s['xruns']}")
    return " | ".join(parts)


def summary_text(r: dict) -> str:
    """The lines printed when playing stops, from the report."""
    lat = r["latency_ms"]
    lines = [f"played {r['seconds']:.1f} s on {r['backend']} at {r['sample_rate']} Hz, "
             f"blocks of {r['block_samples']} samples ({r['block_ms']:.2f} ms): "
             f"{r['blocks']} blocks, {r['late_blocks']} late ({r['late_per_minute']:.1f} per "
             f"minute), {r['xruns']} xruns reported by the card",
             f"latency input -> output {lat['engine']:.1f} ms at the ports "
             f"({lat['round_trip']:.1f} ms with the card's buffers); "
             f"margin {r['margin_blocks']} block(s) for the model's worker"
             + ("" if r["worker_realtime"] else " (normal priority: no real-time permission)")]
    if r.get("slips"):
        lines.append(f"late blocks moved the schedule {len(r['slips'])} time(s), by "
                     f"{r['slip_ms']:.1f} ms in all (the last at {r['slips'][-1]['t_s']:.1f} s); "
                     f"--margin-ms fixes the schedule instead")
    c, cb = r["compute_per_hop"], r["callback"]
    lines.append(f"model per hop median {c['median_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms, max "
                 f"{c['max_ms']:.2f} ms; callback median {1e3 * cb['median_ms']:.0f} us, p99 "
                 f"{1e3 * cb['p99_ms']:.0f} us, max {1e3 * cb['max_ms']:.0f} us")
    if r["kind"] == "midi":
        m = r["note_on_to_sound"]
        a, f = m["latency_ms"], m["first_sample_ms"]
        if not m["n_measured"]:
            lines.append("note-on -> sound: no note played")
        else:
            lines.append(f"note-on -> sound: {m['n_measured']} notes, median {a['median']:.1f} ms "
                         f"(min {a['min']:.1f}, max {a['max']:.1f}) with the instrument's "
                         f"attack; to the note's first sample median {f['median']:.1f} ms (min "
                         f"{f['min']:.1f}, max {f['max']:.1f})")
    recorded = [p for p in (r.get("record"), r.get("record_input")) if p]
    if recorded:
        lines.append(f"recorded {' and '.join(recorded)}")
    for path, lost_s in (r.get("record_lost_s") or {}).items():
        if lost_s:
            lines.append(f"{path}: {lost_s:.2f} s written as silence (the recording thread "
                         f"was held up longer than its buffer)")
    return "\n".join(lines)
