"""Fit the harmonic check's weights (``ddsp_synth.harmonic_check.CHECK_WEIGHTS``).

    python bench/fit_harmonic_check.py        # renders data/pitch_fit/ (seeds 9000..9103)

For every frame of the fit set where CREPE tiny's decoded pitch (Viterbi and refinement,
without the check) sits at the true pitch or at ``k`` times it (within 50 cents, note edges
left out, ``k`` = 2..8), the check's four features for divisor ``k`` are a sample: positive
when the true pitch is ``f / k``, negative when it is ``f``. A logistic regression (scikit-
learn, a dependency of librosa) weighs them; the script prints the weights and intercept to
put into ``harmonic_check.py`` and writes ``bench/results_harmonic_check_fit.json``. The
benchmark set (seeds 8000..8099) is never used here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pitch_data import FIT_SET, ROOT, render  # noqa: E402

from ddsp_synth import harmonic_check as hc  # noqa: E402
from ddsp_synth.evaluate import midi_truth  # noqa: E402
from ddsp_synth.pitch import analysis_frames, crepe_activations, decode_f0  # noqa: E402

HOP = 160


def samples(wav: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features [m, 4], labels [m]) of one render."""
    audio, _ = sf.read(wav, dtype="float32")
    act = crepe_activations(audio, HOP, "tiny")
    f0, _ = decode_f0(act)  # no frames: the decoded pitch before the check
    f0 = f0.astype(np.float64)
    truth = midi_truth(wav, len(f0))
    f0_true, keep = truth
    feats = np.concatenate([hc.check_features(analysis_frames(audio, HOP, i, min(len(f0), i + 1024)),
                                              act[i : i + 1024], f0[i : i + 1024])
                            for i in range(0, len(f0), 1024)])
    cents = 1200.0 * np.log2(f0[:, None] / hc.DIVISORS[None, :] / np.maximum(f0_true, 1e-3)[:, None])
    xs, ys = [], []
    for j, k in enumerate(hc.DIVISORS[1:], start=1):
        ok = keep & (f0 / k >= hc.CHECK_MIN_HZ)
        pos, neg = ok & (np.abs(cents[:, j]) < 50), ok & (np.abs(cents[:, 0]) < 50)
        xs.append(feats[pos | neg, j])
        ys.append(pos[pos | neg])
    return np.concatenate(xs), np.concatenate(ys)


def main() -> int:
    from sklearn.linear_model import LogisticRegression

    folder = ROOT / "data" / "pitch_fit"
    parts = [samples(render(name, seed, folder)) for name, seed in FIT_SET]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    result = {"weights": [round(float(w), 3) for w in clf.coef_[0]],
              "intercept": round(float(clf.intercept_[0]), 3),
              "positives": int(y.sum()), "samples": int(len(y)),
              "set": [f"{name}_{seed}" for name, seed in FIT_SET]}
    print(json.dumps(result))
    (HERE / "results_harmonic_check_fit.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
