"""Reading and writing audio files: any libsndfile format in (block by block, any rate), atomic
WAV/FLAC out, file discovery."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import InputError, UserError

# Inputs outside these are not audio we can use: sample rates in Hz, and a peak far above full
# scale (float files may exceed 1.0 a little; 1e4 is 80 dB over).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
MAX_PEAK = 1e4
SILENT_PEAK = 1e-4  # -80 dBFS: an input whose peak stays under it is silent
# int16 PCM <-> float: the scale the prepared datasets use (full scale = 32767)
PCM16_SCALE = 32767.0
AUDIO_OUTPUT_SUFFIXES = (".wav", ".flac")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".oga", ".opus")


class AudioError(UserError):
    """A problem with an input or output file, with a one-line message for the user."""


class SkipFile(UserError):
    """An input that cannot be used; the message says why (one line)."""


def find_audio_files(inputs: list[str | os.PathLike]) -> list[Path]:
    """Audio files named directly or found (recursively, sorted) in folders; AudioError when
    an input does not exist or nothing is found (naming the inputs)."""
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTENSIONS
                            and q.is_file())
        elif p.exists() or p.is_symlink():
            files.append(p)
        else:
            raise AudioError(f"{p}: no such file or folder")
    if not files:
        raise AudioError(f"{', '.join(str(i) for i in inputs)}: no audio files (looked for "
                         f"{', '.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)})")
    return files


def check_sample_rate(value, what: str = "sample_rate") -> int:
    """``value`` as an int number of Hz in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]; InputError (one
    line) for anything else (bools, fractions, NaN, 1e9...)."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer())
    if isinstance(value, bool) or not whole or not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise InputError(f"{what} must be a whole number of Hz from {MIN_SAMPLE_RATE} to "
                         f"{MAX_SAMPLE_RATE}, got {value!r:.40}")
    return int(value)


def check_regular_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file, else a one-line AudioError: a missing path, a
    folder, a pipe or a device is refused before anything opens it (reading a FIFO would
    block forever)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file (a pipe or a device?)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    return path


def iter_audio_blocks(path: Path, sample_rate: int, block_seconds: float = 60.0):
    """Yield mono float32 blocks of a file, resampled to ``sample_rate`` with soxr (streaming).

    Raises:
        SkipFile: unreadable or empty file, or non-finite samples.
    """
    import soxr

    path = Path(path)
    if not path.is_file():
        raise SkipFile("not a regular file" if path.exists() else "no such file")
    if path.stat().st_size == 0:
        raise SkipFile("empty file (0 bytes)")
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:
        raise SkipFile(_unreadable(err)) from None
    with f:
        if f.frames == 0:
            raise SkipFile("empty file (no samples)")
        if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
            raise SkipFile(f"sample rate {f.samplerate} Hz is not an audio rate "
                           f"({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)")
        resampler = None
        if f.samplerate != sample_rate:
            resampler = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32",
                                            quality="HQ")
        block = max(1, int(block_seconds * f.samplerate))
        got_any, mix_peak, channel_peaks = False, 0.0, np.zeros(f.channels)
        try:
            for data in _blocks(f, path, block):
                mono = data.mean(axis=1)
                if not np.all(np.isfinite(mono)):
                    raise SkipFile("audio contains NaN or infinite samples")
                peak = float(np.abs(mono).max(initial=0.0))
                mix_peak = max(mix_peak, peak)
                channel_peaks = np.maximum(channel_peaks, np.abs(data).max(axis=0, initial=0.0))
                if peak > MAX_PEAK:
                    raise SkipFile(f"samples reach {peak:.3g}, {20 * np.log10(peak):.0f} dB above "
                                   "full scale: a float file with the wrong scale?")
                if resampler is not None:
                    mono = resampler.resample_chunk(mono)
                got_any = got_any or len(mono) > 0
                yield mono
        except SkipFile:
            raise
        except Exception as err:
            raise SkipFile(_unreadable(err)) from None
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield tail
        if not got_any:
            raise SkipFile("empty file (no samples)")
        if _cancel_in_mono(mix_peak, channel_peaks):
            raise SkipFile("its channels cancel each other when mixed to mono (one is the "
                           "other upside down); mix it yourself or keep one channel")


# A header stating more frames than this does not know the length (a FLAC written to a
# pipe states 2^63 - 1)
UNKNOWN_LENGTH_FRAMES = 2**50


def header_seconds(path: str | os.PathLike) -> float:
    """A file's length in seconds as its header states it, for a progress bar: 0 where the
    header does not say (a FLAC written to a pipe), the file cannot be read (it is refused
    with its reason when its turn comes), or it is not a regular file (``sf.info`` would
    block on a FIFO)."""
    try:
        if not Path(path).is_file():
            return 0.0
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - read (and refused, if need be) when its turn comes
        return 0.0
    return info.frames / info.samplerate if info.frames < UNKNOWN_LENGTH_FRAMES else 0.0


