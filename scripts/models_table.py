"""Print the README's shipped-models table from models/*/{train_config,eval}.json.

    python scripts/models_table.py
"""

from __future__ import annotations

import json

from train_model import INSTRUMENTS, ROOT, recipe_totals


def main() -> None:
    print("| model | training | f0 L1 (median) | loudness L1 | spectral loss |")
    print("|---|---|---|---|---|")
    for name in INSTRUMENTS:
        d = ROOT / "models" / name
        recipe = json.loads((d / "train_config.json").read_text())["recipe"]
        m = json.loads((d / "eval.json").read_text())["tiny"]
        steps, _ = recipe_totals(recipe)
        minutes = sum(r["minutes"] for r in recipe)
        extra = max(r.get("extra_seconds", 0) for r in recipe)
        data = f" (+{extra / 60:g} min rendered)" if extra else ""
        print(f"| {name} | {steps} steps, {minutes:.0f} min{data} | {m['f0_l1_cents']:.1f} cents "
              f"({m['f0_median_cents']:.1f}) | {m['loudness_l1_db']:.2f} dB | "
              f"{m['spectral_loss']:.2f} |")


if __name__ == "__main__":
    main()
