"""What the evaluation report of a job measures: held-out metrics base vs fine-tuned, general-ability tasks through
lm-evaluation-harness (the forgetting check), and optionally a judge's pairwise win rate.

The same section drives a job spec's `evaluation:` block (the automatic report after training), the Jobs tab's
Evaluation box, `python -m trainer_backend evaluate JOB --tasks ...` and the /evaluate_job endpoint.
"""
from __future__ import annotations

from typing import Optional

from pydantic import field_validator

from .spec_base import _f, _Section

# General ability, one short task each (lm-evaluation-harness names): reasoning, knowledge, instruction following.
# Offline (no Hub), each is replaced by a local stand-in over data kept in the repository (evaluation/tasks/).
GENERAL_TASKS: tuple[str, ...] = ("arc_easy", "sciq", "ifeval")


class EvaluationSpec(_Section):
    auto: bool = _f(True, "Evaluate after training: held-out metrics of base vs fine-tuned, the general tasks below "
                          "(did it forget?), and the judge when one is named. Saved as evaluation.json, shown in the "
                          "Jobs tab, written into the model card.", "basic", label="Evaluation report after training")
    max_examples: int = _f(50, "Held-out examples scored at most (generation metrics answer each one twice: base and "
                               "fine-tuned).", ge=1, le=5000, label="Held-out examples at most")
    time_budget: int = _f(600, "Seconds the automatic report may take at most; what does not fit is left out and the "
                               "report says so (a later Evaluate runs it).", ge=30, le=86400,
                          label="Report time budget (seconds)")
    general_tasks: list[str] = _f(
        list(GENERAL_TASKS), "lm-evaluation-harness tasks run base vs fine-tuned to see what the adapter cost "
                             "elsewhere: any harness task name (arc_easy, hellaswag, mmlu, gsm8k, ...) or a local "
                             "folder of task YAML files in the harness's format. Empty: no forgetting check.",
        label="General tasks")
    task_limit: int = _f(50, "Examples per general task at most (the harness's limit option).", ge=1, le=100000,
                         label="Examples per task")
    judge: Optional[str] = _f(None, "Judge model for a pairwise win rate of fine-tuned vs base answers: a Hub model "
                                    "id or local folder of a causal LM, or the URL of an OpenAI-compatible endpoint "
                                    "(https://.../v1). Empty: no judge.", label="Judge model or endpoint")
    judge_model: Optional[str] = _f(None, "Model name to ask at the judge endpoint (OpenAI-compatible URLs only).",
                                    label="Judge endpoint model")
    judge_key_env: str = _f("OPENAI_API_KEY", "Environment variable holding the judge endpoint's API key (the key "
                                               "itself is never written anywhere).", label="Judge key variable")
    judge_prompts: int = _f(20, "Held-out prompts the judge compares (each in both orders).", ge=1, le=1000,
                            label="Judge prompts")

    @field_validator("general_tasks", mode="before")
    @classmethod
    def _split_text(cls, v: object) -> object:
        """`arc_easy, sciq` (a CLI flag or a form's text) is the list it names."""
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("judge", "judge_model", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("judge_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or v[0].isdigit():
            raise ValueError(f"'{v}' is not an environment variable name (letters, digits, _)")
        return v
