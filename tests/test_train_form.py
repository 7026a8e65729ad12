"""Presets fill the Train tab for the person (training/presets.py) and the form says what they changed and why; the
page never shows a check or plan result for values other than those on screen (ui/train_form.py)."""
from __future__ import annotations

import gradio as gr
import pytest

from trainer_backend.model_info import ModelFit
from trainer_backend.spec import parse_spec
from trainer_backend.spec_base import FORM_GROUPS, STEP_GROUPS
from trainer_backend.trainer_registry import TRAINERS
from trainer_backend.training.presets import PRESETS, choose
from trainer_backend.ui.spec_form import build_fields
from trainer_backend.ui.train_form import MAPPING_ROLES, STALE, TrainForm

SAMPLES = {"capitals.jsonl": "examples/capitals.jsonl"}
GRPO_REWARDS = [["numeric_match", "correct", 1.0, "answer", ""]]


def _fit(gpu_gib: float | None, fits: bool | None, estimated: float = 20.0) -> ModelFit:
    return ModelFit("org/model", 7_000_000_000, "none", 14.0, estimated, "H100" if gpu_gib else None, gpu_gib, fits,
                    "")


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_every_preset_makes_a_valid_spec_for_every_trainer(preset: str, trainer: str) -> None:
    for fit in (None, _fit(80, True), _fit(16, False)):
        choice = choose(preset, trainer, fit)
        raw: dict = {"model": {"base_model": "org/model"}, "data": {"path": "x.jsonl"}, "training": {"trainer": trainer}}
        for key, value in choice.values.items():
            section, leaf = key.split(".")
            raw.setdefault(section, {})[leaf] = value
        if trainer == "grpo":
            raw["grpo"] = {**raw.get("grpo", {}), "rewards": [{"type": "exact_match", "column": "answer"}]}
        spec, _ = parse_spec(raw)  # a preset never proposes a spec the check refuses
        assert choice.reasons and all(isinstance(r, str) and r for r in choice.reasons)
        assert spec.lora.enabled


def test_presets_follow_the_hardware_and_the_trainer() -> None:
    quick, best = choose("quick", "sft", None), choose("best", "sft", None)
    assert quick.values["training.max_steps"] > 0 and best.values["training.epochs"] == 3
    assert best.values["lora.r"] > quick.values["lora.r"]
    assert choose("balanced", "dpo", None).values["training.learning_rate"] < \
        choose("balanced", "sft", None).values["training.learning_rate"], "preference trainers take a lower rate"
    too_big = choose("balanced", "sft", _fit(16, False, estimated=30))
    assert too_big.values["training.quantization"] == "int4"
    assert any("4-bit" in r and "16 GiB" in r for r in too_big.reasons), too_big.reasons
    assert choose("balanced", "sft", None).values["training.quantization"] == "none", "no 4-bit without a GPU"
    tiny = choose("quick", "sft", None, tiny=True)
    assert tiny.values["training.learning_rate"] == 3e-3 and tiny.values["data.chat_template"] == "chatml"
    with pytest.raises(ValueError, match="unknown preset"):
        choose("fastest", "sft", None)


@pytest.fixture(scope="module")
def form() -> TrainForm:
    with gr.Blocks():
        fields = [f for group in (*STEP_GROUPS, *FORM_GROUPS) for f in build_fields(group)]
    return TrainForm(None, None, None, None, [None] * len(MAPPING_ROLES), fields, None, SAMPLES, "tiny-demo")


def _args(form: TrainForm, **changed: object) -> tuple:
    values = [changed.get(f.key, f.component.value) for f in form.fields]
    return ("tiny-demo", "capitals.jsonl", None, "", *[""] * len(MAPPING_ROLES), *values, GRPO_REWARDS)


