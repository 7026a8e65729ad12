"""How a job is launched: one process, torchrun data-parallel on CPU, accelerate on GPUs; and a real
2-process CPU data-parallel run through the same command the job supervisor uses."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from trainer_backend.training.launch import training_command

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

REPO = Path(__file__).resolve().parents[1]


def _spec_file(tmp_path: Path, **training) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"model": {"base_model": "org/model"}, "data": {"path": "org/data"},
                                    "training": training}))
    return path


def test_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORA_STUDIO_NUM_PROCESSES", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    # --as-written: the saved spec is never expanded again (a ${VAR} in it must not read the trainer's environment)
    assert training_command(_spec_file(tmp_path))[1:] == ["-m", "trainer_backend", "train", str(tmp_path / "spec.yaml"),
                                                          "--as-written"]
    cpu = training_command(_spec_file(tmp_path, num_processes=2))
    assert cpu[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    gpu = training_command(_spec_file(tmp_path))
    assert gpu[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "4"] and "--multi_gpu" in gpu
    assert gpu[-5:] == ["--module", "trainer_backend", "train", str(tmp_path / "spec.yaml"), "--as-written"]
    assert "--use_fsdp" in training_command(_spec_file(tmp_path, distributed="fsdp"))
    assert "--use_deepspeed" in training_command(_spec_file(tmp_path, distributed="deepspeed"))
    assert "--config_file" in training_command(_spec_file(tmp_path, accelerate_config="/cfg.yaml"))
    assert len(training_command(_spec_file(tmp_path, distributed="none"))) == 6
    assert len(training_command(_spec_file(tmp_path, use_cpu=True))) == 6


def test_two_process_data_parallel_run_on_cpu(tiny_model_dir: Path, real_data: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "project_name": "ddp", "output_dir": str(tmp_path / "job"), "model": {"base_model": str(tiny_model_dir)},
        "data": {"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "chat_template": "chatml",
                 "max_rows": 40},
        "lengths": {"block_size": 128},
        "training": {"max_steps": 3, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                     "save_strategy": "no", "num_processes": 2, "use_cpu": True}}))
    cmd = training_command(spec)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    events = [json.loads(l) for l in (tmp_path / "job/events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    assert [e["event"] for e in events].count("finished") == 1, "only rank 0 records the outcome"
    assert (tmp_path / "job/adapter/adapter_model.safetensors").exists()
