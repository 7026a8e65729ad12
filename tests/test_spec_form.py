"""The Train tab's settings come from the spec (ui/spec_form.py, ui/form_fields.py): every field has a human label,
a named section and its spec key in the help; an empty optional number stays empty (never a 0 the spec then
refuses); no widget carries a range Gradio would enforce with a message naming no field; a wrong value is named at
its own field; fields that do not apply to the chosen trainer or backend are hidden."""
from __future__ import annotations

import gradio as gr
import pytest

from trainer_backend.spec import JobSpec, SpecError, parse_spec
from trainer_backend.spec_base import FORM_GROUPS, STEP_GROUPS
from trainer_backend.ui.form_fields import (FormField, field_errors, raw_to_values, spec_fields, values_to_raw,
                                            visibility)
from trainer_backend.ui.spec_form import build_fields


@pytest.fixture(scope="module")
def fields() -> list[FormField]:
    with gr.Blocks():
        return [f for group in (*STEP_GROUPS, *FORM_GROUPS) for f in build_fields(group)]


def _field(fields: list[FormField], key: str) -> FormField:
    return next(f for f in fields if f.key == key)


def _values(fields: list[FormField], **changed: object) -> list:
    return [changed.get(f.key, f.component.value) for f in fields]


def _raw(fields: list[FormField], **changed: object) -> dict:
    return values_to_raw(fields, _values(fields, **changed),
                         {"model": {"base_model": "tiny-demo"}, "data": {"path": "x.jsonl"}})


def test_every_field_has_a_label_a_section_and_shows_its_spec_key(fields: list[FormField]) -> None:
    keys = [f.key for f in fields]
    assert len(keys) == len(set(keys)) == len(spec_fields()), "each spec field appears exactly once"
    for f in fields:
        assert f.group in FORM_GROUPS or f.group in STEP_GROUPS, f.key
        assert f.label and "_" not in f.label and f.label != f.key, f"{f.key}: a human label, not the spec key"
        assert f.component.label == f.label and (f.component.info or "").endswith(f"· {f.key}"), f.key
    assert _field(fields, "lora.r").label == "Rank" and _field(fields, "lengths.block_size").group == "training"
    assert _field(fields, "training.eval_steps").group == "evaluation"
    assert {f.key for f in fields if f.group == "grpo"} == {f"grpo.{n}" for n in JobSpec.model_fields["grpo"]
                                                           .annotation.model_fields if n != "rewards"}


def test_empty_optional_numbers_are_empty_boxes_and_stay_out_of_the_spec(fields: list[FormField]) -> None:
    optional_numbers = [f for f in fields if f.optional and f.kind in ("int", "float")]
    assert {"data.max_rows", "training.eval_steps", "lengths.max_prompt_length"} <= {f.key for f in optional_numbers}
    for f in optional_numbers:
        assert isinstance(f.component, gr.Textbox), f.key
    raw = _raw(fields)
    assert "eval_steps" not in raw.get("training", {}) and "max_rows" not in raw["data"]
    spec, _ = parse_spec(raw)  # the form as it opens is a valid spec
    assert spec.training.eval_steps is None and spec.data.max_rows is None and spec.data.valid_split is None


def test_no_widget_carries_a_range_gradio_would_enforce_and_the_help_says_it(fields: list[FormField]) -> None:
    numbers = [f for f in fields if isinstance(f.component, gr.Number)]
    assert numbers
    assert all(f.component.minimum is None and f.component.maximum is None for f in numbers)
    assert "(at least 8)" in (_field(fields, "lengths.block_size").component.info or "")
    assert "(more than 0, less than 0.9)" in (_field(fields, "data.valid_fraction").component.info or "")


