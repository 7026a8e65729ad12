"""The dataset report ("doctor"), typed: every trainer's shape is explicit, so printers never guess at keys.

A token sample (sft, generic: one sequence with a loss mask) and a preference sample (dpo, orpo, reward: a
prompt and two answers) are different things; `DatasetReport.sample` is one or the other, told apart by
`kind`. The JSON form (`to_dict`) is what data_report.json, `doctor --json` and the API return.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")  # reports written by older versions still load


class FormatInfo(_Part):
    format: str
    kind: Optional[str] = None  # the canonical shape the format normalises to (pair, messages, preference...)
    reason: str = ""
    mapping: dict[str, Any] = Field(default_factory=dict)
    unused: list[dict[str, str]] = Field(default_factory=list)  # [{column, sample}]: not read by this format

    def unused_lines(self) -> list[str]:
        """One line per column the format does not read, with a sample value and how to use it."""
        how = {"pair": "input adds it to the prompt after a blank line, system makes it the system prompt",
               "prompt": "input adds it to the prompt after a blank line, or a reward can read it",
               "messages": "system makes it the system prompt, tools declares the tools a row may call"}.get(
            self.kind or "", "pick the role it plays")
        return [f"column '{u['column']}' is not used (e.g. {u['sample']!r}); to use it, map it in Column mapping "
                f"(data.column_mapping: {how})" for u in self.unused]


class TokenStats(_Part):
    min: int
    median: int
    p95: int
    max: int
    total: int


class SplitReport(_Part):
    rows_read: int
    rows_valid: int
    rows_used: int
    tokens: Optional[TokenStats] = None  # None when no row survived encoding
    longer_than_block_size: int = 0
    pct_longer_than_block_size: float = 0.0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_no_loss: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_too_long + self.dropped_no_loss


class TokenSample(_Part):
    """One training sequence as the model sees it (sft, generic)."""
    kind: Literal["tokens"] = "tokens"
    file: Optional[str] = None
    row: Optional[int] = None
    tokens: int
    tokens_with_loss: int
    rendered: str  # [[no loss: ...]] marks masked spans

    def headline(self) -> str:
        return (f"sample training string ({self.file} row {self.row}, {self.tokens} tokens, {self.tokens_with_loss} "
                "with loss; [[no loss: ...]] marks masked spans)")


class PreferenceSample(_Part):
    """One preference pair as the trainer gets it (dpo, orpo: prompt + answers; reward: prompt+answer each)."""
    kind: Literal["preference"] = "preference"
    file: Optional[str] = None
    row: Optional[int] = None
    prompt: Optional[str] = None  # None for reward rows, whose answers carry the prompt
    chosen: str
    rejected: str
    margin: Optional[float] = None

    @property
    def rendered(self) -> str:
        parts = ([f"[[prompt]]\n{self.prompt}"] if self.prompt is not None else []) + \
                [f"[[chosen]]\n{self.chosen}", f"[[rejected]]\n{self.rejected}"]
        return "\n".join(parts)

    def headline(self) -> str:
        margin = f", margin {self.margin:g}" if self.margin is not None else ""
        return (f"sample preference pair ({self.file} row {self.row}{margin}; the exact texts the trainer gets, "
                "after prompt/completion limits)")


class FeedbackSample(_Part):
    """One unpaired answer with its thumbs-up/down label, as KTO gets it."""
    kind: Literal["feedback"] = "feedback"
    file: Optional[str] = None
    row: Optional[int] = None
    prompt: str
    completion: str
    label: bool

    @property
    def rendered(self) -> str:
        return f"[[prompt]]\n{self.prompt}\n[[completion: {'thumbs up' if self.label else 'thumbs down'}]]\n" \
               f"{self.completion}"

    def headline(self) -> str:
        return (f"sample feedback row ({self.file} row {self.row}, {'desirable' if self.label else 'undesirable'}; "
                "the exact texts the trainer gets)")


class PromptSample(_Part):
    """One GRPO prompt exactly as the model receives it, the values its rewards read, and each reward's score of
    the row's own reference answer: a correct reference should score full marks."""
    kind: Literal["prompt"] = "prompt"
    file: Optional[str] = None
    row: Optional[int] = None
    prompt: str
    references: dict[str, Any] = Field(default_factory=dict)
    reference_answer: Optional[str] = None   # the text scored below
    reference_answer_from: Optional[str] = None
    reference_scores: dict[str, Optional[float]] = Field(default_factory=dict)  # None: not run here (python)

    @property
    def rendered(self) -> str:
        lines = [f"[[prompt]]\n{self.prompt}"]
        lines += [f"[[column '{k}' (the rewards read it)]] {v}" for k, v in self.references.items()]
        if self.reference_answer is not None:
            scores = ", ".join(f"{k} {'not run' if v is None else f'{v:g}'}" for k, v in self.reference_scores.items())
            lines.append(f"[[reference answer ({self.reference_answer_from}) scores: {scores}]]")
        return "\n".join(lines)

    def headline(self) -> str:
        return (f"sample prompt ({self.file} row {self.row}; the exact text the model generates from, the values its "
                "rewards read, and what each reward gives the reference answer)")


