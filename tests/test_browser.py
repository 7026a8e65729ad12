"""The first five minutes of a newcomer, in headless Chromium: land, pick a model and a sample, take a preset, open
every settings section and change a value in each (one of them wrong first), check, start, watch the run, chat with
the result side by side with the base model, evaluate — without typing a spec key. Asserts what a person would see
go wrong: a field-named error beside the field, no stale "valid", the new job selected with drawn charts, one Chat
tab, both compare panes streaming, no server path in any visible text, no request leaving the machine. Records
clicks and seconds to the first training step (test-artifacts/newcomer-walk-*.json). The same walk at 390 px.
The form is also checked without training: an upload shows only its format's mapping fields and is stored once;
GRPO's section and a trainer's own fields appear only while that trainer is chosen; a config that fails to load
leaves the form as it was and lists its problems once; Undo puts back what a preset changed. In the Jobs tab, a
job whose evaluation report flags forgetting says so first in its Evaluation report box, and Compare runs shows
two jobs' reports side by side and the settings they differ in. Screenshots go to test-artifacts/ (and to
docs/screenshots/ via tests/screenshots.py)."""
from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import QUICK, REPO, AppServer  # noqa: E402
from browserhelpers import (RUNNING, SUCCEEDED, Walk, app, browser, field_error, open_job,  # noqa: E402,F401
                            parse_point, plotted_points, save_record, server_paths_in, tab_names, text_of,
                            visible_text, write_flagged_report)
from screenshots import shoot  # noqa: E402

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


def walk_to_start(walk: Walk, shot: str) -> None:
    """Landing → model → sample → Quick check preset → every section with a value changed (a wrong one first) →
    Check → Start. Asserts each form defect of the first five minutes is gone."""
    page = walk.page
    page.goto(walk.app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    assert tab_names(page).count("Chat / Evaluate") == 1
    shoot(page, f"{shot}-landing")
    walk.choose("base-model", "tiny-demo")
    walk.choose("sample-dataset", "capitals.jsonl")
    page.wait_for_selector("text=Detected format: messages", timeout=30_000)
    walk.click("#preset-quick")
    page.wait_for_function("() => /peak memory/.test(document.querySelector('#plan').innerText)", timeout=120_000)
    summary = text_of(page, "#preset-summary")
    assert "Rank 16 → 8" in summary and "Why:" in summary, summary
    assert "cost" not in text_of(page, "#plan").lower() or "no cost" in text_of(page, "#plan").lower()
    assert page.locator("#preset-undo").is_enabled()

    # A wrong value: named beside its field; Check refuses it by the field's name; never "valid".
    walk.open_section("training")
    walk.type("field-lengths-block-size", "3")
    page.wait_for_selector("#field-lengths-block-size.field-invalid", timeout=15_000)
    assert "must be at least 8" in (field_error(page, "field-lengths-block-size") or "")
    walk.click("#check-data")
    page.wait_for_function("() => /Fix these/.test(document.querySelector('#train-messages').innerText)",
                           timeout=30_000)
    refusal = text_of(page, "#train-messages")
    assert "Sequence length (tokens)" in refusal and "valid" not in refusal.replace("invalid", ""), refusal
    walk.type("field-lengths-block-size", "64")
    page.wait_for_selector("#field-lengths-block-size.field-invalid", state="detached", timeout=15_000)

    # Every section opened, a value changed in each; fields that do not apply appear only when they do.
    walk.open_section("model")
    walk.choose("field-model-attn-implementation", "sdpa")
    walk.open_section("data")
    walk.type("field-data-max-errors", "50")
    walk.open_section("lora")
    walk.type("field-lora-r", "16")
    walk.open_section("evaluation")
    walk.type("field-training-save-total-limit", "3")
    walk.open_section("hub")
    assert not page.locator("#field-hub-repo-id").is_visible()
    walk.tick("Push to the Hub when done")
    page.wait_for_selector("#field-hub-repo-id", state="visible", timeout=15_000)
    walk.tick("Push to the Hub when done", on=False)
    walk.open_section("compute")
    assert not page.locator("#field-compute-timeout").is_visible(), "HF Jobs settings hidden for a local run"
    walk.choose("field-compute-backend", "hf_jobs")
    page.wait_for_selector("#field-compute-timeout.field-invalid", timeout=15_000)  # hf_jobs needs a time limit
    shoot(page, f"{shot}-field-error", "#section-compute")
    walk.choose("field-compute-backend", "local")
    page.wait_for_selector("#field-compute-timeout", state="hidden", timeout=15_000)
    walk.type("field-project-name", "capitals-walk")

    walk.click("#check-data")
    page.wait_for_selector("text=Spec and data are valid", timeout=120_000)
    walk.open_section("lora")
    walk.type("field-lora-r", "8")  # a change after the check: the page must not go on saying "valid"
    page.wait_for_function("() => /changed since the last check/.test(document.querySelector('#train-messages')"
                           ".innerText)", timeout=15_000)
    assert "valid" not in text_of(page, "#train-messages")
    page.locator("#presets").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, document.querySelector('#presets').getBoundingClientRect().top - 140)")
    shoot(page, f"{shot}-train-tab")  # ③ with the preset's changes and reasons, ④ saying the check is stale
    walk.click("#start-training")


