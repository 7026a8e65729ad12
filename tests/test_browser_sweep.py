"""A sweep from the Train tab, in headless Chromium (issue 31): refused with the fix, started, its trials table filled,
its best trial promoted. Its own module (and app) beside tests/test_browser.py's newcomer walks."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import AppServer  # noqa: E402
from browserhelpers import Walk, app, browser, server_paths_in, text_of, visible_text  # noqa: E402,F401
from screenshots import shoot  # noqa: E402

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


def test_a_sweep_from_the_train_tab_fills_its_trials_and_promotes_the_best(browser, app: AppServer) -> None:
    """Train tab → Or find good settings: a sweep without evaluations is refused with the fix, a wrong cell of the
    table is named by row and column; with both fixed Start sweep opens the Jobs tab on the sweep, whose trials table
    fills (the baseline first, each trial's job a click away); Promote queues the best settings as a full run."""
    from gradio_client import Client

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    walk = Walk(page, app)
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    walk.open_section("sweep")
    walk.type("field-sweep-trials", "2")
    walk.click("#start-sweep")
    page.wait_for_function("() => /Fix these/.test(document.querySelector('#sweep-form-message').innerText)",
                           timeout=60_000)
    refusal = text_of(page, "#sweep-form-message")
    assert "sweep.pruner=hyperband stops trials at their evaluations: set data.valid_split" in refusal, refusal
    cell = page.locator("#sweep-parameters [data-testid=cell-0-2]")  # learning rate's "To"
    cell.dblclick()
    page.keyboard.press("Control+a")
    page.keyboard.type("lots")
    page.keyboard.press("Enter")
    walk.open_section("evaluation")
    walk.choose("field-data-valid-split", "auto")
    walk.type("field-data-valid-fraction", "0.2")
    walk.choose("field-training-eval-strategy", "steps")
    walk.type("field-training-eval-steps", "2")
    walk.open_section("training")
    walk.type("field-training-max-steps", "4")
    walk.type("field-lengths-block-size", "64")
    walk.type("field-project-name", "capitals-sweep")
    walk.click("#start-sweep")
    page.wait_for_function("() => /'To' must be a number/.test(document.querySelector('#sweep-form-message')"
                           ".innerText)", timeout=60_000)
    assert "row 1 (training.learning_rate): 'To' must be a number (it is 'lots')" in \
        text_of(page, "#sweep-form-message")
    page.evaluate("window.scrollBy(0, document.querySelector('#section-sweep').getBoundingClientRect().top - 10)")
    shoot(page, "sweep-form-error")
    cell.dblclick()
    page.keyboard.press("Control+a")
    page.keyboard.type("1e-2")
    page.keyboard.press("Enter")
    walk.click("#start-sweep")
    page.wait_for_function("() => /Sweep \\w+ queued/.test(document.querySelector('#sweep-form-message').innerText)",
                           timeout=240_000)  # a busy machine: the data check and the queueing take their time
    page.wait_for_selector("#sweep-box", state="visible", timeout=120_000)  # the Jobs tab, on the sweep
    assert "capitals-sweep" in page.locator("#job-select input").first.input_value()
    page.wait_for_function("() => /Best: trial/.test(document.querySelector('#sweep-summary').innerText) && "
                           "(document.querySelector('#sweep-trials').innerText.match(/complete/g) || []).length >= 2",
                           timeout=300_000)
    rows = text_of(page, "#sweep-trials")
    first = text_of(page, "#sweep-trials [data-testid=cell-0-0]") + text_of(page, "#sweep-trials [data-testid=cell-0-4]")
    assert "(yours)" in first and "learning_rate=0.0002" in first, rows  # the form's own settings go first
    assert "2 of 2 trials finished" in text_of(page, "#job-progress")
    assert not page.locator("#loss-plot").is_visible(), "a sweep trains nothing itself: no empty loss chart"
    page.wait_for_function("() => document.querySelectorAll('#sweep-objective-plot svg path[aria-label]').length >= 2",
                           timeout=30_000)
    page.evaluate("window.scrollBy(0, document.querySelector('#job-status').getBoundingClientRect().top - 10)")
    shoot(page, "sweep-jobs-tab")

    walk.click("#sweep-promote")
    page.wait_for_function("() => /trains the best settings/.test(document.querySelector('#sweep-message')"
                           ".innerText)", timeout=60_000)
    promoted = re.search(r"Job (\w+) \(capitals-sweep-best\)", text_of(page, "#sweep-message"))
    assert promoted, text_of(page, "#sweep-message")
    Client(app.url, verbose=False).predict(promoted[1], api_name="/stop_job")  # a full run: not this test's to pay
    page.locator("#sweep-trials [data-testid=cell-0-0]").click()  # the baseline's row opens its job
    page.wait_for_function("() => /capitals-sweep-t1/.test(document.querySelector('#job-status').innerText)",
                           timeout=30_000)
    assert page.locator("#loss-plot").is_visible() and not page.locator("#sweep-box").is_visible()
    assert not server_paths_in(visible_text(page), app)