@pytest.mark.parametrize("key, typed, says", [
    ("lengths.block_size", 3, "must be at least 8"),          # out of range, from a number box
    ("training.eval_steps", "0", "must be at least 1"),       # out of range, from a text box
    ("training.eval_steps", "ten", "must be a whole number"),  # not a number
    ("training.max_steps", 2.5, "must be a whole number"),     # refused, never cut to 2
])
def test_a_wrong_value_is_named_at_its_own_field(fields: list[FormField], key: str, typed: object, says: str) -> None:
    raw = _raw(fields, **{key: typed})
    errors, general = field_errors(raw, {f.key for f in fields})
    assert errors == {key: says} and general == []
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):  # the CLI / API path says it too
        parse_spec(raw)


def test_a_problem_between_fields_is_shown_at_each_field_it_names(fields: list[FormField]) -> None:
    errors, _ = field_errors(_raw(fields, **{"lengths.block_size": 4096}), {f.key for f in fields})
    assert set(errors) == {"lengths.block_size", "lengths.model_max_length"}
    assert "must be <= lengths.model_max_length" in errors["lengths.block_size"]
    errors, _ = field_errors(_raw(fields, **{"compute.backend": "hf_jobs"}), {f.key for f in fields})
    assert "compute.timeout" in errors, errors  # "hf_jobs needs compute.timeout": at the field to fill in


def test_no_dataset_is_said_in_words_not_as_a_missing_key(fields: list[FormField]) -> None:
    raw = values_to_raw(fields, _values(fields), {"model": {"base_model": "tiny-demo"}})
    errors, general = field_errors(raw, {f.key for f in fields})
    assert errors == {} and general == ["pick a dataset (a sample, an upload or a Hub id)"]


def test_fields_that_do_not_apply_are_hidden(fields: list[FormField]) -> None:
    shown = visibility(fields, _values(fields))
    assert shown["training.completion_only_loss"] and shown["lora.r"]
    assert not shown["training.beta"] and not shown["training.dpo_loss_type"]  # sft has neither
    assert not shown["compute.flavor"] and not shown["compute.timeout"]  # a local run has no HF Jobs settings
    assert not shown["training.eval_steps"] and not shown["hub.repo_id"] and not shown["data.valid_fraction"]
    shown = visibility(fields, _values(fields, **{"training.trainer": "dpo", "compute.backend": "hf_jobs",
                                                  "lora.enabled": False, "data.valid_split": "auto"}))
    assert shown["training.beta"] and shown["training.dpo_loss_type"] and not shown["training.completion_only_loss"]
    assert shown["compute.flavor"] and shown["compute.timeout"] and shown["data.valid_fraction"]
    assert not shown["lora.r"], "LoRA rank means nothing for full fine-tuning"
    assert visibility(fields, _values(fields, **{"training.trainer": "kto"}))["training.beta"]


def test_validation_split_is_a_choice_and_a_loaded_spec_fills_the_boxes(fields: list[FormField]) -> None:
    split = _field(fields, "data.valid_split").component
    assert isinstance(split, gr.Dropdown) and split.value == "none"
    assert [c[1] for c in split.choices] == ["none", "auto"] and split.allow_custom_value  # or a split name
    raw = _raw(fields, **{"training.eval_steps": " 12 ", "lengths.block_size": 128.0, "data.max_rows": "30",
                          "data.valid_split": "validation"})
    assert raw["training"]["eval_steps"] == 12 and raw["lengths"]["block_size"] == 128 and raw["data"]["max_rows"] == 30
    assert isinstance(raw["lengths"]["block_size"], int) and raw["data"]["valid_split"] == "validation"
    spec, _ = parse_spec(raw)
    values = dict(zip([f.key for f in fields], raw_to_values(fields, spec)))
    assert values["training.eval_steps"] == "12" and values["data.max_rows"] == "30"
    assert values["training.save_steps"] == "" and values["lengths.block_size"] == 128
    assert values["data.valid_split"] == "validation"
    assert values_to_raw(fields, list(values.values()), {})["training"]["eval_steps"] == 12
