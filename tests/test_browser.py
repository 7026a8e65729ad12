"""A person in a browser: upload a dataset, see the preview and detected format, start a run, watch the
progress and the loss plot. Headless Chromium (Debian package) driven by Playwright; a screenshot is kept
in test-artifacts/."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import REPO, AppServer  # noqa: E402

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (make test does)")
    if CHROMIUM is None:
        pytest.fail("headless Chromium is missing: apt-get install chromium (make test does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    server = AppServer(tmp_path_factory.mktemp("browser") / "data")
    yield server
    server.stop()


def test_upload_preview_start_and_watch_the_loss_plot(browser, app: AppServer, real_data: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)

    page.locator("input[type=file]").first.set_input_files(str(real_data / "chat/oasst_en100_sharegpt.jsonl"))
    page.wait_for_selector("text=Detected format: sharegpt", timeout=60_000)
    assert page.locator("#preview").inner_text().count("from") > 0, "the preview shows the uploaded rows"

    page.get_by_role("button", name="Use demo settings").click()
    page.wait_for_function("() => document.querySelector('#preview') !== null")
    page.get_by_role("button", name="Check data & show report").click()
    page.wait_for_selector("text=Spec and data are valid", timeout=120_000)

    page.locator("#start-training").click()
    page.wait_for_selector("#job-status :text('running'), #job-status :text('succeeded')", timeout=120_000)
    page.wait_for_function(
        "() => { const p = document.querySelector('#loss-plot'); return p && p.querySelector('canvas, svg'); }",
        timeout=120_000)
    page.wait_for_function(  # at least a few logged steps: the plot then has a curve, not a placeholder
        "() => /step ([3-9]|\\d\\d+) \\//.test(document.querySelector('#job-status').innerText)",
        timeout=180_000)
    page.wait_for_timeout(2500)  # one more timer tick redraws the plot with the newest points
    progress = float(page.locator("#job-progress input[type=number]").input_value())
    assert progress > 0
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-training.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