def watch_first_step(walk: Walk) -> str:
    """After Start: the Jobs tab opens on the new job, its first step shows, its charts are drawn."""
    page = walk.page
    page.wait_for_selector(RUNNING, timeout=120_000)
    page.wait_for_function("() => /step ([1-9]\\d*) \\//.test(document.querySelector('#job-progress').innerText)",
                           timeout=120_000)
    first_step = walk.seconds()
    job_id = page.locator("#job-select input").first.input_value()
    assert "capitals-walk" in job_id, f"Start selected another job: {job_id}"
    page.wait_for_function("() => document.querySelectorAll('#loss-plot svg path[aria-label]').length >= 1",
                           timeout=60_000)
    return f"{first_step:.1f}"


def walk_to_first_step(page, app: AppServer, shot: str) -> Walk:
    """The walk up to the first training step, with its clicks and seconds recorded (test-artifacts/)."""
    walk = Walk(page, app)
    walk_to_start(walk, shot)
    first_step = watch_first_step(walk)
    size = page.viewport_size
    record = {"viewport": f"{size['width']}x{size['height']}", "clicks_to_first_step": walk.clicks,
              "seconds_to_first_step": float(first_step)}
    save_record(f"newcomer-walk-{size['width']}", record)
    print(f"\nnewcomer walk at {size['width']} px: {record}")
    return walk


