"""events.jsonl is written and read through one typed record per event kind (trainer_backend/run_events.py): what a
writer records is what every reader gets back, a line that does not fit is skipped without hiding the others, and
no module reads an event as a loose dict."""
from __future__ import annotations

import ast
import json
import math
import typing
from pathlib import Path

import pytest

from trainer_backend import run_events as ev
from trainer_backend.jobs.progress import EventsReader
from trainer_backend.remote.restore import _last_outcome
from trainer_backend.training.events import EventLog

PACKAGE = Path(__file__).resolve().parents[1] / "trainer_backend"

ONE_OF_EACH: list[ev.RunEvent] = [
    ev.Preparing(phase="preparing", progress=0.5, rows=10, total_rows=20, rows_per_second=4.0, eta_seconds=2.5),
    ev.Phase(phase="loading model"),
    ev.FittedToHardware(changes=["QLoRA needs a GPU: this CPU run trains without it"]),
    ev.Start(max_steps=8, num_epochs=2.0, start_step=0, train_rows=30, valid_rows=3, device="cpu"),
    ev.Log(step=1, max_steps=8, epoch=0.25, progress=0.125, loss=2.5, learning_rate=1e-4, grad_norm=0.7,
           tokens_seen=512, tokens_per_second=900.0, elapsed_seconds=1.2, eta_seconds=8.4, peak_memory_bytes=10**8,
           peak_memory_device="RAM", **{"reward": 0.5, "rewards/exact_match/mean": 0.25, "kl": 0.01}),
    ev.Eval(step=2, epoch=0.5, eval_loss=2.0, **{"eval_reward": 0.75}),
    ev.Samples(step=2, samples=[ev.Sample(prompt="2+2?", completion="4", rewards={"exact_match": 1.0, "f": None},
                                          total=1.0)]),
    ev.Checkpoint(step=4, path="/jobs/x/checkpoints/checkpoint-4"),
    ev.OomAdjusted(step=5, error="CUDA out of memory", batch_size=2, gradient_accumulation=4, previous_batch_size=4,
                   previous_gradient_accumulation=2, resume_from="checkpoint-4"),
    ev.Stopped(step=6, checkpoint="checkpoint-6"),
    ev.Finished(step=8, metrics={"train_loss": 1.9}, adapter_dir="/jobs/x/adapter"),
    ev.Failed(error="data validation failed", kind="data", issues=["train.jsonl row 3, column 'messages': empty"],
              truncated=True),
    ev.Pushed(repo_id="me/run", url="https://hf.co/me/run", commit="abc", merged=False),
    ev.PushFailed(error="the Hub is unreachable", metrics={"train_loss": 1.9}),
    ev.CheckpointPulled(repo_id="me/lora-studio-job-x", checkpoint="checkpoint-4"),
    ev.SyncFailed(repo_id="me/lora-studio-job-x", error="503"),
    ev.RemoteSubmitted(flavor="a10g-small", nodes=1, job_ids=["j1"], url="https://hf.co/jobs/me/j1", repo_id="me/r"),
    ev.RemoteReattached(job_ids=["j1"]),
]


def test_every_kind_comes_back_from_the_file_as_it_was_written(tmp_path) -> None:
    assert sorted(type(r).__name__ for r in ONE_OF_EACH) == \
        sorted(t.__name__ for t in typing.get_args(typing.get_args(ev.AnyEvent)[0])), "a kind without a case here"
    log = EventLog(tmp_path)
    for record in ONE_OF_EACH:
        log.write(record)
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in lines] == list(ev.EVENT_KINDS)  # `event` first, the kind's name
    assert ev.read_events(tmp_path) == ONE_OF_EACH
    log_line = ev.read_events(tmp_path)[4]
    assert isinstance(log_line, ev.Log) and log_line.metric("rewards/exact_match/mean") == 0.25
    assert log_line.metric("loss") == 2.5 and log_line.metric("absent") is None


