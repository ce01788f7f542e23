"""The shipped models before and after issue 23, measured against MIDI truth.

    python bench/bench_models_truth.py --before fe14deb     # the models and analysis of a commit

For every shipped model and its three unseen performances (``scripts/render_heldout.py``),
and for the cello also the low bassoon renders played without auto-adjust (seeds 8009, 8014,
8015, as ``scripts/train_model.py``), the input is analysed, resynthesized by the model and
the input and the output read by ddsp_synth's tracker as it is now (CREPE tiny, Viterbi with
jumps, the harmonic check: the best tracker measured by ``bench/bench_pitch.py``; without the
repairs after the check, as ``ddsp_synth.evaluate`` measures) against the MIDI:

* ``before``: the model files of ``--before`` (read with ``git show``), the input analysed as
  that commit did (the banded Viterbi alone, no harmonic check);
* ``after``: the models in ``models/`` and today's analysis;
* ``learned_room``: the same with each model's room played as learned (``reverb_phase
  "learned"``) where the model ships it minimum-phase: what that choice changes.

Writes ``bench/results_models_truth.json`` (shares in [0, 1]) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))
from machine import machine_info  # noqa: E402
from pitch_trackers import old_decoding  # noqa: E402
from train_model import LOW_TRANSFER, ROOT, unseen_files  # noqa: E402

from ddsp_synth.audio_io import load_audio  # noqa: E402
from ddsp_synth.evaluate import midi_truth, pool_truth, truth_metrics  # noqa: E402
from ddsp_synth.features import FeatureConfig, compute_f0, features_in_blocks  # noqa: E402
from ddsp_synth.model import load_model  # noqa: E402
from ddsp_synth.stages.room import Reverb  # noqa: E402
from ddsp_synth.transfer import TransferOptions, render  # noqa: E402

NAMES = ("violin", "flute", "trumpet", "altosax", "cello")
MODEL_FILES = ("model.safetensors", "config.json")


def model_at(commit: str, name: str, folder: Path) -> Path:
    """models/NAME as it was at ``commit``, written to ``folder/NAME``."""
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    for f in MODEL_FILES:
        data = subprocess.run(["git", "show", f"{commit}:models/{name}/{f}"], cwd=ROOT,
                              check=True, stdout=subprocess.PIPE).stdout
        (out / f).write_bytes(data)
    return out


def resynth_truth(model, wav: Path, old: bool) -> dict:
    """Input and output (resynthesis without auto-adjust) against the MIDI of ``wav``."""
    fc: FeatureConfig = model.config.features
    audio = load_audio(wav, fc.sample_rate)
    if old:
        with old_decoding():  # the banded Viterbi alone, and no harmonic check
            feats = _features_without_check(audio, fc)
    else:
        feats = features_in_blocks(audio, fc)
    out = render(model, feats["f0_hz"], feats["loudness_db"],
                 TransferOptions(auto_adjust=False))[: len(audio)]
    f0_out = compute_f0(out, FeatureConfig(), repairs=False)[0]
    f0_in = compute_f0(audio, fc, repairs=False)[0] if not old else feats["f0_hz"]
    f0_true, keep = midi_truth(wav, len(f0_out))
    return {"input": truth_metrics(f0_in[: len(f0_out)], f0_true, keep),
            "output": truth_metrics(f0_out, f0_true, keep)}


def _features_without_check(audio: np.ndarray, fc: FeatureConfig) -> dict:
    """The features as the analysis before issue 23 gave them (no frames to the decoder)."""
    from ddsp_synth import features, pitch

    real = pitch.decode_f0

    def decode_without_frames(act, f0_min_hz, f0_max_hz, frames_fn=None):
        return real(act, f0_min_hz, f0_max_hz)

    features.decode_f0 = decode_without_frames
    try:
        return features.features_in_blocks(audio, fc)
    finally:
        features.decode_f0 = real


def measure(model_dir: Path, name: str, old: bool, room_phase: str | None = None) -> dict:
    """``room_phase``: play the learned room with this phase instead of the model's own."""
    model, _ = load_model(model_dir)
    if room_phase is not None:
        for stage in model.modules():
            if isinstance(stage, Reverb):
                stage.phase = room_phase
    rows = {f.name: resynth_truth(model, f, old) for f in unseen_files(name)}
    result = {"files": rows, "pooled": {s: pool_truth([r[s] for r in rows.values()])
                                        for s in ("input", "output")},
              "room_phase": room_phase or model.config.synth.reverb_phase}
    low = [ROOT / "data" / "pitch_bench" / f"{i}_{s}.wav" for i, s in LOW_TRANSFER.get(name, [])]
    low = [w for w in low if w.exists()]
    if low:
        parts = [resynth_truth(model, w, old) for w in low]
        result["low_transfer"] = {s: pool_truth([p[s] for p in parts]) for s in ("input", "output")}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="commit of the models and analysis before")
    ap.add_argument("--names", nargs="+", default=list(NAMES), choices=NAMES)
    ap.add_argument("--out", type=Path, default=HERE / "results_models_truth.json")
    args = ap.parse_args()
    results = {"machine": machine_info(), "before": args.before, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            before = measure(model_at(args.before, name, Path(tmp)), name, old=True)
            after = measure(ROOT / "models" / name, name, old=False)
            results["models"][name] = {"before": before, "after": after}
            if after["room_phase"] != "learned":
                results["models"][name]["learned_room"] = measure(
                    ROOT / "models" / name, name, old=False, room_phase="learned")
            for label, r in results["models"][name].items():
                o, i = r["pooled"]["output"]["all"], r["pooled"]["input"]["all"]
                line = (f"{name:8s} {label:12s} input >50c {100 * i['off_50c']:5.2f} %  output >50c "
                        f"{100 * o['off_50c']:5.2f} %  2x {100 * o['x2']:5.2f}  3x {100 * o['x3']:5.2f}")
                if "low_transfer" in r:
                    lo = r["low_transfer"]["output"]["all"]
                    line += (f"  | bassoon->{name}: >50c {100 * lo['off_50c']:5.2f} % 2x "
                             f"{100 * lo['x2']:5.2f} 3x {100 * lo['x3']:5.2f}")
                print(line, flush=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
