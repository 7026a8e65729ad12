"""Screenshots of the app for the docs, taken by tests/test_browser.py (and test_browser_sweep.py) while they drive real runs.

    python tests/screenshots.py       # runs the browser test and writes docs/screenshots/*.png

Every run of the browser test also keeps its shots in test-artifacts/; with LORA_STUDIO_SCREENSHOTS set (this
script sets it) they go to docs/screenshots/ as well. Shots are viewport-sized PNGs (not full pages) so each
stays well under 300 KB.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
DOCS_DIR = REPO / "docs" / "screenshots"
ENV = "LORA_STUDIO_SCREENSHOTS"


def shoot(page, name: str, selector: str | None = None) -> Path:
    """Save `name`.png of the viewport (or of one element) to test-artifacts/, and to docs/ when asked."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    for attempt in (1, 2):  # a page busy drawing charts can miss Playwright's frame deadline once
        try:
            if selector:
                page.locator(selector).screenshot(path=str(path), animations="disabled")
            else:
                page.screenshot(path=str(path), animations="disabled")
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; the second try raises
            if attempt == 2:
                raise
            page.wait_for_timeout(2000)
    if os.environ.get(ENV):
        DOCS_DIR.mkdir(parents=True, exist_ok=True)
        (DOCS_DIR / path.name).write_bytes(path.read_bytes())
    return path


if __name__ == "__main__":
    env = {**os.environ, ENV: "1"}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", str(REPO / "tests" / "test_browser.py"),
                              str(REPO / "tests" / "test_browser_sweep.py")],
                             cwd=REPO, env=env))