Sample = Union[TokenSample, PreferenceSample, FeedbackSample, PromptSample]


class DatasetReport(_Part):
    trainer: Optional[str] = None
    format: FormatInfo
    chat_template: Optional[str] = None
    chat_template_source: Optional[str] = None  # which text trained: shipped, the tokenizer's own, TRL's variant
    end_of_turn: Optional[str] = None
    splits: dict[str, SplitReport] = Field(default_factory=dict)
    block_size: Optional[int] = None
    packing: Any = None
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    sample: Optional[Sample] = Field(default=None, discriminator="kind")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetReport":
        data = dict(data)
        sample = data.get("sample")
        if isinstance(sample, dict) and "kind" not in sample:  # reports written before the kinds existed
            data["sample"] = {**sample, "kind": "tokens" if "tokens" in sample else "preference"}
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if self.sample is None:
            out.pop("sample")  # absent, not null: nothing was sampled
        elif not isinstance(self.sample, TokenSample):
            out["sample"]["rendered"] = self.sample.rendered  # one field every viewer can show
        return out

    def text_lines(self) -> list[str]:
        """The report as the CLI prints it."""
        lines = [f"format:        {self.format.format} — {self.format.reason}"]
        if self.trainer:
            lines.append(f"trainer:       {self.trainer}")
        lines += [f"chat template: {self.chat_template} (turn ends with {self.end_of_turn!r})"]
        if self.chat_template_source:
            lines.append(f"template text: {self.chat_template_source}")
        lines.append(f"block size:    {self.block_size}  packing: {self.packing}")
        lines += [f"not used:      {line}" for line in self.format.unused_lines()]
        for name, s in self.splits.items():
            line = f"split {name:<6} rows read {s.rows_read}, valid {s.rows_valid}, used {s.rows_used}"
            if s.tokens is not None:
                t = s.tokens
                line += (f"; tokens min/median/p95/max {t.min}/{t.median}/{t.p95}/{t.max}; "
                         f"{s.pct_longer_than_block_size}% longer than block_size")
            lines.append(line)
        lines += [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        if self.sample is not None:
            lines += ["", self.sample.headline() + ":", "-" * 80, self.sample.rendered, "-" * 80]
        return lines

    def markdown(self) -> str:
        """The report as the app's Train tab shows it."""
        lines = [f"**Format:** {self.format.format} — {self.format.reason}",
                 (f"**Trainer:** {self.trainer}; " if self.trainer else "") +
                 f"**Template:** {self.chat_template} (turn ends with `{self.end_of_turn}`); block size "
                 f"{self.block_size}, packing {self.packing}"]
        if self.chat_template_source:
            lines.append(f"**Template text:** {self.chat_template_source}")
        unused = self.format.unused_lines()
        lines += [""] + [f"- **Not used:** {line}" for line in unused] if unused else []
        lines += ["", "| split | rows read | valid | used | tokens min / median / p95 / max | > block size |",
                  "|---|---|---|---|---|---|"]
        for name, s in self.splits.items():
            t = f"{s.tokens.min} / {s.tokens.median} / {s.tokens.p95} / {s.tokens.max}" if s.tokens else "—"
            lines.append(f"| {name} | {s.rows_read} | {s.rows_valid} | {s.rows_used} | {t} | "
                         f"{s.pct_longer_than_block_size}% |")
        lines += [f"- {n}" for n in self.notes]
        if self.sample is not None:
            lines += ["", f"_{self.sample.headline()}_"]
        return "\n".join(lines)
