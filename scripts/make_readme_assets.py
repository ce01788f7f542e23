"""Make what the README shows: the example outputs and the screenshot of the web demo.

    python scripts/make_readme_assets.py              # both (needs Debian's chromium)
    python scripts/make_readme_assets.py --outputs    # only examples/outputs/

``examples/outputs/`` gets the results of the README's own commands on the example clips
(FLAC, 16 kHz); ``docs/app.png`` is the web demo after a transfer of the sung scale by the
violin, taken in headless Chromium (Playwright with Debian's browser: nothing downloaded).
Existing files are replaced (they are made by this script only).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
OUTPUTS = EXAMPLES / "outputs"
CLI = [sys.executable, "-m", "ddsp_synth"]

# (output name, command after `ddsp-synth`): the README's quick starts on the example clips
COMMANDS = (
    ("singing_scale_violin.flac",
     ["transfer", "examples/singing_scale.flac", "--model", "violin"]),
    ("singing_scale_cello.flac",
     ["transfer", "examples/singing_scale.flac", "--model", "cello"]),
    ("ode_to_joy_flute.flac", ["render", "examples/ode_to_joy.mid", "--model", "flute"]),
    ("ode_to_joy_trumpet.flac", ["render", "examples/ode_to_joy.mid", "--model", "trumpet"]),
    ("clarinet_melody_altosax.flac",
     ["transfer", "examples/clarinet_melody.flac", "--model", "altosax"]),
    ("singing_scale_violin_warm.flac",
     ["transfer", "examples/singing_scale.flac", "--model", "violin", "--effects",
      "examples/presets/warm_violin.json"]),
)


def make_outputs() -> None:
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    for name, command in COMMANDS:
        out = OUTPUTS / name
        subprocess.run(CLI + command + ["-o", str(out), "--force", "--quiet"], cwd=ROOT,
                       check=True)
        print(f"wrote {out.relative_to(ROOT)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_screenshot(path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: Debian's chromium is needed for the screenshot: apt-get install chromium")
    sys.path.insert(0, str(ROOT))
    import app

    demo = app.build(max_upload_mb=app.MAX_UPLOAD_MB)
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#audio_in input[type=file]",
                                 str(EXAMPLES / "singing_scale.flac"))
            page.wait_for_selector("#audio_in a[data-testid=download-link][href*='file=']")
            page.click("#run_btn")
            page.wait_for_selector("#audio_out a[data-testid=download-link][href*='file=']")
            page.wait_for_selector("#spec_plot img")
            time.sleep(2.0)  # the waveform players draw
            page.screenshot(path=str(path), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {path.relative_to(ROOT)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", action="store_true", help="only the example outputs")
    parser.add_argument("--screenshot", action="store_true", help="only docs/app.png")
    args = parser.parse_args(argv)
    if not args.screenshot:
        make_outputs()
    if not args.outputs:
        make_screenshot(ROOT / "docs" / "app.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
