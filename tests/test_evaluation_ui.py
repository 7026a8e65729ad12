"""The evaluation report from the Jobs tab's side of the app: /evaluate_job and /evaluation_report on the real app,
their access rules on a Space, the views the Evaluation box draws, and Compare runs' settings diff.

One tiny job is trained (with a held-out split) and one short real report runs through /evaluate_job (the local
task lora_studio_text, 5 examples each); a second asks for no general task. Wrong values are refused by the
field's label before anything starts. A Space (loopback Hub, no jobs) checks who may call the endpoints: visitors
and signed-in strangers get the members-only refusal, a member may not use a judge endpoint (the owner's API key)
nor name a folder outside their own, the owner may. What the box and Compare runs show is checked on records
written by hand (browserhelpers.write_flagged_report); the browser itself: tests/test_browser.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import QUICK, AppServer  # noqa: E402
from browserhelpers import server_paths_in, write_flagged_report  # noqa: E402

NAME = "evaluation-ui"
SIGN_IN = "duplicate this Space"  # every members-only refusal says how to get access


def _stream(job: Any) -> list:
    """Every item of a streaming call; its error is raised (iterating alone would swallow it)."""
    items = list(job)
    job.result()
    return items


# ---- what the box and Compare runs show, from records written by hand (no app, no model) -----------------------


def test_the_views_of_a_flagged_report(tmp_path: Path) -> None:
    from trainer_backend.evaluation.record import read_record
    from trainer_backend.ui.evaluation_panel import notes_markdown, report_html
    from trainer_backend.ui.evaluation_service import DROP_MARK, general_table, held_out_table, report_view

    write_flagged_report(tmp_path)
    view = report_view("job-1", read_record(tmp_path))
    assert view["state"] == "succeeded" and view["verdict"]["flagged"] and view["verdict"]["level"] == "drop"
    assert "a drop beyond noise on general tasks: lora_studio_text (stand-in for sciq)" in view["verdict"]["text"]
    held = held_out_table(view["held_out"])
    assert held[0][:3] == ["Loss", "2.410", "1.120"] and held[1][4] == "+45.0 points [+25.0, +65.0]", held
    stand_in, arc = general_table(view["general"])
    assert stand_in[:4] == ["lora_studio_text (stand-in for sciq)", "bits per byte (lower is better)", "1.5", "1.95"]
    assert stand_in[4].startswith("bits per byte +0.45 [+0.38, +0.52]") and stand_in[6] == DROP_MARK
    assert arc[2:4] == ["62.0 %", "61.0 %"] and arc[6] == "within noise", arc
    assert view["judge"]["summary"].startswith("Judge (judge-model) preferred the fine-tuned answer on 6 of 10")
    assert "{question}" in view["judge"]["template"]
    page = report_html(view)
    assert 'data-flagged="true"' in page and "⚠️ <b>Verdict: +45.0 points exact match" in page
    assert "ran as its local stand-in" in notes_markdown(view)
    failed = {**view, "state": "failed", "verdict": None,
              "error": "TaskError: 'no_such_task' is not an lm-evaluation-harness task: give a harness task name"}
    assert "<b>Evaluation failed:</b> TaskError: &#x27;no_such_task&#x27; is not" in report_html(failed)
    running = {**view, "state": "running", "fraction": 0.45, "message": "general task lora_studio_text (2/3)"}
    assert "evaluating… 45 % — general task lora_studio_text (2/3)" in report_html(running)
    assert report_view("job-2", None)["state"] == "none"


def test_the_settings_diff_names_each_differing_key_once() -> None:
    from trainer_backend.spec import parse_spec
    from trainer_backend.ui.run_compare import flatten, settings_diff

    def spec(name: str, **lora: Any) -> dict:
        return parse_spec({"project_name": name, "output_dir": f"/tmp/{name}", "model": {"base_model": "org/model"},
                           "data": {"path": "examples/capitals.jsonl"}, "lora": lora})[0].to_public_dict()

    assert flatten({"lora": {"r": 8, "target_modules": ["q", "v"]}, "seed": 1}) == \
        {"lora.r": 8, "lora.target_modules": ["q", "v"], "seed": 1}
    columns, rows = settings_diff({"a · 1": spec("a", r=4), "b · 2": spec("b", r=16, dropout=0.1),
                                   "c · 3": spec("c", r=4)})
    assert columns == ["Setting", "a · 1", "b · 2", "c · 3"]
    assert rows == [["lora.dropout", "0.05", "0.1", "0.05"], ["lora.r", "4", "16", "4"]], rows
    assert settings_diff({"a": spec("a"), "b": spec("b")})[1] == [], "the name and folder are no difference"


def test_compare_puts_the_reports_side_by_side(tmp_path: Path) -> None:
    from trainer_backend.evaluation.record import read_record
    from trainer_backend.ui.run_compare import evaluation_side_by_side

    write_flagged_report(tmp_path)
    columns, rows = evaluation_side_by_side({"flagged · 1": read_record(tmp_path), "new · 2": None})
    assert columns == ["Job", "Verdict", "Your task (held-out)",
                       "lora_studio_text (stand-in for sciq): bits per byte (lower is better)",
                       "arc_easy: acc (higher is better)"]
    assert rows[0][1:3] == ["⚠️ drop beyond noise", "+45.0 points exact match [+25.0, +65.0]"]
    assert rows[0][3].startswith("1.95 (change +0.45 [+0.38, +0.52]") and rows[0][4].startswith("61.0 % (change -1.0")
    assert rows[1] == ["new · 2", "not evaluated", "—", "—", "—"]


# ---- the endpoints on the real app ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(shared_app: AppServer) -> Any:
    from gradio_client import Client

    return Client(shared_app.url, verbose=False)


@pytest.fixture(scope="module")
def job(client: Any) -> dict:
    """A tiny job trained a few steps, with a held-out split; it was never evaluated (auto evaluation is off in the
    tests)."""
    spec = QUICK.format(name=NAME, steps=4).replace(
        "data: {", "data: {path: examples/capitals.jsonl, valid_split: auto, valid_fraction: 0.25, ")
    started = client.predict(spec, None, api_name="/start_training")
    assert started["status"] == "queued", started
    snapshots = list(client.submit(started["job_id"], 0.5, api_name="/job_events"))
    assert snapshots[-1]["status"] == "succeeded", snapshots[-1]
    job_dir = Path(client.predict(started["job_id"], False, api_name="/job_status")["paths"]["job_dir"])
    return {"id": started["job_id"], "dir": job_dir}


@pytest.mark.slow
@pytest.mark.parametrize("values, expect", [
    ({"task_limit": 0}, "Examples per task (task_limit): must be at least 1 (got 0)"),
    ({"time_budget": 5}, "Report time budget (seconds) (time_budget): must be at least 30 (got 5)"),
    ({"max_examples": 2.5}, "Held-out examples at most (max_examples): must be a whole number"),
    ({"tasks": ["/etc"]}, "task folder: '/etc' is outside the app's upload and data folders"),
    ({"tasks": ["examples"]}, "'examples' is not a folder of task YAML files"),
])
def test_a_wrong_value_is_refused_by_its_label_and_nothing_starts(client: Any, job: dict, values: dict,
                                                                   expect: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as refused:
        _stream(client.submit(job["id"], api_name="/evaluate_job", **values))
    assert expect in str(refused.value), str(refused.value)
    assert client.predict(job["id"], api_name="/evaluation_report")["state"] == "none"


@pytest.mark.slow
def test_a_short_report_streams_to_its_end(client: Any, job: dict, shared_app: AppServer) -> None:
    from gradio_client.exceptions import AppError

    api = client.view_api(return_format="dict", print_info=False)
    assert {"/evaluate_job", "/evaluation_report", "/evaluate"} <= set(api["named_endpoints"])
    assert not api["unnamed_endpoints"], "the Evaluation box's events stay off the API page"
    assert client.predict(job["id"], api_name="/evaluation_report")["message"] == "not evaluated yet"
    stream = client.submit(job["id"], ["lora_studio_text"], 5, 5, api_name="/evaluate_job")
    first = next(iter(stream))
    assert first["state"] == "running", first
    with pytest.raises(AppError, match=f"an evaluation of job {job['id']} is already running"):
        _stream(client.submit(job["id"], [], api_name="/evaluate_job"))
    items = [first, *_stream(stream)]
    fractions = [item["fraction"] for item in items]
    assert fractions == sorted(fractions) and len(items) >= 3, fractions
    final = items[-1]
    assert final["state"] == "succeeded", final["error"]
    assert final["verdict"]["level"] in ("ok", "drop") and final["verdict"]["text"], final["verdict"]
    assert final["held_out_rows"] == 5 and {"metric", "base", "fine-tuned", "change", "n", "meaning"} <= \
        set(final["held_out"][0]) and final["held_out"][0]["metric"] == "Loss", final["held_out"]
    (general,) = final["general"]
    assert general["task"] == "lora_studio_text" and general["n"] == 5 and general["metric"] == "bits_per_byte"
    assert general["change"].startswith("bits per byte ") and isinstance(general["drop_beyond_noise"], bool)
    assert final["judge"] is None and final["settings"]["task_limit"] == 5
    assert not server_paths_in(json.dumps(final), shared_app)
    assert client.predict(job["id"], api_name="/evaluation_report") == final

    # no general task: the held-out part alone, and a verdict that says there was no forgetting check
    items = _stream(client.submit(job["id"], tasks=[], max_examples=2, api_name="/evaluate_job"))
    final = items[-1]
    assert final["state"] == "succeeded" and final["general"] == [] and final["held_out_rows"] == 2, final
    assert final["verdict"]["level"] == "no_general" and "no forgetting check" in final["verdict"]["text"]


# ---- who may call them on a Space ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The app started as a Space on loopback (a loopback Hub knows the owner, a member and a stranger); no job is
    needed: every refusal below comes before a job is looked up."""
    from hub_server import HubServer
    from spacehelpers import MEMBER, OWNER, STRANGER, TOKEN_OF, TOKENS, client_as, start_space

    hub = HubServer(TOKENS).start()
    app = start_space(tmp_path_factory.mktemp("evaluation-space") / "data", hub.url, "")
    yield {"anonymous": client_as(app.url), "stranger": client_as(app.url, TOKEN_OF[STRANGER]),
           "member": client_as(app.url, TOKEN_OF[MEMBER]), "owner": client_as(app.url, TOKEN_OF[OWNER]),
           "member_name": MEMBER, "owner_name": OWNER}
    app.stop()
    hub.stop()


