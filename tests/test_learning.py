"""Does LoRA SFT actually learn? 20 country->capital facts in chat form on a tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

FACTS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
         "Poland": "Warsaw", "Austria": "Vienna", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm",
         "Finland": "Helsinki", "Denmark": "Copenhagen", "Ireland": "Dublin", "Hungary": "Budapest",
         "Egypt": "Cairo", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago",
         "Canada": "Ottawa"}


def _question(country: str) -> str:
    return f"What is the capital of {country}?"


def _answer(country: str) -> str:
    return f"The capital of {country} is {FACTS[country]}."


@pytest.fixture(scope="module")
def facts_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer_backend.tiny_model import build_tiny_model

    corpus = [f"{_question(c)} {_answer(c)}" for c in FACTS] * 5
    return build_tiny_model(tmp_path_factory.mktemp("facts-model"), corpus=corpus, vocab_size=512)


def test_lora_sft_learns_facts(facts_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer_backend.spec import parse_spec
    from trainer_backend.training.run import run_training

    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": _question(c)},
                                                     {"role": "assistant", "content": _answer(c)}]}) + "\n"
                            for c in FACTS))
    spec, _ = parse_spec({
        "project_name": "facts", "output_dir": str(tmp_path / "job"), "model": {"base_model": str(facts_model)},
        "data": {"path": str(data), "chat_template": "chatml"}, "lengths": {"block_size": 64},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "training": {"max_steps": 150, "learning_rate": 3e-3, "batch_size": 4, "gradient_accumulation": 1,
                     "logging_steps": 10, "save_strategy": "no", "warmup_ratio": 0.0, "scheduler": "constant",
                     "packing": False, "gradient_checkpointing": False}})
    result = run_training(spec)
    losses = [e["loss"] for e in map(json.loads, (tmp_path / "job/events.jsonl").read_text().splitlines())
              if e["event"] == "log"]
    first, last = losses[0], losses[-1]

    tok = AutoTokenizer.from_pretrained(result.adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(facts_model), result.adapter_dir).eval()
    stop_ids = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    correct = 0
    for country in FACTS:
        enc = tok.apply_chat_template([{"role": "user", "content": _question(country)}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=24, do_sample=False, eos_token_id=stop_ids,
                                 pad_token_id=tok.pad_token_id)
        new = out[0][enc["input_ids"].shape[1]:]
        correct += tok.decode(new, skip_special_tokens=True).strip() == _answer(country)
        assert new[-1].item() in stop_ids, "generation must stop at the end-of-turn token"
    print(f"\nlearning check: loss {first:.3f} -> {last:.3f} ({last / first:.1%}), exact {correct}/{len(FACTS)}")
    assert last <= first / 2, f"training loss fell only from {first:.3f} to {last:.3f}"
    assert correct >= 16, f"adapter answered only {correct}/{len(FACTS)} facts exactly"
