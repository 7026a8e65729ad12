"""The job spec's sections for reinforcement learning from rewards (GRPO) and unpaired feedback (KTO).

`grpo.rewards` is the list of reward functions a GRPO run scores its completions with: built-in, checkable
rewards (no code needed) chosen and weighted here, or a Python file of the user's (CLI, or a member of a
Space). What each reward reads from a dataset row is declared here (`RewardSpec.column`), so the data check can
refuse a row that lacks it before training starts (data/prompts.py); the functions themselves live in
rewards.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, get_args

from pydantic import Field, field_validator, model_validator

from .spec_base import _f, _Section

RewardKind = Literal["exact_match", "numeric_match", "regex", "json_valid", "length", "contains", "tool_call",
                     "python"]
REWARD_KINDS: tuple[str, ...] = get_args(RewardKind)
# The rewards that compare a completion with a value from the row (`column` is required for them).
COLUMN_REWARDS: tuple[str, ...] = ("exact_match", "numeric_match")
GRPOLossType = Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"]  # TRL 1.16's token-level losses


class RewardSpec(_Section):
    """One reward function: what it checks, what it reads, and its weight in the total reward."""
    type: RewardKind = _f(..., "exact_match | numeric_match | regex | json_valid | length | contains | tool_call | "
                               "python. tool_call scores a completion's tool call against the row's reference call: "
                               "name, arguments, schema.")
    name: Optional[str] = _f(None, "Label in charts, events and the model card (default: the type).")
    weight: float = _f(1.0, "Weight in the total reward (0 logs the reward without training on it).", ge=0, le=100)
    column: Optional[str] = _f(None, "Dataset column with the reference (exact_match, numeric_match); contains "
                                     "may read its word list from a column too.")
    extract: Literal["auto", "full", "answer_tag", "boxed", "last_line"] = _f(
        "auto", "Which part of the completion is the answer: auto = <answer>...</answer> if present, else "
                "\\boxed{...}, else the whole text.")
    case_sensitive: bool = _f(False, "exact_match / contains: compare case-sensitively.")
    pattern: Optional[str] = _f(None, "regex: the pattern, e.g. '<think>.*?</think>\\s*<answer>.*?</answer>'.")
    full_match: bool = _f(True, "regex: the whole completion must match (false: the pattern found anywhere).")
    tolerance: float = _f(1e-6, "numeric_match: largest absolute difference that still counts as equal.", ge=0)
    json_schema: Optional[dict[str, Any]] = _f(None, "json_valid: a JSON Schema the parsed answer must satisfy.")
    min_length: Optional[int] = _f(None, "length: shortest length without penalty.", ge=0)
    max_length: Optional[int] = _f(None, "length: longest length without penalty.", ge=1)
    unit: Literal["words", "chars", "tokens"] = _f("words", "length: what min_length / max_length count.")
    all_of: list[str] = _f([], "contains: every one of these must appear (score = share found).")
    none_of: list[str] = _f([], "contains: none of these may appear (any one found scores 0).")
    file: Optional[str] = _f(None, "python: a .py file defining the reward function (CLI, or a Space member).")
    function: str = _f("reward", "python: the function's name: f(prompts, completions, **columns) -> list[float].")

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_from_text(cls, v: Any) -> Any:
        if isinstance(v, str):  # a schema typed into a text box or passed as a CLI value
            if not v.strip():
                return None
            try:
                return json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"json_schema is not valid JSON: {exc.msg} at character {exc.pos + 1}") from None
        return v

    @field_validator("file")
    @classmethod
    def _absolute_file(cls, v: Optional[str]) -> Optional[str]:
        # the trainer runs in another process, maybe another folder: the file it loads must not depend on that
        path = Path(v).expanduser() if v else None
        return str(path.resolve()) if path is not None and path.is_file() else v

    @model_validator(mode="after")
    def _complete(self) -> "RewardSpec":
        t, problems = self.type, []
        if t in COLUMN_REWARDS and not self.column:
            problems.append(f"reward '{self.label}' ({t}) needs `column`: the dataset column with the reference "
                            "answer (e.g. column: answer)")
        if t == "tool_call" and self.column:
            problems.append(f"reward '{self.label}' (tool_call) reads no column: it compares the completion's call "
                            "with the row's own tool call and tools; remove `column`")
        if t == "regex":
            if not self.pattern:
                problems.append(f"reward '{self.label}' (regex) needs `pattern`")
            else:
                try:
                    re.compile(self.pattern)
                except re.error as exc:
                    problems.append(f"reward '{self.label}': pattern {self.pattern!r} does not compile: {exc}")
        if t == "json_valid" and self.json_schema is not None:
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(self.json_schema).check_schema(self.json_schema)
            except SchemaError as exc:
                problems.append(f"reward '{self.label}': json_schema is not a valid JSON Schema: {exc.message}")
        if t == "length":
            if self.min_length is None and self.max_length is None:
                problems.append(f"reward '{self.label}' (length) needs min_length and/or max_length")
            elif self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
                problems.append(f"reward '{self.label}': min_length ({self.min_length}) > max_length "
                                f"({self.max_length})")
        if t == "contains" and not (self.all_of or self.none_of or self.column):
            problems.append(f"reward '{self.label}' (contains) needs all_of, none_of or a column with the words")
        if t == "python" and not self.file:
            problems.append(f"reward '{self.label}' (python) needs `file`: a .py file defining `{self.function}`")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


class GRPOSpec(_Section):
    """Group Relative Policy Optimisation: sample several completions per prompt, score them with the rewards,
    and push the policy towards the better ones of each group."""
    rewards: list[RewardSpec] = Field(default_factory=list, description=(
        "Reward functions and their weights, e.g. [{type: numeric_match, column: answer}, {type: regex, "
        "pattern: '<answer>.*</answer>', weight: 0.5}]."))
    num_generations: int = _f(4, "Completions sampled per prompt (the group). batch_size x gradient_accumulation "
                                 "must be a multiple of it.", "basic", ge=2, le=256,
                          label="Completions per prompt")
    max_completion_length: int = _f(256, "Longest completion generated, in tokens.", "basic", ge=1, le=32768,
                                label="Longest completion (tokens)")
    temperature: float = _f(1.0, "Sampling temperature of the completions (diversity within a group).", gt=0, le=4,
                              label="Temperature")
    top_p: float = _f(1.0, "Nucleus sampling of the completions.", gt=0, le=1, label="Top-p")
    beta: float = _f(0.04, "KL penalty against the reference model (the base with the adapter off); 0 turns the "
                           "reference off.", ge=0, le=10, label="KL penalty (beta)")
    loss_type: GRPOLossType = _f("dapo", "Loss aggregation: dapo (default, no length bias), grpo, dr_grpo, bnpo, "
                                         "cispo, sapo.", label="Loss")
    scale_rewards: Literal["group", "batch", "none"] = _f(
        "group", "Divide advantages by the reward std of the group, of the batch, or not at all (Dr. GRPO).",
        label="Reward scaling")
    num_iterations: int = _f(1, "Optimisation passes over each batch of generations.", ge=1, le=16,
                             label="Passes per batch")
    epsilon: float = _f(0.2, "Clipping range of the policy ratio.", gt=0, le=1, label="Clip range")
    mask_truncated_completions: bool = _f(False, "Completions cut at max_completion_length carry no loss.",
                                         label="Ignore cut-off completions")
    sample_every: int = _f(10, "Record sample completions with their rewards every N steps (Jobs tab).", ge=1,
                          label="Record samples every (steps)")
    samples_kept: int = _f(4, "Sample completions recorded each time.", ge=1, le=64,
                          label="Samples recorded")


class KTOSpec(_Section):
    """Kahneman-Tversky Optimisation: unpaired thumbs-up / thumbs-down feedback."""
    desirable_weight: Optional[float] = _f(None, "Weight of thumbs-up rows (default: balanced against the "
                                                 "thumbs-down rows as TRL recommends).", gt=0, le=100,
                                         label="Thumbs-up weight")
    undesirable_weight: Optional[float] = _f(None, "Weight of thumbs-down rows (default: 1).", gt=0, le=100,
                                           label="Thumbs-down weight")


def rl_problems(spec: Any) -> list[str]:
    """Cross-field problems of the GRPO / KTO settings of a JobSpec (called by its validation; typed Any because
    spec.py imports this module, not the other way round)."""
    tr, g, problems = spec.training, spec.grpo, []
    if tr.trainer == "grpo":
        if not g.rewards:
            problems.append("trainer 'grpo' needs at least one reward in grpo.rewards, e.g. "
                            "[{type: exact_match, column: answer}]")
        elif not any(r.weight > 0 for r in g.rewards):
            problems.append("grpo.rewards: every weight is 0, so nothing would be learned; give one a weight > 0")
        labels = [r.label for r in g.rewards]
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated:
            problems.append(f"grpo.rewards: names {repeated} repeat; give each reward its own `name`")
        processes = tr.num_processes or 1
        if (tr.batch_size * tr.gradient_accumulation * processes) % g.num_generations:
            problems.append(
                f"grpo.num_generations ({g.num_generations}) must divide batch_size x gradient_accumulation"
                f"{' x num_processes' if processes > 1 else ''} ({tr.batch_size} x {tr.gradient_accumulation}"
                f"{f' x {processes}' if processes > 1 else ''}): the completions of one prompt are scored "
                f"together; e.g. set training.gradient_accumulation to {g.num_generations}")
        if g.max_completion_length >= spec.lengths.block_size:
            problems.append(f"grpo.max_completion_length ({g.max_completion_length}) must be < lengths.block_size "
                            f"({spec.lengths.block_size}) so the prompt still fits")
    elif g.rewards:
        problems.append(f"grpo.rewards only apply to trainer 'grpo' (trainer is '{tr.trainer}'); remove them")
    if spec.compute.backend == "hf_jobs" and any(r.file for r in g.rewards):
        problems.append("a python reward's file is on this machine: an HF Job cannot read it; use the built-in "
                        "rewards, or run the job locally")
    if tr.trainer == "kto" and tr.batch_size < 2:
        problems.append("trainer 'kto' needs training.batch_size >= 2: its KL term compares each completion with "
                        "another prompt's in the same batch")
    if tr.trainer in ("grpo", "kto") and spec.data.prompt_template is not None:
        problems.append(f"trainer '{tr.trainer}' does not use data.prompt_template; remove it")
    return problems
