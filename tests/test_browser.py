"""A person in a browser (headless Chromium, Debian's package, driven by Playwright): upload a messages
dataset (only its mapping fields show), load a small config, check the data, start, watch the run and read
the loss chart back from the page, download the adapter, and find it in the Chat tab without a click.
Screenshots go to test-artifacts/ (and to docs/screenshots/ via tests/screenshots.py)."""
from __future__ import annotations

import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import REPO, AppServer  # noqa: E402
from screenshots import shoot  # noqa: E402

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAPPING_ROLES = ("text", "prompt", "input", "response", "messages", "system", "chosen", "rejected", "margin")
# Small enough for ~30 s of training on 2 CPU cores; logs every 2 steps and evaluates twice. "Load config"
# fills the form from it; the uploaded dataset takes the place of data.path.
CONFIG = """
model: {base_model: tiny-demo}
data: {path: examples/capitals.jsonl, chat_template: chatml, valid_split: auto, valid_fraction: 0.1}
lengths: {block_size: 64}
lora: {r: 16, alpha: 32, dropout: 0.0}
training: {max_steps: 60, learning_rate: 3.0e-3, batch_size: 4, gradient_accumulation: 1, warmup_ratio: 0.0,
           scheduler: constant, packing: false, logging_steps: 2, eval_strategy: steps, eval_steps: 30,
           save_strategy: steps, save_steps: 30}
"""
RUNNING = "#job-progress .ls-progress[data-status=running]"
SUCCEEDED = "#job-progress .ls-progress[data-status=succeeded]"


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


def plotted_points(page, selector: str) -> list[dict]:
    """Every point of a chart as the page draws it: its values from the ARIA label, its pixel position."""
    return page.eval_on_selector_all(f"{selector} svg path[aria-label]", """els => els.map(e => {
        const m = /translate\\(([-\\d.e]+),([-\\d.e]+)\\)/.exec(e.getAttribute('transform') || '');
        return {label: e.getAttribute('aria-label'), x: m ? +m[1] : null, y: m ? +m[2] : null};
    })""")


def parse_point(label: str) -> dict:
    return dict(part.split(": ", 1) for part in label.split("; "))


