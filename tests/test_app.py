"""The app over its named API with gradio_client: real server on 127.0.0.1, real uploads, real training."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import QUICK, AppServer  # noqa: E402

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

ENDPOINTS = {"/validate_dataset", "/dataset_report", "/start_training", "/list_jobs", "/job_status", "/job_events",
             "/job_logs", "/stop_job", "/resume_job", "/continue_job", "/chat", "/compare", "/evaluate", "/plan_job",
             "/export_job", "/export_status", "/job_updates"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    server = AppServer(tmp_path_factory.mktemp("app") / "data")
    print(f"\napp cold start (process start -> HTTP 200): {server.cold_start_seconds:.1f} s")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(app: AppServer):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def _wait(client, job_id: str, statuses: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, False, api_name="/job_status")
        if status["status"] in statuses:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {statuses}; last: {status['status']}")


def test_named_endpoints_and_hidden_ui_helpers(client) -> None:
    api = client.view_api(return_format="dict", print_info=False)
    assert ENDPOINTS <= set(api["named_endpoints"])
    assert not api["unnamed_endpoints"], "UI-only events must stay off the API page"


def test_upload_validate_train_and_follow_a_job(client, real_data: Path) -> None:
    from gradio_client import handle_file

    data = handle_file(str(real_data / "chat/oasst_en100_messages.jsonl"))
    spec = QUICK.format(name="api-run", steps=4)
    planned = client.predict(spec, data, 0, "l4x1", api_name="/plan_job")
    assert planned["ok"] and planned["plan"]["steps"]["value"] == 4, planned
    assert planned["plan"]["memory_gib"]["peak"]["how"] == "estimated" and "peak memory" in planned["markdown"]
    report = client.predict(spec, data, api_name="/dataset_report")
    assert report["ok"] and report["report"]["format"]["format"] == "messages"
    started = client.predict(spec, data, api_name="/start_training")
    assert started["status"] == "queued", started
    job_id = started["job_id"]
    snapshots = list(client.submit(job_id, 0.5, api_name="/job_events"))
    assert snapshots[-1]["status"] == "succeeded"
    done = client.predict(job_id, True, api_name="/job_status")
    assert done["progress"]["step"] == 4 and [s for s, _ in done["progress"]["loss_series"]] == [1, 2, 3, 4]
    assert Path(done["paths"]["adapter"], "adapter_config.json").is_file()
    assert "uploads" in Path(done["paths"]["job_dir"]).parent.parent.joinpath("uploads").as_posix()
    assert any(j["id"] == job_id for j in client.predict(50, api_name="/list_jobs"))
    # The log a person reads is LoRA Studio's own lines; library chatter is kept apart in debug.log.
    log = client.predict(job_id, 500, api_name="/job_logs")
    assert "training: 4 steps on cpu" in log and "finished at step 4" in log, log
    for noise in ("kernels-community", "FutureWarning", "DeprecationWarning", "%|", "\u2588"):
        assert noise not in log, f"{noise!r} in the job log:\n{log}"
    assert Path(done["paths"]["job_dir"], "debug.log").stat().st_size > 0
    answer = ""
    for answer in client.submit(job_id, "Hello", [], "", 0.0, 0.9, 8, 1.0, api_name="/chat"):
        pass
    assert isinstance(answer, str)
    both = client.predict(job_id, "Hello", "", 0.0, 8, api_name="/compare")
    assert set(both) == {"base", "fine_tuned"}
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="validation split"):  # readable, not "verbose error reporting"
        client.predict(job_id, 5, 8, api_name="/evaluate")
    with pytest.raises(AppError, match="no job"):
        client.predict("nope1234", False, api_name="/job_status")


def test_stop_and_resume_a_second_job(client, real_data: Path) -> None:
    from gradio_client import handle_file

    data = handle_file(str(real_data / "chat/msft_gsm8k_chat_train_messages.jsonl"))
    job_id = client.predict(QUICK.format(name="long-run", steps=100000), data, api_name="/start_training")["job_id"]
    deadline = time.monotonic() + 120
    while client.predict(job_id, False, api_name="/job_status")["progress"]["step"] < 3:
        assert time.monotonic() < deadline, "training never got going"
        time.sleep(0.5)
    client.predict(job_id, api_name="/stop_job")
    stopped = _wait(client, job_id, {"stopped"}, 60)
    assert stopped["paths"]["last_checkpoint"]
    step_at_stop = stopped["progress"]["step"]
    assert client.predict(job_id, api_name="/resume_job")["status"] in ("queued", "running")
    deadline = time.monotonic() + 120
    while client.predict(job_id, False, api_name="/job_status")["progress"]["step"] <= step_at_stop:
        assert time.monotonic() < deadline, "resumed job did not continue"
        time.sleep(0.5)
    client.predict(job_id, api_name="/stop_job")
    _wait(client, job_id, {"stopped"}, 60)


@pytest.mark.parametrize("field, value", [("data", "{path: ../../../etc/passwd}"), ("data", "{path: /etc/passwd}"),
                                          ("model", "{base_model: /etc}"),
                                          ("training", "{resume_from_checkpoint: /tmp}")])
def test_client_paths_outside_the_app_folders_are_refused(client, field: str, value: str) -> None:
    spec = f"model: {{base_model: tiny-demo}}\ndata: {{path: examples/capitals.jsonl}}\n{field}: {value}\n"
    result = client.predict(spec, None, api_name="/start_training")
    assert result["job_id"] is None and result["status"] == "rejected"
    assert "outside" in result["error"] or "only 'latest'" in result["error"]
