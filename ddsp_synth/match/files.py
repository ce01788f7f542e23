"""``match`` for files: read, match, and write the result folder all at once.

``match_files(dry, target, chain, method, out_dir)`` reads both files at the dry file's
sample rate (resampling the target if needed, and saying so), runs :func:`~.run.match`, and
writes ``preset.json`` (chain order, natural units), ``matched.wav`` (the dry file through
the *real* chain with the estimated parameters), ``report.json`` and ``match.png`` (loss
curve and before/after spectra) into ``out_dir``: the four appear together or not at all,
and no output may be an input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio_io import check_result_folder, write_result_folder
from ..dsp.spectral import magnitude_spectrogram
from ..rack import sources_relative_to
from .config import OUTPUT_FILES, MatchConfig
from .inputs import load_pair
from .run import MatchResult, check_settings, match


def _spectrum_db(audio: np.ndarray, n_fft: int = 2048) -> np.ndarray:
    mag = magnitude_spectrogram(torch.from_numpy(audio.astype(np.float32))[None], n_fft,
                                n_fft // 4)[0]
    return (20 * torch.log10(mag.pow(2).mean(1).sqrt() + 1e-7)).numpy()


def plot_match(path, history: list[float], dry, target, matched, sample_rate: int,
               title: str) -> None:
    """Loss curve and before/after average spectra as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(np.arange(1, len(history) + 1), np.minimum.accumulate(history), label="best so far")
    ax1.plot(np.arange(1, len(history) + 1), history, alpha=0.35, label="per iteration")
    ax1.set_yscale("log")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("matching loss")
    ax1.set_title("loss")
    ax1.legend()
    freqs = np.fft.rfftfreq(2048, 1.0 / sample_rate)
    for audio, label, style in ((dry, "dry (before)", ":"), (target, "target", "-"),
                                (matched, "matched (after)", "--")):
        ax2.semilogx(freqs[1:], _spectrum_db(audio)[1:], style, label=label)
    ax2.set_xlabel("frequency (Hz)")
    ax2.set_ylabel("level (dB)")
    ax2.set_title("average spectrum")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


def _writers(result: MatchResult, chain: str, out_dir: Path, dry_path: Path,
             channels: int) -> dict:
    """The result folder's files, each as a function that writes it at a path."""
    inputs, report = result.inputs, result.report
    sr = inputs.sample_rate
    seg, target = result.compared
    preset_text = json.dumps(sources_relative_to(result.preset, out_dir), indent=2) + "\n"
    report_text = json.dumps(report, indent=2) + "\n"

    def matched(path) -> None:
        """32-bit float, as fx writes (the real devices' output as it is, never clipped);
        every channel of a stereo dry file, each through the same settings, as fx plays it
        (the search heard their mix)."""
        if channels == 1:
            sf.write(path, result.matched, sr, format="WAV", subtype="FLOAT")
            return
        from ..fx import fx_file
        from ..rack import Rack, check_preset
        from ..stages.params import DeviceError

        preset = check_preset({"chain": result.preset["chain"]}, sr)
        try:
            fx_file(preset, dry_path, path, n_workers=1)
        except DeviceError:  # no real devices here (pedalboard absent): the twins, as the match
            audio, _ = sf.read(str(dry_path), dtype="float32", always_2d=True)
            sf.write(path, Rack(preset, sr).process(audio), sr, format="WAV", subtype="FLOAT")

    return {
        "preset.json": lambda p: Path(p).write_text(preset_text),
        "matched.wav": matched,
        "report.json": lambda p: Path(p).write_text(report_text),
        "match.png": lambda p: plot_match(p, result.history or [report["loss_dry"]],
                                          inputs.dry[seg], target, result.matched[seg], sr,
                                          f"{chain} - {report['method']}: rel_spec "
                                          f"{report['rel_spec']:.3f}"),
    }


def match_files(dry_path, target_path, chain: str, method: str, out_dir,
                steps: int | None = None, max_seconds: float | None = None, seed: int = 0,
                force: bool = False, progress: bool = True,
                proxy_dirs: list[str | os.PathLike] = (),
                config: MatchConfig = MatchConfig()) -> dict:
    """Estimate the parameters of ``chain`` that turn DRY into TARGET; write the results.

    Args:
        dry_path: the unprocessed recording.
        target_path: the processed recording (any sample rate; resampled to the dry file's).
        chain, method, steps, max_seconds, seed, proxy_dirs, config: as :func:`~.run.match`.
        out_dir: folder for preset.json, matched.wav, report.json, match.png.
        force: overwrite an earlier result in ``out_dir``.
        progress: show a progress bar.

    Returns:
        The report (also written to report.json); ``report["notes"]`` lists what was done
        to the inputs (resampling, alignment), one line each.
    """
    check_settings(method, steps, max_seconds)
    out_dir = check_result_folder(out_dir, OUTPUT_FILES, force, inputs=[dry_path, target_path])
    inputs = load_pair(dry_path, target_path, config)
    result = match(None, None, inputs.sample_rate, chain, method, steps, max_seconds, seed,
                   progress, proxy_dirs, config, inputs=inputs)
    channels = sf.info(str(dry_path)).channels
    if channels > 1:
        result.report["notes"].append(
            f"the search heard the mix of the dry file's {channels} channels; matched.wav "
            "plays each of them through the same settings")
    write_result_folder(out_dir, _writers(result, chain, Path(out_dir), Path(dry_path),
                                          channels))
    return result.report


def summary_line(report: dict, out_dir) -> str:
    """One line for the command line: where the results are and how close they came."""
    return (f"{out_dir}: {report['method']} matched {len(report['chain'])} device(s) in "
            f"{report['wall_seconds']:.1f} s ({report['iterations']} iterations, "
            f"{report['device_evaluations']} device runs, {report['stopped_by']}); spectral "
            f"distance {report['spectral_distance_before']:.3f} -> "
            f"{report['spectral_distance_after']:.3f} (rel_spec {report['rel_spec']:.3f})")


def identifiability_line(report: dict) -> str | None:
    """The identifiability report's one sentence (what the clip pins down, what trades off),
    or None when the report has none (no time was left for it)."""
    ident = report.get("identifiability")
    return ident["sentence"] if ident and ident.get("sentence") else None
