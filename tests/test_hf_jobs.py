"""Training on Hugging Face Jobs, for real against the loopback Hub: its Jobs routes run each submitted Job's command
in a local process (tests/hub_jobs.py), so staging, the Job, the Hub sync, mirroring, stop, resume, re-attach and
restore all run the product's own code over huggingface_hub's own client, on CPU with the tiny model."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from apphelpers import AppServer, processes_mentioning  # noqa: E402
from hubhelpers import ALICE, loopback_hub  # noqa: E402,F401  (fixture)

REMOTE_ENV = {"LORA_STUDIO_REMOTE_POLL": "0.5", "LORA_STUDIO_STOP_POLL": "0.5", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}
COMPUTE = {"backend": "hf_jobs", "flavor": "cpu-basic", "timeout": "30m", "image": "lora-studio:test"}
TRAINING = {"batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1, "save_strategy": "steps",
            "save_steps": 5, "eval_strategy": "no"}


@pytest.fixture(scope="module")
def jobs_hub(loopback_hub: Any) -> Iterator[Any]:
    """The loopback Hub with Jobs, and the environment every process we start (app, supervisor, runner) sees."""
    loopback_hub.jobs.extra_env.update({**REMOTE_ENV, "LORA_STUDIO_MASTER_ADDR": "127.0.0.1"})
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**REMOTE_ENV, "HF_ENDPOINT": loopback_hub.url, "HF_TOKEN": ALICE,
                           "HF_HUB_OFFLINE": "0", "LORA_STUDIO_RESTORE_FROM_HUB": "0"}.items():
            mp.setenv(key, value)
        yield loopback_hub


def _spec(tiny_model_dir: Path, data_file: Path, name: str, steps: int, **sections: Any) -> dict:
    spec = {"project_name": name, "model": {"base_model": str(tiny_model_dir)},
            "data": {"path": str(data_file), "max_rows": 40, "chat_template": "chatml"},
            "lengths": {"block_size": 128, "model_max_length": 512}, "lora": {"r": 4, "alpha": 8},
            "training": {**TRAINING, "max_steps": steps}, "hub": {"sync_every": 2}, "compute": dict(COMPUTE)}
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec


def _events(job_dir: str | Path) -> list[dict]:
    path = Path(job_dir) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _wait_for(check: Any, timeout: float, what: str, poll: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def data_dir(tmp_path: Path, jobs_hub: Any) -> Iterator[Path]:
    """A job store folder; whatever still works on it when the test ends is killed, and so is every HF Job
    (a failed test must not leave a Job training on for the next one to re-attach to or queue behind)."""
    yield tmp_path / "data"
    _kill_everything_working_on(tmp_path / "data")
    for job in list(jobs_hub.jobs.jobs.values()):
        jobs_hub.jobs.cancel(job)


def _kill_everything_working_on(data_dir: Path) -> None:
    """SIGKILL every process group working on `data_dir`, and wait until they are gone: an app restarts after
    its processes died, not while the kernel still tears them down (and holds their locks)."""
    procs = processes_mentioning(str(data_dir))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()  # one that is not its group's leader
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, f"still alive 30 s after SIGKILL: {alive}"


def test_refused_before_anything_is_uploaded_or_billed(jobs_hub: Any, tiny_model_dir: Path, real_data: Path,
                                                       tmp_path: Path) -> None:
    from trainer_backend.jobs import JobManager
    from trainer_backend.spec import SpecError, parse_spec

    data = real_data / "chat/oasst_en100_messages.jsonl"
    manager = JobManager(tmp_path / "data", autostart=False)
    repos_before = set(jobs_hub.state.repos)
    bad_flavor = manager.submit(_spec(tiny_model_dir, data, "bad-flavor", 4, compute={"flavor": "gpu-imaginary"}))
    assert bad_flavor.status == "failed" and "gpu-imaginary" in bad_flavor.error and "a10g-small" in bad_flavor.error
    no_image = manager.submit(_spec(tiny_model_dir, data, "no-image", 4, compute={"image": None}))
    assert no_image.status == "failed" and "compute.image" in no_image.error and "Dockerfile" in no_image.error
    cpu_nodes = manager.submit(_spec(tiny_model_dir, data, "cpu-nodes", 4, compute={"nodes": 2}))
    assert cpu_nodes.status == "failed" and "GPU flavor" in cpu_nodes.error
    with pytest.raises(SpecError, match="compute.timeout"):
        parse_spec(_spec(tiny_model_dir, data, "no-timeout", 4, compute={"timeout": None}))
    with pytest.raises(SpecError, match="under a minute"):
        parse_spec(_spec(tiny_model_dir, data, "short", 4, compute={"timeout": "30s"}))
    with pytest.raises(SpecError, match="must start with 'lora-studio-job-'"):  # never sync into a real repo
        parse_spec(_spec(tiny_model_dir, data, "mine", 4, hub={"sync": True, "sync_repo": "alice/my-model"}))
    bad_data = tmp_path / "broken.jsonl"
    bad_data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3}\n')
    broken = manager.submit(_spec(tiny_model_dir, bad_data, "bad-data", 4, data={"format": "messages"}))
    assert broken.status == "failed" and "broken.jsonl" in broken.error
    assert set(jobs_hub.state.repos) == repos_before and not jobs_hub.jobs.jobs, "nothing uploaded, no Job started"
    os.environ.pop("HF_TOKEN")
    try:
        no_token = manager.submit(_spec(tiny_model_dir, data, "no-token", 4))
    finally:
        os.environ["HF_TOKEN"] = ALICE
    assert no_token.status == "failed" and "token" in no_token.error


def test_the_plan_prices_the_job_on_the_chosen_hardware(jobs_hub: Any, tiny_model_dir: Path, real_data: Path,
                                                       tmp_path: Path) -> None:
    from trainer_backend.jobs import JobManager
    from trainer_backend.ui.service import StudioService

    service = StudioService(JobManager(tmp_path / "data", autostart=False))
    spec = _spec(Path("x"), Path("x"), "priced", 400, model={"base_model": "tiny-demo"},
                 compute={"flavor": "a10g-small", "timeout": "2h", "nodes": 1})
    data = str(real_data / "chat/oasst_en100_messages.jsonl")
    out = service.plan(json.dumps(spec), data)
    assert out["ok"], out
    md = out["markdown"]
    seconds = out["plan"]["time_seconds"]["value"]
    assert out["plan"]["hardware"] == "a10g-small" and seconds is not None
    # the loopback Hub lists a10g-small at $0.0166667/min = $1.00/h; 2 h timeout -> at most $2.00
    assert f"estimated cost: **${seconds / 3600:.2f}**" in md and "at most **$2.00**" in md and "`h100` $4.50/h" in md, md
    two = service.plan(json.dumps({**spec, "compute": {**spec["compute"], "flavor": "a10g-largex2", "nodes": 2}}),
                       data)
    assert "× 2 nodes" in two["markdown"] and "at most **$12.00**" in two["markdown"], two["markdown"]


@pytest.mark.slow
def test_from_the_app_live_progress_stop_resume_adapter_and_chat(jobs_hub: Any, real_data: Path,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    from gradio_client import Client, handle_file

    app = AppServer(tmp_path_factory.mktemp("remote-app") / "data")
    try:
        client = Client(app.url, verbose=False)
        spec = json.dumps(_spec(Path("tiny-demo"), Path("x"), "remote-app", 300, model={"base_model": "tiny-demo"}))
        raw = json.loads(spec)
        raw["data"].pop("path")
        started = client.predict(json.dumps(raw), handle_file(str(real_data / "chat/oasst_en100_messages.jsonl")),
                                 api_name="/start_training")
        assert started["status"] == "queued", started
        job_id = started["job_id"]

        def status() -> dict:
            return client.predict(job_id, True, api_name="/job_status")

        live = _wait_for(lambda: (s := status())["status"] == "running" and s["progress"]["step"] >= 3 and s, 150,
                         "mirrored progress from the HF Job")
        assert live["progress"]["total_steps"] == 300 and live["progress"]["loss_series"], live["progress"]
        compute = live["compute"]
        assert compute["backend"] == "hf_jobs" and compute["flavor"] == "cpu-basic" and len(compute["urls"]) == 1
        assert compute["repo_id"] == f"alice/lora-studio-job-{job_id}"
        from trainer_backend.ui.job_view import header_markdown

        assert f"[HF Job 1]({compute['urls'][0]})" in header_markdown(live)  # what the Jobs tab shows
        client.predict(job_id, api_name="/stop_job")
        stopped = _wait_for(lambda: (s := status())["status"] in ("stopped", "failed", "succeeded") and s, 90,
                            "the stop")
        assert stopped["status"] == "stopped", stopped
        step_at_stop = stopped["progress"]["step"]
        assert 3 <= step_at_stop < 300
        repo = f"alice/lora-studio-job-{job_id}"
        held = jobs_hub.files(repo)
        assert jobs_hub.repo(repo).private and any(p.startswith("checkpoints/checkpoint-") for p in held)
        first_job = json.loads((Path(stopped["paths"]["job_dir"]) / "remote.json").read_text())["job_ids"][0]
        assert jobs_hub.jobs.jobs[first_job].stage in ("ERROR", "CANCELED", "COMPLETED")

        assert client.predict(job_id, api_name="/resume_job")["status"] in ("queued", "running")
        done = _wait_for(lambda: (s := status())["status"] in ("succeeded", "failed", "stopped") and s, 240,
                         "the resumed Job")
        assert done["status"] == "succeeded", done
        assert done["progress"]["step"] == 300
        events = _events(done["paths"]["job_dir"])
        pulled = [e for e in events if e["event"] == "checkpoint_pulled"]
        assert pulled and pulled[-1]["checkpoint"], "the second Job started from the repo's checkpoint"
        resumed_from = int(pulled[-1]["checkpoint"].rsplit("-", 1)[-1])
        assert resumed_from <= step_at_stop
        assert len([e for e in events if e["event"] == "remote_submitted"]) == 2
        assert Path(done["paths"]["adapter"], "adapter_config.json").is_file()
        assert "adapter/adapter_model.safetensors" in jobs_hub.files(repo), "the adapter is in the private repo"
        answer = ""
        for answer in client.submit(job_id, "Hello", [], "", 0.0, 0.9, 8, 1.0, api_name="/chat"):
            pass
        assert isinstance(answer, str)
    finally:
        app.stop()


@pytest.mark.slow
def test_a_killed_app_reattaches_to_the_running_job(jobs_hub: Any, tiny_model_dir: Path, real_data: Path,
                                                     data_dir: Path) -> None:
    from trainer_backend.jobs import JobManager

    manager = JobManager(data_dir)
    qlora = {**TRAINING, "max_steps": 100000, "quantization": "int4", "mixed_precision": "bf16"}
    job = manager.submit(_spec(tiny_model_dir, real_data / "chat/oasst_en100_messages.jsonl", "reattach", 100000,
                               training=qlora))
    _wait_for(lambda: manager.snapshot(job.id).step >= 2, 150, "mirrored progress")
    # Submitted from a CPU machine, the HF Job is asked for what was written (QLoRA in bf16); where it runs on a
    # CPU (the loopback Jobs do) the run says what it does instead, in its events and its log.
    sent = yaml.safe_load(jobs_hub.files(f"alice/lora-studio-job-{job.id}")["remote/spec.yaml"])
    assert (sent["training"]["quantization"], sent["training"]["mixed_precision"]) == ("int4", "bf16")
    fitted = [e for e in _events(job.job_dir) if e["event"] == "fitted_to_hardware"]
    assert fitted and any("quantization=int4 needs a CUDA GPU" in c for c in fitted[0]["changes"])
    assert "this machine: training.quantization=int4 needs a CUDA GPU" in Path(job.log_path).read_text()
    jobs_hub.stop()  # the Hub away for a few seconds: the runner and the Job's sync retry, nothing is lost
    time.sleep(4)
    jobs_hub.start()
    step_then = manager.snapshot(job.id).step
    _wait_for(lambda: manager.snapshot(job.id).step > step_then + 2, 90, "progress after the Hub came back")
    assert manager.get(job.id).status == "running"
    remote_ids = json.loads((Path(job.job_dir) / "remote.json").read_text())["job_ids"]
    _kill_everything_working_on(data_dir)  # the app, its supervisor and the runner are gone; the HF Job is not
    assert jobs_hub.jobs.jobs[remote_ids[0]].stage == "RUNNING"
    step_before = JobManager(data_dir, autostart=False).snapshot(job.id).step

    again = JobManager(data_dir)  # the app starting again
    _wait_for(lambda: any(e["event"] == "remote_reattached" for e in _events(job.job_dir)), 60, "re-attach")
    _wait_for(lambda: again.snapshot(job.id).step > step_before + 2, 90, "progress after re-attaching")
    assert len(jobs_hub.jobs.jobs) == len(set(jobs_hub.jobs.jobs)) and \
        [j for j in jobs_hub.jobs.jobs if j in remote_ids] == remote_ids, "no second Job was started"
    assert again.get(job.id).status == "running"
    stopped = again.stop(job.id, wait=True, timeout=90)
    assert stopped.status == "stopped"
    assert jobs_hub.jobs.jobs[remote_ids[0]].stage != "RUNNING", "stopping the job ends its HF Job"


@pytest.mark.slow
def test_a_synced_local_job_comes_back_after_its_disk_is_lost(jobs_hub: Any, tiny_model_dir: Path,
                                                               real_data: Path, data_dir: Path) -> None:
    from trainer_backend.jobs import JobManager

    manager = JobManager(data_dir)
    spec = _spec(tiny_model_dir, real_data / "chat/oasst_en100_messages.jsonl", "durable", 100000,
                 hub={"sync": True}, compute={"backend": "local", "image": None})
    job = manager.submit(spec)
    repo = f"alice/lora-studio-job-{job.id}"
    _wait_for(lambda: any(p.startswith("checkpoints/checkpoint-") for p in jobs_hub.files(repo)), 150,
              "a synced checkpoint")
    stopped = manager.stop(job.id, wait=True, timeout=60)
    assert stopped.status == "stopped"
    synced = sorted({p.split("/")[1] for p in jobs_hub.files(repo) if p.startswith("checkpoints/")})
    assert len(synced) == 1, f"only the latest checkpoint is kept on the Hub: {synced}"
    last = int(synced[0].rsplit("-", 1)[-1])
    _kill_everything_working_on(data_dir)
    shutil.rmtree(data_dir)  # the Space restarted with an empty disk

    fresh = JobManager(data_dir)
    assert fresh.list() == []
    restored = fresh.restore_from_hub()  # (with the module's earlier synced jobs, when they ran)
    assert job.id in restored and {j.id for j in fresh.list()} == set(restored)
    back = fresh.get(job.id)
    assert back.status == "stopped" and back.name == "durable" and back.job_spec.hub.sync
    assert fresh.restore_from_hub() == [], "a restore never duplicates a job"
    fresh.resume(job.id, overrides=[f"training.max_steps={last + 3}"])
    done = fresh.wait(job.id, timeout=150)
    assert done.status == "succeeded", done.error
    events = _events(done.job_dir)
    assert [e["checkpoint"] for e in events if e["event"] == "checkpoint_pulled"] == [f"checkpoint-{last}"]
    since = max(i for i, e in enumerate(events) if e["event"] == "checkpoint_pulled")
    resumed_steps = [e["step"] for e in events[since:] if e["event"] == "log" and e.get("step")]
    assert resumed_steps and min(resumed_steps) > last and max(resumed_steps) == last + 3, resumed_steps
    assert Path(done.job_dir, "adapter", "adapter_config.json").is_file()


@pytest.mark.slow
def test_two_nodes_train_one_model_data_parallel(jobs_hub: Any, tiny_model_dir: Path, real_data: Path,
                                                 data_dir: Path) -> None:
    """compute.nodes: 2 starts two Jobs in one network group; they rendezvous (gloo over loopback here) and train
    one model together: every rank ends at the same step, and rank 0 keeps the job on the Hub."""
    from trainer_backend.jobs import JobManager

    manager = JobManager(data_dir)
    t0 = time.monotonic()
    job = manager.submit(_spec(tiny_model_dir, real_data / "chat/oasst_en100_messages.jsonl", "two-nodes", 6,
                               compute={"nodes": 2, "flavor": "a10g-largex2"}))
    done = manager.wait(job.id, timeout=300)
    took = time.monotonic() - t0
    assert done.status == "succeeded", done.error
    ids = json.loads((Path(done.job_dir) / "remote.json").read_text())["job_ids"]
    nodes = [jobs_hub.jobs.jobs[i] for i in ids]
    assert len(nodes) == 2 and all(n.stage == "COMPLETED" for n in nodes)
    assert nodes[0].spec["network"] == {"group": nodes[1].spec["network"]["group"], "aliases": ["rank0"]}
    ends = [[line for _, line in n.lines if line.startswith(f"rank {r} of 2:")] for r, n in enumerate(nodes)]
    assert ends == [["rank 0 of 2: succeeded at step 6"], ["rank 1 of 2: succeeded at step 6"]], ends
    start = next(e for e in _events(done.job_dir) if e["event"] == "start")
    assert start["world_size"] == 2
    assert Path(done.job_dir, "adapter", "adapter_config.json").is_file()
    print(f"\n2-node HF Jobs run (submit -> adapter here): {took:.1f} s; both ranks ended at step 6")


def test_a_sweep_runs_two_trials_at_once_on_hf_jobs(jobs_hub: Any, tiny_model_dir: Path, real_data: Path,
                                                    data_dir: Path) -> None:
    """A sweep with parallel: 2 on HF Jobs: both trials are Jobs at the same time (a sweep's driver and the runners
    take no local training slot), each trial's cost is its hardware's price x its time, the sweep's estimate was
    checked against its cost budget before the first trial, and its study and record are kept in its Hub repo."""
    from trainer_backend.jobs import JobManager
    from trainer_backend.spec import parse_spec
    from trainer_backend.sweep import actions

    manager = JobManager(data_dir)
    raw = _spec(tiny_model_dir, real_data / "chat/oasst_en100_messages.jsonl", "hf-sweep", 4,
                data={"valid_split": "auto", "valid_fraction": 0.2},
                training={"eval_strategy": "steps", "eval_steps": 2, "save_steps": 2})
    raw["sweep"] = {"parameters": {"training.learning_rate": {"choices": [1e-4, 1e-3]}}, "trials": 2, "parallel": 2,
                    "pruner": "none", "include_base": False, "sampler": "random", "max_cost": 5.0}
    sweep = actions.start(manager, parse_spec(raw)[0])
    done = manager.wait(sweep.id, timeout=400)
    assert done.status == "succeeded", f"{done.error}\n{manager.logs(sweep.id)}"
    record = actions.status(manager, sweep.id)
    trials = [manager.get(t["job_id"]) for t in record["trials"]]
    assert len(trials) == 2 and all(t.status == "succeeded" for t in trials)
    submitted = [next(e["time"] for e in _events(t.job_dir) if e["event"] == "remote_submitted") for t in trials]
    ended = [next(e["time"] for e in _events(t.job_dir) if e["event"] == "finished") for t in trials]
    assert max(submitted) < min(ended), "the second trial's Job started only after the first ended"
    assert "trials on cpu-basic at $0.01/h (its time limit: ~30 min each)" in record["estimate"]
    assert all(t["cost_usd"] is not None and t["cost_usd"] > 0 for t in record["trials"])
    repo = f"alice/lora-studio-job-{sweep.id}"
    kept = jobs_hub.files(repo)
    assert {"sweep.json", "sweep-study.log", "events.jsonl"} <= set(kept), sorted(kept)


@pytest.mark.slow
def test_the_token_is_nowhere_but_the_job_secret(jobs_hub: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """After the runs above: not in any Job's env, command or logs, any repo file or commit, any local file."""
    if not jobs_hub.jobs.jobs:
        pytest.skip("checks what the module's training tests left: run the whole module")
    for job in jobs_hub.jobs.jobs.values():
        assert job.spec.get("secrets") == {"HF_TOKEN": ALICE}, "the token went as the Job's secret"
        assert ALICE not in json.dumps({k: v for k, v in job.spec.items() if k != "secrets"})
    for where, text in jobs_hub.jobs.all_text():
        assert ALICE not in text, where
    for where, data in jobs_hub.state.all_stored_bytes():
        assert ALICE.encode() not in data, where
    for root in (tmp_path_factory.getbasetemp(), jobs_hub.jobs.root):  # our folders, and every Job's
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert ALICE.encode() not in path.read_bytes(), path
