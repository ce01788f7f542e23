"""The web demo's effects rack: a switch and knobs per device of ``RACK_LAYOUT`` in
natural units, a bypass switch, presets loaded and saved in ``match``'s format, and a tone
match: a reference recording, an amount and the aspects to match (EQ, dynamics, loudness)
set the knobs (:meth:`RackPanel.tone_values`), so that people adjust from there.

:class:`RackPanel` builds the components inside a ``gr.Blocks`` context and converts the
values the handler receives (``bypass, then per device: on, knob, knob, ...``) into a
:class:`~ddsp_synth.rack.Preset`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from ..errors import UserError
from ..rack import RACK_LAYOUT, Preset, PresetError, layout_preset, layout_settings, read_preset
from ..tone.match import ASPECTS

TONE_FILE_TYPES = [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"]

TITLES = {"lowshelf": "EQ: low shelf", "peak": "EQ: peak", "highshelf": "EQ: high shelf",
          "compressor": "Compressor", "distortion": "Distortion", "gain": "Output gain"}


# The instruments play at 16 kHz: a knob's range is what that audio holds (filter frequencies
# up to 7.2 kHz; a range made for 48 kHz let a 12 kHz shelf through, whose filter is unstable
# at 16 kHz).
RACK_SAMPLE_RATE = 16000


def _param_of(device: str):
    from ..stages.registry import make_device

    return {p.name: p for p in make_device(device, RACK_SAMPLE_RATE).params}


def _step(p) -> float:
    span = p.max - p.min
    return 1.0 if span >= 500 else 0.1 if span >= 5 else 0.01


class RackPanel:
    """The rack's components; ``inputs`` in the order :meth:`preset` takes their values."""

    def __init__(self, wrap=lambda c: c):
        import gradio as gr

        self.bypass = gr.Checkbox(False, label="Bypass the rack (hear the instrument dry)",
                                  elem_id="rack_bypass")
        self.switches, self.knobs = [], []
        for device, neutral in RACK_LAYOUT:
            params = _param_of(device)
            with gr.Group():
                self.switches.append(gr.Checkbox(False, label=f"{TITLES[device]}: on",
                                                 elem_id=f"rack_{device}_on"))
                with gr.Row():
                    knobs = []
                    for name, value in neutral.items():
                        p = params[name]
                        unit = f" ({p.unit})" if p.unit else ""
                        knobs.append(wrap(gr.Slider(p.min, p.max, value=value, step=_step(p),
                                                    label=f"{name}{unit}",
                                                    elem_id=f"rack_{device}_{name}")))
                    self.knobs.append(knobs)
        with gr.Row():
            self.load = wrap(gr.File(label="Load a preset (.json: from match, control "
                                           "apply, style or this page)", file_types=[".json"],
                                     type="filepath", elem_id="rack_load"))
            self.save = gr.DownloadButton("Save the rack as a preset", elem_id="rack_save")
        with gr.Group():
            gr.Markdown("**Tone match**: sets the EQ, the compressor and the output gain so that "
                        "the instrument sounds like a reference recording of anything (its "
                        "long-term spectrum, loudness range and loudness); adjust the knobs "
                        "from there.")
            with gr.Row():
                self.tone_reference = wrap(gr.File(label="Reference recording",
                                                   file_types=TONE_FILE_TYPES,
                                                   type="filepath",
                                                   elem_id="rack_tone_reference"))
                with gr.Column():
                    self.tone_amount = wrap(gr.Slider(0, 100, value=100, step=1,
                                                      label="Match amount (%)",
                                                      elem_id="rack_tone_amount"))
                    self.tone_aspects = wrap(gr.CheckboxGroup(list(ASPECTS), value=list(ASPECTS),
                                                              label="Match",
                                                              elem_id="rack_tone_aspects"))
                    self.tone_button = gr.Button("Set the rack from the reference",
                                                 elem_id="rack_tone_match")

    @property
    def tone_inputs(self) -> list:
        """The tone match's components, in the order :meth:`tone_values` takes them."""
        return [self.tone_reference, self.tone_amount, self.tone_aspects]

    @property
    def inputs(self) -> list:
        out = [self.bypass]
        for switch, knobs in zip(self.switches, self.knobs):
            out += [switch, *knobs]
        return out

    def preset(self, values) -> Preset | None:
        """The rack's preset from the handler's values (None: bypassed or all off)."""
        values = list(values)
        bypass, i, settings = bool(values[0]), 1, {}
        for device, neutral in RACK_LAYOUT:
            on, knobs = values[i], values[i + 1 : i + 1 + len(neutral)]
            i += 1 + len(neutral)
            settings[device] = dict(zip(neutral, map(float, knobs))) if on else None
        preset = layout_preset(settings)
        return None if bypass or preset.empty else preset

    def values_of(self, preset: Preset) -> list:
        """The components' new values for a loaded preset (bypass off)."""
        settings = layout_settings(preset)
        if settings is None:
            raise PresetError("its chain (" + ", ".join(preset.names) + ") is not this rack's "
                              "layout (low shelf, peak, high shelf, compressor, distortion, "
                              "gain, each at most once, in that order); apply it with "
                              "ddsp-synth fx or --effects")
        out = [False]
        for device, neutral in RACK_LAYOUT:
            knobs = settings[device]
            out += [knobs is not None, *[(knobs or neutral)[k] for k in neutral]]
        return out

    def load_file(self, path) -> list:
        """Handler of the preset upload: the new values (a bad preset: a warning, no
        change)."""
        import gradio as gr

        if not path:
            return [gr.skip()] * len(self.inputs)
        try:
            return self.values_of(read_preset(path))
        except PresetError as err:
            gr.Warning(f"Cannot load {Path(path).name}: {str(err).replace(str(path), '').lstrip(': ')}")
            return [gr.skip()] * len(self.inputs)

    def tone_values(self, dry, sample_rate: int, reference, amount_pct, aspects
                    ) -> tuple[list, str]:
        """The components' new values for a tone match of ``dry`` (the instrument's output,
        [n] at ``sample_rate``, before the rack) to the ``reference`` file: bypass off, the
        EQ, compressor and gain on with the estimate's knobs, distortion off. Also returns a
        line saying what was set. UserError (one line) for a bad reference or setting."""
        from ..errors import InputError
        from ..tone import match_tone

        if not aspects:
            raise InputError("choose at least one of " + ", ".join(ASPECTS) + " to match")
        preset = match_tone(dry, sample_rate, reference, None, list(aspects),
                            float(amount_pct) / 100.0)
        return self.values_of(preset), (f"tone match ({float(amount_pct):.0f} %, "
                                        f"{', '.join(aspects)}): {preset.describe()}")

    def match_file(self, dry, sample_rate: int, reference, amount_pct, aspects) -> list:
        """Handler core of the tone-match button: :meth:`tone_values`' values and line (a
        bad reference: a warning, no change)."""
        import gradio as gr

        if not reference:
            gr.Warning("Upload a reference recording first.")
            return [gr.skip()] * (len(self.inputs) + 1)
        try:
            values, text = self.tone_values(dry, sample_rate, reference, amount_pct, aspects)
        except UserError as err:
            message = str(err).replace(str(reference), Path(reference).name)
            gr.Warning(f"Cannot match the tone: {message}")
            return [gr.skip()] * (len(self.inputs) + 1)
        return [*values, text]

    def save_file(self, workdir: Path, *values) -> str:
        """Handler of the save button: the rack written as a preset file, for download."""
        preset = self.preset([False, *values[1:]])  # saved as set, even while bypassed
        data = preset.to_dict() if preset is not None else {"chain": []}
        path = Path(workdir) / f"rack-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        return str(path)
