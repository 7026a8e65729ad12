"""Sampling settings have one home (generation.GenerationSettings): the API, the Chat tab's sliders, the CLI's
flags and the public demo's cap take their ranges and defaults from it, and a value outside them is refused with a
message, never clamped silently."""
from __future__ import annotations

import sys

import pytest

from trainer_backend.generation import DEFAULTS, EVALUATION, GenerationSettings, demo_max_new_tokens, setting_range


@pytest.mark.parametrize("field, bad", [("temperature", 9), ("top_p", 0), ("max_new_tokens", 10**9),
                                        ("max_new_tokens", 2.5), ("repetition_penalty", "x"),
                                        ("temperature", float("nan"))])
def test_out_of_range_values_are_refused_with_the_range(field: str, bad: object) -> None:
    low, high = setting_range(field)
    with pytest.raises(ValueError, match=rf"{field} must be a number from {low:g} to {high:g} \(got"):
        GenerationSettings.checked(**{field: bad})


def test_values_inside_are_kept_as_sent_and_the_demo_cap_is_tighter() -> None:
    s = GenerationSettings.checked(temperature=0.7, top_p=0.95, max_new_tokens=300.0, repetition_penalty=1.1)
    assert (s.temperature, s.top_p, s.max_new_tokens, s.repetition_penalty) == (0.7, 0.95, 300, 1.1)
    assert s.kwargs()["do_sample"] and GenerationSettings().kwargs()["do_sample"] is False
    with pytest.raises(ValueError, match="max_new_tokens must be a number from 1 to 128"):
        GenerationSettings.checked(128, max_new_tokens=300)


def test_the_public_demo_cap_is_derived_from_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend.public_demo import DemoCaps

    _, high = setting_range("max_new_tokens")
    assert DemoCaps().max_new_tokens == DemoCaps.from_env().max_new_tokens == demo_max_new_tokens() < high
    monkeypatch.setenv("LORA_STUDIO_DEMO_MAX_NEW_TOKENS", str(10 * int(high)))
    assert DemoCaps.from_env().max_new_tokens == high, "an owner's cap never exceeds the model's own"
    monkeypatch.setenv("LORA_STUDIO_DEMO_MAX_NEW_TOKENS", "64")
    assert DemoCaps.from_env().max_new_tokens == 64


def test_chat_tab_sliders_span_exactly_the_allowed_range() -> None:
    from trainer_backend.ui.chat_tab import _slider

    for name in GenerationSettings.model_fields:
        slider = _slider(name, 0.01, name)
        assert (slider.minimum, slider.maximum) == setting_range(name)
        assert slider.value == GenerationSettings.model_fields[name].default


@pytest.mark.parametrize("command, defaults", [("chat", DEFAULTS), ("evaluate", EVALUATION)])
def test_cli_flags_take_their_defaults_and_ranges_from_the_model(command: str, defaults: GenerationSettings,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from trainer_backend.cli import build_parser

    parser = build_parser()
    args = parser.parse_args([command, "job"])
    assert {f: getattr(args, f) for f in GenerationSettings.model_fields} == defaults.model_dump()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    low, high = setting_range("max_new_tokens")
    assert f"{low:g} to {high:g} (default: {defaults.max_new_tokens})" in " ".join(capsys.readouterr().out.split())


def test_cli_refuses_bad_settings_before_loading_anything(tmp_path, monkeypatch, capsys) -> None:
    from trainer_backend.cli import main

    monkeypatch.setitem(sys.modules, "trainer_backend.inference", None)  # importing it would fail the test
    monkeypatch.setitem(sys.modules, "trainer_backend.evaluation", None)
    for command in ("chat", "evaluate"):
        with pytest.raises(SystemExit) as exited:
            main([command, str(tmp_path), "--temperature", "9"])
        assert exited.value.code == 2
        assert "temperature must be a number from 0 to 5 (got 9.0)" in capsys.readouterr().err


def test_the_readme_states_the_ranges_there_are() -> None:
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    for name in GenerationSettings.model_fields:
        low, high = setting_range(name)
        assert f"`{name}` {low:g}–{high:g}" in readme, f"README's sampling ranges: {name} is {low:g}–{high:g}"
    assert f"greedy, {EVALUATION.max_new_tokens} new tokens" in readme
    assert f"`LORA_STUDIO_DEMO_MAX_NEW_TOKENS` ({demo_max_new_tokens()}; at most {setting_range('max_new_tokens')[1]:g})" \
        in readme