def test_the_module_docstring_names_every_kind() -> None:
    doc = ev.__doc__ or ""
    missing = [t.__name__ for t in typing.get_args(typing.get_args(ev.AnyEvent)[0]) if t.__name__ not in doc]
    assert not missing, f"run_events' docstring does not say who writes {missing}"


def test_nan_and_tensors_are_written_as_json_numbers_or_null(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    log = EventLog(tmp_path)
    log.write(ev.Log(step=1, loss=math.nan, **{"rewards/margins": torch.tensor(0.5), "kl": math.inf}))
    log.write(ev.Finished(step=1, metrics={"train_loss": math.nan}))
    raw = [json.loads(line) for line in log.path.read_text().splitlines()]  # strict JSON: no NaN literal
    assert raw[0]["loss"] is None and raw[0]["rewards/margins"] == 0.5 and raw[0]["kl"] is None
    assert raw[1]["metrics"] == {"train_loss": None}
    assert "NaN" not in log.path.read_text()


def test_a_line_that_does_not_fit_is_skipped_and_the_rest_are_read(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    good = [ev.to_json(ev.Start(max_steps=4)), ev.to_json(ev.Log(step=2, max_steps=4, loss=1.0))]
    path.write_text("\n".join([good[0], '{"event": "from_a_newer_version", "time": 1}', '{"event": "log", "step": '
                               '"two"}', "[1, 2]", "not json", good[1], ev.to_json(ev.Finished(step=4))]) + "\n")
    kinds = [r.event for r in ev.events_in_range(path)]  # type: ignore[attr-defined]
    assert kinds == ["start", "log", "finished"]
    snap = EventsReader(path).snapshot()
    assert (snap.step, snap.total_steps, snap.loss, snap.outcome, snap.runs) == (4, 4, 1.0, "finished", 1)


def test_a_restore_counts_the_latest_attempt_only() -> None:
    """A job continued after it finished, then cut off, is not restored as finished (a later `start` began)."""
    def lines(*records: ev.RunEvent) -> bytes:
        return "".join(ev.to_json(r) + "\n" for r in records).encode()

    first = [ev.Start(max_steps=4), ev.Finished(step=4, time=10.0)]
    assert _last_outcome(lines(*first)) == ("succeeded", 10.0)
    assert _last_outcome(lines(*first, ev.PushFailed(error="503", time=11.0))) == ("trained_not_pushed", 11.0)
    assert _last_outcome(lines(*first, ev.PushFailed(error="503"), ev.Pushed(repo_id="me/r", time=12.0))) == \
        ("succeeded", 12.0)
    assert _last_outcome(lines(*first, ev.Start(max_steps=8, start_step=4), ev.Log(step=5))) == (None, None)


def test_no_module_reads_an_event_as_a_dict() -> None:
    """`record.get("event")` / `record["event"]` outside run_events.py: read the typed record instead."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "run_events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                key = node.args[0].value
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            if key == "event":
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, "events read as dicts (use trainer_backend.run_events):\n" + "\n".join(offenders)


def test_an_outcome_means_the_same_status_to_restore_and_to_the_supervisor(tmp_path) -> None:
    """Without an exit code (a run restored from the Hub, or one that ended unwatched) lifecycle.decide reads the
    status from the outcome alone, as OUTCOME_STATUS says."""
    from trainer_backend.jobs.lifecycle import decide
    from trainer_backend.jobs.store import Job

    job = Job(id="j", name="j", status="running", job_dir=str(tmp_path), created_at=0.0)
    outcomes = [ev.Finished(step=1), ev.Stopped(step=1), ev.Failed(error="boom"), ev.PushFailed(error="503")]
    assert {type(o) for o in outcomes} == set(ev.OUTCOME_STATUS) == set(ev.OUTCOME_TYPES)
    for outcome in outcomes:
        assert decide(job, None, outcome)[0] == ev.OUTCOME_STATUS[type(outcome)], outcome
