"""AutoTrain Advanced LLM configs are read through spec.parse_spec / load_spec and become valid JobSpecs."""
from __future__ import annotations

import copy
from functools import partial
from typing import Any

import pytest
import yaml

from trainer_backend.autotrain import is_autotrain_config, translate_autotrain
from trainer_backend.spec import SpecError, load_spec
from trainer_backend.spec import parse_spec as parse_any_spec

parse_spec = partial(parse_any_spec, expand=True)  # AutoTrain configs here are a person's own files (${HF_TOKEN})

SECRET = "hf_TopSecretValue_0123456789"

SFT_YAML = """
task: llm-sft
base_model: meta-llama/Llama-3.2-1B
project_name: autotrain-llama32-1b-finetune
log: tensorboard
backend: local
data:
  path: HuggingFaceH4/no_robots
  train_split: train
  valid_split: null
  chat_template: tokenizer
  column_mapping:
    text_column: messages
params:
  block_size: 2048
  model_max_length: 4096
  max_prompt_length: 512
  max_completion_length: null
  epochs: 2
  batch_size: 1
  lr: 1e-5
  peft: true
  quantization: int4
  target_modules: all-linear
  padding: right
  optimizer: paged_adamw_8bit
  scheduler: cosine
  gradient_accumulation: 8
  mixed_precision: bf16
  merge_adapter: true
  lora_r: 16
  lora_alpha: 32
  lora_dropout: 0.05
  warmup_ratio: 0.1
  weight_decay: 0.0
  max_grad_norm: 1.0
  seed: 42
  logging_steps: -1
  eval_strategy: epoch
  save_total_limit: 1
  auto_find_batch_size: false
  use_flash_attention_2: false
  disable_gradient_checkpointing: false
  unsloth: false
  distributed_backend: null
  add_eos_token: true
  model_ref: null
hub:
  username: ${HF_USERNAME}
  token: ${HF_TOKEN}
  push_to_hub: true
"""

