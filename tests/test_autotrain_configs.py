"""AutoTrain Advanced's published LLM configs, in their shape (tests/autotrain_configs/*.yml: task, base_model,
data.column_mapping, params with quantization, mixed_precision, unsloth, max_prompt_length, padding,
chat_template: null), with the base model and the Hub dataset swapped for local stand-ins through ${VARS}.
Each validates and trains 2 steps on CPU; what cannot apply here (fp16/bf16, int4/int8, Unsloth) is a warning
that says what runs instead."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainer_backend.cli import main
from trainer_backend.autotrain import AUTOTRAIN_TRAINERS

CONFIGS = sorted((Path(__file__).parent / "autotrain_configs").glob("*.yml"))


@pytest.fixture(autouse=True)
def local_stand_ins(tiny_model_dir: Path, real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("LORA_TEST_DATA", str(real_data))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _expected_warnings(config: Path) -> list[str]:
    params = yaml.safe_load(config.read_text())["params"]
    expected = []
    if params.get("mixed_precision") in ("fp16", "bf16"):
        expected.append(f"mixed_precision={params['mixed_precision']} needs a GPU; this run trains in fp32")
    if params.get("quantization") in ("int4", "int8"):
        expected.append("this run loads the base model unquantized")
    if params.get("unsloth"):
        expected.append("Unsloth is not supported; training uses transformers + PEFT")
    return expected


def test_every_llm_task_has_a_config() -> None:
    tasks = {yaml.safe_load(c.read_text())["task"] for c in CONFIGS}
    assert {f"llm-{t}" for t in AUTOTRAIN_TRAINERS} <= tasks


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_autotrain_config_validates_with_warnings_for_what_cannot_apply(config: Path, capsys) -> None:
    code = main(["validate", str(config)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "Traceback" not in out + err and "OK: the data is valid for this spec." in out
    for warning in _expected_warnings(config):
        assert warning in out + err, warning


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_autotrain_config_trains_two_steps_on_cpu(config: Path, tmp_path: Path, capsys) -> None:
    code = main(["train", str(config), "--set", "params.max_steps=2", "--output-dir", str(tmp_path / "job")])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "Traceback" not in out + err
    assert "finished at step 2" in out and (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()