def _blocks(f: sf.SoundFile, path: Path, block: int):
    """[frames, channels] float32 blocks of an open file. A file whose header does not state
    its length cannot be read to its end in whole blocks (libsndfile fails on the last,
    short block): it is read until that error, then reopened at the last good frame with
    halved blocks, down to one frame (so at most the final frame may be lost)."""
    if f.frames < UNKNOWN_LENGTH_FRAMES:
        yield from f.blocks(blocksize=block, dtype="float32", always_2d=True)
        return
    done = 0
    while block >= 1:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except sf.LibsndfileError:
            f.close()
            f = sf.SoundFile(str(path))
            f.seek(done)
            block //= 2
            continue
        if len(data) == 0:
            break
        done += len(data)
        yield data
    f.close()


def _cancel_in_mono(mix_peak: float, channel_peaks: np.ndarray) -> bool:
    """Whether channels that each sound (peaks [n_channels]) cancel to silence in their mix:
    one the other upside down, not a quiet file or a silent channel beside a quiet one."""
    return (len(channel_peaks) > 1 and mix_peak < SILENT_PEAK
            and float(channel_peaks.min()) >= SILENT_PEAK
            and mix_peak < 0.1 * float(channel_peaks.max()))


def _unreadable(err: Exception) -> str:
    """libsndfile's reason without the path it repeats ("Error opening 'x': ...")."""
    text = re.sub(r"^Error opening .*?: ", "", str(err)).strip().rstrip(".")
    if isinstance(err, PermissionError):
        text = "permission denied"
    return f"unreadable audio ({text or type(err).__name__}); formats: wav, flac, ogg, mp3, aiff"


