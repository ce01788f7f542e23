"""Ship the best model of the effect-stage experiment (``bench/fx_experiment.py``) as a model
folder with its card.

    python scripts/ship_fx_model.py [--method auto] [--name tenorsax_amp] [--force]

``--method auto`` picks, among the methods with effect stages that meet the goal on the
held-out performances (f0 L1 <= 10 cents, loudness L1 <= 1 dB), the one with the lowest
spectral loss (any of them when none meets it). The model is saved with its effect stages
switched to their twins (``autodiff``: what the real devices render, exportable, no
pedalboard needed), re-measured on the recipe's held-out performances (``eval.json``
``unseen``) and on the validation part of the training data (``tiny``), and described in
``MODEL_CARD.md`` (the chain, the figures, the experiment table, how to reproduce) and
``train_config.json``. ``data_recipe.json`` stays as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_F0, GOAL_LOUD = 10.0, 1.0
KEYS = ("spectral_loss", "f0_l1_cents", "f0_median_cents", "f0_outlier_ratio",
        "loudness_l1_db", "voiced_frames", "rtf", "seconds", "examples")


def pick(results: list[dict], method: str) -> dict:
    by = {r["method"]: r for r in results}
    if method != "auto":
        if method not in by:
            sys.exit(f"error: no results for method {method!r} ({', '.join(by)})")
        return by[method]
    fx = [r for r in results if r["method"] != "plain"]
    good = [r for r in fx if r["heldout"]["f0_l1_cents"] <= GOAL_F0
            and r["heldout"]["loudness_l1_db"] <= GOAL_LOUD]
    return min(good or fx, key=lambda r: r["heldout"]["spectral_loss"])


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def experiment_table(results: list[dict]) -> str:
    rows = ["| method | steps | steps/s | f0 L1 (cents) | loudness L1 (dB) | spectral loss |",
            "|---|---|---|---|---|---|"]
    for r in results:
        h = r["heldout"]
        rows.append(f"| {r['method']} | {r['steps']} | {r['steps_per_s']:.2f} | "
                    f"{h['f0_l1_cents']:.1f} | {h['loudness_l1_db']:.2f} | "
                    f"{h['spectral_loss']:.3f} |")
    return "\n".join(rows) + "\n"


def settings_table(learned: dict) -> str:
    rows = ["| setting | learned | used to make the data |", "|---|---|---|"]
    rows += [f"| {k} | {v[0]:g} | {v[1]:g} |" for k, v in learned.items()]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "bench/results_fx_experiment.json"))
    parser.add_argument("--runs", default=str(ROOT / "runs/fx_experiment"))
    parser.add_argument("--method", default="auto")
    parser.add_argument("--name", default="tenorsax_amp")
    parser.add_argument("--data", default=str(ROOT / "data/tenorsax_amp"))
    parser.add_argument("--heldout", default=str(ROOT / "data/renders/tenorsax_amp/heldout"))
    parser.add_argument("--force", action="store_true", help="replace a shipped model")
    args = parser.parse_args()

    import torch

    from ddsp_synth.evaluate import evaluate_source
    from ddsp_synth.model import load_model, save_model
    from ddsp_synth.model import switch_method
    from ddsp_synth.model_effects import chain_markdown, describe_chain

    torch.set_num_threads(1)
    exp = json.loads(Path(args.results).read_text())
    best = pick(exp["results"], args.method)
    method = best["method"]
    out = ROOT / "models" / args.name
    recipe = json.loads((out / "data_recipe.json").read_text())
    model, meta = load_model(Path(args.runs) / f"{method}_model")
    if model.effects is not None:
        model = switch_method(model, "autodiff")
    training = {**meta.get("training", {}), "trained_with": method,
                "rendered_with": "autodiff (twins)"}
    save_model(model, out, meta["dataset_stats"], training, force=args.force)
    model, meta = load_model(out)

    files = sorted(f for f in Path(args.heldout).glob(f"{args.name}_*.wav")
                   if not f.name.endswith(".dry.wav"))
    unseen = {}
    for f in files:
        m, _ = evaluate_source(model, f, "val", None, None)
        unseen[f.name] = {k: m[k] for k in KEYS}
    mean = {k: sum(u[k] for u in unseen.values()) / len(unseen)
            for k in ("spectral_loss", "f0_l1_cents", "f0_median_cents", "f0_outlier_ratio",
                      "loudness_l1_db")}
    val, _ = evaluate_source(model, args.data, "val", None, None)
    val = {k: val[k] for k in KEYS}
    evals = {"tiny": val, "full": None, "unseen": {"tiny": unseen, "mean": mean},
             "experiment": {"method": method, "minutes": exp["minutes"], "init": exp["init"]}}
    write_text(out / "eval.json", json.dumps(evals, indent=2) + "\n")

    cfg_file = Path(args.runs) / f"{method}.json"
    command = (f"python bench/fx_experiment.py --minutes {exp['minutes']:g} --methods "
               f"{method} --init models/{Path(exp['init']).name} --force")
    train_config = {"model": model.config.to_dict(),
                    "train": json.loads(cfg_file.read_text())["train"],
                    "recipe": [{"run": f"fx_experiment/{method}", "command": command,
                                "steps": best["steps"], "minutes": round(best["train_wall_s"] / 60, 1),
                                "note": f"trained with {method}, shipped through the twins"}]}
    write_text(out / "train_config.json", json.dumps(train_config, indent=2) + "\n")

    plain = next((r for r in exp["results"] if r["method"] == "plain"), None)
    met = mean["f0_l1_cents"] <= GOAL_F0 and mean["loudness_l1_db"] <= GOAL_LOUD
    beats = plain is not None and mean["spectral_loss"] < plain["heldout"]["spectral_loss"]
    chain = describe_chain(model)
    g = recipe["generator"]
    truth = ", ".join(f"{c['device']} (" + ", ".join(f"{k} {v:g}" for k, v in
                                                     c["params"].items()) + ")"
                      for c in recipe["chain"])
    lines = [
        f"# {args.name} — ddsp_synth model card", "",
        "| | |", "|---|---|",
        f"| data | General MIDI program {g['program']} (tenor sax, FluidR3_GM, MIT) rendered "
        f"by the shared generator from seeded random melodies (MIDI {g['lo']}–{g['hi']}), "
        f"seeds {', '.join(map(str, recipe['train']['seeds']))}, "
        f"{recipe['train']['seconds']} s each, then through a fixed chain by pedalboard: "
        f"{truth}; `data_recipe.json` renders more |",
        f"| model | DDSP decoder, width {model.config.decoder.hidden}, "
        f"{model.n_parameters():,} parameters; {model.config.synth.n_harmonics} harmonics, "
        f"{model.config.synth.n_noise_bands} noise bands, {model.config.synth.reverb_s:g} s "
        f"learned room, then the chain below |",
        f"| training | {best['steps']} steps of batch 8 x 4 s, "
        f"{best['train_wall_s'] / 60:.1f} min on one CPU thread, from the weights of "
        f"`models/{Path(exp['init']).name}`; the effect settings learned once by **{method}** "
        f"|",
        "| rendering | the effect stages run as their PyTorch twins (what pedalboard renders; "
        "streams and exports without pedalboard) |", "",
        "## Chain", "",
        chain_markdown(chain),
        "## Learned settings against the ones that made the data", "",
        settings_table(best["settings_vs_truth"]) if best.get("settings_vs_truth") else "",
        "## Unseen performances (the figures to quote)", "",
        "Performances this model never heard: the recipe's held-out seeds, 60 s each, through "
        "the same chain, resynthesized whole (`ddsp-synth eval models/tenorsax_amp FILE`). "
        f"Goal: f0 L1 <= {GOAL_F0:g} cents, loudness L1 <= {GOAL_LOUD:g} dB, spectral loss "
        "below the plain model's.", "",
        "| performance | f0 L1 cents (median) | f0 outliers > 50 c | loudness L1 dB | "
        "spectral loss |", "|---|---|---|---|---|"]
    for name, u in unseen.items():
        lines.append(f"| `{name}` | {u['f0_l1_cents']:.1f} ({u['f0_median_cents']:.1f}) | "
                     f"{100 * u['f0_outlier_ratio']:.2f}% | {u['loudness_l1_db']:.2f} | "
                     f"{u['spectral_loss']:.3f} |")
    lines += [f"| **mean** | **{mean['f0_l1_cents']:.1f}** | "
              f"{100 * mean['f0_outlier_ratio']:.2f}% | **{mean['loudness_l1_db']:.2f}** | "
              f"**{mean['spectral_loss']:.3f}** |", "",
              f"Goal {'met' if met else 'NOT met'} on pitch and loudness; spectral loss "
              + (f"{'below' if beats else 'NOT below'} the plain model's "
                 f"({plain['heldout']['spectral_loss']:.3f})." if plain else "not compared."),
              "",
              "## Held-out part of the training recording", "",
              f"`ddsp-synth eval models/{args.name} data/{args.name}` (the prepared dataset's "
              "validation examples: the tail of each training performance).", "",
              "| metric | value |", "|---|---|",
              f"| f0 L1 | {val['f0_l1_cents']:.1f} cents (median {val['f0_median_cents']:.1f}) |",
              f"| loudness L1 | {val['loudness_l1_db']:.2f} dB |",
              f"| multi-resolution spectral loss | {val['spectral_loss']:.3f} |",
              f"| synthesis real-time factor | {val['rtf']:.4f} |", "",
              "## The experiment it won", "",
              f"Five models, {exp['minutes']:g} min each on one CPU thread, the same seed and "
              f"starting weights (`models/{Path(exp['init']).name}`), measured on the unseen "
              "performances above (models with effect stages rendered through their twins); "
              "see `docs/fx_model.md` and `bench/results_fx_experiment.json`.", "",
              experiment_table(exp["results"]),
              "## Reproduce", "",
              "1. `python scripts/render_fx_data.py models/tenorsax_amp/data_recipe.json -o "
              "data/renders/tenorsax_amp`",
              "2. `ddsp-synth prepare data/renders/tenorsax_amp/train/tenorsax_amp_500?.wav -o "
              "data/tenorsax_amp`",
              f"3. `{command}` — {best['steps']} steps, {best['train_wall_s'] / 60:.1f} min",
              "4. `python scripts/ship_fx_model.py --method " + method + " --force`", "",
              "## Known limits",
              "- A sampled General MIDI tenor sax through a fixed chain, not a player through "
              "an amplifier: one chain setting, learned once for the whole model.",
              "- Short CPU training (minutes): onsets and fast passages are smoother than the "
              "data.",
              "- The real devices (`spsa`, `hybrid`) need pedalboard; this shipped model "
              "renders through the twins and does not.", ""]
    write_text(out / "MODEL_CARD.md", "\n".join(lines))
    print(f"shipped {method} as {out}: unseen f0 {mean['f0_l1_cents']:.1f} cents, loudness "
          f"{mean['loudness_l1_db']:.2f} dB, spectral {mean['spectral_loss']:.3f}"
          + (f" (plain {plain['heldout']['spectral_loss']:.3f})" if plain else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
