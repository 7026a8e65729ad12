"""Sampling settings have one home (inference.GenerationSettings): the API, the Chat tab's sliders and the CLI
take their ranges from it, and a value outside them is refused with a message, never clamped silently."""
from __future__ import annotations

import subprocess
import sys

import pytest

from trainer_backend.inference import GenerationSettings, setting_range


@pytest.mark.parametrize("field, bad", [("temperature", 9), ("top_p", 0), ("max_new_tokens", 10**9),
                                        ("max_new_tokens", 2.5), ("repetition_penalty", "x")])
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


def test_chat_tab_sliders_span_exactly_the_allowed_range() -> None:
    from trainer_backend.ui.chat_tab import _slider

    for name in GenerationSettings.model_fields:
        slider = _slider(name, 0.01, name)
        assert (slider.minimum, slider.maximum) == setting_range(name)
        assert slider.value == GenerationSettings.model_fields[name].default


def test_cli_refuses_bad_settings_before_loading_anything(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainer_backend", "chat", str(tmp_path), "--prompt", "hi",
                           "--temperature", "9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "temperature must be a number from 0 to 5 (got 9.0)" in proc.stderr
