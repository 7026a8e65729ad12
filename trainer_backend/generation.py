"""How to sample an answer (GenerationSettings): one typed model whose Field bounds are the caps for every caller.

The named API, the Chat tab's sliders and the CLI's flags take their ranges and defaults from here; a value outside
the range is refused with a message naming the range, never clamped silently. The public demo's tighter cap on
new tokens is derived here too (public_demo.DemoCaps reads it). Pure pydantic: no model code.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from .settings import DEFAULTS as SETTING_DEFAULTS


class GenerationSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(0.9, ge=0.01, le=1.0, description="nucleus sampling (with temperature > 0)")
    max_new_tokens: int = Field(256, ge=1, le=4096, description="longest answer, in tokens")
    repetition_penalty: float = Field(1.0, ge=0.5, le=5.0, description="1 = none")

    @classmethod
    def checked(cls, max_new_tokens_cap: Optional[int] = None, **values: Any) -> "GenerationSettings":
        """Validate client values (a tighter max_new_tokens cap on top, for the public demo); ValueError names the
        field, its range and what was sent."""
        problems = []
        for name, value in values.items():
            low, high = setting_range(name)
            if name == "max_new_tokens" and max_new_tokens_cap is not None:
                high = min(high, max_new_tokens_cap)
            try:
                ok = low <= float(value) <= high and (name != "max_new_tokens" or float(value).is_integer())
            except (TypeError, ValueError):
                ok = False
            if not ok:
                problems.append(f"{name} must be a number from {low:g} to {high:g} (got {value!r})")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**{k: int(v) if k == "max_new_tokens" else float(v) for k, v in values.items()})

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False)
        return kw


def setting_range(name: str) -> tuple[float, float]:
    """(lowest, highest) allowed for one GenerationSettings field, read from its Field constraints."""
    low, high = float("-inf"), float("inf")
    for rule in GenerationSettings.model_fields[name].metadata:
        if getattr(rule, "ge", None) is not None:
            low = float(rule.ge)
        if getattr(rule, "le", None) is not None:
            high = float(rule.le)
    return (0.0 if low == float("-inf") else low), high


DEFAULTS = GenerationSettings()
# Evaluation compares answers with references: greedy, and short answers are what held-out rows hold.
EVALUATION = GenerationSettings(temperature=0.0, max_new_tokens=128)
# A public demo's visitors get at most this many new tokens (LORA_STUDIO_DEMO_MAX_NEW_TOKENS changes it, never
# above the model's own cap).
DEMO_MAX_NEW_TOKENS = SETTING_DEFAULTS.demo_max_new_tokens


def demo_max_new_tokens(wanted: int = DEMO_MAX_NEW_TOKENS) -> int:
    """The demo's cap on new tokens: what the owner asked for, within the model's range."""
    low, high = setting_range("max_new_tokens")
    return int(min(max(wanted, low), high))
