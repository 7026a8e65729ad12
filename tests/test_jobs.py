"""Jobs (issue 3): background training supervised across restarts, with progress, stop and resume.

Real training runs of a tiny model on CPU. Every test gets its own data dir, and a fixture proves that no
process mentioning it (supervisor or trainer) outlives the test: no orphans, ever. The numbers the issue
asks for (stop latency, snapshot cost, survivors) are printed by the last test and written to
test-artifacts/jobs_measurements.json.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import WAIT, wait_for  # noqa: E402
from trainer_backend.jobs import JobManager, JobStateError, JobStore  # noqa: E402
from trainer_backend.jobs.store import MIGRATIONS
from trainer_backend.jobs.paths import default_data_dir
from trainer_backend.jobs.procs import is_alive

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

ALPACA = Path(__file__).resolve().parent / "data" / "alpaca" / "self_instruct_seed_tasks.jsonl"
REPO = Path(__file__).resolve().parents[1]
# One BLAS thread per trainer: on 2 shared cores OpenMP spin-waiting otherwise makes a step 20-40x slower.
JOB_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MEASURED: dict[str, Any] = {"survivors": []}


# ---- fixtures & helpers ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def jobs_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer_backend.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("jobs-tiny-model") / "tiny")


def procs_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.info["status"] != psutil.STATUS_ZOMBIE \
                    and text in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private store, and the guarantee that nothing started for it survives the test."""
    d = tmp_path / "store"
    monkeypatch.setenv("LORA_STUDIO_DATA_DIR", str(d))
    yield d
    deadline = time.monotonic() + 15  # supervisors exit on their own once the queue is empty
    while procs_mentioning(str(d)) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = procs_mentioning(str(d))
    for proc in survivors:  # record, clean up, then fail: never leave processes behind for the next test
        with contextlib.suppress(psutil.Error):
            MEASURED["survivors"].append(" ".join(proc.cmdline()))
            proc.kill()
    assert not survivors, f"processes outlived the test: {[p.pid for p in survivors]}"


def write_spec(path: Path, model: Path, max_rows: int | None = None, **training: Any) -> Path:
    data: dict[str, Any] = {"path": str(ALPACA), "chat_template": "chatml", "max_rows": max_rows}
    spec = {"project_name": "t", "model": {"base_model": str(model)}, "lengths": {"block_size": 256},
            "data": {k: v for k, v in data.items() if v is not None},
            "training": {"max_steps": 6, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                         "save_strategy": "steps", "save_steps": 3, **training}}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def events(job: Any, kind: str | None = None) -> list[dict]:
    out = [json.loads(line) for line in job.events_path.read_text().splitlines() if line.strip()]
    return [e for e in out if kind is None or e["event"] == kind]


def steps_of(snap: Any) -> list[int]:
    return [s for s, _ in snap.loss_series]


def assert_gone(*pids: int) -> None:
    assert not [pid for pid in pids if is_alive(pid)], "a process is still alive"


def trainer_pids(data_dir: Path) -> list[int]:
    return [p.pid for p in procs_mentioning(str(data_dir)) if "train" in p.cmdline()]


def ckpt_step(path: str) -> int:
    return int(Path(path).name.split("-")[1])


