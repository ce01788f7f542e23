"""The card of a neural proxy (``MODEL_CARD.md``), written from its ``proxy.json``."""

from __future__ import annotations

from pathlib import Path


def model_card(meta: dict) -> str:
    """A MODEL_CARD.md text from a proxy description (``proxy.json``)."""
    tr, acc, arch = meta.get("training", {}), meta.get("accuracy", {}), meta["architecture"]
    final_loss = (f"{tr['final_loss']:.4f}" if isinstance(tr.get("final_loss"), (int, float))
                  else "n/a")
    params = ", ".join(f"{p['name']} {p['min']:g}..{p['max']:g} {p['unit']}".rstrip()
                       + (" (log)" if p["scale"] == "log" else "") for p in meta["params"])
    data = tr.get("data")
    data = ", ".join(Path(d).name for d in data) if isinstance(data, list) else data
    rf = arch["receptive_field_samples"]
    lines = [
        f"# {meta['device']} - neural proxy card",
        "",
        f"A TCN that imitates the `{meta['device']}` device at {meta['sample_rate']} Hz, used by "
        "`--method proxy` (forward and backward) and `--method hybrid` (backward only) of "
        "`ddsp-synth match` and by `ddsp_synth.gradients`.",
        "",
        "| | |",
        "|---|---|",
        f"| device | `{meta.get('source', meta['device'])}` (the real device: "
        f"{meta.get('real_device', 'pedalboard where it exists')}) |",
        f"| parameters (normalised to [0, 1] as network input) | {params} |",
        f"| network | causal TCN, {arch['channels']} channels, kernel {arch['kernel_size']}, "
        f"dilations {arch['dilations']}, FiLM MLP width {arch['film_hidden']}; "
        f"output {'`x * exp(s)`' if arch.get('output') == 'gain' else '`x * (1 + g) + r`'}; "
        f"{meta['n_parameters']:,} weights; receptive field {rf} samples "
        f"({1000 * rf / meta['sample_rate']:.0f} ms) |",
        f"| training data | random {tr.get('segment_seconds')} s segments of {data} (all but "
        f"the last 20 s of each file), peak level uniform in "
        f"{tr.get('config', {}).get('level_db_range')} dBFS, parameters uniform in [0, 1]; "
        f"targets by the real device, fresh every step |",
        f"| training | {tr.get('steps')} steps of batch {tr.get('batch_size')} "
        f"({tr.get('audio_seconds_seen')} s of audio), {tr.get('minutes')} min on CPU, "
        f"{tr.get('threads')} thread(s), seed {tr.get('seed')}; loss = multi-resolution STFT "
        f"+ {tr.get('config', {}).get('waveform_weight')} x waveform L1; final loss "
        f"{final_loss} |",
        "",
        f"## Accuracy against the real device (held out: {tr.get('held_out')})",
        "",
        "| metric | value |",
        "|---|---|",
        f"| examples | {acc.get('held_out_examples')} x {acc.get('held_out_seconds')} s |",
        f"| MR log-magnitude distance proxy vs device (median / worst) | "
        f"{acc.get('spec_distance_median', float('nan')):.3f} / "
        f"{acc.get('spec_distance_worst', float('nan')):.3f} |",
        f"| same for the dry input vs device (how much the device changes the sound) | "
        f"{acc.get('spec_distance_dry_median', float('nan')):.3f} |",
        f"| rel_spec (ratio of the medians; 0 = perfect, 1 = no better than the dry input) | "
        f"{acc.get('rel_spec', float('nan')):.3f} |",
        f"| waveform SNR of the proxy vs the device (median / worst) | "
        f"{acc.get('snr_db_median', float('nan')):.1f} dB / "
        f"{acc.get('snr_db_worst', float('nan')):.1f} dB |",
    ]
    if "grad_cosine_median" in acc:
        lines.append(
            f"| cosine of the proxy's parameter gradient of a spectral matching loss with the "
            f"exact one (twin), median / mean | {acc['grad_cosine_median']:.3f} / "
            f"{acc['grad_cosine_mean']:.3f} |")
    data = tr.get("data")
    audio = (" --audio " + " ".join(str(d) for d in data)) if isinstance(data, list) else ""
    lines += ["", f"Reproduce: `ddsp-synth proxy train {meta.get('source', meta['device'])} -o "
                  f"OUT --steps {tr.get('steps')} --seed {tr.get('seed')} --sample-rate "
                  f"{meta['sample_rate']}{audio}` (this run made {tr.get('steps')} steps in "
                  f"{tr.get('minutes')} min; CPU timing varies with the machine's load; the "
                  f"shipped proxies come from `scripts/train_proxies.py`).", ""]
    return "\n".join(lines)