def test_train_watch_download_and_chat(browser, app: AppServer, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)

    # A messages dataset: only the messages and system mapping fields are shown.
    page.locator("input[type=file]").first.set_input_files(str(REPO / "examples" / "capitals.jsonl"))
    page.wait_for_selector("text=Detected format: messages", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#map-text') === null || "
                           "document.querySelector('#map-text').offsetParent === null", timeout=10_000)
    visible = {r for r in MAPPING_ROLES if page.locator(f"#map-{r}").is_visible()}
    assert visible == {"messages", "system"}, visible

    config = tmp_path / "small.yaml"
    config.write_text(CONFIG)
    page.get_by_text("Job spec as YAML / CLI command").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#load-config").click()
    chooser.value.set_files(str(config))
    page.wait_for_timeout(2500)  # the form fills from the file (checked below: the run has 60 steps)
    page.get_by_role("button", name="Check data & show report").click()
    page.wait_for_selector("text=Spec and data are valid", timeout=120_000)
    page.locator("#plan-job").click()  # the plan before Start: memory by part, steps (60), how each was obtained
    page.wait_for_function("() => /peak memory/.test(document.querySelector('#plan').innerText)", timeout=60_000)
    plan = page.inner_text("#plan")
    assert "60 optimizer steps" in plan and "(estimated" in plan and "(counted" in plan, plan
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "train-tab")

    page.locator("#start-training").click()
    page.wait_for_selector(RUNNING, timeout=120_000)
    assert page.locator("#job-resume").is_disabled(), "a running job cannot be resumed"
    assert page.locator("#job-stop").is_enabled(), "a running job can be stopped"
    page.wait_for_function("() => /step ([6-9]|\\d\\d+) \\//.test(document.querySelector('#job-progress').innerText)",
                           timeout=120_000)
    label = page.locator("#job-progress").inner_text()
    assert re.search(r"\d+%", label) and "/ 60" in label and "tokens/s" in label and "e+" not in label, label
    page.wait_for_timeout(2500)
    shoot(page, "job-running")

    page.wait_for_selector(SUCCEEDED, timeout=180_000)
    finished_at = time.monotonic()
    assert page.locator("#job-stop").is_disabled(), "a finished job cannot be stopped"
    assert "ETA" not in page.locator("#job-progress").inner_text()
    page.wait_for_function("() => document.querySelectorAll('#loss-plot svg path[aria-label*=\"eval loss\"]')"
                           ".length >= 2", timeout=20_000)

    # The loss chart read back from the page: numbers on a linear y-axis, a falling loss drawn falling.
    y_axis = page.eval_on_selector_all("#loss-plot svg [aria-label^='Y-axis']", "els => els.map(e => e.getAttribute('aria-label'))")
    assert y_axis and "linear scale" in y_axis[0], y_axis
    points = [dict(parse_point(p["label"]), px=p["y"]) for p in plotted_points(page, "#loss-plot")]
    train = [(int(p["step"]), float(p["loss"]), p["px"]) for p in points if p.get("series") == "train loss"]
    evals = [float(p["loss"]) for p in points if p.get("series") == "eval loss"]
    assert len(train) >= 10 and len(evals) >= 2
    train.sort()
    assert train[-1][1] < train[0][1] - 0.5, "the tiny model learns: the loss falls"
    assert train[-1][2] > train[0][2], "a falling loss is drawn going down (SVG y grows downwards)"
    (_, l0, y0), (_, l1, y1) = train[0], train[-1]
    for _, loss, y in train:  # quantitative: pixel height is a linear function of the value
        assert abs(y - (y0 + (loss - l0) * (y1 - y0) / (l1 - l0))) < 1.5
    cards = page.inner_text("#job-metrics")
    assert re.search(r"peak (RAM|GPU)\s+[\d.]+ (MB|GB|GiB|MiB)", cards), cards  # the training process's peak
    at_end = "e => e.scrollTop + e.clientHeight >= e.scrollHeight - 4"
    page.wait_for_function(f"() => ({at_end})(document.querySelector('#job-log textarea'))", timeout=10_000)
    assert "finished at step 60" in page.input_value("#job-log textarea")  # the newest lines are in view
    page.locator("#loss-plot").scroll_into_view_if_needed()
    shoot(page, "job-finished")

    # Downloads: the adapter as a zip that holds adapter_config.json.
    link = page.locator("#job-downloads a[download='adapter.zip']").first
    link.wait_for(timeout=20_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "adapter.zip"
    download.value.save_as(saved)
    assert "adapter_config.json" in zipfile.ZipFile(saved).namelist()

    # The Chat tab lists the new adapter within 5 s of the job finishing, with no refresh click.
    page.get_by_role("tab", name="Chat / Evaluate").click()
    page.locator("#adapter-select input").click()
    page.wait_for_selector("ul[role=listbox] li", timeout=10_000)
    assert time.monotonic() - finished_at <= 5.0 + 1.0, "adapter listed late"  # +1 s: the test's own clicks
    page.locator("ul[role=listbox] li").first.click()
    page.get_by_label("Compare with the base model").check()
    page.locator("#chat-input textarea").fill("What is the capital of Peru?")
    page.locator("#chat-input textarea").press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chat-tuned .message-row, #chat-tuned [data-testid=bot]')"
                           ".length >= 1 && document.querySelectorAll('#chat-base [data-testid=bot]').length >= 1",
                           timeout=90_000)
    page.wait_for_function("() => !document.querySelector('#chat-tuned .generating, #chat-base .generating')",
                           timeout=90_000)
    page.wait_for_timeout(2000)  # the last streamed tokens
    shoot(page, "chat-compare")
    page.close()


def test_train_tab_fits_a_phone(browser, app: AppServer) -> None:
    """At 390 px nothing runs off the side: no horizontal scrolling, the primary path's buttons reachable."""
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    assert "fits this machine" in page.inner_text("#model-fit")  # the fit line is there before any change
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than the phone"
    for button in ("Check data & show report", "Start training"):
        box = page.get_by_role("button", name=button).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 391, (button, box)
    shoot(page, "train-tab-phone")
    page.close()


def test_grpo_shows_its_rewards_editor_only_for_grpo(browser, app: AppServer) -> None:
    """Choosing trainer grpo opens the rewards table (a ready default row) and the GRPO settings; another trainer
    hides them again. (The spec they make is tested in tests/test_reward_table.py.)"""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    assert not page.locator("#grpo-settings").is_visible()

    def choose(trainer: str) -> None:
        box = page.get_by_label("trainer", exact=True)
        box.click()
        page.locator(f"ul[role=listbox] li[aria-label='{trainer}']").click()

    choose("grpo")
    page.wait_for_selector("#grpo-settings", state="visible", timeout=30_000)
    table = page.locator("#grpo-rewards").inner_text()
    assert "numeric_match" in table and "answer" in table, table
    assert page.locator("#grpo-settings").get_by_label("num_generations").is_visible()
    page.locator("#grpo-settings").scroll_into_view_if_needed()
    shoot(page, "train-tab-grpo")
    choose("sft")
    page.wait_for_selector("#grpo-settings", state="hidden", timeout=30_000)
    page.close()