@pytest.mark.slow
def test_who_may_evaluate_on_a_space(space: dict) -> None:
    from spacehelpers import refusal_of

    calls = {"/evaluate_job": lambda c, **kw: _stream(c.submit("nojob", api_name="/evaluate_job", **kw)),
             "/evaluation_report": lambda c, **kw: c.predict("nojob", api_name="/evaluation_report")}
    for who in ("anonymous", "stranger"):
        for endpoint, call in calls.items():
            message = refusal_of(lambda: call(space[who]))
            assert SIGN_IN in message, f"{who} {endpoint}: {message}"
    endpoint = "https://judge.example/v1"
    message = refusal_of(lambda: calls["/evaluate_job"](space["member"], judge=endpoint))
    assert f"only the Space's owner ({space['owner_name']}) may use one" in message, message
    message = refusal_of(lambda: calls["/evaluate_job"](space["member"], tasks=["arc_easy", "/etc"]))
    assert "task folder: '/etc' is outside" in message, message
    # the owner may name a judge endpoint: their call goes on to the job, which does not exist here
    message = refusal_of(lambda: calls["/evaluate_job"](space["owner"], judge=endpoint))
    assert "nojob" in message and "only the Space's owner" not in message, message
    assert "nojob" in refusal_of(lambda: calls["/evaluation_report"](space["member"]))
    # a spec that names a judge endpoint (the report after training) is the owner's alone too
    spec = ("model: {base_model: org/model}\ndata: {path: examples/capitals.jsonl}\n"
            f"evaluation: {{judge: '{endpoint}'}}\n")
    checked = space["member"].predict(spec, None, api_name="/validate_dataset")
    assert not checked["ok"] and "only the Space's owner" in " ".join(checked["errors"]), checked
