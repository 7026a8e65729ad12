"""Headless Chromium (Debian's package, driven by Playwright) on the real app, for the browser tests: fixtures, a
`Walk` that clicks like a person and counts the clicks, and readers of what the page shows."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from apphelpers import REPO, AppServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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


class Walk:
    """A person at the page: every click, choice and typed value is counted (what the issue measures), and the
    page's outside requests are recorded (an air-gapped install must render the same)."""

    def __init__(self, page: Any, app: AppServer) -> None:
        self.page, self.app, self.clicks, self.started = page, app, 0, time.monotonic()
        self.outside: list[str] = []
        page.on("request", lambda r: self.outside.append(r.url) if "127.0.0.1" not in r.url
                and not r.url.startswith(("data:", "blob:")) else None)

    def click(self, selector: str) -> None:
        self.clicks += 1
        self.page.locator(selector).first.click()

    def open_section(self, group: str) -> None:
        """Open a settings section (and its 'More' part) by its title, as a person would."""
        for sid in (f"#section-{group}", f"#section-{group}-more"):
            box = self.page.locator(sid)
            if not box.count():
                continue
            label = box.locator("> button.label-wrap")
            label.wait_for(state="visible", timeout=10_000)  # an inner section appears once its outer one opened
            if box.locator("> [data-testid=accordion-content]").first.is_hidden():
                self.clicks += 1
                label.click()
                box.locator("> [data-testid=accordion-content]").first.wait_for(state="visible", timeout=10_000)

    def type(self, field_id: str, value: str) -> None:
        box = self.page.locator(f"#{field_id} input, #{field_id} textarea").first
        self.clicks += 1
        box.fill(value)
        box.press("Tab")

    def choose(self, field_id: str, option: str) -> None:
        self.clicks += 2  # open the list, pick
        self.page.locator(f"#{field_id} input").first.click()
        self.page.locator(f"ul[role=listbox] li[aria-label='{option}']").first.click()

    def tick(self, label: str, on: bool = True) -> None:
        self.clicks += 1
        box = self.page.get_by_label(label, exact=True)
        box.check() if on else box.uncheck()

    def seconds(self) -> float:
        return time.monotonic() - self.started


# Gradio's progress tracker ("processing | 0.2/0.1s", "queue: 1/2 | 0.3s", or its timer alone, "0.1s") sits inside a
# component while an event updates it: a line of its own, not what the component says.
_TRACKER = re.compile(r"^(?:processing \| |queue: \d+/\d+ \| )?[\d.]+(?:/[\d.]+)?s\n?", re.MULTILINE)


def text_of(page: Any, selector: str) -> str:
    return _TRACKER.sub("", page.locator(selector).first.inner_text())


def visible_text(page: Any) -> str:
    """Everything a person can read on the page now, form values included (a path in an input is visible too)."""
    return page.evaluate("""() => document.body.innerText + '\\n' + [...document.querySelectorAll('input, textarea')]
        .filter(e => e.offsetParent !== null).map(e => e.value).join('\\n')""")


def server_paths_in(text: str, app: AppServer) -> list[str]:
    """Server paths a page must never show: the data dir, the repository, temp and upload folders."""
    found = [p for p in (str(app.data_dir), str(app.data_dir.resolve()), str(REPO)) if p in text]
    found += re.findall(r"(?:/tmp/|/var/|/home/|/root/|/work/)[\w./-]+", text)
    return found


def field_error(page: Any, field_id: str) -> Optional[str]:
    """The error shown beside a field (its help line starts with a warning sign and the field is marked)."""
    marked = page.locator(f"#{field_id}.field-invalid")
    if not marked.count():
        return None
    return marked.first.locator(".info-text").first.inner_text()


def plotted_points(page: Any, selector: str) -> list[dict]:
    """Every point of a chart as the page draws it: its values from the ARIA label, its pixel position."""
    return page.eval_on_selector_all(f"{selector} svg path[aria-label]", """els => els.map(e => {
        const m = /translate\\(([-\\d.e]+),([-\\d.e]+)\\)/.exec(e.getAttribute('transform') || '');
        return {label: e.getAttribute('aria-label'), x: m ? +m[1] : null, y: m ? +m[2] : null};
    })""")


def parse_point(label: str) -> dict:
    return dict(part.split(": ", 1) for part in label.split("; "))


def tab_names(page: Any) -> list[str]:
    """The tab bar's entries a person sees (including an overflow menu's)."""
    return page.evaluate("() => [...document.querySelectorAll('[role=tab]')].filter(e => e.offsetParent !== null)"
                         ".map(e => e.innerText.trim())")


def save_record(name: str, record: dict) -> Path:
    import json

    out = REPO / "test-artifacts" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    return out


def write_flagged_report(job_dir: Path) -> dict:
    """A finished evaluation report in `job_dir` (evaluation.json) whose verdict flags a drop beyond noise on a
    general task: held-out rows, two general tasks (one a stand-in), a judge and a note, without measuring anything.
    Returns the record as written."""
    from trainer_backend.evaluation.harness import TaskScore
    from trainer_backend.evaluation.judge import JUDGE_TEMPLATE, JudgeResult
    from trainer_backend.evaluation.metrics import EvalReport
    from trainer_backend.evaluation.record import EvaluationRecord, write_record

    held = EvalReport(rows=20, base={"eval_loss": 2.41, "exact_match": 0.10}, fine_tuned={"eval_loss": 1.12,
                      "exact_match": 0.55}, counts={"base": {"exact_match": 20}, "fine_tuned": {"exact_match": 20}},
                      changes={"eval_loss": [-1.29, -1.5, -1.08], "exact_match": [0.45, 0.25, 0.65]})
    general = [TaskScore("lora_studio_text", "bits_per_byte", False, 1.50, 1.95, 40, [0.45, 0.38, 0.52],
                         stand_in_for="sciq", measures="knowledge", source="lora-studio"),
               TaskScore("arc_easy", "acc", True, 0.62, 0.61, 50, [-0.01, -0.06, 0.04])]
    judge = JudgeResult(judge="judge-model", template=JUDGE_TEMPLATE, prompts=10, wins=6, losses=2, ties=2,
                        win_rate=0.7, ci=[0.4, 0.89], position_consistency=0.8, first_position_rate=0.5)
    record = EvaluationRecord(state="succeeded", fraction=1.0, message="evaluated", held_out=held.to_dict(),
                              general=[g.to_dict() for g in general], judge=judge.to_dict(), finished=time.time(),
                              notes=["sciq (knowledge) ran as its local stand-in lora_studio_text: HF_HUB_OFFLINE is "
                                     "set"], seconds={"held_out": 12.0, "general": 30.5, "judge": 4.0})
    write_record(job_dir, record)
    return record.to_dict()


def open_job(page: Any, app: AppServer, job_id: str) -> None:
    """The Jobs tab with `job_id` picked in its job list, as a person gets there."""
    page.goto(app.url)
    page.get_by_role("tab", name="Jobs").click()
    page.locator("#job-select input").first.click()
    page.locator(f"ul[role=listbox] li[aria-label*='{job_id}']").first.click()
    page.wait_for_function(f"() => /{job_id}/.test(document.querySelector('#job-status').innerText)",
                           timeout=30_000)