DPO_YAML = """
task: llm-dpo
base_model: Qwen/Qwen2.5-0.5B-Instruct
project_name: qwen-dpo
log: none
backend: local
data:
  path: argilla/distilabel-capybara-dpo-7k-binarized
  train_split: train
  valid_split: null
  chat_template: null
  column_mapping:
    prompt_text_column: prompt
    text_column: chosen
    rejected_text_column: rejected
params:
  block_size: 1024
  model_max_length: 2048
  max_prompt_length: 512
  max_completion_length: 512
  epochs: 1
  batch_size: 2
  lr: 5e-6
  peft: true
  quantization: null
  dpo_beta: 0.25
hub:
  username: ${HF_USERNAME}
  token: ${HF_TOKEN}
  push_to_hub: false
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_USERNAME", "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)


def _cfg(text: str = SFT_YAML, **params: Any) -> dict[str, Any]:
    raw = yaml.safe_load(text)
    raw["params"].update(params)
    return raw


def _has(warnings: list[str], *parts: str) -> bool:
    return any(all(p in w for p in parts) for w in warnings)


def test_detection_tells_autotrain_from_our_layout() -> None:
    assert is_autotrain_config(_cfg())
    assert is_autotrain_config({"task": "llm", "base_model": "gpt2", "data": {"path": "d"}})
    assert is_autotrain_config({"base_model": "gpt2", "data": {"path": "d"}, "params": {}})
    assert not is_autotrain_config({"model": {"base_model": "gpt2"}, "data": {"path": "d"}})


def test_sft_config_becomes_a_valid_jobspec() -> None:
    spec, warnings = parse_spec(_cfg())
    assert spec.project_name == "autotrain-llama32-1b-finetune"
    assert spec.model.base_model == "meta-llama/Llama-3.2-1B"
    assert spec.model.attn_implementation == "auto"
    assert spec.training.trainer == "sft"
    assert spec.data.path == "HuggingFaceH4/no_robots" and spec.data.train_split == "train"
    assert spec.data.valid_split is None and spec.data.chat_template == "tokenizer"
    assert spec.data.column_mapping.messages == "messages" and spec.data.column_mapping.text is None
    assert (spec.lengths.block_size, spec.lengths.model_max_length) == (2048, 4096)
    assert spec.lengths.max_prompt_length is None  # AutoTrain's sft trainer does not use it either
    assert spec.lora.enabled and (spec.lora.r, spec.lora.alpha, spec.lora.dropout) == (16, 32, 0.05)
    assert spec.lora.target_modules == "all-linear"
    t = spec.training
    assert t.quantization == "int4" and t.learning_rate == pytest.approx(1e-5)
    assert (t.epochs, t.batch_size, t.gradient_accumulation) == (2, 1, 8)
    assert (t.optimizer, t.scheduler, t.mixed_precision, t.log) == ("paged_adamw_8bit", "cosine", "bf16", "tensorboard")
    assert (t.warmup_ratio, t.weight_decay, t.max_grad_norm, t.seed) == (0.1, 0.0, 1.0, 42)
    assert t.logging_steps == 10  # -1 (auto) leaves our default
    assert t.eval_strategy == "no"  # no validation split, as in AutoTrain
    assert t.save_total_limit == 1 and t.gradient_checkpointing is True
    assert spec.hub.push_to_hub and spec.hub.repo_id == "alice/autotrain-llama32-1b-finetune"
    assert spec.hub.token is not None and spec.hub.token.get_secret_value() == SECRET
    assert _has(warnings, "backend", "ignored")
    assert _has(warnings, "params.merge_adapter")
    assert _has(warnings, "params.max_prompt_length")
    # Keys at their no-effect defaults stay quiet.
    for quiet in ("padding", "unsloth", "auto_find_batch_size", "add_eos_token", "model_ref", "logging_steps"):
        assert not _has(warnings, quiet), quiet


def test_token_never_leaks_into_warnings_or_yaml() -> None:
    raw = _cfg(mystery_option=1)
    raw["hub"]["private_token_copy"] = SECRET  # an unknown key holding a secret: named, never quoted
    spec, warnings = parse_spec(raw)
    assert _has(warnings, "hub.private_token_copy")
    assert all(SECRET not in w for w in warnings)
    assert SECRET not in spec.to_yaml() and SECRET not in repr(spec)
    assert spec.hub.token.get_secret_value() == SECRET


def test_literal_token_is_kept_but_never_printed() -> None:
    raw = _cfg()
    raw["hub"]["token"] = SECRET
    _, translated_warnings = translate_autotrain(raw)
    spec, warnings = parse_spec(raw)
    assert spec.hub.token.get_secret_value() == SECRET
    assert all(SECRET not in w for w in warnings + translated_warnings)


def test_missing_token_variable_is_only_an_error_when_pushing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SpecError, match="HF_TOKEN"):
        parse_spec(_cfg())
    raw = _cfg()
    raw["hub"]["push_to_hub"] = False
    spec, _ = parse_spec(raw)  # AutoTrain reads an unset ${HF_TOKEN} as "no token"
    assert spec.hub.token is None and spec.hub.repo_id is None and not spec.hub.push_to_hub


def test_dpo_maps_prompt_chosen_rejected() -> None:
    spec, warnings = parse_spec(yaml.safe_load(DPO_YAML))
    cm = spec.data.column_mapping
    assert spec.training.trainer == "dpo" and spec.data.format == "preference"
    assert (cm.prompt, cm.chosen, cm.rejected) == ("prompt", "chosen", "rejected")
    assert spec.data.chat_template == "none"
    assert (spec.lengths.max_prompt_length, spec.lengths.max_completion_length) == (512, 512)
    assert spec.training.beta == 0.25 and spec.training.quantization == "none"
    assert spec.training.log == "none" and not spec.hub.push_to_hub


@pytest.mark.parametrize("task,trainer", [("llm-generic", "generic"), ("llm-orpo", "orpo"),
                                          ("llm-reward", "reward"), ("llm-sft", "sft")])
def test_task_suffix_picks_the_trainer(task: str, trainer: str) -> None:
    raw = yaml.safe_load(DPO_YAML)
    raw["task"] = task
    assert parse_spec(raw)[0].training.trainer == trainer


def test_plain_llm_task_reads_params_trainer() -> None:
    raw = _cfg(trainer="default")
    raw["task"] = "llm"
    raw["data"]["chat_template"] = None
    raw["data"]["column_mapping"] = {"text_column": "text"}
    spec, _ = parse_spec(raw)
    assert spec.training.trainer == "generic"
    assert spec.data.column_mapping.text == "text" and spec.data.chat_template == "none"

    del raw["params"]["trainer"]
    spec, warnings = parse_spec(raw)
    assert spec.training.trainer == "generic" and _has(warnings, "no trainer set")

    raw["params"]["trainer"] = "sft"
    assert parse_spec(raw)[0].training.trainer == "sft"


def test_params_trainer_overrides_task_with_a_warning() -> None:
    spec, warnings = parse_spec(_cfg(trainer="generic"))
    assert spec.training.trainer == "generic" and _has(warnings, "params.trainer", "overrides task")


def test_sft_plain_text_column_uses_text_format() -> None:
    raw = _cfg()
    raw["data"]["chat_template"] = None
    raw["data"]["column_mapping"] = {"text_column": "text"}
    spec, _ = parse_spec(raw)
    assert spec.data.format == "text" and spec.data.column_mapping.text == "text"
    assert spec.data.chat_template == "none"


def test_unknown_keys_are_named_in_warnings() -> None:
    raw = _cfg(mystery_option=3, optimizer="lion_32bit", log="wandb")
    raw["data"]["column_mapping"]["weird_column"] = "x"
    raw["data"]["streaming"] = True
    raw["spaces"] = {"hardware": "a10g"}
    spec, warnings = parse_spec(raw)
    for path in ("params.mystery_option", "data.column_mapping.weird_column", "data.streaming", "spaces",
                 "params.optimizer", "params.log"):
        assert _has(warnings, path, "ignored"), path
    assert spec.training.optimizer == "adamw_torch" and spec.training.log == "none"


def test_switches_and_auto_values() -> None:
    spec, warnings = parse_spec(_cfg(use_flash_attention_2=True, disable_gradient_checkpointing=True,
                                     block_size=-1, mixed_precision=None, logging_steps=5,
                                     target_modules=["q_proj", "v_proj"], unsloth=True))
    assert spec.model.attn_implementation == "flash_attention_2"
    assert spec.training.gradient_checkpointing is False and spec.training.mixed_precision == "no"
    assert spec.lengths.block_size == 1024 and _has(warnings, "params.block_size", "-1")
    assert spec.training.logging_steps == 5 and spec.lora.target_modules == "q_proj,v_proj"
    assert _has(warnings, "params.unsloth")


def test_missing_peft_means_full_finetuning_like_autotrain() -> None:
    raw = _cfg()
    del raw["params"]["peft"]
    spec, warnings = parse_spec(raw)
    assert not spec.lora.enabled and spec.training.quantization == "none"
    assert _has(warnings, "peft is not set") and _has(warnings, "params.quantization", "ignored")


def test_eval_strategy_with_a_validation_split() -> None:
    raw = _cfg(eval_strategy="steps", logging_steps=20)
    raw["data"]["valid_split"] = "test"
    spec, _ = parse_spec(raw)
    assert spec.data.valid_split == "test"
    assert spec.training.eval_strategy == "steps" and spec.training.eval_steps == 20


def test_bad_project_name_is_sanitized() -> None:
    raw = _cfg()
    raw["project_name"] = "my project/v1!"
    spec, warnings = parse_spec(raw)
    assert spec.project_name == "my-project-v1" and spec.hub.repo_id == "alice/my-project-v1"
    assert _has(warnings, "project_name", "my-project-v1")


def test_unsupported_tasks_and_trainers_fail_clearly() -> None:
    with pytest.raises(SpecError, match="text-classification"):
        parse_spec({"task": "text-classification", "base_model": "bert-base-uncased", "data": {"path": "d"}})
    with pytest.raises(SpecError, match="ppo"):
        parse_spec(_cfg(trainer="ppo"))


def test_block_size_above_model_max_length_is_reported_by_validation() -> None:
    with pytest.raises(SpecError, match="block_size"):
        parse_spec(_cfg(block_size=8192, model_max_length=4096))


def test_translation_does_not_modify_its_input() -> None:
    raw = _cfg()
    before = copy.deepcopy(raw)
    translate_autotrain(raw)
    assert raw == before


def test_load_spec_reads_an_autotrain_file(tmp_path: Any) -> None:
    path = tmp_path / "autotrain.yml"
    path.write_text(SFT_YAML, encoding="utf-8")
    spec, warnings = load_spec(path, overrides=["params.lr=3e-4"])
    assert spec.training.trainer == "sft" and spec.training.learning_rate == pytest.approx(3e-4)
    assert spec.hub.token.get_secret_value() == SECRET and SECRET not in spec.to_yaml()
    assert _has(warnings, "params.merge_adapter")


def test_our_own_layout_is_not_translated() -> None:
    spec, warnings = parse_spec({"model": {"base_model": "gpt2"}, "data": {"path": "data.jsonl"}})
    assert warnings == [] and spec.training.trainer == "sft" and spec.lora.enabled


def test_warnings_name_what_lora_studio_has_now() -> None:
    """AutoTrain settings LoRA Studio has an answer for are applied or pointed at, never called missing."""
    out, warnings = translate_autotrain(_cfg(distributed_backend="deepspeed", merge_adapter=True))
    assert out["training"]["distributed"] == "deepspeed" and not _has(warnings, "distributed_backend")
    assert _has(warnings, "params.merge_adapter", "push <job> --merged") and not _has(warnings, "not supported yet")
    assert _has(warnings, "backend", "compute.backend: hf_jobs")
    _, warnings = translate_autotrain(_cfg(distributed_backend="horovod"))
    assert _has(warnings, "distributed_backend", "'horovod' is not supported")
