"""What the README and the docs show exists: every image and every link to a file or folder
of the repository resolves, and every command the README runs names a real command."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "models").glob("*/MODEL_CARD.md")), REPO / "examples" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _tracked() -> set[str] | None:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout: the files on disk are what there is
    return set(out.split())


def _links(md: Path) -> list[str]:
    return [m for m in LINK.findall(md.read_text(encoding="utf-8"))
            if not re.match(r"[a-z][a-z0-9+.-]*:", m)]


@pytest.mark.parametrize("md", [d for d in DOCS if d.exists()], ids=lambda p: p.name)
def test_every_image_and_link_resolves(md):
    tracked = _tracked()
    missing = []
    for link in _links(md):
        target = (md.parent / link).resolve()
        rel = target.relative_to(REPO).as_posix() if REPO in target.parents else None
        if not target.exists():
            missing.append(link)
        elif tracked is not None and rel is not None and target.is_file() and rel not in tracked:
            missing.append(f"{link} (exists but is not committed)")
        elif tracked is not None and rel is not None and target.is_dir() and not any(
                t.startswith(rel + "/") for t in tracked):
            missing.append(f"{link} (a folder with nothing committed in it)")
    assert not missing, f"{md.name}: {missing}"


def test_the_readme_shows_its_first_image_and_example_outputs():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    images = [m for m in LINK.findall(text) if m.endswith((".png", ".jpg", ".gif", ".svg"))]
    assert images, "the README shows no image"
    png = (REPO / images[0]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    outputs = sorted((REPO / "examples" / "outputs").glob("*.flac"))
    assert len(outputs) >= 4


def test_every_ddsp_synth_command_in_the_readme_exists():
    from ddsp_synth.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    used = set(re.findall(r"ddsp-synth ([a-z][a-z-]+)", text))
    assert used and used <= set(sub.choices), used - set(sub.choices)


def test_the_example_outputs_are_what_the_code_makes_today(tmp_path):
    """The README plays ``examples/outputs``; re-rendered by ``scripts/make_readme_assets.py``
    they must come out the same, or the files are stale (they were once, after the models'
    rooms and the pitch analysis changed). The MIDI render is checked: fast and exact."""
    import soundfile as sf

    from ddsp_synth.cli import main

    out = tmp_path / "flute.flac"
    assert main(["render", str(REPO / "examples" / "ode_to_joy.mid"), "--model", "flute",
                 "-o", str(out), "--quiet"]) == 0
    new, sr = sf.read(out, dtype="float32")
    old, sr_old = sf.read(REPO / "examples" / "outputs" / "ode_to_joy_flute.flac",
                          dtype="float32")
    assert sr == sr_old and len(new) == len(old)
    assert abs(new - old).max() < 1e-3, ("examples/outputs is stale: run "
                                         "python scripts/make_readme_assets.py --outputs")
