"""What you train is what you serve: a QLoRA adapter is chatted with on the base quantized as in training, and
chat and the pushed model card render the template text that trained (here the TRL training variant of Qwen3)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # trains (a handful of steps on the tiny model)

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def qlora_job(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> dict[str, Any]:
    """Train int4 QLoRA on CPU on a tiny model whose tokenizer carries Qwen3's own chat template; keep the trainer."""
    from trainer_backend.data.vendor_templates import trl_vendor_templates
    from trainer_backend.spec import parse_spec
    from trainer_backend.tiny_model import build_tiny_model
    from trainer_backend.training import run

    root = tmp_path_factory.mktemp("qlora")
    model = build_tiny_model(root / "model", chat_template=trl_vendor_templates()["qwen3"])
    spec, _ = parse_spec({
        "project_name": "qlora-qwen3", "output_dir": str(root / "job"), "model": {"base_model": str(model)},
        "data": {"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "max_rows": 8},
        "lengths": {"block_size": 128}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {"quantization": "int4", "max_steps": 3, "batch_size": 2, "gradient_accumulation": 1,
                     "learning_rate": 5e-3, "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no",
                     "gradient_checkpointing": False}})
    trainers: list[Any] = []
    build = run._build_trainer

    def keep_trainer(*args: Any, **kwargs: Any) -> Any:
        trainers.append(build(*args, **kwargs))
        return trainers[-1]

    patch = pytest.MonkeyPatch()
    # bitsandbytes 0.50 quantizes and trains on CPU; LoRA Studio's CPU fallback (training/hardware.py) would load
    # the base unquantized, so it is bypassed here to train real QLoRA on a machine without a GPU.
    patch.setattr(run, "fit_to_hardware", lambda spec: [])
    patch.setattr(run, "_build_trainer", keep_trainer)
    try:
        result = run.run_training(spec)
    finally:
        patch.undo()
    return {"spec": spec, "job": root / "job", "adapter": result.adapter_dir, "trainer": trainers[-1]}


def test_served_qlora_model_is_quantized_as_trained_and_gives_the_same_logits(qlora_job: dict) -> None:
    import bitsandbytes as bnb
    import torch

    from trainer_backend.inference import load_chat
    from trainer_backend.training.adapter_meta import read_adapter_meta

    trained_model = qlora_job["trainer"].model.eval()
    meta = read_adapter_meta(qlora_job["adapter"])
    trained_config = trained_model.config.quantization_config.to_dict()
    assert trained_config["bnb_4bit_quant_type"] == "nf4" and trained_config["bnb_4bit_use_double_quant"]
    assert meta.model_load.quantization_config == json.loads(trained_model.config.quantization_config.to_json_string(
        use_diff=False))

    chat, adapter = load_chat(str(qlora_job["job"]))
    served = chat.model
    assert served.config.quantization_config.to_dict() == trained_config
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in served.modules())
    ids = chat.prompt_ids(adapter, QUESTION)["input_ids"]
    with torch.no_grad():
        chat.model.set_adapter(adapter.name)
        expected = trained_model(input_ids=ids).logits
        got = served(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert meta.model_load.dtype == "float32" and meta.model_load.revision is None
    assert meta.model_load.trust_remote_code is False


def test_chat_and_model_card_render_the_template_that_trained(qlora_job: dict) -> None:
    from transformers import AutoTokenizer

    from trainer_backend.data import prepare_data
    from trainer_backend.data.chat_render import render_template
    from trainer_backend.data.vendor_templates import trl_training_variant
    from trainer_backend.hub.push import stage_adapter
    from trainer_backend.inference import load_chat
    from trainer_backend.training.adapter_meta import read_adapter_meta
    from trainer_backend.training.model_loading import load_tokenizer

    spec = qlora_job["spec"]
    prepared = prepare_data(spec, load_tokenizer(spec.model))
    training_template = prepared.template.source
    assert training_template == trl_training_variant("qwen3")
    meta = read_adapter_meta(qlora_job["adapter"])
    assert meta.chat_template_source == prepared.template.describe()
    assert "TRL training variant qwen3_training.jinja" in meta.chat_template_source

    # Chat: the prompt is the training rendering of the same turns, up to where the answer starts.
    chat, adapter = load_chat(str(qlora_job["job"]))
    tok = chat.tokenizers[adapter.name]
    assert tok.chat_template == training_template
    prompt = tok.decode(chat.prompt_ids(adapter, QUESTION)["input_ids"][0])
    trained_text, _ = render_template(tok, training_template, QUESTION + [{"role": "assistant", "content": "4"}])
    assert trained_text.startswith(prompt) and prompt.endswith("<|im_start|>assistant\n")
    assert chat.stop_settings(adapter)[0] == sorted({tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")})

    # The pushed repo: its tokenizer (what the card's snippet loads) carries the same template text.
    stage = qlora_job["job"].parent / "stage"
    stage_adapter(qlora_job["job"], stage, "alice/qlora-qwen3", meta, spec)
    pushed = AutoTokenizer.from_pretrained(stage)
    assert pushed.chat_template == training_template
    assert pushed.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True) == prompt
    card = (stage / "README.md").read_text()
    assert "apply_chat_template" in card and "qlora" in card
    assert meta.chat_template_source in card, "the card names the template text the repo's tokenizer carries"


def test_revision_and_remote_code_are_recorded_and_reused(make_spec, real_data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """revision and trust_remote_code reach every from_pretrained of the base, at training and at serving."""
    from transformers import AutoModelForCausalLM

    from trainer_backend.training.adapter_meta import AdapterMeta
    from trainer_backend.training.model_loading import load_base_model, load_model, model_load_settings

    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl")},
                     model={"revision": "v1.2", "trust_remote_code": True})
    calls: list[dict] = []
    real = AutoModelForCausalLM.from_pretrained

    def recording(name: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(name, **{k: v for k, v in kwargs.items() if k not in ("revision", "trust_remote_code")})

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording)
    load_base_model(spec)
    meta = AdapterMeta.model_validate_json(AdapterMeta(base_model=spec.model.base_model,
                                                       model_load=model_load_settings(spec)).model_dump_json())
    load_model(meta.load_settings())
    assert [(c["revision"], c["trust_remote_code"]) for c in calls] == [("v1.2", True), ("v1.2", True)]
