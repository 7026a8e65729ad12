"""Every trainer x every data format x every entry point a user has, generated from the trainer list and the
format list (a new trainer or format gets its cells by itself; a format without a sample here fails the first
test until one is added).

Cells: CLI `validate`, `doctor`, `doctor --json` (every combination), CLI `train` for 2 steps (every accepted
combination) and `submit` + `jobs wait` (one trainer per data path), API `validate_dataset`, `dataset_report`,
`start_training` (every trainer on pairs and on alpaca rows; one app). Train, submit and API cells are slow. An accepted
combination must exit 0 / `ok: true` with a report that names the format and shows a sample; a refused one
(a preference trainer on data without pairs) must exit 2 / `ok: false` with a message that names the trainer and
says what data it needs. No cell may print a traceback.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml

from trainer_backend.data.pipeline import PREFERENCE_TRAINERS
from trainer_backend.spec import AVAILABLE_TRAINERS, FormatName

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = {  # format -> the repository's samples of it
    "alpaca": ["alpaca/self_instruct_seed_tasks.jsonl"],
    "messages": ["chat/oasst_en100_messages.jsonl"],
    "sharegpt": ["chat/oasst_en100_sharegpt.jsonl"],
    "qa": ["qa/gsm8k_train.jsonl"],
    "text": ["text/c4_demo.jsonl", "text/tinyshakespeare.txt"],
    "preference": ["preference/orca_dpo_pairs_validation_flat.jsonl",
                   "preference/orca_dpo_pairs_validation_openai.jsonl"],
    "tokenized": ["<tokenized>"],  # written per test with the tiny model's own token ids
}
TRAINERS = sorted(AVAILABLE_TRAINERS)
CELLS = [(t, fmt, f) for t in TRAINERS for fmt, files in SAMPLES.items() for f in files]


def accepts(trainer: str, fmt: str) -> bool:
    """Preference trainers need pairs; the others train on any format (pairs: the chosen answer)."""
    return fmt == "preference" if trainer in PREFERENCE_TRAINERS else True


def test_every_format_has_a_sample() -> None:
    assert set(SAMPLES) == set(get_args(FormatName)) - {"auto"}


@pytest.fixture
def data_file(tiny_model_dir: Path, tmp_path: Path):
    def resolve(name: str) -> Path:
        if name != "<tokenized>":
            return DATA / name
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        path = tmp_path / "tokenized.jsonl"
        rows = [{"input_ids": tok(f"The capital of France is Paris. {i}")["input_ids"]} for i in range(8)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    return resolve


def write_spec(tmp_path: Path, model: Path, trainer: str, data: Path, steps: int = 2) -> Path:
    spec = {"project_name": f"matrix-{trainer}", "output_dir": str(tmp_path / "job"),
            "model": {"base_model": str(model)},
            "data": {"path": str(data), "chat_template": "chatml", "max_rows": 8},
            "lengths": {"block_size": 1024, "model_max_length": 2048},
            "training": {"trainer": trainer, "max_steps": steps, "batch_size": 2, "gradient_accumulation": 1,
                         "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no", "use_cpu": True}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    from trainer_backend.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_refusal(trainer: str, text: str) -> None:
    assert f"trainer '{trainer}' needs preference data" in text and "Traceback" not in text, text


@pytest.mark.parametrize("trainer, fmt, name", CELLS, ids=[f"{t}-{f}-{Path(n).name}" for t, f, n in CELLS])
def test_cli_validate_and_doctor(trainer: str, fmt: str, name: str, tiny_model_dir: Path, tmp_path: Path,
                                 data_file) -> None:
    spec = write_spec(tmp_path, tiny_model_dir, trainer, data_file(name))
    for command in (["validate"], ["doctor"], ["doctor", "--json"]):
        code, out, err = run_cli(*command, str(spec))
        assert "Traceback" not in out + err, f"{command}: {err[-2000:]}"
        if not accepts(trainer, fmt):
            assert code == 2, (command, out, err)
            assert_refusal(trainer, err)
            continue
        assert code == 0, (command, err[-2000:])
        if command[-1] == "--json":
            report = json.loads(out)
            assert report["format"]["format"] == fmt and report["sample"]["rendered"].strip()
            assert report["sample"]["kind"] == ("preference" if trainer in PREFERENCE_TRAINERS else "sequence")
        else:
            assert f"format:        {fmt}" in out and "-" * 80 in out, out[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("trainer, fmt, name", [c for c in CELLS if accepts(c[0], c[1])],
                         ids=[f"{t}-{f}-{Path(n).name}" for t, f, n in CELLS if accepts(t, f)])
def test_cli_train_two_steps(trainer: str, fmt: str, name: str, tiny_model_dir: Path, tmp_path: Path,
                             data_file) -> None:
    spec = write_spec(tmp_path, tiny_model_dir, trainer, data_file(name))
    code, out, err = run_cli("train", str(spec))
    assert code == 0 and "Traceback" not in out + err, err[-3000:]
    assert "finished at step 2" in out and (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()


# The supervisor runs the same `train` command for every trainer (its cells above): one trainer of each data path
# (sequences, preference pairs) through submit + jobs wait keeps the suite's time in bounds.
SUBMIT_TRAINERS = [min(t for t in TRAINERS if t not in PREFERENCE_TRAINERS), min(PREFERENCE_TRAINERS)]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", SUBMIT_TRAINERS)
def test_submit_and_jobs_wait(trainer: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import subprocess

    monkeypatch.setenv("LORA_STUDIO_DATA_DIR", str(tmp_path / "store"))
    fmt = "preference" if trainer in PREFERENCE_TRAINERS else "alpaca"
    spec = write_spec(tmp_path, tiny_model_dir, trainer, DATA / SAMPLES[fmt][0], steps=1)
    cli = [sys.executable, "-m", "trainer_backend"]
    submitted = subprocess.run([*cli, "submit", str(spec)], capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0 and "Traceback" not in submitted.stderr, submitted.stderr[-2000:]
    job_id = submitted.stdout.strip().splitlines()[-1]
    waited = subprocess.run([*cli, "jobs", "wait", job_id, "--timeout", "200"], capture_output=True, text=True,
                            timeout=240)
    assert waited.returncode == 0 and "succeeded" in waited.stderr, waited.stderr[-2000:]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory):
    from gradio_client import Client

    sys.path.insert(0, str(Path(__file__).parent))
    from apphelpers import AppServer

    server = AppServer(tmp_path_factory.mktemp("matrix-app") / "data")
    yield Client(server.url, verbose=False)
    server.stop()


API_CELLS = [(t, fmt) for t in TRAINERS for fmt in ("preference", "alpaca")]


@pytest.mark.slow
@pytest.mark.parametrize("trainer, fmt", API_CELLS, ids=[f"{t}-{f}" for t, f in API_CELLS])
def test_api_validate_report_and_start(trainer: str, fmt: str, app_client) -> None:
    from gradio_client import handle_file

    spec = (f"model: {{base_model: tiny-demo}}\ndata: {{chat_template: chatml, max_rows: 8}}\n"
            f"lengths: {{block_size: 1024}}\ntraining: {{trainer: {trainer}, max_steps: 1, batch_size: 2, "
            f"save_strategy: 'no', eval_strategy: 'no'}}\n")
    data = handle_file(str(DATA / SAMPLES[fmt][0]))
    valid = app_client.predict(spec, data, api_name="/validate_dataset")
    report = app_client.predict(spec, data, api_name="/dataset_report")
    started = app_client.predict(spec, data, api_name="/start_training")
    if not accepts(trainer, fmt):
        assert valid["ok"] is False and report["ok"] is False
        assert_refusal(trainer, " ".join(valid["errors"]))
        assert started["status"] == "failed" and "needs preference data" in json.dumps(started)
        return
    assert valid["ok"] and report["ok"] and report["report"]["format"]["format"] == fmt
    assert report["report"]["sample"]["rendered"].strip()
    assert started["status"] == "queued", started  # it runs: the submit + jobs wait cells train every trainer
    app_client.predict(started["job_id"], api_name="/stop_job")