def cli_prefix() -> list[str]:
    """`python -m trainer_backend` once the jobs commands are wired into the main CLI, else the jobs entry."""
    from trainer_backend.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # argparse prints usage on an unknown command
            build_parser().parse_args(["jobs", "list"])
        return [sys.executable, "-m", "trainer_backend"]
    except SystemExit:
        return [sys.executable, "-m", "trainer_backend.jobs"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_prefix(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


# ---- end-to-end ----------------------------------------------------------------------------------------
def test_submit_runs_to_success_then_continue_for_more_epochs(data_dir, jobs_tiny_model, tmp_path):
    jm = JobManager()
    assert jm.data_dir == data_dir.resolve()
    spec = write_spec(tmp_path / "s.yaml", jobs_tiny_model, max_rows=8, max_steps=-1, save_strategy="epoch")
    job = jm.submit(spec, env=JOB_ENV)
    assert job.status == "queued" and Path(job.job_dir) == data_dir / "jobs" / job.id
    assert wait_for(lambda: jm.get(job.id).pid, what="a training process") and jm.get(job.id).status == "running"
    done = jm.wait(job.id, timeout=WAIT)
    assert done.status == "succeeded" and done.exit_code == 0, (done.error, jm.logs(job.id))
    kinds = [e["event"] for e in events(done)]
    assert set(kinds[:kinds.index("start")]) == {"preparing", "phase"} and "log" in kinds and kinds[-1] == "finished"
    assert (Path(done.artifacts["adapter"]) / "adapter_config.json").exists() and done.metrics["train_loss"] > 0
    snap = jm.snapshot(job.id)
    assert snap.outcome == "finished" and snap.step == snap.total_steps == 4 and snap.percent == 100
    assert steps_of(snap) == [1, 2, 3, 4] and snap.loss is not None
    assert_gone(done.pid)

    more = jm.continue_training(job.id, epochs=1)
    assert more.parent_id == job.id and more.spec["training"]["epochs"] == 2
    assert more.spec["training"]["resume_from_checkpoint"].endswith("checkpoint-4")
    finished = jm.wait(more.id, timeout=WAIT)
    assert finished.status == "succeeded", (finished.error, jm.logs(more.id))
    start = events(finished, "start")[0]
    assert start["start_step"] == 4 and start["max_steps"] == 8  # only the extra epoch is trained
    assert steps_of(jm.snapshot(more.id)) == [5, 6, 7, 8]


def test_stop_mid_run_then_resume_continues_from_checkpoint(data_dir, jobs_tiny_model, tmp_path):
    jm = JobManager()
    job = jm.submit(write_spec(tmp_path / "s.yaml", jobs_tiny_model, max_steps=100000, save_steps=100000),
                    env=JOB_ENV)
    wait_for(lambda: jm.snapshot(job.id).step >= 1, what="the first logged step")
    pid, t0 = jm.get(job.id).pid, time.monotonic()
    jm.stop(job.id, timeout=30)
    wait_for(lambda: not is_alive(pid), timeout=30, what="the training process to exit")
    latency = time.monotonic() - t0
    stopped = jm.wait(job.id, timeout=30)
    MEASURED["stop_to_process_gone_s"] = round(latency, 2)
    MEASURED["stop_to_status_stopped_s"] = round(time.monotonic() - t0, 2)
    assert stopped.status == "stopped" and latency < 10
    ckpt, step = Path(stopped.artifacts["last_checkpoint"]), ckpt_step(stopped.artifacts["last_checkpoint"])
    assert (ckpt / "trainer_state.json").exists() and step >= 1 and events(stopped)[-1]["event"] == "stopped"
    assert_gone(pid)
    assert not trainer_pids(data_dir)

    resumed = jm.resume(job.id, overrides=[f"training.max_steps={step + 2}"])
    assert resumed.status == "queued" and resumed.id == job.id
    done = jm.wait(job.id, timeout=WAIT)
    assert done.status == "succeeded" and done.attempt == 2, (done.error, jm.logs(job.id))
    starts = events(done, "start")
    assert len(starts) == 2 and starts[1]["start_step"] == step and starts[1]["resumed_from"] == str(ckpt)
    snap = jm.snapshot(job.id)
    assert steps_of(snap) == list(range(1, step + 3)) and snap.runs == 2 and snap.step == step + 2


def test_restart_recovery_reattaches_live_training_and_interrupts_dead_one(data_dir, jobs_tiny_model, tmp_path):
    jm = JobManager()
    job = jm.submit(write_spec(tmp_path / "s.yaml", jobs_tiny_model, max_steps=100000, save_steps=2),
                    env=JOB_ENV)
    wait_for(lambda: jm.snapshot(job.id).last_checkpoint, what="a checkpoint")
    running = jm.get(job.id)
    first_supervisor, trainer = running.supervisor_pid, running.pid

    # 1. The supervising process dies; the training process lives on -> the next start re-attaches it.
    os.kill(first_supervisor, signal.SIGKILL)
    wait_for(lambda: not is_alive(first_supervisor), timeout=10, what="the supervisor to die")
    jm2 = JobManager()  # "app restart"
    assert jm2.get(job.id).status == "running" and jm2.get(job.id).pid == trainer
    new_supervisor = wait_for(lambda: jm2.get(job.id).supervisor_pid != first_supervisor and
                              jm2.get(job.id).supervisor_pid, 20, "a new supervisor to adopt the job")
    assert is_alive(new_supervisor) and "re-attached" in (data_dir / "supervisor.log").read_text()
    assert trainer_pids(data_dir) == [trainer]  # adopted, not launched a second time
    step = jm2.snapshot(job.id).step
    wait_for(lambda: jm2.snapshot(job.id).step > step, what="training to go on")

    # 2. Now everything dies at once (kill -9 of the supervisor and of training) -> interrupted.
    before = jm2.snapshot(job.id).step
    os.kill(new_supervisor, signal.SIGKILL)
    os.killpg(trainer, signal.SIGKILL)
    wait_for(lambda: not is_alive(trainer) and not is_alive(new_supervisor), 10, "both to die")
    jm3 = JobManager()
    lost = jm3.get(job.id)
    assert lost.status == "interrupted" and "resume" in lost.error and lost.pid == trainer
    step = ckpt_step(lost.artifacts["last_checkpoint"])
    assert 2 <= step <= max(before, 2) and jm3.snapshot(job.id).outcome is None

    jm3.resume(job.id, overrides=[f"training.max_steps={step + 2}"])
    done = jm3.wait(job.id, timeout=WAIT)
    assert done.status == "succeeded", (done.error, jm3.logs(job.id))
    assert events(done, "start")[-1]["start_step"] == step
    # Points the dead run logged after its last checkpoint were re-done: the curve stays one curve.
    assert steps_of(jm3.snapshot(job.id)) == list(range(1, step + 3))


def test_cli_submit_returns_at_once_and_jobs_run_one_after_the_other(data_dir, jobs_tiny_model, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", jobs_tiny_model)
    env_args = [a for k, v in JOB_ENV.items() for a in ("--env", f"{k}={v}")]
    ids, took = [], []
    for _ in range(2):
        t0 = time.monotonic()
        out = cli("submit", str(spec), "--no-validate-data", *env_args)
        took.append(round(time.monotonic() - t0, 2))
        assert out.returncode == 0, out.stderr
        ids.append(out.stdout.strip().splitlines()[-1])
    MEASURED["cli_submit_s"] = took
    jm = JobManager()
    assert jm.get(ids[1]).status == "queued" and jm.get(ids[0]).status in ("queued", "running")
    wait_for(lambda: jm.get(ids[0]).status == "running", what="the first job to run")
    assert jm.get(ids[1]).status == "queued"  # one at a time
    a, b = jm.wait(ids[0], timeout=WAIT), jm.wait(ids[1], timeout=WAIT)
    assert a.status == b.status == "succeeded"
    assert a.finished_at <= b.started_at  # strictly one after the other, in submission order

    info = json.loads(cli("jobs", "show", ids[1], "--json").stdout)
    assert info["id"] == ids[1] and info["status"] == "succeeded" and info["progress"]["step"] == 6
    assert {"pid", "times", "metrics", "error", "paths"} <= set(info) and info["paths"]["adapter"]
    listing = cli("jobs", "list").stdout
    assert ids[0] in listing and ids[1] in listing and "succeeded" in listing
    assert "adapter saved to" in cli("jobs", "logs", ids[0]).stdout


def test_invalid_spec_or_data_never_starts_a_process(data_dir, jobs_tiny_model, tmp_path):
    jm = JobManager()
    bad = write_spec(tmp_path / "bad.yaml", jobs_tiny_model, learning_rate=5, bogus_key=1)
    job = jm.submit(bad)
    assert job.status == "failed" and job.pid is None and job.attempt == 0 and "problem(s)" in job.error
    issues = job.error_details.issues
    assert any("training.learning_rate" in i for i in issues) and any("bogus_key" in i for i in issues)

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instruction": "hi", "output": "there"}\n{"instruction": "", "output": ""}\nnot json\n')
    job2 = jm.submit(write_spec(tmp_path / "data.yaml", jobs_tiny_model), overrides=[f"data.path={rows}"])
    assert job2.status == "failed" and job2.error_details.kind == "data" and job2.error_details.issues
    assert "row" in job2.error and job2.pid is None
    with pytest.raises(JobStateError):
        jm.resume(job2.id)

    out = cli("submit", str(bad))
    assert out.returncode == 2 and "bogus_key" in out.stderr
    assert jm.get(out.stdout.strip().splitlines()[-1]).status == "failed"
    assert not (data_dir / "supervisor.log").exists() and not procs_mentioning(str(data_dir))  # nothing ran


def test_crash_inside_training_fails_with_the_traceback_last_line(data_dir, jobs_tiny_model, tmp_path):
    jm = JobManager()
    job = jm.submit(write_spec(tmp_path / "s.yaml", jobs_tiny_model), validate_data=False,
                    env={**JOB_ENV, "LORA_STUDIO_FAULT_AT_STEP": "2"})
    done = jm.wait(job.id, timeout=WAIT)
    assert done.status == "failed" and done.exit_code == 1
    assert done.error == "RuntimeError: injected fault at step 2 (LORA_STUDIO_FAULT_AT_STEP)"
    assert "Traceback" in done.error_details.traceback and jm.snapshot(job.id).outcome == "failed"
    assert_gone(done.pid)


def test_stop_hard_kills_the_whole_group_after_the_timeout(data_dir):
    """A training process that ignores SIGTERM (say, hung in a collective) is SIGKILLed with every process
    of its group once the stop timeout passes. Uses a stand-in process, adopted like a re-attached job."""
    jm = JobManager()
    hang = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    script = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {hang!r}, sys.argv[1]]); exec({hang!r})"
    stub = subprocess.Popen([sys.executable, "-c", script, str(data_dir)], start_new_session=True)
    group = [p.pid for p in wait_for(lambda: len(procs_mentioning(str(data_dir))) == 2
                                     and procs_mentioning(str(data_dir)), 20, "the stand-in and its child")]
    job = jm.store.create(name="hung", status="running", job_dir=str(data_dir / "jobs" / "hung"), pid=stub.pid,
                          pid_start=psutil.Process(stub.pid).create_time(), started_at=time.time())
    t0 = time.monotonic()
    jm.stop(job.id, timeout=1.0)
    done = jm.wait(job.id, timeout=30)
    MEASURED["hard_kill_after_1s_timeout_s"] = took = round(time.monotonic() - t0, 2)
    stub.wait(timeout=10)
    assert done.status == "stopped" and 1.0 <= took < 10
    assert_gone(*group)


# ---- units (no training) -------------------------------------------------------------------------------
def line(event: str, **kw: Any) -> str:
    return json.dumps({"event": event, "time": 1000.0 + kw.get("step", 0), **kw}) + "\n"


def test_snapshot_polling_cost(tmp_path):
    """What one UI poll costs: a SQLite status lookup + a stat(), plus parsing only the new bytes."""
    jm = JobManager(tmp_path / "store", autostart=False)
    events_file = tmp_path / "job" / "events.jsonl"
    events_file.parent.mkdir()
    events_file.write_text(line("start", max_steps=100000, start_step=0) + "".join(
        line("log", step=s, max_steps=100000, loss=1.0, eta_seconds=5.0) for s in range(1, 2001)))
    job = jm.store.create(name="bench", status="running", job_dir=str(events_file.parent))
    assert len(jm.snapshot(job.id).loss_series) == 2000
    t0 = time.perf_counter()
    for _ in range(2000):
        jm.snapshot(job.id)
    idle_us = (time.perf_counter() - t0) / 2000 * 1e6
    t0 = time.perf_counter()
    with events_file.open("a") as fh:
        for s in range(2001, 2501):
            fh.write(line("log", step=s, max_steps=100000, loss=1.0))
            fh.flush()
            jm.snapshot(job.id)
    growing_us = (time.perf_counter() - t0) / 500 * 1e6
    MEASURED["snapshot_us"] = {"unchanged": round(idle_us, 1), "one_new_event_2000_points": round(growing_us, 1)}
    assert idle_us < 2000 and jm.snapshot(job.id).step == 2500


def test_store_schema_data_dir_secrets_and_launch_command(tmp_path, monkeypatch, jobs_tiny_model):
    store = JobStore(tmp_path / "s")
    assert store.schema_version == len(MIGRATIONS) == 2  # 2 added hub_identity
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv("LORA_STUDIO_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env" and default_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("LORA_STUDIO_DATA_DIR")
    monkeypatch.setattr("trainer_backend.jobs.paths.SPACES_DATA_ROOT", tmp_path)
    assert default_data_dir() == tmp_path / "lora-studio"
    monkeypatch.setattr("trainer_backend.jobs.paths.SPACES_DATA_ROOT", tmp_path / "missing")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / "lora-studio-data"

    jm = JobManager(tmp_path / "s", autostart=False)
    raw = yaml.safe_load(write_spec(tmp_path / "s.yaml", jobs_tiny_model).read_text())
    raw["hub"] = {"token": "hf_SuperSecret123"}
    job = jm.submit(raw, validate_data=False)
    assert job.status == "queued" and "hf_SuperSecret123" not in json.dumps(job.spec)
    assert "hf_SuperSecret123" not in job.spec_path.read_text()
    assert b"hf_SuperSecret123" not in (tmp_path / "s" / "jobs.db").read_bytes()
    with pytest.raises(JobStateError):  # two live jobs may not share a folder
        jm.submit(raw, overrides=[f"output_dir={job.job_dir}"], validate_data=False)
    with pytest.raises(JobStateError):  # only stopped / failed / interrupted jobs resume
        jm.resume(job.id)
    assert jm.stop(job.id).status == "stopped"



def test_zz_report():
    """The numbers the issue asks for (this file runs in order, so this comes last)."""
    out = REPO / "test-artifacts" / "jobs_measurements.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(MEASURED, indent=2))
    print(f"\njobs measurements: {json.dumps(MEASURED)}")
    assert not MEASURED["survivors"], MEASURED["survivors"]


def test_checking_a_job_never_changes_it(data_dir, jobs_tiny_model, tmp_path):
    """Validation on a CPU machine warns that QLoRA and bf16 need a GPU, but the job keeps them: the spec saved at
    submit (and the YAML the app shows after Check data) is the spec as written, so a run on a GPU (HF Jobs)
    trains with what was asked for."""
    from trainer_backend.spec import load_job_spec
    from trainer_backend.ui.service import StudioService

    path = write_spec(tmp_path / "s.yaml", jobs_tiny_model, max_rows=8, quantization="int4", mixed_precision="bf16")
    jm = JobManager(data_dir, autostart=False)
    job = jm.submit(path)
    assert job.status == "queued", job.error
    saved = load_job_spec(job.spec_path)[0].training
    assert (saved.quantization, saved.mixed_precision) == ("int4", "bf16")
    assert (jm.get(job.id).spec["training"]["quantization"], jm.get(job.id).spec["training"]["mixed_precision"]) \
        == ("int4", "bf16")
    import shutil  # the app takes files from its data dir only
    local = write_spec(tmp_path / "app.yaml", shutil.copytree(jobs_tiny_model, data_dir / "models" / "m"),
                       max_rows=8, quantization="int4", mixed_precision="bf16")
    raw = yaml.safe_load(local.read_text())
    raw["data"]["path"] = str(shutil.copy(ALPACA, data_dir / "alpaca.jsonl"))
    out = StudioService(jm).validate(yaml.safe_dump(raw))
    assert out["ok"] and "quantization: int4" in out["yaml"] and "mixed_precision: bf16" in out["yaml"]
    assert any("needs a CUDA GPU" in w for w in out["warnings"])  # the person is told what this machine does
