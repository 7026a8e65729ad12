"""The command that runs a training job: one process, torchrun on CPU, or `accelerate launch` on GPUs.

Used by the job supervisor and by `python -m trainer_backend launch`. It reads only the spec file (as the typed
JobSpec) and the environment (no torch import), so the supervisor stays small.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ..settings import settings
from ..spec import JobSpec, TrainingSpec, load_job_spec


def visible_gpu_count() -> int:
    """GPUs a training process would see: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def plan(training: TrainingSpec) -> tuple[int, bool]:
    """(processes, on_gpu) for a spec's `training` section."""
    forced = settings().num_processes
    gpus = 0 if training.use_cpu else visible_gpu_count()
    wanted = training.num_processes or (forced if forced is not None else max(gpus, 1))
    if training.distributed == "none":
        wanted = 1
    return max(int(wanted), 1), gpus > 0


REMOTE_RUNNER_MODULE = "trainer_backend.remote.runner"  # a job on HF Jobs: submits and mirrors it (remote/)
SWEEP_DRIVER_MODULE = "trainer_backend.sweep.driver"    # a sweep: asks Optuna for trials, runs them as jobs (sweep/)


def trains_here(spec: JobSpec) -> bool:
    """Does this job train on this machine (and so take one of the queue's slots)? A sweep only directs its trials
    (each takes a slot of its own when it runs), and a job on HF Jobs trains on the Job's hardware."""
    return spec.sweep is None and spec.compute.backend != "hf_jobs"


def training_command(spec_path: str | Path, extra: Sequence[str] = ()) -> list[str]:
    spec: JobSpec = load_job_spec(spec_path)[0]
    if spec.sweep is not None:
        return [sys.executable, "-m", SWEEP_DRIVER_MODULE, str(spec_path)]
    if spec.compute.backend == "hf_jobs":
        return [sys.executable, "-m", REMOTE_RUNNER_MODULE, str(spec_path)]
    training = spec.training
    n, on_gpu = plan(training)
    # --as-written: the saved spec was expanded once, when submitted; the training process expands nothing more
    train = ["trainer_backend", "train", str(spec_path), "--as-written", *extra]
    if n == 1:
        return [sys.executable, "-m", *train]
    if not on_gpu:  # data-parallel on CPU: torchrun; the Trainer picks the gloo backend
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                "-m", *train]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n), "--num_machines", "1"]
    if training.accelerate_config:
        cmd += ["--config_file", str(training.accelerate_config)]
    elif training.distributed == "fsdp":
        cmd += ["--use_fsdp", "--fsdp_sharding_strategy", "FULL_SHARD", "--fsdp_auto_wrap_policy",
                "TRANSFORMER_BASED_WRAP", "--fsdp_use_orig_params", "true", "--fsdp_state_dict_type",
                "SHARDED_STATE_DICT"]
    elif training.distributed == "deepspeed":
        cmd += ["--use_deepspeed", "--zero_stage", "2"]
    else:
        cmd += ["--multi_gpu"]
    return cmd + ["--module", *train]
