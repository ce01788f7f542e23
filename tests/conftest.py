import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Caches (CREPE's ONNX graph, features per recording) go to a fresh folder, not ~/.cache.
os.environ.setdefault("DDSP_SYNTH_CACHE", tempfile.mkdtemp(prefix="ddsp_synth_cache_"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _children_stop_as_from_a_terminal():
    """Tests send SIGINT and SIGHUP to the commands they start, which leave a signal they
    inherit ignored (as nohup and a background job's shell set SIGHUP and SIGINT) ignored.
    Where this process ignores one, a handler that does nothing keeps ignoring it here, and
    exec gives the children the default, as a terminal would."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, lambda *_: None)


_children_stop_as_from_a_terminal()


def synth_tone(seconds, sr, f0_hz=220.0, vibrato_cents=20.0, seed=0):
    """A harmonic tone with vibrato, a swell and a short rest: [n] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = f0_hz * 2 ** (vibrato_cents / 1200 * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t) ** 2)
    env[(t % 2.0) > 1.8] *= 0.02  # a breath every 2 s
    return (y * env + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A prepared dataset of two 8 s tones (2 s examples, 2 s held out)."""
    from ddsp_synth.data import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("tiny")
    for i, f0 in enumerate((196.0, 262.0)):
        sf.write(root / f"tone{i}.wav", synth_tone(8.0, 16000, f0, seed=i), 16000)
    out = root / "data"
    prepare([root], out, PrepareConfig(example_seconds=1.0, example_hop_seconds=0.5,
                                       val_seconds=2.0), show_progress=False)
    return out


@pytest.fixture(scope="session")
def exported(tiny_dataset, tmp_path_factory):
    """A small model trained 20 steps on the tiny dataset and exported through the CLI."""
    import json

    from ddsp_synth.cli import main
    from test_train import FAST, SMALL

    root = tmp_path_factory.mktemp("pipe")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL.to_dict(), "train": FAST}))
    assert main(["train", str(tiny_dataset), "-o", str(root / "run"), "--config", str(cfg),
                 "--steps", "20", "--quiet"]) == 0
    assert main(["export", str(root / "run"), "-o", str(root / "model")]) == 0
    return root / "model"