def test_newcomer_walk_train_watch_chat_compare_evaluate(browser, app: AppServer, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    walk = walk_to_first_step(page, app, "walk")
    page.wait_for_timeout(1500)
    shoot(page, "job-running")

    page.wait_for_selector(SUCCEEDED, timeout=180_000)
    assert page.locator("#job-stop").is_disabled(), "a finished job cannot be stopped"
    assert "ETA" not in text_of(page, "#job-progress")
    page.wait_for_timeout(2500)  # a tick after the end: the charts stay drawn
    points = [dict(parse_point(p["label"]), px=p["y"]) for p in plotted_points(page, "#loss-plot")]
    train = sorted((int(p["step"]), float(p["loss"]), p["px"]) for p in points if p.get("series") == "train loss")
    assert len(train) >= 10 and train[-1][1] < train[0][1] - 0.5, "the tiny model learns: the loss falls"
    assert train[-1][2] > train[0][2], "a falling loss is drawn going down (SVG y grows downwards)"
    (_, l0, y0), (_, l1, y1) = train[0], train[-1]
    for _, loss, y in train:  # quantitative: pixel height is a linear function of the value
        assert abs(y - (y0 + (loss - l0) * (y1 - y0) / (l1 - l0))) < 1.5
    x_ticks = page.eval_on_selector_all("#loss-plot svg [aria-label^='X-axis'] text, #loss-plot svg g.mark-text text",
                                        "els => els.map(e => e.textContent)")
    assert not [t for t in x_ticks if re.fullmatch(r"\d+\.\d+", t or "")], f"fractional step ticks: {x_ticks}"
    log = page.input_value("#job-log textarea")
    assert "finished at step 60" in log and not server_paths_in(log, app), log
    page.locator("#loss-plot").scroll_into_view_if_needed()
    shoot(page, "job-finished")

    link = page.locator("#job-downloads a[download='adapter.zip']").first  # the adapter as a zip
    link.wait_for(timeout=20_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "adapter.zip"
    download.value.save_as(saved)
    assert "adapter_config.json" in zipfile.ZipFile(saved).namelist()

    # Next step: chat with it, the base model answering beside it at the same time.
    walk.click("#job-chat")
    page.wait_for_function("() => /capitals-walk/.test(document.querySelector('#adapter-select input').value)",
                           timeout=15_000)
    assert tab_names(page).count("Chat / Evaluate") == 1, tab_names(page)
    walk.tick("Compare with the base model (same weights, adapter off)")
    page.wait_for_selector("#chat-base", state="visible", timeout=10_000)
    # What each pane shows, recorded in the page at every change (no round trip between a change and its record).
    page.evaluate("""() => { window.panes = []; const t0 = performance.now();
        const read = () => ['#chat-tuned', '#chat-base'].map(s => {
            const bots = [...document.querySelectorAll(s + ' [data-testid=bot]')];
            return [/capital of Peru/.test(document.querySelector(s).innerText),
                    bots.length ? bots[bots.length - 1].innerText : ''];
        });
        window.chatObserver = new MutationObserver(() => window.panes.push([performance.now() - t0, read()]));
        for (const s of ['#chat-tuned', '#chat-base']) window.chatObserver.observe(document.querySelector(s),
            {subtree: true, childList: true, characterData: true}); }""")
    page.locator("#chat-input textarea").fill("What is the capital of Peru?")
    page.locator("#chat-input textarea").press("Enter")
    page.wait_for_function("() => window.panes.length && window.panes[window.panes.length - 1][1].every("
                           "([asked, said]) => asked && said.length > 3 && !/^(…|⏳)/.test(said))", timeout=120_000)
    page.wait_for_timeout(1500)  # the last streamed tokens
    panes = page.evaluate("() => window.panes")
    asked = next(t for t, (tuned, base) in panes if tuned[0] and base[0])
    answered = [t for t, (tuned, base) in panes if tuned[1] and base[1] and not tuned[1].startswith(("…", "⏳"))]
    assert answered and asked < answered[0], "the question shows in both panes before any answer"
    final = panes[-1][1]
    partial = [(t, tuned[1], base[1]) for t, (tuned, base) in panes
               if 0 < len(tuned[1]) and 0 < len(base[1]) and tuned[1] != final[0][1] and base[1] != final[1][1]
               and not tuned[1].startswith(("…", "⏳")) and not base[1].startswith(("…", "⏳"))]
    first = {side: next((t for t, p in panes if p[i][1] and not p[i][1].startswith(("…", "⏳"))), None)
             for i, side in enumerate(("tuned", "base"))}
    print(f"\nchat: question shown {asked:.0f} ms after the first change; first tokens {first}; "
          f"{len(partial)} moments with both answers part-way")
    assert first["base"] is not None and first["tuned"] is not None
    assert abs(first["base"] - first["tuned"]) < 1000 or partial, f"the panes do not stream together: {first}"
    page.wait_for_timeout(1000)
    shoot(page, "chat-compare")

    page.get_by_text("Evaluate on held-out data").click()
    walk.click("#eval-run")
    page.wait_for_function("() => /n ?=|examples/.test(document.querySelector('#eval-summary').innerText)",
                           timeout=180_000)
    metrics = text_of(page, "#eval-metrics")
    assert not re.search(r"\d\.\d{5,}", metrics), f"raw floats: {metrics}"
    page.locator("#eval-summary").scroll_into_view_if_needed()
    shoot(page, "evaluate")

    for tab in ("Train", "Jobs", "Chat / Evaluate"):  # back and forth: still one of each, no server path anywhere
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(400)
        assert tab_names(page).count(tab) == 1, tab_names(page)
        assert not server_paths_in(visible_text(page), app), server_paths_in(visible_text(page), app)
    assert not walk.outside, f"requests leaving the machine: {walk.outside[:5]}"
    page.close()


def test_newcomer_walk_on_a_phone(browser, app: AppServer) -> None:
    """The same walk at 390 px: nothing runs off the side, every step is reachable; it starts, shows its first
    step, and the finished job's next steps (Chat with it, Evaluate) fit the screen and lead to its adapter."""
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    walk = walk_to_first_step(page, app, "phone")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than the phone"
    shoot(page, "job-running-phone")
    page.wait_for_selector(SUCCEEDED, timeout=180_000)
    for button in ("#job-chat", "#job-evaluate"):  # the next steps, within the phone's width
        box = page.locator(button).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 391, (button, box)
    walk.click("#job-chat")
    page.wait_for_function("() => /capitals-walk/.test(document.querySelector('#adapter-select input').value)",
                           timeout=15_000)
    shoot(page, "chat-phone")
    assert tab_names(page).count("Chat / Evaluate") == 1
    page.close()


# ---- the form without training ---------------------------------------------------------------------------
MAPPING_ROLES = ("text", "prompt", "input", "response", "messages", "system", "chosen", "rejected", "margin")


def _open(browser, app: AppServer, width: int = 1400) -> Walk:
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("text=Detected format", timeout=60_000)
    return Walk(page, app)


def test_an_upload_shows_its_mapping_and_is_stored_once(browser, app: AppServer, tmp_path: Path) -> None:
    walk = _open(browser, app)
    page = walk.page
    pairs = tmp_path / "my pairs.jsonl"  # preference rows: another format than the sample's, so the page shows it
    rows = (REPO / "tests" / "data" / "preference" / "orca_dpo_pairs_validation_flat.jsonl").read_text().splitlines()
    pairs.write_text("\n".join(rows[:20]) + "\n")
    page.locator("#dataset-upload input[type=file]").set_input_files(str(pairs))
    page.wait_for_selector("text=Detected format: preference", timeout=60_000)
    visible = {r for r in MAPPING_ROLES if page.locator(f"#map-{r}").is_visible()}
    assert visible == {"prompt", "chosen", "rejected", "margin", "system"}, visible
    walk.click("#check-data")  # Check and Plan each read the upload: one stored copy of the one file
    page.wait_for_selector("text=Spec and data are valid", timeout=120_000)
    walk.click("#plan-job")
    page.wait_for_function("() => /peak memory/.test(document.querySelector('#plan').innerText)", timeout=120_000)
    stored = [p for p in (app.data_dir / "uploads").rglob("*pairs.jsonl")]
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
    red = page.eval_on_selector_all(".field-invalid", "els => els.map(e => e.id + ': ' + e.innerText.slice(0, 200))")
    assert not red, f"no field turned red by a file that was not loaded: {red}"
    assert not page.get_by_text("Error", exact=True).count()
    walk.click("#preset-undo")
    page.wait_for_function("() => document.querySelector('#field-training-max-steps input').value === '-1'",
                           timeout=15_000)
    assert "undone" in text_of(page, "#preset-summary")
    page.close()


# ---- the Jobs tab: a finished job's evaluation report, and Compare runs ---------------------------------------
def test_a_flagged_report_and_compare_runs_in_the_jobs_tab(browser, app: AppServer) -> None:
    """Two tiny jobs that differ in lora.r; the first gets a report (written by hand) whose verdict flags a drop
    beyond noise on a general task. Its Evaluation report box opens by itself with that verdict first, in red, then
    the tables, the judge and the notes; Compare runs shows both reports side by side and a settings row lora.r."""
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    ids = []
    for rank in (4, 8):
        spec = QUICK.format(name=f"rank-{rank}", steps=2).replace("data: {", "data: {path: examples/capitals.jsonl, ")
        started = client.predict(spec + f"lora: {{r: {rank}, alpha: {2 * rank}}}\n", None, api_name="/start_training")
        assert started["status"] == "queued", started
        ids.append(started["job_id"])
    for job_id in ids:
        assert list(client.submit(job_id, 0.5, api_name="/job_events"))[-1]["status"] == "succeeded"
    write_flagged_report(Path(client.predict(ids[0], False, api_name="/job_status")["paths"]["job_dir"]))

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    open_job(page, app, ids[0])
    page.wait_for_selector("#job-report-summary .ls-verdict[data-flagged=true]", timeout=30_000)
    verdict = text_of(page, "#job-report-summary")
    assert verdict.startswith("⚠️ Verdict: +45.0 points exact match on your task") and \
        "a drop beyond noise on general tasks: lora_studio_text (stand-in for sciq) bits per byte +0.45" in verdict, verdict
    general = text_of(page, "#job-report-general")
    assert "drop beyond noise" in general and "lower is better" in general and "61.0 %" in general, general
    assert "+45.0 points [+25.0, +65.0]" in text_of(page, "#job-report-held-out")
    assert "win rate 70.0 %" in text_of(page, "#job-report-judge")
    assert "ran as its local stand-in" in text_of(page, "#job-report-notes")
    assert page.locator("#job-report-run").is_enabled()
    page.evaluate("window.scrollBy(0, document.querySelector('#job-report-box').getBoundingClientRect().top - 10)")
    shoot(page, "job-evaluation-report")
    box = page.locator("#evaluation-task-limit input")  # a wrong value: named beside its field, nothing starts
    box.fill("0")
    box.press("Tab")
    page.wait_for_selector("#evaluation-task-limit.field-invalid", timeout=15_000)
    assert "must be at least 1" in (field_error(page, "evaluation-task-limit") or "")
    page.locator("#job-report-run").click()
    page.wait_for_function("() => /Cannot evaluate/.test(document.querySelector('#job-report-message').innerText)",
                           timeout=15_000)
    assert "Examples per task: must be at least 1 (got 0)" in text_of(page, "#job-report-message")
    page.evaluate("window.scrollBy(0, document.querySelector('#evaluation-general-tasks').getBoundingClientRect()"
                  ".top - 10)")
    shoot(page, "job-evaluation-form-error")
    assert "ls-verdict" in page.inner_html("#job-report-summary"), "a refused run leaves the report as it was"

    page.locator("#compare-box > button.label-wrap").click()
    for job_id in ids:
        page.locator("#compare-select input").first.click()
        page.locator(f"ul[role=listbox] li[aria-label*='{job_id}']").first.click()
    page.wait_for_function("() => /lora\\.r/.test(document.querySelector('#compare-settings')?.innerText)",
                           timeout=30_000)
    settings = text_of(page, "#compare-settings")
    cells = [line.strip() for line in settings.splitlines() if line.strip()]  # one cell a line, row by row
    assert "lora.r" in cells and cells[cells.index("lora.r"):][:3] == ["lora.r", "4", "8"], settings
    evaluation = text_of(page, "#compare-evaluation")
    assert "⚠️ drop beyond noise" in evaluation and "not evaluated" in evaluation, evaluation
    page.keyboard.press("Escape")
    page.evaluate("window.scrollBy(0, document.querySelector('#compare-box').getBoundingClientRect().top - 10)")
    page.wait_for_timeout(500)
    shoot(page, "compare-runs")
    assert not server_paths_in(visible_text(page), app)
    page.close()
