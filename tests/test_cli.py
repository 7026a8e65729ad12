"""End to end through the real command line: validate, doctor, train on real files; adapters load and generate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses and trains (make test runs it)

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer_backend", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _write_spec(tmp_path: Path, model: Path, data: dict, **extra) -> Path:
    spec = {"project_name": "cli-run", "model": {"base_model": str(model)}, "data": data,
            "lengths": {"block_size": 256, "model_max_length": 512},
            "training": {"max_steps": 4, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                         "save_strategy": "steps", "save_steps": 2}, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("relpath, detected, subprocess_run", [
    ("alpaca/self_instruct_seed_tasks.jsonl", "alpaca", True),
    # the same entry point in-process (cli.main), to keep the suite fast
    ("chat/msft_gsm8k_chat_train_messages.jsonl", "messages", False),
    ("chat/oasst_en100_sharegpt.jsonl", "sharegpt", False),
])
def test_train_real_file_adapter_loads_and_generates(relpath: str, detected: str, subprocess_run: bool,
                                                     tiny_model_dir: Path, real_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer_backend.cli import main

    spec = _write_spec(tmp_path, tiny_model_dir, {"path": str(real_data / relpath), "valid_split": "auto",
                                                  "chat_template": "chatml", "max_rows": 60})
    if subprocess_run:
        proc = _run(["train", str(spec)], cwd=tmp_path)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        monkeypatch.chdir(tmp_path)
        code = main(["train", str(spec)])
        stdout, stderr = capsys.readouterr()
    assert code == 0, stderr[-3000:]
    assert "step 4/4" in stdout and "adapter saved to" in stdout
    job = tmp_path / "cli-run"  # AutoTrain's convention: ./<project_name>
    events = [json.loads(l) for l in (job / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    before = events[:kinds.index("start")]  # the data preparation's progress and the run's phases come before step 0
    assert {e["event"] for e in before} == {"preparing", "phase"}
    assert [e["phase"] for e in before if e["event"] == "phase"] == ["preparing data", "loading model"]
    assert [e for e in before if e["event"] == "preparing"][-1]["progress"] == 1.0
    assert kinds[-1] == "finished" and "eval" in kinds and "checkpoint" in kinds
    logs = [e for e in events if e["event"] == "log"]
    assert [e["step"] for e in logs] == [1, 2, 3, 4]
    assert all(e["loss"] > 0 and e["tokens_per_second"] > 0 and e["eta_seconds"] is not None for e in logs)
    assert json.loads((job / "data_report.json").read_text())["format"]["format"] == detected
    assert (job / "checkpoints" / "checkpoint-2").is_dir()

    adapter = job / "adapter"
    tok = AutoTokenizer.from_pretrained(adapter)
    assert "generation" in tok.chat_template  # inference uses the training template
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    enc = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert "hf_" not in (job / "spec.yaml").read_text()


def test_train_kept_on_the_hub_without_a_token_says_why(tiny_model_dir: Path, real_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """hub.sync with no token anywhere: refused before any training, and the person reads why (it exited 1
    with nothing printed)."""
    from trainer_backend.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "no-login" / "tokens"))
    monkeypatch.chdir(tmp_path)
    spec = _write_spec(tmp_path, tiny_model_dir, {"path": str(real_data / "chat/oasst_en100_messages.jsonl")},
                       hub={"sync": True})
    code = main(["train", str(spec)])
    stdout, stderr = capsys.readouterr()
    assert code == 1 and "hub.sync: no Hugging Face token" in stderr and "HF_TOKEN" in stderr, (stdout, stderr)
    assert not (tmp_path / "cli-run" / "checkpoints").exists()


def test_validate_fails_before_training_naming_row_and_column(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 16
    rows.append({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]})
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = _write_spec(tmp_path, tiny_model_dir, {"path": str(bad), "chat_template": "chatml"})
    proc = _run(["validate", str(spec)], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{bad}, row 17, column 'messages': message 2 has role 'bot'" in proc.stderr
    assert "column_mapping.roles" in proc.stderr
    proc = _run(["train", str(spec)], cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "cli-run" / "checkpoints").exists()
    events = [json.loads(l) for l in (tmp_path / "cli-run" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "failed" and any("row 17" in i for i in events[-1]["issues"])


def test_doctor_reports_lengths_and_rendered_sample(tiny_model_dir: Path, real_data: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, tiny_model_dir, {"path": str(real_data / "chat/msft_gsm8k_chat_train_messages.jsonl"),
                                                  "chat_template": "chatml", "valid_split": "auto"})
    proc = _run(["doctor", str(spec), "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["format"]["format"] == "messages"
    train = report["splits"]["train"]
    rows = (real_data / "chat/msft_gsm8k_chat_train_messages.jsonl").read_text().count("\n")
    assert train["rows_read"] == rows and train["rows_valid"] + report["splits"]["valid"]["rows_valid"] == rows
    assert train["tokens"]["min"] <= train["tokens"]["median"] <= train["tokens"]["p95"] <= train["tokens"]["max"]
    assert 0 <= train["pct_longer_than_block_size"] <= 100
    assert report["sample"]["rendered"].startswith("[[no loss: <|im_start|>system\nReply user's question")
    text = _run(["doctor", str(spec)], cwd=tmp_path).stdout
    assert "format:        messages" in text and "sample training string" in text


def test_autotrain_config_runs_through_validate(tiny_model_dir: Path, real_data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "autotrain.yml"
    cfg.write_text(yaml.safe_dump({
        "task": "llm-sft", "base_model": str(tiny_model_dir), "project_name": "at-run", "log": "none",
        "backend": "local", "data": {"path": str(real_data / "chat"), "train_split": "oasst_en100_messages",
                                     "valid_split": None, "chat_template": "chatml",
                                     "column_mapping": {"text_column": "messages"}},
        "params": {"block_size": 256, "model_max_length": 512, "epochs": 1, "batch_size": 2, "lr": 2e-4,
                   "peft": True, "quantization": None, "target_modules": "all-linear", "padding": "right",
                   "optimizer": "adamw_torch", "scheduler": "linear", "gradient_accumulation": 1,
                   "mixed_precision": None}}))
    proc = _run(["validate", str(cfg)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "backend" in proc.stderr  # ignored keys are reported, not silently dropped
    assert "format:        messages" in proc.stdout
