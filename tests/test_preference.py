"""Preference data in every supported shape, and the DPO / ORPO / reward trainers end to end."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from trainer_backend.data import prepare_data
from trainer_backend.data.formats import parse_transcript

FLAT = "preference/orca_dpo_pairs_validation_flat.jsonl"
OPENAI = "preference/orca_dpo_pairs_validation_openai.jsonl"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prefs(make_spec, tok, path: Path, trainer: str = "dpo", **lengths):
    spec = make_spec({"path": str(path), "chat_template": "chatml", "max_rows": 8},
                     training={"trainer": trainer}, lengths={"block_size": 512, "model_max_length": 1024, **lengths})
    return prepare_data(spec, tok)


def test_hh_transcripts_split_at_last_assistant_turn_even_without_blank_lines() -> None:
    chosen = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\nHuman: And 3+3?\nAssistant: 6."
    msgs = parse_transcript(chosen)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[-1]["content"] == "6." and msgs[2]["content"] == "And 3+3?"
    assert parse_transcript("Just an answer about Human: rights") is None


@pytest.mark.parametrize("rows", [
    # flat strings
    [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}],
    # message lists repeating the conversation
    [{"chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
      "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}]}],
    # explicit prompt and answers that repeat it (UltraFeedback-style)
    [{"prompt": "What is 2+2?",
      "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
      "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}]}],
    # Anthropic HH transcripts
    [{"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: What is 2+2?\nAssistant: 5"}],
], ids=["flat", "messages", "prompt+messages", "hh"])
def test_every_preference_shape_renders_the_same_pair(rows, make_spec, tiny_tokenizer, tmp_path: Path) -> None:
    prepared = _prefs(make_spec, tiny_tokenizer, _write(tmp_path / "p.jsonl", rows * 4))
    row = prepared.train.encoded.rows[0]
    assert row["prompt"] == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert row["chosen"] == "4<|im_end|><|endoftext|>" and row["rejected"] == "5<|im_end|><|endoftext|>"


def test_openai_dpo_form_keeps_system_prompt(make_spec, tiny_tokenizer, real_data: Path) -> None:
    prepared = _prefs(make_spec, tiny_tokenizer, real_data / OPENAI, block_size=8192, model_max_length=8192)
    assert prepared.detection.format == "preference"
    row = prepared.train.encoded.rows[0]
    assert row["prompt"].startswith("<|im_start|>system\nYou are an AI assistant.")
    assert row["chosen"].endswith("<|im_end|><|endoftext|>") and row["chosen"].count("<|endoftext|>") == 1


def test_prompt_and_completion_limits_are_enforced(make_spec, tiny_tokenizer, real_data: Path) -> None:
    prepared = _prefs(make_spec, tiny_tokenizer, real_data / FLAT, max_prompt_length=64,
                      max_completion_length=32)
    count = lambda text: len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for row in prepared.train.encoded.rows:
        assert count(row["prompt"]) <= 64 + 1  # re-tokenising a cut string may shift one boundary token
        assert count(row["chosen"]) <= 32 + 1 and count(row["rejected"]) <= 32 + 1
        assert row["prompt"].endswith("<|im_start|>assistant\n"), "the prompt keeps its end, cut from the left"
    assert prepared.report()["splits"]["train"]["truncated"] > 0


def test_reward_rows_are_token_ids_with_margin(make_spec, tiny_tokenizer, tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "margin": i / 10} for i in range(6)]
    prepared = _prefs(make_spec, tiny_tokenizer, _write(tmp_path / "p.jsonl", rows), trainer="reward")
    row = prepared.train.encoded.rows[3]
    assert tiny_tokenizer.decode(row["chosen_ids"]).endswith("good<|im_end|><|endoftext|>")
    assert row["margin"] == pytest.approx(0.3)


def test_preference_trainer_rejects_sft_data(make_spec, tiny_tokenizer, real_data: Path) -> None:
    from trainer_backend.data import DataError

    with pytest.raises(DataError, match="needs preference data"):
        _prefs(make_spec, tiny_tokenizer, real_data / "alpaca/self_instruct_seed_tasks.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("trainer, data", [("dpo", FLAT), ("orpo", OPENAI), ("reward", FLAT),
                                           ("generic", "text/c4_demo.jsonl")])
def test_trainer_runs_from_yaml_and_adapter_loads(trainer: str, data: str, tiny_model_dir: Path,
                                                  real_data: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from trainer_backend.spec import load_spec
    from trainer_backend.training.run import run_training

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "project_name": f"{trainer}-run", "output_dir": str(tmp_path / "job"),
        "model": {"base_model": str(tiny_model_dir)},
        "data": {"path": str(real_data / data), "chat_template": "chatml", "max_rows": 24, "valid_split": "auto",
                 "valid_fraction": 0.2},
        "lengths": {"block_size": 384, "model_max_length": 1024, "max_prompt_length": 256},
        "training": {"trainer": trainer, "max_steps": 3, "batch_size": 2, "gradient_accumulation": 1,
                     "logging_steps": 1, "save_strategy": "no"}}))
    result = run_training(load_spec(path)[0])
    assert result.status == "succeeded"
    events = [json.loads(l) for l in (result.job_dir / "events.jsonl").read_text().splitlines()]
    logs = [e for e in events if e["event"] == "log"]
    assert len(logs) == 3 and all(e["loss"] is not None for e in logs)
    if trainer in ("dpo", "orpo"):
        assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(logs[-1])
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    elif trainer == "reward":
        assert "accuracy" in logs[-1]
        base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    else:
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, result.adapter_dir)
    if trainer == "reward":  # the new score head is trained and saved with the adapter
        assert any("score" in n for n, _ in model.named_parameters() if "modules_to_save" in n)


@pytest.mark.slow
def test_dpo_learns_a_separable_preference(tiny_model_dir: Path, tmp_path: Path) -> None:
    from trainer_backend.spec import parse_spec
    from trainer_backend.training.run import run_training

    rng = random.Random(0)
    topics = ["cats", "rain", "music", "bread", "trains", "stars", "chess", "tea", "rivers", "maps"]
    rows = [{"prompt": f"Tell me something about {rng.choice(topics)} #{i}.",
             "chosen": "Sure! Here is a helpful fact.", "rejected": "No."} for i in range(60)]
    spec, _ = parse_spec({
        "project_name": "dpo-sep", "output_dir": str(tmp_path / "job"), "model": {"base_model": str(tiny_model_dir)},
        "data": {"path": str(_write(tmp_path / "p.jsonl", rows)), "chat_template": "chatml", "valid_split": "auto",
                 "valid_fraction": 0.2},
        "lengths": {"block_size": 128},
        "training": {"trainer": "dpo", "max_steps": 30, "learning_rate": 5e-3, "batch_size": 4,
                     "gradient_accumulation": 1, "logging_steps": 5, "save_strategy": "no", "eval_strategy": "no",
                     "warmup_ratio": 0.0, "scheduler": "constant"}})
    metrics = run_training(spec).metrics
    print(f"\nDPO held-out reward accuracy {metrics['eval_rewards/accuracies']:.2f}, "
          f"margin {metrics['eval_rewards/margins']:.2f}")
    assert metrics["eval_rewards/accuracies"] > 0.8
