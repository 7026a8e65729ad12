"""The command matrix over the app's API (issue 14): every trainer x format through /validate_dataset,
/dataset_report and /start_training on one started app, and the error cells — every expected failure reaches a
gradio_client caller as a readable message naming the fix, never "has not enabled verbose error reporting"."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from matrix import accepts, api_cells, resolve_sample, spec_for

pytestmark = pytest.mark.slow  # drives a started app (make test runs it)
OPAQUE = "verbose error reporting"
CELLS = api_cells()


@pytest.fixture(scope="module")
def client(shared_app):
    from gradio_client import Client

    return Client(shared_app.url, verbose=False)


@pytest.fixture(scope="module")
def demo_model(client, shared_app, tmp_path_factory) -> Path:
    """The app's tiny-demo model (built by its first use), whose tokenizer the generated samples need."""
    from gradio_client import handle_file

    sample = resolve_sample("text/c4_demo.jsonl", tmp_path_factory.mktemp("x"), Path("."))
    assert client.predict(json.dumps(spec_for("sft", sample, "tiny-demo")), handle_file(str(sample)),
                          api_name="/validate_dataset")["ok"]
    return shared_app.data_dir / "models" / "tiny-demo"


def _app_error(client, *args, api_name: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        result = client.predict(*args, api_name=api_name)
        if api_name in ("/job_events", "/chat"):  # streams: the error arrives with the first item
            list(result)
    message = str(info.value)
    assert OPAQUE not in message and "Traceback" not in message
    assert "jobs.db" not in message, f"a server path reached the client: {message}"
    return message


@pytest.mark.parametrize("trainer, fmt, sample", CELLS, ids=["-".join(c).replace("/", ".") for c in CELLS])
def test_api_cell(trainer: str, fmt: str, sample: str, client, demo_model: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    path = resolve_sample(sample, tmp_path, demo_model)
    spec = json.dumps(spec_for(trainer, path, "tiny-demo"))
    valid = client.predict(spec, handle_file(str(path)), api_name="/validate_dataset")
    report = client.predict(spec, handle_file(str(path)), api_name="/dataset_report")
    started = client.predict(spec, handle_file(str(path)), api_name="/start_training")
    if not accepts(trainer, fmt):
        for out in (valid, report):
            assert not out["ok"] and f"trainer '{trainer}' needs" in out["errors"][0] and "fix:" in out["errors"][0]
        assert started["status"] == "failed" and any(f"trainer '{trainer}' needs" in i for i in started["issues"])
        return
    assert valid["ok"] and valid["errors"] == [] and "report" not in valid
    assert report["ok"] and report["report"]["format"]["format"] == fmt
    assert report["report"]["trainer"] == trainer and report["report"]["sample"]["rendered"]
    assert started["status"] == "queued" and started["job_id"], started
    # the cell checks that the job is accepted; training it is the CLI matrix's job, so free the queue
    assert client.predict(started["job_id"], api_name="/stop_job")["status"] in ("stopped", "stopping")


def test_expected_failures_are_readable(client, real_data: Path) -> None:
    from gradio_client import handle_file

    for args, api in ((("nosuchjob", False), "/job_status"), (("nosuchjob", 0.2), "/job_events"),
                      (("nosuchjob", 10), "/job_logs"), (("nosuchjob",), "/stop_job"),
                      (("nosuchjob",), "/resume_job"), (("nosuchjob", 1.0), "/continue_job")):
        message = _app_error(client, *args, api_name=api)
        assert "no job 'nosuchjob'" in message and "/list_jobs" in message, api
    # the Hub (offline here): an adapter id that is neither a job nor a local folder
    message = _app_error(client, "nobody/no-such-adapter", "hi", api_name="/compare")
    assert "nobody/no-such-adapter" in message

    # invalid spec, missing file: refused with the reason, as data (no exception at all)
    bad = client.predict("training: {learning_rat: 1}\nmodel: {base_model: tiny-demo}\ndata: {path: x.jsonl}",
                         None, api_name="/validate_dataset")
    assert not bad["ok"] and "training.learning_rat: unknown key" in bad["errors"][0]
    rejected = client.predict("training: {learning_rat: 1}", None, api_name="/start_training")
    assert rejected["status"] == "rejected" and "unknown key" in rejected["error"]
    missing = client.predict(json.dumps(spec_for("sft", Path("examples/nope.jsonl"), "tiny-demo")), None,
                             api_name="/validate_dataset")
    assert not missing["ok"] and "nope.jsonl" in missing["errors"][0]

    # a finished job without a validation split: /evaluate and /resume_job say what to do instead
    path = real_data / "alpaca" / "self_instruct_seed_tasks.jsonl"
    job = client.predict(json.dumps(spec_for("sft", path, "tiny-demo", save_strategy="steps", save_steps=2)),
                         handle_file(str(path)), api_name="/start_training")
    last = [s for s in client.submit(job["job_id"], 0.5, api_name="/job_events")][-1]
    assert last["status"] == "succeeded", last
    message = _app_error(client, job["job_id"], 5, 16, api_name="/evaluate")
    assert "no validation split" in message and "valid_split: auto" in message
    message = _app_error(client, job["job_id"], api_name="/resume_job")
    assert "is succeeded" in message and "continue" in message
    assert "epochs must be > 0" in _app_error(client, job["job_id"], 0.0, api_name="/continue_job")


def test_unexpected_failure_is_logged_with_an_id_the_client_gets(caplog: pytest.LogCaptureFixture) -> None:
    import gradio as gr

    from trainer_backend.ui.gate import _wrap  # what every event of the app goes through

    def broken(job_id: str) -> dict:
        return {}["missing"]  # a bug, not a user error

    def broken_stream(job_id: str):
        yield 1
        raise RuntimeError("disk on fire")

    broken, broken_stream = _wrap(broken, False, True), _wrap(broken_stream, False, True)

    with caplog.at_level(logging.ERROR, logger="trainer_backend.api"):
        with pytest.raises(gr.Error) as info:
            broken("x")
        with pytest.raises(gr.Error) as streamed:
            list(broken_stream("x"))
    error_id = info.value.message.split("internal error ")[1].split()[0]
    assert "in broken (KeyError)" in info.value.message and "server log" in info.value.message
    records = [r for r in caplog.records if error_id in r.getMessage()]
    assert records and records[0].exc_info[0] is KeyError  # the traceback is on the server, under the id
    assert "RuntimeError" in streamed.value.message and "disk on fire" not in streamed.value.message
