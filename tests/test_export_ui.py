"""Exporting a finished job from the Jobs tab and over the named API (/export_job, /export_status), on the real app.

One tiny job is trained and exported once (f16, q4_K_M, a Modelfile; 2 check prompts of 8 tokens): a person starts
the export in the browser, leaves the page and comes back to it still running; meanwhile a gradio_client script
follows the same export with /export_job (attached: the same options) and a second one with other options is
refused; the page then shows the check table with its verdicts in words, the files to download (a GGUF is
downloaded and read back), and /export_status answers what the stream ended with. Wrong values in each kind of
field are named by the field's label, beside the field in the page, and nothing starts.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import QUICK, AppServer  # noqa: E402
from browserhelpers import browser, field_error, open_job, server_paths_in, text_of  # noqa: E402,F401
from screenshots import shoot  # noqa: E402

pytestmark = pytest.mark.slow  # trains, exports with llama.cpp, starts the app and a browser
pytest.importorskip("llama_cpp", reason="GGUF export needs llama-cpp-python (requirements.txt)")

FORMATS = ["f16", "q4_K_M", "modelfile"]
NAME = "export-ui"
EXPORT_RUNNING = "#job-export-progress .ls-progress[data-status=running]"
EXPORT_SUCCEEDED = "#job-export-progress .ls-progress[data-status=succeeded]"


@pytest.fixture(scope="module")
def client(shared_app: AppServer) -> Any:
    from gradio_client import Client

    return Client(shared_app.url, verbose=False)


@pytest.fixture(scope="module")
def job(client: Any, shared_app: AppServer) -> dict:
    """A tiny job trained a few steps; while it is not finished, an export is refused."""
    from gradio_client.exceptions import AppError

    spec = QUICK.format(name=NAME, steps=4).replace("data: {", "data: {path: examples/capitals.jsonl, ")
    started = client.predict(spec, None, api_name="/start_training")
    assert started["status"] == "queued", started
    job_id = started["job_id"]
    with pytest.raises(AppError, match=rf"job {job_id} is (queued|running): wait until it finishes"):
        list(_stream(client.submit(job_id, FORMATS, "auto", 2, 8, "", api_name="/export_job")))
    snapshots = list(client.submit(job_id, 0.5, api_name="/job_events"))
    assert snapshots[-1]["status"] == "succeeded", snapshots[-1]
    job_dir = Path(client.predict(job_id, False, api_name="/job_status")["paths"]["job_dir"])
    assert not (job_dir / "export").exists(), "a refused export left something behind"
    return {"id": job_id, "dir": job_dir}


def _stream(job: Any) -> list:
    """Every item of a streaming call; its error is raised (iterating alone would swallow it)."""
    items = list(job)
    job.result()
    return items


@pytest.mark.parametrize("field, args, expect", [
    ("formats", ([],), "Export formats (formats): pick at least one format"),
    ("formats", (["f16", "q5_0"],), "'q5_0' is not a format; pick from merged, f16"),
    ("merged_dtype", (FORMATS, "fp8"), "Merged weights dtype (merged_dtype): must be 'auto', 'float16'"),
    ("check_prompts", (FORMATS, "auto", 0), "Check prompts (check_prompts): must be at least 1 (got 0)"),
    ("check_prompts", (FORMATS, "auto", 1000), "Check prompts (check_prompts): must be at most 64 (got 1000)"),
    ("check_tokens", (FORMATS, "auto", 2, 2.5), "Check tokens per prompt (check_tokens): must be a whole number"),
])
def test_a_wrong_value_is_named_by_its_label_and_nothing_starts(client: Any, job: dict, field: str, args: tuple,
                                                                 expect: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as refused:
        _stream(client.submit(job["id"], *args, api_name="/export_job"))
    assert expect in str(refused.value), str(refused.value)
    assert client.predict(job["id"], api_name="/export_status")["state"] == "none"
    assert not (job["dir"] / "export").exists()


def test_wrong_values_in_the_export_box_are_named_beside_their_fields(browser, shared_app: AppServer,  # noqa: F811
                                                                      job: dict) -> None:
    page = _jobs_page(browser, shared_app, job)
    page.locator("#job-export-next").click()
    page.locator("#export-check-prompts input").wait_for(state="visible", timeout=10_000)
    for field_id, value, expect in (("export-check-prompts", "0", "must be at least 1"),
                                    ("export-check-tokens", "1000", "must be at most 256")):
        box = page.locator(f"#{field_id} input")
        box.fill(value)
        box.press("Tab")
        page.wait_for_selector(f"#{field_id}.field-invalid", timeout=15_000)
        assert expect in (field_error(page, field_id) or ""), field_error(page, field_id)
    page.locator("#job-export").click()
    page.wait_for_function("() => /Cannot export/.test(document.querySelector('#job-export-message').innerText)",
                           timeout=15_000)
    shoot(page, "job-export-field-error", "#job-export-box")
    assert not page.locator("#job-export-files").is_visible(), "no empty file box that looks like an upload"
    assert "pick at least one format" in (field_error(page, "export-formats") or "")
    page.locator("#export-check-prompts input").fill("8")
    page.locator("#export-check-prompts input").press("Tab")
    page.wait_for_selector("#export-check-prompts.field-invalid", state="detached", timeout=15_000)
    assert not (job["dir"] / "export").exists(), "nothing may start from a form with wrong values"
    page.close()


def _jobs_page(browser: Any, app: AppServer, job: dict) -> Any:  # noqa: F811
    """The Jobs tab with `job` selected, as a person gets there."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    open_job(page, app, job["id"])
    page.locator("#job-export-next").wait_for(state="visible", timeout=30_000)
    return page


