"""The plan before the start (training/plan.py): counted parameters, memory by part, time, and how each figure
was obtained."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


@pytest.fixture
def chat_spec(make_spec, real_data: Path):
    def make(**training):
        return make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "chat_template": "chatml",
                          "max_rows": 12},
                         training={"max_steps": 4, "batch_size": 2, "gradient_accumulation": 1, "use_cpu": True,
                                   "save_strategy": "no", "eval_strategy": "no", **training})
    return make


def test_parameters_are_counted_exactly_without_loading_weights(chat_spec) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer_backend.training.model_loading import lora_config
    from trainer_backend.training.plan import plan_job

    spec = chat_spec()
    plan = plan_job(spec)
    model = AutoModelForCausalLM.from_pretrained(spec.model.base_model)
    assert plan.parameters_total.value == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, lora_config(spec))
    assert plan.parameters_trainable.value == sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert plan.parameters_total.how == "counted" and plan.memory_gib["peak"].how == "estimated"
    assert plan.train_tokens.how == "counted" and plan.train_tokens.value > 0
    assert plan.steps.value == 4 and plan.time_seconds.how == "estimated"


def test_memory_follows_the_settings(chat_spec) -> None:
    from trainer_backend.training.plan import plan_job

    base = plan_job(chat_spec(gradient_checkpointing=False), hardware="l4x1")
    checkpointed = plan_job(chat_spec(), hardware="l4x1")  # on by default
    bigger = plan_job(chat_spec(batch_size=8, gradient_checkpointing=False), hardware="l4x1")
    quantized = plan_job(chat_spec(quantization="int4", gradient_checkpointing=False), hardware="l4x1")
    m = base.memory_gib
    assert checkpointed.memory_gib["activations"].value < m["activations"].value
    assert checkpointed.memory_gib["activations_without_checkpointing"].value == m["activations"].value
    assert bigger.memory_gib["activations"].value == pytest.approx(4 * m["activations"].value, rel=0.01)
    assert bigger.memory_gib["logits"].value == pytest.approx(4 * m["logits"].value, rel=0.01)
    assert quantized.memory_gib["weights"].value < m["weights"].value
    parts = ("weights", "lora_and_optimizer", "activations", "logits", "runtime")
    assert m["peak"].value == pytest.approx(sum(m[p].value for p in parts), abs=0.01)
    assert base.precision == "bf16" and base.fits is True and base.cost_usd.value is not None


def test_a_probe_measures_the_time(chat_spec) -> None:
    from trainer_backend.training.plan import plan_job

    plan = plan_job(chat_spec(), probe_steps=2)
    assert plan.time_seconds.how == "measured" and plan.time_seconds.value > 0
    assert "2 real optimizer steps" in plan.time_seconds.note


def test_cli_plan_prints_every_figure_with_how_it_was_obtained(chat_spec, tmp_path: Path, capsys) -> None:
    from trainer_backend.cli import main

    spec = chat_spec()
    path = spec.save(tmp_path / "spec.yaml")
    assert main(["plan", str(path), "--json", "--out", str(tmp_path / "plan.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "plan.json").read_text())
    assert {"weights", "lora_and_optimizer", "activations", "logits", "runtime", "peak"} <= set(printed["memory_gib"])
    assert main(["plan", str(path)]) == 0
    text = capsys.readouterr().out
    assert "peak memory:" in text and "(counted" in text and "(estimated" in text


def test_this_machine_is_planned_as_itself_and_a_cpu_time_is_measured_not_guessed(chat_spec, monkeypatch) -> None:
    """Issue 27: 'time 0.20 s' for a run that took 4 min 16 s, and a local box priced as a Spaces tier."""
    import os

    from trainer_backend.training.plan import plan_job

    monkeypatch.delenv("SPACE_HARDWARE", raising=False)
    monkeypatch.delenv("LORA_STUDIO_HARDWARE", raising=False)
    plan = plan_job(chat_spec())
    cores = len(os.sched_getaffinity(0))
    assert plan.hardware.startswith(f"this machine ({cores} CPU core")
    assert plan.time_seconds.value is None and "Measure the time with 3 real steps" in plan.time_seconds.note
    assert plan.cost_usd.value is None and "no cost: your own machine" in plan.markdown()
    measured = plan_job(chat_spec(), probe_steps=2)
    assert measured.time_seconds.how == "measured" and measured.time_seconds.value > 0
    assert "load the model and data" in measured.time_seconds.note
    named = plan_job(chat_spec(), hardware="t4-small")  # a named tier keeps its table time and its price
    assert named.hardware == "t4-small" and named.cost_usd.value is not None and "$0.40/h" in named.cost_usd.note