def test_a_check_result_is_withdrawn_once_the_form_changes(form: TrainForm) -> None:
    out = form.refresh(None, None, None, *_args(form))
    state = out[TrainForm.WIDGETS_AT - 3]
    checked = planned = state.spec_text  # what a check and a plan were shown for
    same = form.refresh(state, checked, planned, *_args(form))
    assert same[3] == gr.skip() and same[4] == gr.skip(), "nothing changed: the results stand"
    changed = form.refresh(state, checked, planned, *_args(form, **{"lengths.block_size": 128}))
    assert changed[3] == STALE and changed[4] == "" and changed[5] == changed[6] == ""  # message, plan, report
    assert changed[7] == {"__type__": "update", "open": False}, "the stale report is closed"
    assert changed[9] is None and changed[10] is None, "the stale results are forgotten"


def test_a_wrong_field_gets_its_error_beside_it_and_loses_it_when_fixed(form: TrainForm) -> None:
    keys = [f.key for f in form.fields]
    index = keys.index("lengths.block_size")
    bad = form.refresh(None, None, None, *_args(form, **{"lengths.block_size": 3}))
    update = bad[TrainForm.WIDGETS_AT + index]
    assert update["info"].startswith("⚠️ must be at least 8") and update["elem_classes"] == ["field-invalid"]
    assert form.problems(bad[TrainForm.WIDGETS_AT - 3]) == ["**Sequence length (tokens)** (`lengths.block_size`): must be at least 8"]
    fixed = form.refresh(bad[TrainForm.WIDGETS_AT - 3], None, None, *_args(form, **{"lengths.block_size": 64}))
    assert fixed[TrainForm.WIDGETS_AT + index]["elem_classes"] == [] and "⚠️" not in fixed[TrainForm.WIDGETS_AT + index]["info"]
    untouched = keys.index("lora.r")
    assert fixed[TrainForm.WIDGETS_AT + untouched] == gr.skip(), "widgets whose state did not change are not re-rendered"


def test_check_plan_and_start_read_errors_from_the_text_they_act_on(form: TrainForm) -> None:
    """The action reads the spec text the page shows: its own field errors, not a state an edit may have raced."""
    bad = form.refresh(None, None, None, *_args(form, **{"lengths.block_size": 3}))[0]
    assert form.problems(form.checked(bad, None)) == [
        "**Sequence length (tokens)** (`lengths.block_size`): must be at least 8"]
    good = form.refresh(None, None, None, *_args(form))[0]
    assert form.problems(form.checked(good, None)) == []
    assert form.problems(form.checked("model: [", None))[0].startswith("the spec is not valid YAML")


def test_a_preset_says_what_it_changed(form: TrainForm) -> None:
    choice = choose("quick", "sft", None, tiny=True)
    lines = form.changes(choice.values, _args(form))
    assert "Rank 16 → 8" in lines and "Learning rate 0.0002 → 0.003" in lines
    assert not any(line.startswith("Epochs") for line in lines), "an unchanged value is not listed"
    filled = dict(zip((f.key for f in form.fields), form.fill(choice.values, _args(form))))
    assert filled["lora.r"] == 8 and filled["data.valid_split"] == "auto" and filled["training.epochs"] == 1.0
    assert filled["training.seed"] == gr.skip()


def test_a_saved_config_names_the_dataset_portably(form: TrainForm, tmp_path) -> None:
    """Save config never writes the server's copy of an upload (meaningless elsewhere): the file's own name."""
    import types

    import yaml

    from trainer_backend.ui.train_io import save_config

    upload = tmp_path / "gradio" / "0123abcd" / "my data.jsonl"
    upload.parent.mkdir(parents=True)
    upload.write_text('{"text": "hello"}\n')
    args = list(_args(form))
    args[2] = str(upload)  # the upload widget's value: Gradio's temp path
    saved = yaml.safe_load(open(save_config(types.SimpleNamespace(data_dir=tmp_path / "data"), form, tuple(args))))
    assert saved["data"]["path"] == "my data.jsonl", saved["data"]
    args[2] = None  # a shipped sample keeps its repository path
    saved = yaml.safe_load(open(save_config(types.SimpleNamespace(data_dir=tmp_path / "data"), form, tuple(args))))
    assert saved["data"]["path"] == "examples/capitals.jsonl"
