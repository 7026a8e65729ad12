"""The Train tab's form in headless Chromium, without training: an upload shows only its format's mapping fields
and is stored once however often it is checked; GRPO's section (rewards table) and a trainer's own fields appear
only while that trainer is chosen; a config that fails to load leaves the form as it was and lists its problems
once; Undo puts back what a preset changed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import REPO, AppServer  # noqa: E402
from browserhelpers import Walk, app, browser, server_paths_in, text_of, visible_text  # noqa: E402,F401
from screenshots import shoot  # noqa: E402

pytestmark = pytest.mark.slow  # starts the app and a browser

MAPPING_ROLES = ("text", "prompt", "input", "response", "messages", "system", "chosen", "rejected", "margin")


def _open(browser, app: AppServer, width: int = 1400) -> Walk:
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    return Walk(page, app)


def test_an_upload_shows_its_mapping_and_is_stored_once(browser, app: AppServer) -> None:
    walk = _open(browser, app)
    page = walk.page
    page.locator("#dataset-upload input[type=file]").set_input_files(str(REPO / "examples" / "capitals.jsonl"))
    page.wait_for_selector("text=Detected format: messages", timeout=60_000)
    visible = {r for r in MAPPING_ROLES if page.locator(f"#map-{r}").is_visible()}
    assert visible == {"messages", "system"}, visible
    walk.click("#check-data")  # Check and Plan each read the upload: one stored copy of the one file
    page.wait_for_selector("text=Spec and data are valid", timeout=120_000)
    walk.click("#plan-job")
    page.wait_for_function("() => /peak memory/.test(document.querySelector('#plan').innerText)", timeout=120_000)
    stored = [p for p in (app.data_dir / "uploads").rglob("capitals.jsonl")]
    assert len(stored) == 1, stored
    assert not server_paths_in(visible_text(page), app)
    page.close()


def test_grpo_settings_show_only_for_grpo(browser, app: AppServer) -> None:
    walk = _open(browser, app)
    page = walk.page
    assert not page.locator("#section-grpo").is_visible()
    assert not page.locator("#field-training-beta").is_visible()
    walk.choose("field-training-trainer", "grpo")
    page.wait_for_selector("#section-grpo", state="visible", timeout=30_000)
    walk.open_section("grpo")
    table = page.locator("#grpo-rewards").inner_text()
    assert "numeric_match" in table and "answer" in table, table
    assert page.locator("#section-grpo").get_by_label("Completions per prompt").is_visible()
    page.locator("#section-grpo").scroll_into_view_if_needed()
    shoot(page, "train-tab-grpo")
    walk.choose("field-training-trainer", "dpo")
    page.wait_for_selector("#section-grpo", state="hidden", timeout=30_000)
    page.wait_for_selector("#field-training-beta", state="visible", timeout=15_000)  # dpo's own knobs appear
    page.close()


def test_a_bad_config_leaves_the_form_as_it_was_and_undo_reverts_a_preset(browser, app: AppServer,
                                                                          tmp_path: Path) -> None:
    walk = _open(browser, app)
    page = walk.page
    walk.click("#preset-balanced")
    page.wait_for_function("() => /Balanced/.test(document.querySelector('#preset-summary').innerText)",
                           timeout=60_000)
    walk.open_section("training")
    walk.open_section("lora")
    assert page.locator("#field-training-max-steps input").input_value() == "150"  # the preset's, for tiny-demo
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {base_model: tiny-demo}\ndata: {path: x.jsonl}\nlengths: {block_size: 3}\n"
                   "lora: {r: 0}\n")
    page.get_by_text("Job spec as YAML / CLI command").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#load-config").click()
    chooser.value.set_files(str(bad))
    page.wait_for_function("() => /Cannot load bad.yaml/.test(document.querySelector('#train-messages').innerText)",
                           timeout=30_000)
    message = text_of(page, "#train-messages")
    assert message.count("lengths.block_size") == 1 and "lora.r" in message and "unchanged" in message, message
    assert page.locator("#field-training-max-steps input").input_value() == "150", "a failed load changes nothing"
    assert not page.locator(".field-invalid").count(), "no field turned red by a file that was not loaded"
    assert not page.get_by_text("Error", exact=True).count()
    walk.click("#preset-undo")
    page.wait_for_function("() => document.querySelector('#field-training-max-steps input').value === '-1'",
                           timeout=15_000)
    assert "undone" in text_of(page, "#preset-summary")
    page.close()
