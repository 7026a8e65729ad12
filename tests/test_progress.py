"""What the Jobs tab and /job_status read from a job's events.jsonl: folded incrementally, continuous over resumes,
the peak memory any run reported."""
from __future__ import annotations

import json
from typing import Any

from trainer_backend.jobs.progress import EventsReader


def line(event: str, **kw: Any) -> str:
    return json.dumps({"event": event, "time": 1000.0 + kw.get("step", 0), **kw}) + "\n"


def steps_of(snap: Any) -> list[int]:
    return [s for s, _ in snap.loss_series]


def test_snapshot_is_incremental_and_survives_resumes(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(line("start", max_steps=10, start_step=0) + "".join(
        line("log", step=s, max_steps=10, loss=10.0 - s, eta_seconds=10 - s) for s in range(1, 6))
        + line("checkpoint", step=3, path="ckpt-3"))
    reader = EventsReader(path)
    snap = reader.snapshot()
    assert (snap.step, snap.total_steps, snap.percent, snap.loss, snap.runs) == (5, 10, 50.0, 5.0, 1)
    # Crash after step 5, resume from checkpoint 3: steps 4-5 are re-done, the curve stays continuous.
    half = line("start", max_steps=10, start_step=3)
    with path.open("a") as fh:
        fh.write(half[:20])  # a line being written right now is not parsed yet
    assert reader.snapshot().runs == 1
    with path.open("a") as fh:
        fh.write(half[20:] + "".join(line("log", step=s, max_steps=10, loss=20.0 - s) for s in (4, 5, 6))
                 + line("eval", step=6, eval_loss=1.5) + line("finished", step=6, metrics={}))
    snap = reader.snapshot()
    assert steps_of(snap) == [1, 2, 3, 4, 5, 6] and snap.loss_series[3] == (4, 16.0)
    assert snap.runs == 2 and snap.eval_loss == 1.5 and snap.outcome == "finished" and snap.eta_seconds is None


def test_peak_memory_is_the_highest_any_run_reported(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(line("start", max_steps=10, start_step=0)
                    + line("log", step=1, loss=2.0, peak_memory_bytes=3 << 30, peak_memory_device="GPU")
                    + line("log", step=2, loss=1.9, peak_memory_bytes=5 << 30, peak_memory_device="GPU")
                    + line("start", max_steps=10, start_step=2)  # a resume starts with an empty allocator
                    + line("log", step=3, loss=1.8, peak_memory_bytes=4 << 30, peak_memory_device="GPU"))
    snap = EventsReader(path).snapshot()
    assert (snap.peak_memory_bytes, snap.peak_memory_device) == (5 << 30, "GPU")
    assert snap.to_dict(series=False)["peak_memory_bytes"] == 5 << 30
