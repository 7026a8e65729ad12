"""A sweep that trains (issue 31), on the tiny model on CPU: 6 trials over learning rate and rank with successive
halving; Stop pauses it and Resume continues the paused trial; then the machine "restarts" mid-sweep (every process
of the store SIGKILLed, a new manager reconciles, as an app starting again) and Resume finishes it. One sweep carries every acceptance point, because each trial is a training
process of its own. HF Jobs' sweep (2 trials at once): tests/test_hf_jobs.py; the spec and the parts that do not
train: tests/test_sweep_spec.py; the Train tab and the Jobs tab: tests/test_browser.py."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import processes_mentioning, wait_for  # noqa: E402

pytestmark = pytest.mark.slow  # trains (make test runs it)

ALPACA = Path(__file__).resolve().parent / "data" / "alpaca" / "self_instruct_seed_tasks.jsonl"
REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 30, 5


def sweep_spec(model: Path) -> dict[str, Any]:
    return {"project_name": "lr-rank", "model": {"base_model": str(model)},
            "data": {"path": str(ALPACA), "chat_template": "chatml", "valid_split": "auto", "valid_fraction": 0.25,
                     "max_rows": 48},
            "lengths": {"block_size": 128, "model_max_length": 256},
            "training": {"max_steps": STEPS, "batch_size": 4, "gradient_accumulation": 1, "logging_steps": EVERY,
                         "eval_strategy": "steps", "eval_steps": EVERY, "save_strategy": "steps", "save_steps": EVERY,
                         "learning_rate": 2e-4, "seed": 7},
            "evaluation": {"auto": False},
            "sweep": {"parameters": {"training.learning_rate": {"low": 1e-6, "high": 3e-2, "log": True},
                                     "lora.r": {"choices": [4, 16]}},
                      "trials": 6, "pruner": "successive_halving", "seed": 3}}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "store"
    monkeypatch.setenv("LORA_STUDIO_DATA_DIR", str(d))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield d
    deadline = time.monotonic() + 15  # supervisors exit on their own once the queue is empty
    while processes_mentioning(str(d)) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = processes_mentioning(str(d))
    for proc in survivors:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not survivors, f"processes outlived the test: {[p.pid for p in survivors]}"


def kill_the_machine(data_dir: Path) -> None:
    """Every process of the store (supervisor, the sweep's driver, the running trial) SIGKILLed at once."""
    procs = processes_mentioning(str(data_dir))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def test_a_pruned_sweep_survives_a_restart_and_beats_its_baseline(tiny_model_dir: Path, data_dir: Path) -> None:
    from trainer_backend.jobs import JobManager
    from trainer_backend.jobs.store import RESUMABLE
    from trainer_backend.job_files import latest_checkpoint
    from trainer_backend.run_events import Eval, Preparing, Start, Stopped, read_events
    from trainer_backend.spec import parse_spec
    from trainer_backend.sweep import actions

    manager = JobManager(data_dir)
    spec, _ = parse_spec(sweep_spec(tiny_model_dir))
    t0 = time.monotonic()
    sweep = actions.start(manager, spec)

    # Stop pauses the whole sweep: the running trial saves a checkpoint; Resume continues that very trial.
    def second_training() -> Any:
        live = [t for t in actions.status(manager, sweep.id)["trials"] if t["state"] == "running"]
        return live and live[0]["number"] == 1 and live[0]["intermediate"] and manager.get(live[0]["job_id"])

    paused = wait_for(second_training, 300, "trial 2 evaluated once")
    assert manager.stop(sweep.id, wait=True).status == "stopped"
    assert manager.get(paused.id).status == "stopped" and latest_checkpoint(paused.job_dir) is not None
    assert "saved a checkpoint: Resume continues them" in actions.status(manager, sweep.id)["message"]
    manager.resume(sweep.id)
    wait_for(lambda: manager.get(paused.id).attempt == 2, 60, "the paused trial resumed")

    # Mid-sweep: 3 trials done, the 4th's training process alive. Then the whole machine goes.
    def fourth_running() -> Any:
        record = actions.status(manager, sweep.id)
        done = [t for t in record["trials"] if t["state"] in ("complete", "pruned", "failed")]
        live = [t for t in record["trials"] if t["state"] == "running"]
        if len(done) >= 3 and live:
            job = manager.get(live[0]["job_id"])
            return job if job.pid and psutil.pid_exists(job.pid) else None
        return None

    victim = wait_for(fourth_running, 300, "a 4th trial training after 3 finished")
    before = {t["job_id"]: manager.get(t["job_id"]).attempt for t in actions.status(manager, sweep.id)["trials"]
              if t["state"] in ("complete", "pruned")}
    kill_the_machine(data_dir)
    saved = latest_checkpoint(victim.job_dir)  # what its resume must start from (None: it starts over)

    restarted = JobManager(data_dir)  # an app starting again: what died unwatched is interrupted
    assert restarted.get(sweep.id).status == "interrupted"
    assert restarted.get(victim.id).status == "interrupted"
    restarted.resume(sweep.id)
    done = restarted.wait(sweep.id, timeout=400)
    took = time.monotonic() - t0
    assert done.status == "succeeded", f"{done.error}\n{restarted.logs(sweep.id)}"

    record = actions.status(restarted, sweep.id)
    trials = record["trials"]
    assert len(trials) == 6 and len({t["job_id"] for t in trials}) == 6, trials
    for job_id, attempt in before.items():  # finished trials are never run again
        assert restarted.get(job_id).attempt == attempt
    again = restarted.get(victim.id)  # the interrupted trial is the same job, resumed, not a new trial
    assert again.attempt == 2 and victim.id in [t["job_id"] for t in trials]
    last_start = [e for e in read_events(again.job_dir) if isinstance(e, Start)][-1]
    assert (last_start.resumed_from or None) == (str(saved) if saved else None), (last_start, saved)

    # A pruned trial: stopped at an evaluation, long before its last step; its checkpoint kept, resumable.
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, f"no trial was pruned: {[(t['state'], t['intermediate']) for t in trials]}"
    job = restarted.get(pruned[0]["job_id"])
    assert job.status == "pruned" and job.status in RESUMABLE and latest_checkpoint(job.job_dir) is not None
    evs = read_events(job.job_dir)
    stop = next(e for e in evs if isinstance(e, Stopped))
    evals = [e.step for e in evs if isinstance(e, Eval)]
    assert stop.reason == "pruned" and stop.step is not None and stop.step < STEPS, stop
    assert pruned[0]["pruned_at_step"] in evals and pruned[0]["pruned_at_step"] <= stop.step
    assert f"pruned at its evaluation at step {pruned[0]['pruned_at_step']}" in (stop.note or "")
    for row in pruned:  # pruned fairly: an earlier trial did strictly better at that very evaluation step (the
        k = row["pruned_at_step"]  # pruner records each trial's rung as it passes it, a resumed trial's too)
        earlier = [v for t in trials[:row["number"]] for s, v in t["intermediate"] if s == k]
        assert earlier and min(earlier) < dict(row["intermediate"])[k], (row, trials)

    # The best trial is no worse than the spec's own settings (trial 1, the same seed and data).
    baseline = trials[0]
    assert baseline["baseline"] and baseline["params"] == {"training.learning_rate": 2e-4, "lora.r": 16}
    assert baseline["state"] == "complete"
    best = next(t for t in trials if t["number"] == record["best"])
    assert best["value"] <= baseline["value"], (best, baseline)

    # Every trial reused the data prepared once (the prepared-data cache), none prepared it again.
    for t in trials:
        phases = {e.phase for e in read_events(restarted.get(t["job_id"]).job_dir) if isinstance(e, Preparing)}
        assert phases == {"cached"}, (t["number"], phases)

    out = subprocess.run([sys.executable, "-m", "trainer_backend", "sweep", "--status", sweep.id, "--data-dir",
                          str(data_dir)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and f"trial {best['number'] + 1} [complete]" in out.stdout, out.stdout + out.stderr
    print(f"\nsweep of 6 trials with a restart: {took:.0f} s; {len(pruned)} pruned; best {best['value']:.4f} vs "
          f"baseline {baseline['value']:.4f}")
