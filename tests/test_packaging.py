"""The package as users install it: a wheel, installed into a fresh virtual environment, holds
every subpackage, imports them all and runs a command."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_environment_and_runs(tmp_path):
    pytest.importorskip("setuptools")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "dist"), str(REPO)])
    (wheel,) = (tmp_path / "dist").glob("ddsp_synth-*.whl")
    env_dir = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    # The dependencies come from this environment's site-packages (a plain path: its own .pth
    # files, the editable install of this checkout among them, are not run).
    Path(site.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", str(wheel)])
    probe = (
        "import importlib, pkgutil, ddsp_synth\n"
        "names = [m.name for m in pkgutil.walk_packages(ddsp_synth.__path__, 'ddsp_synth.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(ddsp_synth.__file__); print(' '.join(sorted(names)))\n")
    where, names = _run([str(python), "-c", probe], cwd=tmp_path).splitlines()
    assert where.startswith(str(env_dir))  # the installed copy, not this checkout
    for sub in ("dsp", "stages", "blackbox", "gradients", "gradients.proxy", "match",
                "streaming", "cli"):
        assert f"ddsp_synth.{sub}" in names.split()
    out = tmp_path / "demo.wav"
    _run([str(env_dir / "bin" / "ddsp-synth"), "demo", "-o", str(out), "--seconds", "0.5"],
         cwd=tmp_path)
    import soundfile as sf

    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) > 8000 and abs(audio).max() > 0.1
