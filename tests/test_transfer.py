"""Timbre transfer: auto-adjust, chunked rendering with carried state, the one-call API."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from ddsp_synth.features import FeatureConfig, compute_f0
from ddsp_synth.model import DDSPModel, ModelConfig, load_model
from ddsp_synth.transfer import (NoPitchError, TransferOptions, adjust_features, render,
                                 transfer_audio)

from conftest import synth_tone

STATS = {"pitch_midi_mean": 69.0 + 12.0,  # model trained around A5
         "loudness_db_quantiles": list(np.linspace(-80, -10, 101)),
         "loudness_db_voiced_quantiles": list(np.linspace(-40, -10, 101))}


def _curves(n=400, f0=220.0):
    t = np.arange(n) / 100
    f0_hz = f0 * 2 ** (0.3 * np.sin(2 * np.pi * t) / 12)
    loud = -50 + 20 * np.sin(np.pi * t / t[-1])
    conf = np.ones(n)
    conf[:40] = 0.1  # unvoiced lead-in
    loud[:40] = -100
    return f0_hz, loud, conf


def test_auto_adjust_shifts_octaves_and_maps_loudness_quantiles():
    f0, loud, conf = _curves()
    adj = adjust_features(f0, loud, conf, STATS, TransferOptions())
    assert adj["octave_shift"] == 2  # MIDI ~57 -> ~81: two octaves up
    np.testing.assert_allclose(adj["f0_hz"][40:], f0[40:] * 4, rtol=1e-6)
    # the lead-in's last 40 ms (the attack, before the tracker is sure) takes the note's pitch
    np.testing.assert_allclose(adj["f0_hz"][36:40], f0[40] * 4, rtol=1e-6)
    voiced = conf >= 0.85
    mapped, src = adj["loudness_db"][voiced], loud[voiced]
    # the voiced frames above their quietest 5 % span the model's voiced loudness range from
    # its 5th percentile up, in the same order; quieter ones keep their distance in dB
    q5 = np.percentile(src, 5)
    assert abs(mapped.max() - (-10)) < 0.5
    assert abs(np.interp(q5, np.sort(src), np.sort(mapped)) - (-40 + 0.05 * 30)) < 0.5
    low = src < q5
    np.testing.assert_allclose(mapped[low], -38.5 - (q5 - src[low]), atol=0.3)
    assert np.all(np.diff(mapped[np.argsort(src)]) >= -1e-6)
    # the silent lead-in is muted well below anything the model heard
    assert np.all(adj["loudness_db"][:40] <= -100) and adj["muted_fraction"] >= 0.1
    # what the summary says sounds: every frame but the lead-in, whatever the tracker's
    # confidence inside the note (the voiced share is only the sure frames)
    conf[40:] = np.where(np.arange(360) % 2 == 0, 0.9, 0.6)
    adj = adjust_features(f0, loud, conf, STATS, TransferOptions())
    assert adj["sounding_fraction"] == pytest.approx(0.9) and adj["voiced_fraction"] < 0.5
    adj = adjust_features(f0, loud, conf, STATS, TransferOptions(auto_adjust=False))
    assert adj["sounding_fraction"] == pytest.approx(0.9) and adj["muted_fraction"] == 0


def test_manual_shifts_and_no_adjust():
    f0, loud, conf = _curves()
    adj = adjust_features(f0, loud, conf, STATS,
                          TransferOptions(auto_adjust=False, pitch_shift_semitones=-3.5,
                                          loudness_shift_db=6.0))
    np.testing.assert_allclose(adj["f0_hz"][40:], f0[40:] * 2 ** (-3.5 / 12), rtol=1e-6)
    np.testing.assert_allclose(adj["loudness_db"], loud + 6.0, atol=1e-4)
    assert adj["octave_shift"] == 0


def test_no_pitch_is_a_clear_error():
    f0, loud, _ = _curves()
    with pytest.raises(NoPitchError, match="no pitch found"):
        adjust_features(f0, loud, np.zeros_like(f0), STATS, TransferOptions())


@pytest.fixture(scope="module")
def loud_reverb_model():
    torch.manual_seed(0)
    model = DDSPModel(ModelConfig()).eval()
    with torch.no_grad():
        model.synth.reverb.tail.mul_(100.0)  # a reverb tail loud enough to matter at joins
    return model


def test_chunked_render_equals_whole_and_joins_are_smooth(loud_reverb_model):
    model = loud_reverb_model
    f0, loud, _ = _curves(1234)
    chunked = render(model, f0, loud, TransferOptions(chunk_seconds=0.5))  # < the 1 s reverb
    whole = render(model, f0, loud, TransferOptions(chunk_seconds=1000))
    with torch.no_grad():
        direct = model(torch.tensor(f0, dtype=torch.float32)[None, :, None],
                       torch.tensor(loud, dtype=torch.float32)[None, :, None],
                       generator=torch.Generator().manual_seed(0))[0].numpy()
    assert len(chunked) == len(whole) == 1234 * 160
    np.testing.assert_allclose(chunked, whole, atol=2e-5)
    np.testing.assert_allclose(whole, direct, atol=2e-5)
    # no sample-to-sample jump at a chunk join larger than the largest inside chunks
    jumps = np.abs(np.diff(chunked))
    joins = np.arange(50 * 160, len(chunked) - 1, 50 * 160) - 1
    inside = np.delete(jumps, np.concatenate([joins, joins + 1]))
    assert jumps[joins].max() <= inside.max()


def test_transfer_audio_pitch_follows_input(exported):
    model, meta = load_model(exported)
    audio = synth_tone(3.0, 16000, 233.0, vibrato_cents=0.0)
    out, info = transfer_audio(model, meta, audio, TransferOptions(auto_adjust=False,
                                                                   pitch_shift_semitones=2.0))
    assert out.shape == audio.shape and np.isfinite(out).all()
    f0_out, conf = compute_f0(out, FeatureConfig())
    voiced = info["input"]["confidence"] >= 0.85
    err = 1200 * np.log2(f0_out[voiced] / (233.0 * 2 ** (2 / 12)))
    assert voiced.sum() > 100 and np.median(np.abs(err)) < 30


def test_transfer_progress_covers_the_analysis_and_the_render_once(exported):
    """One bar over the input's seconds: the analysis (its CREPE pass batch by batch) and
    the render share it, and together advance it by exactly its total."""
    class Steps:
        def __init__(self):
            self.steps = []

        def update(self, seconds):
            self.steps.append(seconds)

    model, meta = load_model(exported)
    audio = synth_tone(12.0, 16000, 233.0)
    bar = Steps()
    transfer_audio(model, meta, audio, TransferOptions(), bar, cache=False)
    assert abs(sum(bar.steps) - 12.0) < 2 * 160 / 16000
    assert len(bar.steps) >= 5 and max(bar.steps) < 0.5 * 12.0  # no jump from 0 to done


def _share(y, sr=16000):
    from ddsp_synth.features import compute_loudness
    from ddsp_synth.melodic import harmonic_share

    fc = FeatureConfig()
    f0, conf = compute_f0(y, fc)
    return harmonic_share(y, f0, conf, compute_loudness(y, fc), sr, fc.hop)


def test_harmonic_share_equals_a_librosa_stft_reference():
    """The share is computed on the package's own STFT; librosa's (the implementation it
    replaced: periodic Hann, centred zero-padded frames) gives the same figure."""
    import librosa

    from ddsp_synth.features import compute_loudness
    from ddsp_synth.melodic import HARMONIC_TOLERANCE, MAX_HZ, MIN_CONFIDENCE, N_FFT, \
        SOUNDING_DB

    sr, fc = 16000, FeatureConfig()
    rng = np.random.default_rng(3)
    y = (synth_tone(3.0, sr, 196.0) + 0.3 * synth_tone(3.0, sr, 311.0, seed=1)
         + 0.02 * rng.standard_normal(3 * sr)).astype(np.float32)
    f0, conf = compute_f0(y, fc)
    loud = compute_loudness(y, fc)
    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=fc.hop, center=True,
                               pad_mode="constant")) ** 2
    n = min(spec.shape[1], len(f0))
    sounding = loud[:n] > np.percentile(loud[:n], 95) - SOUNDING_DB
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)[:, None]
    f = np.maximum(f0[:n][sounding], 1.0)
    k = freqs / f
    near = (np.abs(k - np.round(k)) * f < np.maximum(2.0 * sr / N_FFT, HARMONIC_TOLERANCE * f)) \
        & (np.round(k) >= 1)
    band = (freqs > 0.8 * f) & (freqs < MAX_HZ)
    s = spec[:, :n][:, sounding]
    share = (s * (band & near)).sum(0) / np.maximum((s * band).sum(0), 1e-12)
    share[conf[:n][sounding] < MIN_CONFIDENCE] = 0.0
    expected = float(np.median(share))
    assert 0.4 < expected < 0.99  # the second tone's partials count against the share
    assert abs(_share(y) - expected) < 1e-4


def test_transfer_start_up_imports_neither_the_compiler_nor_the_tone_matcher(exported):
    """Loading a model and parsing the transfer command stay light: building the model on
    the meta device imported torch's compiler (1.5-2 s) and the --tone-aspects default the
    tone matcher (1.6 s) on every run."""
    code = ("import sys\n"
            "from ddsp_synth.cli import build_parser\n"
            "from ddsp_synth.model import load_model\n"
            "args = build_parser().parse_args(['transfer', 'x.wav', '--model', sys.argv[1],\n"
            "                                  '-o', 'y.wav'])\n"
            "assert args.tone_aspects == ('eq', 'dynamics', 'loudness'), args.tone_aspects\n"
            "load_model(sys.argv[1])\n"
            "print(sorted(m for m in ('torch._dynamo', 'ddsp_synth.tone.match')\n"
            "             if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_one_melody_passes_and_a_chord_gets_a_note(exported):
    from ddsp_synth.melodic import MIN_HARMONIC_SHARE
    from ddsp_synth.transfer import transfer_audio

    model, meta = load_model(exported)
    solo = synth_tone(3.0, 16000, 220.0)
    chord = sum(synth_tone(3.0, 16000, f, seed=i) for i, f in enumerate((220.0, 277.2, 329.6)))
    assert _share(solo) > 0.95 and _share(chord / 3) < 0.5
    _, info = transfer_audio(model, meta, solo, TransferOptions(), cache=False)
    assert info["warning"] is None and info["adjusted"]["harmonic_share"] > MIN_HARMONIC_SHARE
    _, info = transfer_audio(model, meta, chord / 3, TransferOptions(auto_adjust=False),
                             cache=False)
    assert "will not sound musical" in info["warning"]


def test_real_solos_pass_and_a_mix_of_them_does_not():
    from conftest import SHARED_DATA

    from ddsp_synth.audio_io import load_audio
    from ddsp_synth.melodic import MIN_HARMONIC_SHARE

    names = ("violin", "flute", "cello")
    paths = [SHARED_DATA / "train" / f"{n}.flac" for n in names]
    if not all(p.exists() for p in paths):
        pytest.skip("the shared data is absent")
    clips = [load_audio(p, 16000)[30 * 16000 : 40 * 16000] for p in paths]
    for name, clip in zip(names, clips):
        assert _share(clip) > MIN_HARMONIC_SHARE + 0.05, name
    # The harmonic check (issue 23) finds the three-part mix's common lower fundamental in
    # some frames, and more of its partials then count as harmonics: 0.69 without the check,
    # 0.80 with it, still under the threshold but no longer by 0.05.
    assert _share(sum(clips) / 3) < MIN_HARMONIC_SHARE - 0.01


def test_steady_low_confidence_sounds_and_jumpy_low_confidence_is_muted():
    """A low reed note read at confidence 0.3 with a steady pitch keeps sounding; breath
    noise (confidence 0.3, the estimate jumping about) is muted; a note's attack frames take
    its pitch."""
    n = 300
    rng = np.random.default_rng(0)
    f0 = np.full(n, 440.0)
    conf = np.full(n, 0.9)
    loud = np.full(n, -20.0)
    conf[100:130] = 0.3                      # 300 ms of a steady note CREPE doubts
    f0[100:130] = 246.0
    conf[200:230] = 0.3                      # 300 ms of noise: the estimate jumps
    f0[200:230] = 440.0 * 2 ** rng.uniform(-1, 1, 30)
    conf[260:264] = 0.1                      # an attack: 40 ms before the note is sure
    f0[260:264] = 900.0
    adj = adjust_features(f0, loud, conf, STATS, TransferOptions())
    muted = adj["loudness_db"] <= -100  # the model's quietest level less 20 dB
    # (the noise's last 40 ms lead into the next note: its attack, at the note's pitch)
    assert not muted[100:130].any() and muted[200:226].all() and not muted[226:230].any()
    assert not muted[260:264].any()
    np.testing.assert_allclose(adj["f0_hz"][260:264], adj["f0_hz"][264], rtol=1e-6)


def test_a_silent_output_is_explained_by_its_cause():
    """Sources at amount 0 silence the output whatever the input: the warning said the input
    was too quiet and told to use auto-adjust (already on)."""
    from ddsp_synth.transfer import TransferOptions, silence_warning

    silent = np.zeros(1600, np.float32)
    adjusted = {"muted_fraction": 0.0}
    off = TransferOptions(amounts={"harmonic": 0.0, "noise": 0.0})
    assert "harmonic and noise sources are at amount 0" in silence_warning(silent, adjusted, off)
    quiet = silence_warning(silent, adjusted, TransferOptions(auto_adjust=False))
    assert "too quiet" in quiet and "amount" not in quiet
    assert silence_warning(np.full(1600, 0.5, np.float32), adjusted, off) is None
    # auto-adjust already on: the advice is not to turn it on; a front end's own words
    on = silence_warning(silent, adjusted, TransferOptions())
    assert on.endswith("the input is too quiet for this model; raise --loudness-shift")
    page = {"quieter": "raise the quiet threshold", "auto_off": "turn auto-adjust off",
            "auto_on": "turn auto-adjust on", "louder": "raise the loudness shift"}
    assert silence_warning(silent, adjusted, TransferOptions(auto_adjust=False), page).endswith(
        "turn auto-adjust on or raise the loudness shift")


def test_the_progress_bar_stops_at_its_end(exported):
    """The shares' rounding does not carry a real bar past its total (tqdm then warns and
    shows a negative time left): 12 s went to 12.000000000000002."""
    import io
    import warnings

    from tqdm import tqdm

    model, meta = load_model(exported)
    audio = synth_tone(12.0, 16000, 233.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tqdm(total=12.0, file=io.StringIO()) as bar:
            transfer_audio(model, meta, audio, TransferOptions(), bar, cache=False)
            assert bar.n == 12.0


@pytest.mark.parametrize("name", ["violin", "trumpet"])
def test_turning_the_room_down_keeps_the_level(name):
    """A shipped room carries 14-18 dB of its model's level: the wet/dry mix plays the dry
    signal at the room's broadband gain, so reverb 0 and 0.5 sound as loud as 1 (within the
    colour the room adds), where a plain dry path was 14-18 dB quieter."""
    model, meta = load_model(name)
    audio = synth_tone(3.0, 16000, 392.0 if name == "violin" else 330.0)
    louds = {}
    for amount in (1.0, 0.5, 0.0):
        out, _ = transfer_audio(model, meta, audio,
                                TransferOptions(amounts={"reverb": amount}))
        louds[amount] = 10 * np.log10(np.mean(np.square(out, dtype=np.float64)))  # dB RMS
    assert abs(louds[0.0] - louds[1.0]) < 3.0 and abs(louds[0.5] - louds[1.0]) < 3.0, louds
