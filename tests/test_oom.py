"""Out of memory halves the micro-batch and doubles accumulation, and the run goes on (training/oom.py).

The fault is injected on CPU: LORA_STUDIO_FAULT_OOM_TOKENS makes a forward pass over a micro-batch of more than
N tokens raise torch.OutOfMemoryError, as a GPU would."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer_backend.training.oom import FAULT_ENV, OutOfMemoryAtFloor, smaller_batch

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


def _events(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]


def test_smaller_batch_keeps_the_effective_batch(make_spec, real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / "text/tinyshakespeare.txt")},
                     training={"batch_size": 6, "gradient_accumulation": 2})
    half = smaller_batch(spec)
    assert (half.training.batch_size, half.training.gradient_accumulation) == (3, 4)
    third = smaller_batch(half)  # odd: 3 -> 1, accumulation x3
    assert (third.training.batch_size, third.training.gradient_accumulation) == (1, 12)
    with pytest.raises(OutOfMemoryAtFloor, match="block_size"):
        smaller_batch(third)


@pytest.mark.parametrize("save_steps, expect_resume", [(100, False), (2, True)])
def test_a_run_that_runs_out_of_memory_finishes_with_the_same_steps(make_spec, real_data: Path, monkeypatch,
                                                                    save_steps: int, expect_resume: bool) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer_backend.training.run import run_training

    # generic packs text into full blocks: every micro-batch holds batch_size x block_size tokens
    spec = make_spec({"path": str(real_data / "text/tinyshakespeare.txt"), "max_rows": 200},
                     lengths={"block_size": 32, "model_max_length": 512},
                     training={"trainer": "generic", "max_steps": 6, "batch_size": 4, "gradient_accumulation": 1,
                               "logging_steps": 1, "save_strategy": "steps", "save_steps": save_steps,
                               "eval_strategy": "no", "use_cpu": True})
    if expect_resume:  # the first model fails at its 4th step, after the checkpoint at step 2: go back to it
        builds = []

        def fault_after_three_steps(model):
            builds.append(model)
            if len(builds) == 1:
                _fail_from_step(model, 3)  # batch 4, accumulation 1: one forward pass per step
        monkeypatch.setattr("trainer_backend.training.run.install_fault_hook", fault_after_three_steps)
        monkeypatch.delenv(FAULT_ENV, raising=False)
    else:
        monkeypatch.setenv(FAULT_ENV, "100")  # 4 x 32 = 128 tokens fail, 2 x 32 = 64 fit
    result = run_training(spec)
    events = _events(spec.job_dir)
    adjusted = [e for e in events if e["event"] == "oom_adjusted"]
    assert len(adjusted) == 1, adjusted
    a = adjusted[0]
    assert (a["previous_batch_size"], a["previous_gradient_accumulation"]) == (4, 1)
    assert (a["batch_size"], a["gradient_accumulation"]) == (2, 2)
    assert (a["resume_from"] is not None) == expect_resume, a
    finished = next(e for e in events if e["event"] == "finished")
    assert finished["step"] == 6, "the same number of optimizer steps as planned"
    steps = [e["step"] for e in events if e["event"] == "log"]
    assert steps[-1] == 6 and sorted(set(steps)) == list(range(1, 7))
    assert "batch_size: 2" in (spec.job_dir / "spec.yaml").read_text(), "a resume starts with what fits"
    base = AutoModelForCausalLM.from_pretrained(spec.model.base_model)
    assert PeftModel.from_pretrained(base, str(result.adapter_dir)) is not None


def _fail_from_step(model, forward_calls_before_failing: int) -> None:
    """After N forward passes, fail every micro-batch bigger than 100 tokens (as the env hook does)."""
    import torch

    seen = {"n": 0}

    def check(module, args, kwargs):
        seen["n"] += 1
        ids = kwargs.get("input_ids", args[0] if args else None)
        if seen["n"] > forward_calls_before_failing and ids is not None and ids.numel() > 100:
            raise torch.OutOfMemoryError("injected after the first checkpoint")
    model.register_forward_pre_hook(check, with_kwargs=True)