def resample_audio(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """[n_samples] float32 resampled with soxr (high quality); unchanged if the rates match."""
    if orig_sr == target_sr:
        return np.asarray(audio, np.float32)
    import soxr

    return soxr.resample(np.asarray(audio, np.float32), orig_sr, target_sr, quality="HQ")


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Whole file as mono float32 at ``sample_rate``; AudioError with a one-line reason."""
    try:
        return np.concatenate(list(iter_audio_blocks(Path(path), sample_rate)))
    except SkipFile as err:
        raise AudioError(f"{path}: {err}") from None


def cache_dir() -> Path:
    """Where derived files are cached (``$DDSP_SYNTH_CACHE``, default ~/.cache/ddsp_synth)."""
    return Path(os.environ.get("DDSP_SYNTH_CACHE", Path.home() / ".cache" / "ddsp_synth"))


def limit_peak(audio: np.ndarray, ceiling: float = 0.999) -> np.ndarray:
    """Scale ``audio`` down to ``ceiling`` if it would clip (keeps the sound's shape)."""
    peak = float(np.abs(audio).max(initial=0.0))
    return audio * (ceiling / peak) if peak > ceiling else audio


def check_input_signal(audio: np.ndarray) -> np.ndarray:
    """float32 ``audio``, or InputError (a ValueError too) for an empty, non-finite, absurdly
    loud or silent input."""
    audio = np.asarray(audio, np.float32)
    if len(audio) == 0:
        raise InputError("the input is empty")
    if not np.all(np.isfinite(audio)):
        raise InputError("the input contains NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak > MAX_PEAK:
        raise InputError(f"the input's samples reach {peak:.3g}, far above full scale")
    if peak < SILENT_PEAK:
        raise InputError("the input is silent (peak below -80 dBFS)")
    return audio


def _is_within(path: Path, inputs) -> Path | None:
    """The input that ``path`` is, or lies inside (an input folder), or None."""
    target = path.resolve()
    for item in inputs:
        item = Path(item)
        if not item.exists():
            continue
        src = item.resolve()
        if target == src or (item.is_dir() and src in target.parents):
            return item
    return None


def _probe_folder(path: Path, what: Path) -> None:
    """Create and remove a folder in the nearest existing ancestor of ``path``: read-only and
    immutable folders and full file systems are caught before any work."""
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AudioError(f"{what}: cannot write: {parent} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ddsp_synth_probe_", dir=parent))
    except OSError as err:
        raise AudioError(f"{what}: cannot write in {parent} ({err.strerror})") from None


def check_writable(path: str | os.PathLike, force: bool, inputs=(),
                   suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, before any work, that the file ``path`` can be written: an allowed suffix (if
    ``suffixes``), not a folder, not a device or pipe, not one of ``inputs`` nor inside an
    input folder (not even with ``force``), not an existing file unless ``force``, and its
    folder (or the nearest existing parent) accepts a new file. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a folder; give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise AudioError(f"{path}: the output must end in {' or '.join(suffixes)}")
    source = _is_within(path, inputs)
    if source is not None:
        what = ("is the input itself" if source.resolve() == path.resolve() else
                f"lies inside an input of this command ({source})")
        raise AudioError(f"{path}: {what}; choose another output name")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise AudioError(f"{path}: exists and is not a regular file; refusing to replace it")
        if not force:
            raise AudioError(f"{path} exists; pass --force to overwrite it")
    _probe_folder(path.parent, path)
    return path


def check_audio_output(path: str | os.PathLike, force: bool, inputs=()) -> Path:
    """:func:`check_writable` for a ``.wav`` or ``.flac`` output."""
    return check_writable(path, force, inputs, AUDIO_OUTPUT_SUFFIXES)


def check_output_folder(path: str | os.PathLike, inputs=()) -> Path:
    """Check, before any work, that a folder output can be made or written into: not a file,
    not an input, and writable. Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AudioError(f"{path}: is a file, not a folder")
    source = _is_within(path, inputs)
    if source is not None:
        what = ("is the input itself" if source.resolve() == path.resolve() else
                f"lies inside an input of this command ({source})")
        raise AudioError(f"{path}: {what}; choose another output folder")
    _probe_folder(path, path)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files are created with the permissions any new file gets here (mkstemp's are 0600).
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, write_fn, keep_partial: bool = False) -> None:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, then rename it.

    A crash or Ctrl-C leaves either the old file or the new one, never a partial file. The
    file gets the usual permissions (0666 less the umask). A file system error (read-only,
    full, permission) is an :class:`AudioError` naming the path, with nothing left behind.
    With ``keep_partial`` (a recording: a take is never thrown away), what ``write_fn`` got
    written before it failed is kept under ``path`` all the same, and the error raised.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise AudioError(f"{path}: cannot write here ({err.strerror or err})") from None
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        if keep_partial and os.path.exists(tmp) and os.path.getsize(tmp) > 0:
            with contextlib.suppress(OSError):  # the error the write met says what happened
                os.chmod(tmp, FILE_MODE)
                os.replace(tmp, path)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise AudioError(f"{path}: cannot write ({err.strerror or err})") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                force: bool = False) -> Path:
    """Write mono float audio atomically as 16-bit WAV or 24-bit FLAC.

    Args:
        path: ``.wav`` or ``.flac``.
        audio: [n_samples] float samples; values beyond [-1, 1] are clipped for FLAC.
        sample_rate: Hz.
        force: overwrite an existing file.
    """
    path = check_audio_output(path, force)
    ext = path.suffix.lower()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"expected mono audio [n_samples], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"refusing to write {path}: audio contains NaN or infinite samples")
    fmt, subtype = ("WAV", "PCM_16") if ext == ".wav" else ("FLAC", "PCM_24")
    clipped = np.clip(audio, -1.0, 1.0)
    atomic_write_bytes(path, lambda tmp: sf.write(tmp, clipped, sample_rate, format=fmt,
                                                  subtype=subtype))
    return path


def check_result_folder(folder: str | os.PathLike, names, force: bool, inputs=()) -> Path:
    """Check, before any work, that a result of several files (``names``) can be written
    into ``folder`` by :func:`write_result_folder`: writable, not an input nor inside one, no
    input inside it, holding nothing but earlier results of the same kind, and those only
    with ``force``."""
    folder = check_output_folder(folder, inputs)
    for item in inputs:
        item = Path(item)
        if item.exists() and folder.resolve() in item.resolve().parents:
            raise AudioError(f"{folder}: holds an input of this command ({item}); choose "
                             "another output folder")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in names)
        if others:
            raise AudioError(f"{folder}: holds other files ({others[0]}...); give a new or "
                             "empty folder")
        existing = [n for n in names if (folder / n).exists()]
        if existing and not force:
            raise AudioError(f"{folder / existing[0]} exists; pass --force to overwrite it")
    return folder


def write_result_folder(folder: str | os.PathLike, writers: dict) -> Path:
    """Write several files so that they appear together or not at all.

    Every ``writers[name](tmp_path)`` writes into a temporary folder beside ``folder``, which
    then takes ``folder``'s place by renames (an earlier result is moved aside first and
    removed after). An interruption leaves the earlier result or the new one, never a mix.
    Check the folder first with :func:`check_result_folder`.
    """
    import shutil

    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as err:
        raise AudioError(f"{folder}: cannot write here ({err.strerror or err})") from None
    try:
        for name, write in writers.items():
            write(str(tmp / name))
            os.chmod(tmp / name, FILE_MODE)
        os.chmod(tmp, 0o777 & ~_umask())
        if folder.exists():
            old = tmp.with_name(tmp.name[:-4] + ".old")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise AudioError(f"{folder}: cannot write ({err.strerror or err})") from None
        raise
    return folder