def test_export_in_the_browser_followed_over_the_api(browser, shared_app: AppServer, client: Any,  # noqa: F811
                                                     job: dict, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    page = _jobs_page(browser, shared_app, job)
    page.locator("#job-export-next").click()
    formats = page.locator("#export-formats")
    formats.wait_for(state="visible", timeout=10_000)
    for name in FORMATS:
        formats.get_by_label(name, exact=True).check()
    for field_id, value in (("export-check-prompts", "2"), ("export-check-tokens", "8")):
        page.locator(f"#{field_id} input").fill(value)
        page.locator(f"#{field_id} input").press("Tab")
    page.locator("#job-export").click()
    page.wait_for_selector(EXPORT_RUNNING, timeout=15_000)
    assert page.locator("#job-export").is_disabled(), "Export cannot be pressed again while the export runs"
    page.close()  # leaving the page stops nothing: the export runs in its own process

    followed = client.submit(job["id"], FORMATS, "auto", 2, 8, "", api_name="/export_job")
    with pytest.raises(AppError, match="an export of job .* is already running"):  # other options: refused
        _stream(client.submit(job["id"], ["f16"], "auto", 2, 8, "", api_name="/export_job"))

    page = _jobs_page(browser, shared_app, job)  # back to the page: the box opens by itself on the export
    page.wait_for_selector("#job-export-progress .ls-progress[data-status=running], " + EXPORT_SUCCEEDED,
                           timeout=15_000)
    running_again = page.locator(EXPORT_RUNNING).count() == 1
    assert page.locator("#export-check-prompts input").input_value() == "2", "the form shows what it runs with"
    assert [name for name in FORMATS if page.locator("#export-formats").get_by_label(name, exact=True)
            .is_checked()] == FORMATS
    page.wait_for_selector(EXPORT_SUCCEEDED, timeout=180_000)

    items = _stream(followed)
    assert items[0]["attached"] is True, items[0]
    fractions = [item["fraction"] for item in items]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 3, fractions
    final = items[-1]
    assert final["state"] == "succeeded", final["error"]
    rows = {row[1]: row for row in final["table"]}
    assert rows["f16"][final["columns"].index("Check")] == "✅ pass", final["table"]
    assert {f"{NAME}-f16.gguf", f"{NAME}-q4_K_M.gguf", "Modelfile"} <= set(final["files"]), final["files"]
    assert "notes" in final and final["message"].startswith("exported")
    assert not server_paths_in(json.dumps(final), shared_app)
    status = client.predict(job["id"], api_name="/export_status")
    assert status == {k: v for k, v in final.items() if k != "attached"}

    page.locator("#job-export-checks").scroll_into_view_if_needed()
    table = text_of(page, "#job-export-checks")
    assert "✅ pass" in table and f"{NAME}-f16.gguf" in table, table
    links = page.locator("#job-export-files a[download]")
    links.first.wait_for(timeout=20_000)
    shown = links.evaluate_all("els => els.map(e => e.getAttribute('download'))")
    assert {f"{NAME}-f16.gguf", f"{NAME}-q4_K_M.gguf", "Modelfile"} <= set(shown), shown
    with page.expect_download() as download:
        page.locator(f"#job-export-files a[download='{NAME}-q4_K_M.gguf']").click()
    saved = tmp_path / "model.gguf"
    download.value.save_as(saved)
    assert saved.read_bytes()[:4] == b"GGUF"
    assert saved.stat().st_size == (job["dir"] / "export" / f"{NAME}-q4_K_M.gguf").stat().st_size
    page.locator("#job-export-box").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, document.querySelector('#job-export-box').getBoundingClientRect().top - 20)")
    shoot(page, "job-export")
    assert running_again or items[0]["state"] == "running", "the page never saw the export running"
    page.close()


def test_download_copies_are_hard_links_of_big_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GGUF of several GB is handed out as a hard link (no second copy on disk); a small file is copied (the
    Modelfile is rewritten in place by a later export)."""
    from trainer_backend.jobs import exports as export_service

    src = tmp_path / "job" / "model.gguf"
    src.parent.mkdir()
    src.write_bytes(b"GGUF" + os.urandom(64))
    copied = export_service.link_or_copy(src, tmp_path / "copy.gguf")
    assert copied.stat().st_ino != src.stat().st_ino and copied.read_bytes() == src.read_bytes()
    monkeypatch.setattr(export_service, "COPY_BELOW_BYTES", 0)
    linked = export_service.link_or_copy(src, tmp_path / "link.gguf")
    assert linked.stat().st_ino == src.stat().st_ino
    (src.parent / "merged").mkdir()
    (src.parent / "merged" / "config.json").write_text("{}")
    import zipfile

    archive = export_service.zip_stored(src.parent / "merged", tmp_path / "merged.zip")
    assert zipfile.ZipFile(archive).namelist() == ["merged/config.json"]
