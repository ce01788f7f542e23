"""A stretch of a performance as a performance of its own (benchmarks and tests cut the
shared FluidSynth performances into excerpts)."""

from __future__ import annotations


def midi_excerpt(pm, t0_s: float, t1_s: float):
    """The notes of ``pm`` (a ``pretty_midi.PrettyMIDI``) that start in ``[t0_s, t1_s)``,
    cut at ``t1_s``, moved to start at 0 s, every instrument.

    The controllers in force at ``t0_s`` are set at 0 s, those inside the stretch and its
    pitch bends keep their times, and a CC11 (expression) at ``t1_s - t0_s`` makes the
    excerpt last the whole stretch even when its last note ends sooner.
    """
    import pretty_midi

    out = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for inst in pm.instruments:
        new = pretty_midi.Instrument(inst.program, inst.is_drum, inst.name)
        new.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start - t0_s,
                                      min(n.end, t1_s) - t0_s)
                     for n in inst.notes if t0_s <= n.start < t1_s]
        in_force = {}
        for c in sorted(inst.control_changes, key=lambda c: c.time):
            if c.time < t0_s:
                in_force[c.number] = c.value
            elif c.time < t1_s:
                new.control_changes.append(pretty_midi.ControlChange(c.number, c.value,
                                                                     c.time - t0_s))
        new.control_changes[:0] = [pretty_midi.ControlChange(k, v, 0.0)
                                   for k, v in in_force.items()]
        new.pitch_bends = [pretty_midi.PitchBend(b.pitch, b.time - t0_s)
                           for b in inst.pitch_bends if t0_s <= b.time < t1_s]
        new.control_changes.append(pretty_midi.ControlChange(11, in_force.get(11, 127),
                                                             t1_s - t0_s))
        out.instruments.append(new)
    return out
