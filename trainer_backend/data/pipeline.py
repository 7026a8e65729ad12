"""spec -> rows -> detected format -> canonical examples -> validated, templated, tokenised splits + a report."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..spec import TRAINER_FORMATS, JobSpec
from ..trainer_registry import PAIR_TRAINERS, trainer_info
from .encode import Encoded, EncodeSettings, encode_examples, render_masked
from .preference import EncodedPreference, encode_preferences
from .report import DatasetReport, FormatInfo, PreferenceSample, SplitReport, TokenSample, TokenStats

PREFERENCE_TRAINERS = PAIR_TRAINERS  # trainers that get prompt/chosen/rejected rows (trainer_registry.py)
from .formats import Detection, detect_format, normalize_row
from .issues import DataIssue, IssueCollector, RowError
from .loading import RawSplit, load_split
from .templates import choose_chat_template, end_of_turn, render_prompt_template
from .vendor_templates import TemplateChoice


@dataclass
class SplitData:
    name: str
    raw: RawSplit
    examples: list[dict] = field(default_factory=list)
    refs: list[tuple[str, int]] = field(default_factory=list)
    encoded: Optional[Encoded | EncodedPreference] = None

    def summary(self, block_size: int) -> SplitReport:
        import numpy as np

        enc = self.encoded
        lengths = np.asarray(enc.full_lengths if enc else [], dtype=np.int64)
        report = SplitReport(rows_read=len(self.raw.rows), rows_valid=len(self.examples),
                             rows_used=len(enc.source_index) if enc else 0)
        if enc and len(lengths):
            over = int((lengths > block_size).sum())
            report = report.model_copy(update={
                "tokens": TokenStats(min=int(lengths.min()), median=int(np.median(lengths)),
                                     p95=int(np.percentile(lengths, 95)), max=int(lengths.max()),
                                     total=int(lengths.sum())),
                "longer_than_block_size": over, "pct_longer_than_block_size": round(100 * over / len(lengths), 2),
                "truncated": enc.truncated, "dropped_too_long": enc.dropped_too_long,
                "dropped_no_loss": enc.dropped_no_loss})
        return report


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

    @property
    def train(self) -> SplitData:
        return self.splits["train"]

    @property
    def valid(self) -> Optional[SplitData]:
        return self.splits.get("valid")

    def to_datasets(self) -> tuple[Any, Optional[Any]]:
        from datasets import Dataset

        def ds(s: Optional[SplitData]) -> Optional[Dataset]:
            if s is None or s.encoded is None:
                return None
            if isinstance(s.encoded, EncodedPreference):
                return Dataset.from_list(s.encoded.rows)
            return Dataset.from_dict({"input_ids": s.encoded.input_ids, "labels": s.encoded.labels})
        return ds(self.train), ds(self.valid)

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

    def _sample(self, sample_row: int) -> Optional[TokenSample | PreferenceSample]:
        enc = self.train.encoded
        if isinstance(enc, EncodedPreference):
            if not enc.rows:
                return None
            i = min(sample_row, len(enc.rows) - 1)
            file, row = self.train.refs[enc.source_index[i]]
            pair = enc.rows[i]
            if "chosen_ids" in pair:  # reward rows: token ids of prompt + answer
                return PreferenceSample(file=file, row=row, chosen=self.tokenizer.decode(pair["chosen_ids"]),
                                        rejected=self.tokenizer.decode(pair["rejected_ids"]),
                                        margin=pair.get("margin"))
            return PreferenceSample(file=file, row=row, prompt=pair["prompt"], chosen=pair["chosen"],
                                    rejected=pair["rejected"], margin=pair.get("margin"))
        if not enc or not enc.input_ids:
            return None
        i = min(sample_row, len(enc.input_ids) - 1)
        ids, labels = enc.input_ids[i], enc.labels[i]
        file, row = self.train.refs[enc.source_index[i]]
        return TokenSample(file=file, row=row, tokens=len(ids), tokens_with_loss=sum(l != -100 for l in labels),
                           rendered=render_masked(ids, labels, self.tokenizer))


def _resolve_valid(spec: JobSpec, issues: IssueCollector) -> Optional[RawSplit]:
    d = spec.data
    if d.valid_split in (None, "auto"):
        return None
    if Path(d.valid_split).expanduser().is_file():  # valid_split may name a file of its own
        return load_split(d.valid_split, "train", issues, text_split=d.text_split)
    return load_split(d.path, d.valid_split, issues, d.config_name, d.text_split)


def _normalize(split: SplitData, det: Optional[Detection], spec: JobSpec, issues: IssueCollector) -> None:
    d = spec.data
    roles = det.mapping.model_dump(exclude_none=True, exclude={"roles"}) if det else {}
    for row, ref in zip(split.raw.rows, split.raw.refs):
        try:
            if d.prompt_template is not None:
                prompt, completion = render_prompt_template(d.prompt_template, row, roles)
                ex = {"prompt": prompt, "completion": completion}
            else:
                ex = normalize_row(row, det, d.system_prompt)
        except RowError as exc:
            issues.error(DataIssue(exc.message, ref[0], ref[1], exc.column, exc.fix))
            continue
        split.examples.append(ex)
        split.refs.append(ref)


def _carve_valid(train: SplitData, fraction: float, seed: int, issues: IssueCollector) -> Optional[SplitData]:
    n = len(train.examples)
    k = max(1, round(n * fraction))
    if n < 2:
        issues.error(DataIssue(f"valid_split: auto needs at least 2 valid training rows, found {n}",
                               train.raw.refs[0][0] if train.raw.refs else None,
                               fix="add rows, or leave valid_split empty"))
        return None
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    valid = SplitData("valid", RawSplit("valid"))
    keep_ex, keep_refs = [], []
    for i, (ex, ref) in enumerate(zip(train.examples, train.refs)):
        (valid.examples if i in held else keep_ex).append(ex)
        (valid.refs if i in held else keep_refs).append(ref)
        if i in held:
            valid.raw.rows.append(train.raw.rows[i] if i < len(train.raw.rows) else {})
    train.examples, train.refs = keep_ex, keep_refs
    return valid


def encode_settings(spec: JobSpec, kind: str, template: Optional[str]) -> EncodeSettings:
    generic = trainer_info(spec.training.trainer).documents
    return EncodeSettings(kind=kind, chat_template=template,
                          completion_only_loss=spec.training.completion_only_loss and not generic,
                          block_size=spec.lengths.block_size, too_long=spec.data.too_long,
                          max_prompt_length=spec.lengths.max_prompt_length,
                          max_completion_length=spec.lengths.max_completion_length, cap_length=not generic)


def prepare_data(spec: JobSpec, tokenizer: Any) -> PreparedData:
    """Load, detect, normalise, validate and tokenise every split. Raises DataError listing every problem."""
    d = spec.data
    issues = IssueCollector(d.max_errors)
    notes: list[str] = []
    raw_train = load_split(d.path, d.train_split, issues, d.config_name, d.text_split)
    raw_valid = _resolve_valid(spec, issues)
    if raw_train is not None and not raw_train.rows and not issues.errors:
        issues.error(DataIssue("the dataset is empty (no rows)", d.path, fix="check the file and the split name"))
    if raw_train is None or not raw_train.rows:
        issues.raise_if_errors()
    if d.max_rows:
        raw_train = raw_train.head(d.max_rows)
        raw_valid = raw_valid.head(d.max_rows) if raw_valid else None

    det: Optional[Detection] = None
    if d.prompt_template is None or d.prompt_template.preset:
        try:
            det = detect_format(raw_train.columns, raw_train.rows[:50], d.format, d.column_mapping)
        except RowError as exc:
            issues.error(DataIssue(exc.message, d.path, column=exc.column, fix=exc.fix))
            issues.raise_if_errors()
    kind = "template" if d.prompt_template is not None else det.kind
    accepted = TRAINER_FORMATS[spec.training.trainer]
    if det is not None and det.format not in accepted:
        needs = "preference data (prompt, chosen, rejected)" if accepted == ("preference",) else \
            f"{', '.join(accepted)} data"
        issues.error(DataIssue(f"trainer '{spec.training.trainer}' needs {needs}; this dataset looks like "
                               f"{det.format} data", d.path,
                               fix="map the columns with data.column_mapping {prompt, chosen, rejected}"
                               if "preference" in accepted else f"use data of a format the {spec.training.trainer} "
                                                                "trainer takes, or another trainer"))
        issues.raise_if_errors()

    splits = {"train": SplitData("train", raw_train)}
    if raw_valid is not None:
        splits["valid"] = SplitData("valid", raw_valid)
        if not raw_valid.rows:
            source = d.valid_split if Path(d.valid_split).expanduser().is_file() else d.path
            issues.error(DataIssue(f"validation split '{d.valid_split}' has no rows", source,
                                   fix="fill it, use valid_split: auto, or leave it empty"))
    for split in splits.values():
        _normalize(split, det, spec, issues)
        if kind == "tokenized":
            _check_vocab(split, tokenizer, issues)
    if d.valid_split == "auto" and splits["train"].examples:
        carved = _carve_valid(splits["train"], d.valid_fraction, spec.training.seed, issues)
        if carved:
            splits["valid"] = carved
            notes.append(f"valid_split auto: held out {len(carved.examples)} of "
                         f"{len(carved.examples) + len(splits['train'].examples)} rows (seed {spec.training.seed})")
    if "valid" not in splits and spec.training.eval_strategy != "no":
        notes.append("no validation split: evaluation is off (set data.valid_split, e.g. 'auto')")

    choice: Optional[TemplateChoice] = None
    eot: Optional[str] = tokenizer.eos_token
    needs_chat = kind in ("messages", "preference") or (kind == "pair" and d.chat_template != "none"
                                                        and d.prompt_template is None)
    if needs_chat:
        if d.chat_template == "none":
            issues.error(DataIssue(f"{det.format} data needs a chat template, but data.chat_template is 'none'",
                                   d.path, column=det.mapping.messages,
                                   fix="set data.chat_template to tokenizer, chatml, zephyr, llama3 or alpaca"))
        else:
            try:
                choice = choose_chat_template(tokenizer, d.chat_template)
                eot = end_of_turn(tokenizer, choice)
            except RowError as exc:
                issues.error(DataIssue(exc.message, fix=exc.fix))
    if eot and choice and len(tokenizer(eot, add_special_tokens=False, verbose=False)["input_ids"]) > 1:
        issues.warn(DataIssue(f"the end-of-turn marker {eot!r} is not a single token for this tokenizer; the model "
                              "learns it as several pieces and generation stops on the text",
                              fix="prefer the tokenizer's own template or one whose markers it knows (chatml for "
                                  "Qwen-style vocabularies, llama3 for Llama 3)"))
    issues.raise_if_errors()

    template = choice.source if choice else None
    settings = encode_settings(spec, kind, template)
    for split in splits.values():
        def on_error(i: int, exc: RowError, split: SplitData = split) -> None:
            issues.error(DataIssue(exc.message, *split.refs[i], exc.column, exc.fix))
        if kind == "preference" and spec.training.trainer in PREFERENCE_TRAINERS:
            split.encoded = encode_preferences(split.examples, tokenizer, settings, template,
                                               as_ids=trainer_info(spec.training.trainer).head == "seq_cls",
                                               on_error=on_error)
        else:
            split.encoded = encode_examples(split.examples, tokenizer, settings, on_error)
        _length_warnings(split, spec, issues)
        if not split.encoded.source_index and not issues.errors:
            enc = split.encoded
            fix = "raise lengths.block_size" + (
                " or set data.too_long: truncate" if enc.dropped_too_long else
                " or set lengths.max_prompt_length so long prompts are cut from the left")
            issues.error(DataIssue(f"no usable rows left in the {split.name} split after length limits",
                                   split.refs[0][0] if split.refs else d.path, fix=fix))
    issues.raise_if_errors()
    return PreparedData(spec, det, splits, issues.warnings, notes, eot, tokenizer, choice)


def _check_vocab(split: SplitData, tokenizer: Any, issues: IssueCollector) -> None:
    vocab = len(tokenizer)
    for ex, ref in zip(split.examples, split.refs):
        bad = [t for t in ex["input_ids"] if t < 0 or t >= vocab]
        if bad:
            issues.error(DataIssue(f"token id {bad[0]} is outside the tokenizer's vocabulary (size {vocab})",
                                   ref[0], ref[1], "input_ids", "tokenize with the base model's own tokenizer"))
        labels = ex.get("labels") or []
        if any(l != -100 and (l < 0 or l >= vocab) for l in labels):
            issues.error(DataIssue(f"labels must be -100 or a token id below {vocab}", ref[0], ref[1], "labels"))


def _length_warnings(split: SplitData, spec: JobSpec, issues: IssueCollector) -> None:
    enc = split.encoded
    n = len(split.examples)
    where = split.refs[0][0] if split.refs else None
    block = spec.lengths.block_size
    if enc.truncated:
        issues.warn(DataIssue(f"{enc.truncated} of {n} {split.name} rows are longer than the limits and were "
                              f"truncated (block_size {block})", where,
                              fix="raise lengths.block_size, or set data.too_long: drop"))
    if enc.dropped_too_long:
        issues.warn(DataIssue(f"{enc.dropped_too_long} of {n} {split.name} rows are longer than block_size "
                              f"{block} and were dropped", where, fix="raise lengths.block_size"))
    if getattr(enc, "history_turns", 0):  # preference rows have no history turns
        issues.warn(DataIssue(f"{enc.history_turns} earlier assistant turns in the {split.name} split are rendered "
                              "differently once later turns follow (the chat template drops their reasoning from "
                              "history), so they are kept as context and not trained; each conversation's last "
                              "answer trains as the model generates it", where,
                              fix="to train every turn, split conversations into one row per assistant turn, or "
                                  "use a template that renders history as generated (data.chat_template: chatml)"))
    if enc.dropped_no_loss:
        issues.warn(DataIssue(f"{enc.dropped_no_loss} of {n} {split.name} rows had no trainable tokens left "
                              f"(prompt fills the limit) and were dropped", where,
                              fix="raise lengths.block_size or set lengths.max_prompt_length"))
