"""The card of a controller (``MODEL_CARD.md``), written from its ``controller.json``."""

from __future__ import annotations


def _held_out_kind(data: dict) -> str:
    """What the validation heard: whole held-out pairs, or held-out parts of the files."""
    return ("held-out pairs, whole files" if data.get("held_out_whole_files")
            else "held-out part of the training files")


def _held_out_text(held) -> str:
    if isinstance(held, list):
        return f"{len(held)} pairs ({', '.join(held[:8])}{', ...' if len(held) > 8 else ''})"
    return str(held)


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _params(chain: list[dict]) -> list[str]:
    rows = []
    for e in chain:
        params = ", ".join(f"{p['name']} {p['min']:g}..{p['max']:g} {p.get('unit', '')}".rstrip()
                           + (" (log)" if p.get("scale") == "log" else "") for p in e["params"]
                           if p["name"] not in e.get("fixed", {}))
        fixed = ", ".join(f"{k} = {v:g}" for k, v in e.get("fixed", {}).items())
        rows.append(f"| `{e['device']}` | {e.get('method', '')} | {params or '-'} | "
                    f"{fixed or '-'} |")
    return rows


def _evaluation(ev: dict) -> list[str]:
    lines = ["", f"## On material no training saw ({ev.get('material', 'held-out recordings')})", "",
             "| rate | examples | rel_spec (0 = target, 1 = doing nothing) | loudness error "
             "(LU) | doing nothing: loudness error |", "|---|---|---|---|---|"]
    for row in ev.get("rows", []):
        lines.append(f"| {row.get('sample_rate')} Hz | {row.get('examples')} | "
                     f"{_fmt(row.get('rel_spec'))} | {_fmt(row.get('loudness_lu'), 2)} | "
                     f"{_fmt(row.get('loudness_lu_dry'), 2)} |")
    if ev.get("note"):
        lines += ["", ev["note"]]
    return lines


def _inputs(data: dict) -> str:
    """How the style inputs were made (controllers from before the setting say nothing)."""
    share = data.get("input_processed")
    if data.get("mode") != "style" or share is None:
        return ""
    return (f"; inputs with random processing of their own to undo: {share:.0%} (the rest as "
            "recorded)")


def controller_card(meta: dict) -> str:
    """A MODEL_CARD.md text from a controller description."""
    cfg, tr, data = meta["config"], meta.get("training", {}), meta.get("data", {})
    val = meta.get("validation") or {}
    kind = "per 10 ms frame (automation curves)" if cfg["per_frame"] else "once per clip"
    ref = "a reference recording (\"make it sound like this\")" if cfg["reference"] else \
        "the input alone"
    files = data.get("files", [])
    lines = [
        f"# {meta.get('name', 'controller')} - controller card",
        "",
        f"A network that listens to an input (at {meta['sample_rate']} Hz) and {ref}, and "
        f"predicts the settings of the chain below {kind}. `ddsp-synth control apply` renders "
        "any file through the real devices with them and writes the settings as a preset.",
        "",
        "| device | trained with | parameters predicted | fixed |",
        "|---|---|---|---|",
        *_params(meta["chain"]),
        "",
        "| | |",
        "|---|---|",
        f"| network | shared encoder: log-mel ({cfg['n_mels']} bands, {cfg['n_fft']}-sample "
        f"window, 10 ms frames) -> {cfg['channels']} channels, {len(cfg['dilations'])} residual "
        f"dilated conv blocks {tuple(cfg['dilations'])}; head: MLP of width {cfg['hidden']}; "
        f"{meta.get('n_weights', 0):,} weights |",
        f"| training data | {data.get('mode', '?')}: {len(files)} files "
        f"({', '.join(files[:12])}{', ...' if len(files) > 12 else ''}); "
        f"{data.get('train_seconds', '?')} s used for training; held out for validation: "
        f"{_held_out_text(data.get('held_out', '?'))}{_inputs(data)} |",
        f"| training | method `{tr.get('method')}`, {tr.get('steps')} steps of batch "
        f"{tr.get('batch_size')} x {tr.get('segment_seconds')} s, {_fmt(tr.get('minutes'), 1)} "
        f"min on {tr.get('machine', 'CPU')}, seed {tr.get('seed')} |",
        f"| validation ({_held_out_kind(data)}, real devices) | rel_spec "
        f"{_fmt(val.get('rel_spec'))}, loudness error {_fmt(val.get('loudness_lu'), 2)} LU "
        f"(doing nothing: {_fmt(val.get('loudness_lu_dry'), 2)} LU), at step {val.get('step')} |",
    ]
    if meta.get("evaluation"):
        lines += _evaluation(meta["evaluation"])
    if meta.get("limitations"):
        lines += ["", "## Limitations", ""] + [f"- {x}" for x in meta["limitations"]]
    if tr.get("command"):
        lines += ["", "## Rebuild", "", f"    {tr['command']}"]
    return "\n".join(lines) + "\n"
