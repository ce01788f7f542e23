#!/usr/bin/env python3
"""Ship a trained style controller: evaluate it on held-out material at several sample rates
and write it, with that evaluation in its card, to ``models/style``.

The held-out material (``data/style_material/heldout``, rendered by
``scripts/render_style_material.py``: render seeds 9200-9299, instruments never seen in
training, new voices, a real sung scale) gets DeepAFx-ST's protocol at each rate: a window
at a random level rendered by the real devices with two random settings; input = one half
of the first rendering, target = the same half of the second, reference = the other half of
the second. The controller listens at its own rate (16 kHz) and the chain renders at the
material's rate.

    python scripts/ship_style.py data/runs/style -o models/style --force
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT = ROOT / "data" / "style_material" / "heldout"
RATES = (16000, 24000, 44100, 48000)
LIMITATIONS = [
    "Trained on 2 s excerpts of rendered instruments, sung vowels and synthetic (espeak-ng) "
    "speech plus the five shared recordings; full mixes, real speech and loud modern masters "
    "are outside what it has heard.",
    "One setting per clip: a song whose tone changes along the way gets the average "
    "correction. The reference's and the input's levels are read over their active frames "
    "(pauses more than 40 dB below the loudest frame are left out).",
    "The EQ spans 20 Hz to 7.2 kHz (the devices' ranges at 16 kHz, where it was trained); "
    "above that a 44.1/48 kHz recording keeps its own air.",
    "It is a short CPU training run (see the training row): on held-out material it brings "
    "the spectral distance to {rel:.2f} of doing nothing on average, not near zero; "
    "`ddsp-synth match` with the true target does far better where one exists.",
]


def evaluate(net, meta: dict, n: int, seconds: float, seed: int) -> list[dict]:
    import torch

    from ddsp_synth.control.apply import predict_settings, render_chain_declared
    from ddsp_synth.control.config import ControlDataConfig
    from ddsp_synth.control.data import StyleSource
    from ddsp_synth.control.devices import clip_to, declared_params, render_chain
    from ddsp_synth.control.files import chain_text
    from ddsp_synth.control.train import scores
    from ddsp_synth.chains import make_chain

    entries = chain_text(meta).split(",")
    rows = []
    for rate in RATES:
        chain = make_chain(entries, rate, method="autodiff")
        declared, fixed, devices = declared_params(chain)
        chain.close()
        renderer, kind = render_chain(entries, rate)
        cfg = ControlDataConfig(segment_seconds=seconds, reference_seconds=seconds,
                                held_out_fraction=0.0)
        source = StyleSource([HELDOUT], rate, renderer, declared, devices, cfg, fixed)
        ex = source.batch(np.random.default_rng(seed), n)
        at_rate = render_chain_declared(entries, rate)
        settings = np.stack([clip_to(at_rate, predict_settings(net, x.numpy(), rate, r.numpy()))
                             for x, r in zip(ex.input, ex.reference)])
        with torch.no_grad():
            out, _ = renderer(ex.input, torch.from_numpy(settings).float())
        renderer.close()
        row = {"sample_rate": rate, **scores(out, ex, rate), "renderer": kind}
        print(f"{rate} Hz: rel_spec {row['rel_spec']:.3f}, loudness {row['loudness_lu']:.2f} LU "
              f"(doing nothing {row['loudness_lu_dry']:.2f})", file=sys.stderr)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a training run's folder")
    ap.add_argument("-o", "--out", default=str(ROOT / "models" / "style"))
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=9201)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--rebuild", help="the commands that trained it (for the card)")
    args = ap.parse_args(argv)
    import torch

    from ddsp_synth.control.files import load_controller, save_controller

    torch.set_num_threads(1)
    net, meta = load_controller(args.run)
    rows = evaluate(net, meta, args.examples, args.seconds, args.seed)
    files = sorted(p.name for p in HELDOUT.iterdir())
    info = {k: meta[k] for k in ("data", "validation", "training") if k in meta}
    info["name"] = "style"
    settings = meta["training"].get("settings", {})
    info["training"]["command"] = args.rebuild or (
        f"ddsp-synth control train --chain {','.join(settings.get('chain', []))} --method "
        f"{settings.get('method')} --style data/style_material/train ../shared/data/train -o "
        f"runs/style --max-minutes {settings.get('train', {}).get('max_minutes', 0):g} --seed "
        f"{settings.get('train', {}).get('seed', 0)} (after python "
        "scripts/render_style_material.py -o data/style_material)")
    info["evaluation"] = {
        "material": f"{len(files)} held-out recordings ({', '.join(files)}), "
                    f"{args.examples} examples of {args.seconds:g} s per rate, seed {args.seed}",
        "rows": rows,
        "note": "rel_spec: mean multi-resolution log-spectral distance to the target divided "
                "by that of the unprocessed input (scripts/ship_style.py)."}
    rel = float(np.mean([r["rel_spec"] for r in rows]))
    info["limitations"] = [x.format(rel=rel) for x in LIMITATIONS]
    save_controller(net, args.out, meta["chain"], info, force=args.force)
    print(json.dumps({"out": args.out, "rows": [{k: r[k] for k in ("sample_rate", "rel_spec",
                     "loudness_lu", "loudness_lu_dry")} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
