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


def test_grpo_rewards_kl_length_and_samples_are_followed_across_a_resume(tmp_path):
    """A GRPO run's events: the total reward and each reward function's mean per step, KL, completion length,
    eval reward and the latest sample completions (newest first), all JSON-ready; a resume cuts them back."""
    def grpo_log(step: int, correct: float) -> str:
        return line("log", step=step, max_steps=30, loss=0.01, reward=correct + 0.5, reward_std=0.2, kl=step / 1000,
                    **{"rewards/correct/mean": correct, "rewards/correct/std": 0.1, "rewards/format/mean": 0.5,
                       "completions/mean_length": 100.0 + step, "entropy": 0.7})

    def samples(step: int, n: int) -> str:
        return line("samples", step=step, samples=[
            {"prompt": f"q{step}.{i}", "completion": f"a{step}.{i}", "rewards": {"correct": 1.0, "format": None},
             "total": 1.0} for i in range(n)])

    path = tmp_path / "events.jsonl"
    path.write_text(line("start", max_steps=30, start_step=0) + samples(1, 4) + grpo_log(1, 0.0)
                    + "".join(grpo_log(s, s / 20) for s in range(2, 21)) + samples(10, 4) + samples(20, 4)
                    + line("eval", step=20, eval_loss=0.5, eval_reward=0.9))
    reader = EventsReader(path)
    snap = reader.snapshot()
    assert snap.reward == 1.5 and snap.kl == 0.02 and snap.reward_margin is None
    assert dict(snap.reward_function_series)["correct"][:2] == ((1, 0.0), (2, 0.1))
    assert [p[0] for p in snap.reward_series] == list(range(1, 21)) and snap.eval_reward_series == ((20, 0.9),)
    assert snap.completion_length_series[-1] == (20, 120.0) and snap.kl_series[0] == (1, 0.001)
    assert [(x["step"], x["prompt"]) for x in snap.samples][:5] == [(20, "q20.0"), (20, "q20.1"), (20, "q20.2"),
                                                                    (20, "q20.3"), (10, "q10.0")]
    data = json.loads(json.dumps(snap.to_dict(series=True)))  # JSON-ready, as /job_status returns it
    assert data["reward_function_series"]["format"][0] == [1, 0.5] and data["reward_series"][-1] == [20, 1.5]
    assert data["samples"][0] == {"step": 20, "prompt": "q20.0", "completion": "a20.0",
                                  "rewards": {"correct": 1.0, "format": None}, "total": 1.0}
    compact = snap.to_dict(series=False)
    assert "samples" not in compact and "reward_series" not in compact and compact["reward"] == 1.5
    with path.open("a") as fh:  # crash, resume from checkpoint 10: steps 11-20 and their samples are re-done
        fh.write(line("start", max_steps=30, start_step=10) + grpo_log(11, 0.9))
    snap = reader.snapshot()
    assert [p[0] for p in snap.reward_series][-2:] == [10, 11] and not snap.eval_reward_series
    assert [x["step"] for x in snap.samples] == [10] * 4 + [1] * 4


def test_samples_are_capped_and_kto_margins_are_followed(tmp_path):
    from trainer_backend.jobs.progress import MAX_SAMPLES

    path = tmp_path / "events.jsonl"
    path.write_text(line("start", max_steps=100, start_step=0) + "".join(
        line("samples", step=s, samples=[{"prompt": "p", "completion": "c", "rewards": {"r": s}, "total": s}] * 3)
        for s in range(1, 30)) + line("log", step=5, loss=0.6, kl=0.3, **{"rewards/margins": 1.25,
                                                                          "rewards/chosen": 0.5}))
    snap = EventsReader(path).snapshot()
    assert len(snap.samples) == MAX_SAMPLES and snap.samples[0]["step"] == 29 and snap.samples[-1]["step"] == 23
    assert (snap.reward_margin, snap.kl, snap.reward, snap.reward_function_series) == (1.25, 0.3, None, ())


def timed(event: str, t: float, **kw: Any) -> str:
    return json.dumps({"event": event, "time": t, **kw}) + "\n"


def test_elapsed_leaves_out_the_time_a_job_stood_stopped_and_a_resume_shows_its_phases(tmp_path):
    path = tmp_path / "events.jsonl"
    # Run 1 trains 100 s and is stopped; the job stands stopped for an hour; the resume prepares its data, loads
    # the model and restores the checkpoint (40 s), then trains 50 s more.
    path.write_text(timed("phase", 0.0, phase="preparing data") + timed("phase", 5.0, phase="loading model")
                    + timed("start", 10.0, max_steps=20, start_step=0)
                    + timed("log", 110.0, step=10, max_steps=20, loss=1.0, eta_seconds=100.0)
                    + timed("stopped", 110.0, step=10, checkpoint="checkpoints/checkpoint-10"))
    reader = EventsReader(path)
    snap = reader.snapshot(live=True, now=3000.0)
    assert snap.elapsed_seconds == 100.0 and snap.phase is None and snap.eta_seconds is None
    phases = []
    for t, kind, kw in ((3700.0, "phase", {"phase": "preparing data"}),
                        (3710.0, "preparing", {"progress": 0.5}),
                        (3720.0, "phase", {"phase": "loading model"}),
                        (3730.0, "phase", {"phase": "restoring checkpoint"})):
        with path.open("a") as fh:
            fh.write(timed(kind, t, **kw))
        snap = reader.snapshot(live=True, now=t + 5)
        phases.append((snap.phase, snap.phase_since))
        assert snap.elapsed_seconds == 100.0, "preparing a resume is not training time, nor is the stopped hour"
    assert phases == [("preparing data", 3700.0), ("preparing data", 3700.0), ("loading model", 3720.0),
                      ("restoring checkpoint", 3730.0)]
    with path.open("a") as fh:
        fh.write(timed("start", 3740.0, max_steps=20, start_step=10))
    snap = reader.snapshot(live=True, now=3740.0)
    assert snap.phase == "training" and snap.eta_seconds is None, "no ETA carried over from the run before"
    with path.open("a") as fh:
        fh.write(timed("log", 3790.0, step=20, max_steps=20, loss=0.5, eta_seconds=0.0)
                 + timed("finished", 3790.0, step=20))
    assert reader.snapshot(live=True, now=5000.0).elapsed_seconds == 150.0
