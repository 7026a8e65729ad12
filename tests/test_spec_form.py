"""The Train tab's settings come from the spec (ui/spec_form.py): an empty optional number stays empty (never a 0
the spec then refuses), no widget carries a range Gradio would enforce with a message naming no field, and a
wrong value reaches the spec's check, which names the field."""
from __future__ import annotations

import gradio as gr
import pytest

from trainer_backend.spec import SpecError, parse_spec
from trainer_backend.ui.spec_form import FormField, build_fields, raw_to_values, values_to_raw


@pytest.fixture(scope="module")
def fields() -> list[FormField]:
    with gr.Blocks():
        return build_fields("basic") + build_fields("advanced") + build_fields("compute")


def _field(fields: list[FormField], key: str) -> FormField:
    return next(f for f in fields if f.key == key)


def _raw(fields: list[FormField], **changed: object) -> dict:
    values = [changed.get(f.key, f.component.value) for f in fields]
    return values_to_raw(fields, values, {"model": {"base_model": "tiny-demo"}, "data": {"path": "x.jsonl"}})


def test_empty_optional_numbers_are_empty_boxes_and_stay_out_of_the_spec(fields: list[FormField]) -> None:
    optional_numbers = [f for f in fields if f.optional and f.kind in ("int", "float")]
    assert {"data.max_rows", "training.eval_steps", "lengths.max_prompt_length"} <= {f.key for f in optional_numbers}
    for f in optional_numbers:
        assert isinstance(f.component, gr.Textbox), f.key
        if f.component.value == "":
            assert "Empty: the default." in (f.component.info or ""), f.key
    raw = _raw(fields)
    assert "eval_steps" not in raw.get("training", {}) and "max_rows" not in raw["data"]
    spec, _ = parse_spec(raw)  # the form as it opens is a valid spec
    assert spec.training.eval_steps is None and spec.data.max_rows is None


def test_no_widget_carries_a_range_gradio_would_enforce_and_the_help_says_it(fields: list[FormField]) -> None:
    numbers = [f for f in fields if isinstance(f.component, gr.Number)]
    assert numbers
    assert all(f.component.minimum is None and f.component.maximum is None for f in numbers)
    block_size = _field(fields, "lengths.block_size")
    assert (block_size.component.info or "").endswith("(at least 8)")
    assert "(more than 0, less than 0.9)" in (_field(fields, "data.valid_fraction").component.info or "")
    assert "(at least 0, less than 1)" in (_field(fields, "lora.dropout").component.info or "")


@pytest.mark.parametrize("key, typed, expect", [
    ("lengths.block_size", 3, "lengths.block_size"),        # out of range, from a number box
    ("training.eval_steps", "0", "training.eval_steps"),    # out of range, from a text box
    ("training.eval_steps", "ten", "training.eval_steps"),  # not a number
    ("training.max_steps", 2.5, "training.max_steps"),      # not a whole number: refused, never cut to 2
])
def test_a_wrong_value_is_refused_naming_its_field(fields: list[FormField], key: str, typed: object,
                                                   expect: str) -> None:
    with pytest.raises(SpecError, match=expect.replace(".", r"\.")):
        parse_spec(_raw(fields, **{key: typed}))


def test_typed_numbers_become_numbers_and_a_loaded_spec_fills_the_boxes(fields: list[FormField]) -> None:
    raw = _raw(fields, **{"training.eval_steps": " 12 ", "lengths.block_size": 128.0, "data.max_rows": "30"})
    assert raw["training"]["eval_steps"] == 12 and raw["lengths"]["block_size"] == 128 and raw["data"]["max_rows"] == 30
    assert isinstance(raw["lengths"]["block_size"], int)
    spec, _ = parse_spec(raw)
    values = dict(zip([f.key for f in fields], raw_to_values(fields, spec)))
    assert values["training.eval_steps"] == "12" and values["data.max_rows"] == "30"
    assert values["training.save_steps"] == "" and values["lengths.block_size"] == 128
    assert values_to_raw(fields, list(values.values()), {})["training"]["eval_steps"] == 12
