"""Training paths in-process: QLoRA on CPU, generic block packing, packing without cross-sample attention."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


def test_qlora_int4_loads_4bit_and_trains(make_spec, real_data: Path) -> None:
    import bitsandbytes as bnb

    from trainer_backend.training.model_loading import load_base_model, load_tokenizer
    from trainer_backend.training.run import run_training

    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "chat_template": "chatml",
                      "max_rows": 20},
                     training={"quantization": "int4", "max_steps": 2, "batch_size": 2, "gradient_accumulation": 1,
                               "logging_steps": 1, "save_strategy": "no"})
    model = load_base_model(spec, "causal", load_tokenizer(spec.model))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    result = run_training(spec)
    assert result.status == "succeeded" and (result.adapter_dir / "adapter_model.safetensors").exists()


def test_generic_packs_text_into_full_blocks(make_spec, real_data: Path) -> None:
    from trainer_backend.data import prepare_data
    from trainer_backend.training.common import TrainContext
    from trainer_backend.training.model_loading import load_base_model, load_tokenizer, lora_config
    from trainer_backend.training.trainers import trainer_module

    spec = make_spec({"path": str(real_data / "text/tinyshakespeare.txt"), "max_rows": 400},
                     lengths={"block_size": 128}, training={"trainer": "generic", "max_steps": 1})
    tok = load_tokenizer(spec.model)
    train, _ = prepare_data(spec, tok).to_datasets()
    ctx = TrainContext(spec, load_base_model(spec, "causal", tok), tok, train, None, lora_config(spec))
    trainer = trainer_module("generic").build(ctx)
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    assert set(lengths[:-1]) == {128}, "every block but the last is exactly block_size"
    assert sum(lengths) == sum(len(x) for x in train["input_ids"]), "no token is lost when chunking"


def test_packed_samples_do_not_attend_across_boundaries(tiny_model_dir: Path) -> None:
    """bfd packing is padding-free: position_ids restart per sample and the model must honour them.
    (transformers only derives the block-diagonal mask without a KV cache, i.e. in training: use_cache=False.)"""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    a, b = torch.randint(5, 300, (1, 17)), torch.randint(5, 300, (1, 11))
    with torch.no_grad():
        alone_b = model(input_ids=b, use_cache=False).logits
        packed = model(input_ids=torch.cat([a, b], 1),
                       position_ids=torch.cat([torch.arange(17), torch.arange(11)]).unsqueeze(0), use_cache=False).logits
    torch.testing.assert_close(packed[:, 17:], alone_b, atol=1e-4, rtol=1e-4)


def test_injected_fault_is_recorded_with_last_traceback_line(make_spec, real_data: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend.training.run import run_training

    monkeypatch.setenv("LORA_STUDIO_FAULT_AT_STEP", "1")
    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "chat_template": "chatml",
                      "max_rows": 10}, training={"max_steps": 3, "save_strategy": "no"})
    with pytest.raises(RuntimeError, match="injected fault"):
        run_training(spec)
    last = json.loads((spec.job_dir / "events.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "failed" and last["error"].startswith("RuntimeError: injected fault at step 1")
