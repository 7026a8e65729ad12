"""What a training row is, one strategy per kind: how a source row is normalised, encoded and stored as columns.

  sequences  (sft, generic)  input_ids + labels (-100 where there is no loss), tokenised here
  pairs      (dpo, orpo)     prompt, chosen, rejected texts (+ margin), which TRL tokenises itself
  pair_ids   (reward)        chosen_ids, rejected_ids: prompt + answer, tokenised here (+ margin)
  feedback   (kto)           prompt, completion and the thumbs-up/down label
  prompts    (grpo)          the prompt text and the reference values its rewards read (one JSON column)

The trainer registry says what a trainer wants (TrainerInfo.rows); `row_kind_for` turns that and the dataset's
format into one of these. A worker encodes every chunk with the kind named in its `ChunkSetup`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..spec import PromptTemplate
from ..trainer_registry import TrainerInfo
from .encode import EncodedRows, EncodeSettings, encode_columns
from .detection import Detection
from .formats import normalize_row
from .issues import RowError
from .preference import encode_preferences
from .rl_rows import REFERENCES_COLUMN, encode_feedback, encode_prompts, normalize_feedback_row, normalize_prompt_row

TOKEN_COLUMNS = ["input_ids", "labels"]
OnError = Callable[[int, RowError], None]


@dataclass
class ChunkSetup:
    """Everything a worker needs besides the tokenizer; the same for every chunk of a preparation."""
    detection: Optional[Detection]
    prompt_template: Optional[PromptTemplate]
    system_prompt: Optional[str]
    settings: EncodeSettings
    template: Optional[str]        # the chat template that trains (Jinja source), or None
    labels: list[str]              # file index -> how messages name the file
    max_errors: int
    encode: bool = True            # False: only normalise (the template could not be chosen; errors are all we want)
    row_kind: str = "sequences"    # a name in ROW_KINDS (a name, not the object: the setup is pickled to workers)
    reference_columns: Optional[tuple[str, ...]] = ()  # prompts: None = every column (a Python reward reads any)
    reference_readers: dict[str, str] = field(default_factory=dict)
    vocab_size: Optional[int] = None  # tokenized rows: ids must be below it
    margin: bool = False           # pair rows carry a margin column

    @property
    def kind(self) -> "RowKind":
        return ROW_KINDS[self.row_kind]


@dataclass
class EncodedChunk:
    """A chunk's examples encoded: per example its outcome (encode.py's OK, TRUNCATED, ...), full length in tokens
    and history turns kept; the training columns as Arrow arrays, one value per example (empty when not kept)."""
    outcome: np.ndarray      # int8
    full_length: np.ndarray  # int32
    history: np.ndarray      # int16
    columns: dict[str, Any]


class RowKind:
    name = ""
    margin = False  # rows may carry a margin column (pairs: how much better chosen is)

    def columns(self, margin: bool) -> list[str]:
        raise NotImplementedError

    def normalize(self, row: dict, setup: ChunkSetup) -> dict:
        """The canonical example of one source row; RowError names the column and the fix."""
        assert setup.detection is not None  # detected whenever there is no prompt template
        return normalize_row(row, setup.detection, setup.system_prompt)

    def encode(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedChunk:
        raise NotImplementedError


class Sequences(RowKind):
    name = "sequences"

    def columns(self, margin: bool) -> list[str]:
        return list(TOKEN_COLUMNS)

    def encode(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedChunk:
        import pyarrow as pa

        cols = encode_columns(examples, tokenizer, setup.settings, on_error)
        offsets = pa.array(cols.offsets, pa.int32())
        return EncodedChunk(cols.outcome, cols.full_length, cols.history, {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(cols.ids, pa.int32())),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(cols.labels, pa.int32()))})


class _TrainerTokenised(RowKind):
    """Kinds whose rows are kept as texts (or ids) for the TRL trainer: EncodedRows -> one Arrow column each."""

    def rows(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedRows:
        raise NotImplementedError

    def encode(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedChunk:
        import pyarrow as pa

        enc = self.rows(examples, tokenizer, setup, on_error)
        n = len(examples)
        types = {"chosen_ids": pa.list_(pa.int32()), "rejected_ids": pa.list_(pa.int32()), "label": pa.bool_(),
                 "margin": pa.float64()}
        columns = {name: pa.array([enc.rows[i].get(name) if i in enc.rows else None for i in range(n)],
                                  types.get(name, pa.string()))
                   for name in self.columns(setup.margin)}
        return EncodedChunk(np.asarray(enc.outcomes, np.int8), np.asarray(enc.lengths, np.int32),
                            np.zeros(n, np.int16), columns)


class Pairs(_TrainerTokenised):
    name, margin, as_ids = "pairs", True, False

    def columns(self, margin: bool) -> list[str]:
        names = ["chosen_ids", "rejected_ids"] if self.as_ids else ["prompt", "chosen", "rejected"]
        return names + (["margin"] if margin else [])

    def rows(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedRows:
        return encode_preferences(examples, tokenizer, setup.settings, setup.template, self.as_ids, on_error)


class PairIds(Pairs):
    name, as_ids = "pair_ids", True


class Feedback(_TrainerTokenised):
    name = "feedback"

    def columns(self, margin: bool) -> list[str]:
        return ["prompt", "completion", "label"]

    def normalize(self, row: dict, setup: ChunkSetup) -> dict:
        assert setup.detection is not None
        return normalize_feedback_row(row, setup.detection, setup.system_prompt)

    def rows(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedRows:
        return encode_feedback(examples, tokenizer, setup.settings, setup.template, on_error)


class Prompts(_TrainerTokenised):
    name = "prompts"

    def columns(self, margin: bool) -> list[str]:
        return ["prompt", REFERENCES_COLUMN]

    def normalize(self, row: dict, setup: ChunkSetup) -> dict:
        assert setup.detection is not None
        return normalize_prompt_row(row, setup.detection, setup.system_prompt, setup.reference_columns,
                                    setup.reference_readers)

    def rows(self, examples: list[dict], tokenizer: Any, setup: ChunkSetup, on_error: OnError) -> EncodedRows:
        return encode_prompts(examples, tokenizer, setup.settings, setup.template, on_error)


ROW_KINDS: dict[str, RowKind] = {k.name: k for k in (Sequences(), Pairs(), PairIds(), Feedback(), Prompts())}


def row_kind_for(info: TrainerInfo, data_kind: str) -> RowKind:
    """The kind of row `info`'s trainer gets from data of canonical kind `data_kind` (formats.py)."""
    if info.rows in ("feedback", "prompts"):
        return ROW_KINDS[info.rows]
    if info.pairs and data_kind == "preference":
        return ROW_KINDS["pair_ids" if info.head == "seq_cls" else "pairs"]
    return ROW_KINDS["sequences"]

