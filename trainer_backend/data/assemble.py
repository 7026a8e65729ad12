"""From the chunks' per-record facts to splits: the held-out validation rows, each split's records and training
rows, its statistics (the report's numbers), and the warnings and notes they call for.

All of it works on small numpy arrays (a few bytes per row), never on the rows themselves.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..spec import JobSpec
from .encode import DROPPED_NO_LOSS, DROPPED_TOO_LONG, FAILED, KEPT, TRUNCATED
from .issues import DataIssue
from .report import SplitReport, TokenStats
from .workers import ChunkResult


@dataclass
class Records:
    """Per-record facts of every chunk, concatenated in shard order (train source first, then valid)."""
    outcome: np.ndarray
    full_length: np.ndarray
    history: np.ndarray
    files: np.ndarray
    source: np.ndarray      # 0: the train source, 1: the validation source
    chunk_base: list[int]   # first record of each chunk (in shard order)

    @classmethod
    def of(cls, results: list[ChunkResult]) -> "Records":
        def cat(name: str, dtype: type) -> np.ndarray:
            parts = [getattr(r, name) for r in results]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        bases = np.zeros(len(results) + 1, dtype=np.int64)
        np.cumsum([r.records for r in results], out=bases[1:])
        source = np.repeat([r.split for r in results], [r.records for r in results]).astype(np.int8)
        return cls(cat("outcome", np.int8), cat("full_length", np.int32), cat("history", np.int16),
                   cat("files", np.int32), source, bases[:-1].tolist())


@dataclass
class SplitLayout:
    name: str
    members: np.ndarray    # record indices, in order
    used: np.ndarray       # positions in members that train
    stats: SplitReport
    history_turns: int
    first_file: Optional[int]  # the file of the split's first row (where its warnings point)

    def meta(self) -> dict:
        return {"stats": self.stats.model_dump(mode="json"), "history_turns": self.history_turns,
                "first_file": self.first_file}


def held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """Positions (among n valid training rows) that valid_split: auto holds out: a seeded shuffle's first k."""
    k = max(1, round(n * fraction))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = np.zeros(n, dtype=bool)
    held[order[:k]] = True
    return held


def split_stats(rec: Records, members: np.ndarray, rows_read: int, block_size: int) -> SplitReport:
    outcome, lengths = rec.outcome[members], rec.full_length[members]
    lengths = lengths[outcome != FAILED].astype(np.int64)
    report = SplitReport(rows_read=rows_read, rows_valid=len(members), rows_used=int(np.isin(outcome, KEPT).sum()))
    if len(lengths):
        over = int((lengths > block_size).sum())
        report = report.model_copy(update={
            "tokens": TokenStats(min=int(lengths.min()), median=int(np.median(lengths)),
                                 p95=int(np.percentile(lengths, 95)), max=int(lengths.max()), total=int(lengths.sum())),
            "longer_than_block_size": over, "pct_longer_than_block_size": round(100 * over / len(lengths), 2),
            "truncated": int((outcome == TRUNCATED).sum()), "dropped_too_long": int((outcome == DROPPED_TOO_LONG).sum()),
            "dropped_no_loss": int((outcome == DROPPED_NO_LOSS).sum())})
    return report


def layouts(rec: Records, spec: JobSpec, rows_read: list[int], valid_source: bool) -> dict[str, SplitLayout]:
    """train (and valid): from the sources as read, or with valid_split: auto's rows held out of train."""
    index = np.arange(len(rec.outcome), dtype=np.int64)
    train = index[rec.source == 0]
    parts: dict[str, tuple[np.ndarray, int]] = {}
    if valid_source:
        parts = {"train": (train, rows_read[0]), "valid": (index[rec.source == 1], rows_read[1])}
    elif spec.data.valid_split == "auto" and len(train) >= 2:
        held = held_out(len(train), spec.data.valid_fraction, spec.training.seed)
        # a carved split was "read" as the rows it holds; train keeps the count of rows read from its files
        parts = {"train": (train[~held], rows_read[0]), "valid": (train[held], int(held.sum()))}
    else:
        parts = {"train": (train, rows_read[0])}
    out = {}
    for name, (members, read) in parts.items():
        used = np.flatnonzero(np.isin(rec.outcome[members], KEPT)).astype(np.int64)
        out[name] = SplitLayout(name, members, used, split_stats(rec, members, read, spec.lengths.block_size),
                                int(rec.history[members].sum()), int(rec.files[members[0]]) if len(members) else None)
    return out


def length_warnings(name: str, stats: SplitReport, history_turns: int, where: Optional[str],
                    block: int) -> list[DataIssue]:
    n = stats.rows_valid
    out = []
    if stats.truncated:
        out.append(DataIssue(f"{stats.truncated} of {n} {name} rows are longer than the limits and were "
                             f"truncated (block_size {block})", where,
                             fix="raise lengths.block_size, or set data.too_long: drop"))
    if stats.dropped_too_long:
        out.append(DataIssue(f"{stats.dropped_too_long} of {n} {name} rows are longer than block_size "
                             f"{block} and were dropped", where, fix="raise lengths.block_size"))
    if history_turns:
        out.append(DataIssue(f"{history_turns} earlier assistant turns in the {name} split are rendered "
                             "differently once later turns follow (the chat template drops their reasoning from "
                             "history), so they are kept as context and not trained; each conversation's last "
                             "answer trains as the model generates it", where,
                             fix="to train every turn, split conversations into one row per assistant turn, or "
                                 "use a template that renders history as generated (data.chat_template: chatml)"))
    if stats.dropped_no_loss:
        out.append(DataIssue(f"{stats.dropped_no_loss} of {n} {name} rows had no trainable tokens left "
                             f"(prompt fills the limit) and were dropped", where,
                             fix="raise lengths.block_size or set lengths.max_prompt_length"))
    for w in out:
        w.severity = "warning"
    return out


def no_usable_rows(name: str, stats: SplitReport, where: Optional[str]) -> DataIssue:
    fix = "raise lengths.block_size" + (
        " or set data.too_long: truncate" if stats.dropped_too_long else
        " or set lengths.max_prompt_length so long prompts are cut from the left")
    return DataIssue(f"no usable rows left in the {name} split after length limits", where, fix=fix)


def split_notes(spec: JobSpec, splits: Mapping[str, Any]) -> list[str]:
    """The report's notes on how the splits came about (splits: SplitLayout or SplitData, by name)."""
    notes = []
    if spec.data.valid_split == "auto" and "valid" in splits:
        held, kept = splits["valid"].stats.rows_valid, splits["train"].stats.rows_valid
        notes.append(f"valid_split auto: held out {held} of {held + kept} rows (seed {spec.training.seed})")
    if "valid" not in splits and spec.training.eval_strategy != "no":
        notes.append("no validation split: evaluation is off (set data.valid_split, e.g. 'auto')")
    return notes
