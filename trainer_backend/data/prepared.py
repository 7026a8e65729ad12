"""The result of preparation: memory-mapped Arrow records, each split's layout over them, and the dataset report.

Every normalised row is one record of the shards a preparation wrote (its training columns, its canonical
example as JSON, its file and row). A split is an ordered selection of records (`members`), and its training rows
are the members a length limit kept (`used`). Nothing here holds a split's rows as Python objects: the views for
small callers (`examples`, `refs`, `encoded`) build them on demand.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..spec import JobSpec
from . import prepared_cache
from .encode import Encoded, render_masked
from .detection import Detection
from .issues import DataIssue
from ..tool_calls import TOOL_REFERENCE
from .report import (DatasetReport, FeedbackSample, FormatInfo, PreferenceSample, PromptSample, Sample, SplitReport,
                     TokenSample)
from .vendor_templates import TemplateChoice
from .row_kinds import TOKEN_COLUMNS

@dataclass
class PreferenceView:
    rows: list[dict[str, Any]]
    source_index: list[int]


@dataclass
class SplitData:
    name: str
    stats: SplitReport
    records: Any                 # datasets.Dataset over every record of the preparation (all splits)
    members: np.ndarray          # this split's records, in order
    used: np.ndarray             # positions in `members` that train (the rest a length limit dropped)
    labels: list[str]            # file index -> file name
    columns: list[str]           # the training columns
    history_turns: int = 0

    def summary(self, block_size: int = 0) -> SplitReport:
        return self.stats

    def __len__(self) -> int:
        return len(self.used)

    def _record(self, k: int) -> dict[str, Any]:
        return self.records[int(self.members[self.used[k]])]

    def row(self, k: int) -> dict[str, Any]:
        """Training row k (its training columns)."""
        record = self._record(k)
        return {c: record[c] for c in self.columns}

    def example(self, k: int) -> dict[str, Any]:
        """The canonical example training row k came from."""
        return json.loads(self._record(k)["example"])

    def ref(self, k: int) -> tuple[str, int]:
        record = self._record(k)
        return self.labels[record["file"]], record["row"]

    def dataset(self) -> Any:
        """The training rows as a memory-mapped datasets.Dataset (training columns only)."""
        rows = self.records.select(self.members[self.used], keep_in_memory=True)  # indices only, never a file
        return rows.select_columns(self.columns)

    # ---- views with Python objects, for tests and small data --------------------------------------------------
    @cached_property
    def _members_table(self) -> Any:
        return self.records.select(self.members, keep_in_memory=True)

    @cached_property
    def examples(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self._members_table["example"]]

    @cached_property
    def refs(self) -> list[tuple[str, int]]:
        t = self._members_table
        return [(self.labels[f], r) for f, r in zip(t["file"], t["row"])]

    @cached_property
    def encoded(self) -> Encoded | PreferenceView:
        rows = self.dataset()
        if self.columns != TOKEN_COLUMNS:
            return PreferenceView(rows.to_list(), self.used.tolist())
        return Encoded(input_ids=rows["input_ids"], labels=rows["labels"], source_index=self.used.tolist(),
                       truncated=self.stats.truncated, dropped_too_long=self.stats.dropped_too_long,
                       dropped_no_loss=self.stats.dropped_no_loss, history_turns=self.history_turns)


@dataclass
class PreparedData:
    spec: JobSpec
    detection: Optional[Detection]
    splits: dict[str, SplitData]
    warnings: list[DataIssue]
    notes: list[str]
    end_of_turn: Optional[str]
    tokenizer: Any = None
    template: Optional[TemplateChoice] = None  # the chat template that trained (None: plain text)
    folder: Optional[Path] = None     # the cache entry (or the temporary folder when the cache is off)
    cache: str = "built"              # hit | built | rebuilt (<why>) | off
    keep_alive: Any = field(default=None, repr=False)  # removes a temporary folder once nothing uses it

    @property
    def train(self) -> SplitData:
        return self.splits["train"]

    @property
    def valid(self) -> Optional[SplitData]:
        return self.splits.get("valid")

    def to_datasets(self) -> tuple[Any, Optional[Any]]:
        """(train, valid) training rows as memory-mapped datasets."""
        valid = self.valid
        return self.train.dataset(), valid.dataset() if valid is not None else None

    def derived(self, name: str, build: Callable[[Path], Any]) -> Any:
        """An artefact derived from the prepared rows (e.g. the packed training set), kept with the cache entry:
        loaded when it is there and intact, else `build(path)` writes it (an Arrow file) and it is recorded."""
        from datasets import Dataset

        if self.folder is None:
            raise ValueError("no folder to keep derived data in")
        path = prepared_cache.derived_file(self.folder, name)
        if prepared_cache.derived_ok(self.folder, name):
            return Dataset.from_file(str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        made = build(path)
        prepared_cache.record_derived(self.folder, name)
        return made

    def report(self, sample_row: int = 0) -> dict[str, Any]:
        """The dataset report as JSON-ready data (data_report.json, `doctor --json`, the API)."""
        return self.dataset_report(sample_row).to_dict()

    def dataset_report(self, sample_row: int = 0) -> DatasetReport:
        """The dataset report ("doctor"): format, counts, token lengths, truncation, a rendered sample."""
        block = self.spec.lengths.block_size
        fmt = FormatInfo(**self.detection.to_dict()) if self.detection else \
            FormatInfo(format="template", reason="data.prompt_template is set")
        return DatasetReport(
            trainer=self.spec.training.trainer, format=fmt,
            chat_template=self.spec.data.chat_template if not self.spec.data.prompt_template else "prompt_template",
            chat_template_source=self.template.describe() if self.template else None,
            end_of_turn=self.end_of_turn, splits={name: s.summary(block) for name, s in self.splits.items()},
            block_size=block,
            packing="auto (on with flash-attention)" if self.spec.packing is None else self.spec.packing,
            warnings=[str(w) for w in self.warnings], notes=self.notes, sample=self._sample(sample_row))

    def _sample(self, sample_row: int) -> Optional[Sample]:
        train = self.train
        if not len(train):
            return None
        i = min(sample_row, len(train) - 1)
        pair = train.row(i)
        file, row = train.ref(i)
        if "chosen_ids" in pair:  # reward rows: token ids of prompt + answer
            return PreferenceSample(file=file, row=row, chosen=self.tokenizer.decode(pair["chosen_ids"]),
                                    rejected=self.tokenizer.decode(pair["rejected_ids"]), margin=pair.get("margin"))
        if "label" in pair:
            return FeedbackSample(file=file, row=row, prompt=pair["prompt"], completion=pair["completion"],
                                  label=pair["label"])
        if "references" in pair:
            return prompt_sample(self.spec, pair, train.example(i), file, row)
        if "chosen" in pair:
            return PreferenceSample(file=file, row=row, prompt=pair["prompt"], chosen=pair["chosen"],
                                    rejected=pair["rejected"], margin=pair.get("margin"))
        ids, labels = pair["input_ids"], pair["labels"]
        return TokenSample(file=file, row=row, tokens=len(ids), tokens_with_loss=sum(l != -100 for l in labels),
                           rendered=render_masked(ids, labels, self.tokenizer))


def preload() -> None:
    """Import what load_records needs (`datasets`: ~0.6 s of CPU), e.g. while worker processes prepare the rows,
    instead of after them with every core idle."""
    import datasets  # noqa: F401


def load_records(folder: Path, shards: list[str]) -> Any:
    """Every record of a preparation, memory-mapped from its shards in order."""
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(str(folder / name)) for name in shards]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def prompt_sample(spec: JobSpec, pair: dict[str, Any], example: dict[str, Any], file: str, row: int) -> PromptSample:
    """A GRPO row for the report, with each built-in reward's score of the row's reference answer."""
    from ..rewards import score

    references = json.loads(pair["references"])
    rewards = spec.grpo.rewards
    answer: Optional[str] = example.get("answer")
    source: Optional[str] = "the row's answer"
    calls = (references.get(TOOL_REFERENCE) or {}).get("calls")
    if answer is None and calls:  # a tool row: its calls, written as a Hermes-style model writes them
        answer, source = "\n".join("<tool_call>\n" + json.dumps(
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}, ensure_ascii=False) +
            "\n</tool_call>" for c in calls), "the row's tool calls"
    if answer is None:
        column = next((r.column for r in rewards if r.column and r.column in references), None)
        answer, source = (str(references[column]), f"column '{column}'") if column else (None, None)
    scores: dict[str, Optional[float]] = {}
    if answer is not None:
        for r in rewards:
            reference = references.get(r.column) if r.column else \
                references.get(TOOL_REFERENCE) if r.type == "tool_call" else None
            scores[r.label] = None if r.type == "python" or (r.type == "tool_call" and reference is None) else \
                round(score(r, answer, reference), 4)
    return PromptSample(file=file, row=row, prompt=pair["prompt"], references=references, reference_answer=answer,
                        reference_answer_from=source, reference_scores=scores)
