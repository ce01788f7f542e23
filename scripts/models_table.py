"""Print the README's shipped-models table from models/*/{train_config,eval}.json.

    python scripts/models_table.py

Two sets of figures per model: unseen performances (three 60 s renders with seeds no training
used, the mean over them: the figures to quote; and their pitch against the MIDI that made
them, resynthesized and through the streaming engine) and the held-out last 20 s of the shared
training recording (what the cards reported before unseen performances were rendered).
"""

from __future__ import annotations

import json

from train_model import INSTRUMENTS, ROOT, recipe_totals


def main() -> None:
    print("| model | training | unseen: f0 L1 (median) | unseen: loudness L1 | "
          "vs MIDI: > 50 c (input floor) | vs MIDI: 2x / 3x | streaming: > 50 c (its floor) | "
          "last 20 s of the training file: f0 L1 / loudness L1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in INSTRUMENTS:
        d = ROOT / "models" / name
        recipe = json.loads((d / "train_config.json").read_text())["recipe"]
        ev = json.loads((d / "eval.json").read_text())
        m = ev["tiny"]
        steps, _ = recipe_totals(recipe)
        minutes = sum(r["minutes"] for r in recipe)
        extra = max(r.get("extra_seconds", 0) for r in recipe)
        data = f" (+{extra / 60:g} min rendered)" if extra else ""
        unseen = (ev.get("unseen") or {}).get("mean")
        u = (f"**{unseen['f0_l1_cents']:.1f} cents** ({unseen['f0_median_cents']:.1f}) | "
             f"**{unseen['loudness_l1_db']:.2f} dB**" if unseen else "not measured | -")
        print(f"| {name} | {steps} steps, {minutes:.0f} min{data} | {u} |"
              f"{truth_cells(ev.get('unseen') or {})} "
              f"{m['f0_l1_cents']:.1f} cents / {m['loudness_l1_db']:.2f} dB |")


def truth_cells(unseen: dict) -> str:
    """The MIDI-truth cells: output > 50 c (input floor), 2x / 3x, streaming output > 50 c
    (the floor of its own front end: what it heard within its latency)."""
    truth, stream = unseen.get("midi_truth"), unseen.get("stream")
    if not truth:
        return " - | - | - |"
    o, i = truth["output"]["all"], truth["input"]["all"]
    cells = (f" {100 * o['off_50c']:.2f} % ({100 * i['off_50c']:.2f} %) | "
             f"{100 * o['x2']:.2f} / {100 * o['x3']:.2f} % |")
    if not stream:
        return cells + " - |"
    return cells + (f" {100 * stream['output']['all']['off_50c']:.2f} % "
                    f"({100 * stream['input']['all']['off_50c']:.2f} %) |")


if __name__ == "__main__":
    main()
