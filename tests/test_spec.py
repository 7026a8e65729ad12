"""JobSpec: defaults, cross-field validation with clear messages, YAML round trip, secrets, env expansion."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainer_backend.spec import JobSpec, SpecError, load_spec, parse_spec

BASE = {"model": {"base_model": "Qwen/Qwen2.5-0.5B-Instruct"}, "data": {"path": "train.jsonl"}}


def _spec(**sections) -> JobSpec:
    raw = {**BASE}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_spec(raw)[0]


def test_defaults_suit_a_small_model_on_one_gpu() -> None:
    spec = _spec()
    assert spec.training.trainer == "sft" and spec.lora.enabled and spec.lora.target_modules == "all-linear"
    assert spec.packing is None and spec.training.completion_only_loss  # decided from the attention kernel
    from trainer_backend.training.model_loading import resolve_packing

    assert resolve_packing(_spec(training={"use_cpu": True})) is False, "SDPA on CPU: dynamic padding wins"
    assert resolve_packing(_spec(model={"base_model": "x", "attn_implementation": "flash_attention_2"})) is True
    assert resolve_packing(_spec(training={"trainer": "generic", "use_cpu": True})) is True
    assert spec.job_dir == Path.cwd() / "lora-studio-run"
    assert spec.model.trust_remote_code is False


@pytest.mark.parametrize("sections, message", [
    ({"lengths": {"block_size": 4096, "model_max_length": 2048}}, "block_size (4096) must be <= lengths.model_max_length"),
    ({"lengths": {"block_size": 256, "max_prompt_length": 300}}, "max_prompt_length (300) must be < lengths.block_size"),
    ({"training": {"quantization": "int4"}, "lora": {"enabled": False}}, "needs lora.enabled=true"),
    ({"training": {"trainer": "dpo"}, "data": {"path": "x.jsonl", "format": "alpaca"}}, "needs preference data"),
    ({"training": {"eval_strategy": "steps"}}, "needs training.eval_steps"),
    ({"training": {"learning_rate": -1}}, "training.learning_rate"),
    ({"training": {"trainer": "ppo"}}, "training.trainer"),
    ({"lora": {"rank": 8}}, "lora.rank: unknown key"),
    ({"project_name": "../escape"}, "project_name"),
])
def test_invalid_specs_say_what_to_change(sections: dict, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        _spec(**sections)
    assert message in str(exc.value)


def test_yaml_round_trip_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    raw = {**BASE, "hub": {"push_to_hub": True, "token": "${HF_TOKEN}"}, "training": {"learning_rate": 1e-4}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec, _ = load_spec(path)
    assert spec.hub.token.get_secret_value() == "hf_secretvalue123"
    assert "hf_secretvalue123" not in repr(spec) and "hf_secretvalue123" not in spec.to_yaml()
    saved = spec.save(tmp_path / "out/spec.yaml")
    again, _ = load_spec(saved)
    assert again.hub.token is None and again.training.learning_rate == 1e-4
    assert again.model_dump(exclude={"hub"}) == spec.model_dump(exclude={"hub"})


def test_env_expansion_defaults_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_MODEL", "org/model")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    spec, _ = parse_spec({"model": {"base_model": "${MY_MODEL}"}, "data": {"path": "${DATA:-d.jsonl}"}}, expand=True)
    assert spec.model.base_model == "org/model" and spec.data.path == "d.jsonl"
    with pytest.raises(SpecError, match="NOT_SET_ANYWHERE is not set"):
        parse_spec({"model": {"base_model": "${NOT_SET_ANYWHERE}"}, "data": {"path": "x"}}, expand=True)


def test_saved_job_specs_and_client_specs_never_read_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a person's own YAML file is expanded; a job's saved spec is read as written, and a spec a client
    sent is refused with the key that named a variable."""
    from trainer_backend.spec import load_job_spec, refuse_env_refs

    monkeypatch.setenv("SERVER_SECRET", "hf_server_secret_value_0000")
    raw = {**BASE, "project_name": "p", "data": {"path": "d.jsonl", "system_prompt": "say ${SERVER_SECRET}"}}
    assert parse_spec(raw)[0].data.system_prompt == "say ${SERVER_SECRET}"  # not expanded unless asked
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_job_spec(path)[0].data.system_prompt == "say ${SERVER_SECRET}"
    assert load_spec(path)[0].data.system_prompt == "say hf_server_secret_value_0000"  # the CLI's own file
    with pytest.raises(SpecError, match=r"data.system_prompt: '\$\{SERVER_SECRET\}' refers to an environment"):
        refuse_env_refs(raw)
    with pytest.raises(SpecError, match=r"grpo.rewards\[1\].value"):
        refuse_env_refs({"grpo": {"rewards": [{"type": "exact"}, {"value": "${HF_TOKEN:-x}"}]}})
    refuse_env_refs({"data": {"system_prompt": "costs $5 {per} item", "path": "$HOME/x"}})  # no ${NAME}: fine


def test_cli_style_overrides(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(BASE))
    spec, _ = load_spec(path, ["training.learning_rate=5e-5", "lora.target_modules=q_proj,v_proj",
                               "data.valid_split=auto", "training.packing=false"])
    assert spec.training.learning_rate == 5e-5 and spec.lora.target_list() == ["q_proj", "v_proj"]
    assert spec.data.valid_split == "auto" and spec.packing is False


def test_schema_carries_ui_metadata() -> None:
    schema = JobSpec.model_json_schema()
    lr = schema["$defs"]["TrainingSpec"]["properties"]["learning_rate"]
    assert lr["ui"] == "basic" and lr["description"] and lr["exclusiveMinimum"] == 0
