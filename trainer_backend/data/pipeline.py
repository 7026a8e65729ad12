"""spec -> rows -> detected format -> canonical examples -> validated, templated, tokenised splits + a report.

The rows stream from the files in chunks; each chunk is normalised, validated and encoded (in worker processes
when the data is large enough to pay for them) into an Arrow shard of the prepared-data cache, and the splits are
laid out over those shards at the end. A second preparation of the same inputs (data/fingerprint.py) loads the
cached entry instead. Problems are reported in the order a row-by-row pass would meet them: reading, then
normalising, then templates, then encoding; a worker's messages name the file and row like any other.
"""
from __future__ import annotations

import shutil
import weakref
from concurrent.futures import FIRST_COMPLETED, Future, wait
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional

import numpy as np

from ..spec import TRAINER_FORMATS, JobSpec
from ..trainer_registry import trainer_info
from . import prepared_cache as cache
from .assemble import Records, SplitLayout, layouts, length_warnings, no_usable_rows, split_notes
from .encode import EncodeSettings
from .fingerprint import file_states, prepared_key, tokenizer_digest
from .detection import Detection, detect_format
from .issues import DataError, DataIssue, IssueCollector, RowError, skipped_rows
from .loading import SplitSource, columns_of, open_split
from .prepared import PreparedData, SplitData, load_records, preload
from .rl_rows import reference_columns, reference_readers
from .progress import ProgressCallback, ProgressMeter, current_callback
from .templates import choose_chat_template, end_of_turn, renders_tools, tools_unrendered
from .vendor_templates import TemplateChoice
from .row_kinds import ChunkSetup, row_kind_for
from .workers import ChunkResult, ChunkRunner, ChunkTask, default_num_proc

PEEK_ROWS = 200            # rows read before anything else: format detection looks at these
WORKER_MIN_ROWS = 6000     # fewer rows: starting workers costs more than it saves
CHUNK_ROWS = (256, 4096)   # chunk size bounds; with workers, ~8 chunks per worker (even load, steady progress)
IN_FLIGHT = 2              # chunks queued per worker (bounded memory: rows wait in the queue as Python objects)


def encode_settings(spec: JobSpec, kind: str, template: Optional[str]) -> EncodeSettings:
    info = trainer_info(spec.training.trainer)
    generic = info.documents
    # GRPO generates its completions: a prompt must leave room for the longest one it may sample
    completion = spec.grpo.max_completion_length if info.rows == "prompts" else spec.lengths.max_completion_length
    return EncodeSettings(kind=kind, chat_template=template,
                          completion_only_loss=spec.training.completion_only_loss and not generic,
                          block_size=spec.lengths.block_size, too_long=spec.data.too_long,
                          max_prompt_length=spec.lengths.max_prompt_length,
                          max_completion_length=completion, cap_length=not generic)


def prepare_data(spec: JobSpec, tokenizer: Any, num_proc: Optional[int] = None,
                 progress: Optional[ProgressCallback] = None) -> PreparedData:
    """Load, detect, normalise, validate and tokenise every split, or load the result from the cache. Raises
    DataError listing every problem. num_proc: worker processes (default $LORA_STUDIO_NUM_PROC, else every core)."""
    return _Preparation(spec, tokenizer, num_proc or default_num_proc(), progress or current_callback()).run()


class _Preparation:
    def __init__(self, spec: JobSpec, tokenizer: Any, num_proc: int, progress: Optional[ProgressCallback]):
        self.spec, self.tokenizer, self.num_proc = spec, tokenizer, num_proc
        self.meter = ProgressMeter(progress)
        limit = spec.data.max_errors
        # reading problems, in the order a sequential pass meets them: train, valid's resolution, valid's rows
        self.read_issues = [IssueCollector(limit) for _ in range(3)]
        self.rows_read = [0, 0]
        self.first_file: list[Optional[str]] = [None, None]  # the file of each source's first row
        self.warnings: list[DataIssue] = []
        self.skipped: Optional[DataIssue] = None  # the rows data.bad_rows: skip left out, said once (kept in the cache)

    # ---- reading ------------------------------------------------------------------------------------------
    def _rows(self, source: Optional[SplitSource], which: int, base: int) -> Iterator[tuple[dict, int, int]]:
        """A source's rows (at most data.max_rows; the rest is still read, for its problems)."""
        if source is None:
            return
        issues = self.read_issues[2 if which else 0]
        cap = self.spec.data.max_rows
        for row, index, number in source.rows(issues):
            if cap and self.rows_read[which] >= cap:
                continue
            if self.first_file[which] is None:
                self.first_file[which] = source.labels[index]
            self.rows_read[which] += 1
            yield row, base + index, number

    def _open_valid(self) -> Optional[SplitSource]:
        d = self.spec.data
        if d.valid_split in (None, "auto"):
            return None
        if Path(d.valid_split).expanduser().is_file():  # valid_split may name a file of its own
            return open_split(d.valid_split, "train", self.read_issues[1], text_split=d.text_split)
        return open_split(d.path, d.valid_split, self.read_issues[1], d.config_name, d.text_split)

    def _fail(self, *extra: DataIssue, drain: tuple[Iterator, ...] = ()) -> NoReturn:
        """Read what is left (for its problems), add `extra`, and raise every problem found."""
        for rows in drain:
            for _ in rows:
                pass
        collector = self._reading_problems()
        for issue in extra:
            collector.error(issue)
        collector.raise_if_errors()
        raise AssertionError("_fail without a problem")

    def _reading_problems(self) -> IssueCollector:
        out = IssueCollector(self.spec.data.max_errors)
        for c in self.read_issues:
            out.absorb(c)
        return out

    # ---- the run ------------------------------------------------------------------------------------------
    def run(self) -> PreparedData:
        spec, d, tok = self.spec, self.spec.data, self.tokenizer
        train = open_split(d.path, d.train_split, self.read_issues[0], d.config_name, d.text_split)
        valid = self._open_valid()
        labels = (train.labels if train else []) + (valid.labels if valid else [])
        train_rows = self._rows(train, 0, 0)
        valid_rows = self._rows(valid, 1, len(train.labels) if train else 0)
        peek = list(islice(train_rows, PEEK_ROWS))
        if not peek:  # the validation split is read too, for its problems, before the dataset is called empty
            for _ in valid_rows:
                pass
            empty = DataIssue("the dataset is empty (no rows)", d.path, fix="check the file and the split name")
            self._fail(*([empty] if train is not None and not any(c.errors for c in self.read_issues) else []))
        det: Optional[Detection] = None
        if d.prompt_template is None or d.prompt_template.preset:
            try:
                det = detect_format(columns_of([r for r, _, _ in peek]), [r for r, _, _ in peek[:50]], d.format,
                                    d.column_mapping)
            except RowError as exc:
                self._fail(DataIssue(exc.message, d.path, column=exc.column, fix=exc.fix),
                           drain=(train_rows, valid_rows))
        assert det is not None or d.prompt_template is not None
        if det is not None and trainer_info(spec.training.trainer).rows == "prompts":
            det.read_also(reference_columns(spec))  # the columns GRPO's rewards read are used
        kind = "template" if det is None else det.kind
        accepted = TRAINER_FORMATS[spec.training.trainer]
        if det is not None and det.format not in accepted:
            self._fail(DataIssue(
                f"trainer '{spec.training.trainer}' needs {_needs(accepted)}; this dataset looks like {det.format} "
                "data", d.path, fix=_format_fix(spec.training.trainer, accepted)), drain=(train_rows, valid_rows))
        choice, eot, template_issues = self._choose_template(det, kind)
        info = trainer_info(spec.training.trainer)
        row_kind = row_kind_for(info, kind)
        setup = ChunkSetup(det, d.prompt_template, d.system_prompt,
                           encode_settings(spec, kind, choice.source if choice else None),
                           choice.source if choice else None, labels, d.max_errors, encode=not template_issues,
                           row_kind=row_kind.name, vocab_size=len(tok) if kind == "tokenized" else None,
                           margin=bool(row_kind.margin and det and det.mapping.margin),
                           reference_columns=reference_columns(spec), reference_readers=reference_readers(spec))
        columns = row_kind.columns(setup.margin)

        root, key, why = cache.cache_root(), None, None
        states: list = []
        if not template_issues and train is not None:
            states = file_states([train, valid])
            key = prepared_key(spec, train, valid, tokenizer_digest(tok), setup.template)
            entry, why = cache.load_entry(root, key)
            if entry is not None:
                return self._finish(det, choice, eot, entry.path, entry.meta, labels, columns, "hit")
        try:
            build = cache.start_build(root, key or "nokey")
        except OSError as exc:  # a cache folder we cannot write: prepare into a temporary one
            root, why = None, f"cache folder not writable: {exc}"
            build = cache.start_build(None, "nokey")
        try:
            results = self._stream(setup, chain(peek, train_rows), valid_rows, build, train, valid)
            rec = Records.of(results)
            splits = layouts(rec, spec, self.rows_read, valid is not None)
            failed = {s.labels[i] for s in (train, valid) if s is not None for i in s.failed_files}
            self._check(results, rec, splits, labels, valid is not None, template_issues, failed)
            meta = self._save_layout(build, results, splits, labels, det)
            if self.skipped is not None:
                meta["skipped"] = self.skipped.to_dict()
            if key is None or states != file_states([train, valid]):  # a file changed while it was read
                root, why = None, "a data file changed while it was read"
            published = cache.publish(build, root, key or "nokey", sorted(build.iterdir()), meta)
        except BaseException:
            cache.discard(build)
            raise
        status = ("off" + (f" ({why})" if why else "")) if root is None else f"rebuilt ({why})" if why else "built"
        prepared = self._finish(det, choice, eot, published.path, meta, labels, columns, status)
        if root is None:  # nothing will look for it again: it goes when the prepared data does
            prepared.keep_alive = weakref.finalize(prepared, shutil.rmtree, str(published.path), True)
        return prepared

    def _choose_template(self, det: Optional[Detection],
                         kind: str) -> tuple[Optional[TemplateChoice], Optional[str], list[DataIssue]]:
        d, tok = self.spec.data, self.tokenizer
        choice: Optional[TemplateChoice] = None
        eot: Optional[str] = tok.eos_token
        problems: list[DataIssue] = []
        needs_chat = kind in ("messages", "preference", "prompt", "feedback") or (kind == "pair" and d.chat_template != "none"
                                                            and d.prompt_template is None)
        if needs_chat and det is not None:
            if d.chat_template == "none":
                problems.append(DataIssue(
                    f"{det.format} data needs a chat template, but data.chat_template is 'none'", d.path,
                    column=det.mapping.messages, fix="choose a Chat template: tokenizer, chatml, zephyr, "
                                                     "llama3 or alpaca (data.chat_template)"))
            else:
                try:
                    choice = choose_chat_template(tok, d.chat_template)
                    eot = end_of_turn(tok, choice) if choice is not None else eot
                except RowError as exc:
                    problems.append(DataIssue(exc.message, fix=exc.fix))
        if det is not None and det.tools and choice is not None and not renders_tools(tok, choice.source):
            problems.append(tools_unrendered(choice, d.path))
        if eot and choice and len(tok(eot, add_special_tokens=False, verbose=False)["input_ids"]) > 1:
            warning = DataIssue(
                f"the end-of-turn marker {eot!r} is not a single token for this tokenizer; the model learns it as "
                "several pieces and generation stops on the text",
                fix="prefer the tokenizer's own template or one whose markers it knows (chatml for Qwen-style "
                    "vocabularies, llama3 for Llama 3)")
            warning.severity = "warning"
            self.warnings.append(warning)
        return choice, eot, problems

    # ---- streaming chunks through the workers --------------------------------------------------------------
    def _stream(self, setup: ChunkSetup, train_rows: Iterator, valid_rows: Iterator, build: Path,
                train: Optional[SplitSource], valid: Optional[SplitSource]) -> list[ChunkResult]:
        sources = [s for s in (train, valid) if s is not None]
        total_bytes = sum(s.total_bytes for s in sources) or 1
        estimate = PEEK_ROWS / max(train.position.fraction, 1e-9) if train is not None else 0
        workers = self.num_proc if self.num_proc > 1 and estimate >= WORKER_MIN_ROWS else 1
        size = int(np.clip(estimate / (workers * 8), *CHUNK_ROWS)) if workers > 1 else CHUNK_ROWS[1]
        runner = ChunkRunner(setup, self.tokenizer, workers)
        results: list[ChunkResult] = []
        pending: set[Future] = set()
        done_rows = 0

        def collect(block: bool) -> None:
            nonlocal done_rows
            finished, _ = wait(pending, return_when=FIRST_COMPLETED) if block else (
                {f for f in pending if f.done()}, None)
            for future in finished:
                pending.discard(future)
                result = future.result()
                results.append(result)
                done_rows += result.rows_read
            read = sum(s.position.done_bytes for s in sources) / total_bytes
            self.meter.update(done_rows, sum(self.rows_read), read)

        tasks = chain(self._tasks(train_rows, 0, size, build), self._tasks(valid_rows, 1, size, build))
        try:
            self.meter.update(0, 0, 0.0)
            preloaded = workers == 1
            for task in tasks:
                while len(pending) >= workers * IN_FLIGHT:
                    if not preloaded:  # every worker is busy: a good moment for the parent's own imports
                        preload()
                        preloaded = True
                    collect(block=True)
                pending.add(runner.submit(task))
                collect(block=False)
            while pending:
                collect(block=True)
            self.meter.update(done_rows, sum(self.rows_read), 1.0, final=True)
        except BaseException:
            runner.close(cancel=True)
            raise
        runner.close()
        return sorted(results, key=lambda r: (r.split, r.chunk))

    @staticmethod
    def _tasks(rows: Iterator, split: int, size: int, build: Path) -> Iterator[ChunkTask]:
        for chunk in range(1 << 40):
            part = list(islice(rows, size))
            if not part:
                return
            yield ChunkTask(split, chunk, [r for r, _, _ in part], [f for _, f, _ in part], [n for _, _, n in part],
                            str(build / f"records-{split}-{chunk:05d}.arrow"))

    # ---- problems, layout, result ---------------------------------------------------------------------------
    def _check(self, results: list[ChunkResult], rec: Records, splits: dict[str, SplitLayout], labels: list[str],
               valid_source: bool, template_issues: list[DataIssue], failed: set[str]) -> None:
        d = self.spec.data
        issues = self._reading_problems()
        if valid_source and not self.rows_read[1]:
            source = str(d.valid_split) if Path(str(d.valid_split)).expanduser().is_file() else d.path
            issues.error(DataIssue(f"validation split '{d.valid_split}' has no rows", source,
                                   fix="fill it, use valid_split: auto, or leave it empty"))
        # data.bad_rows: skip -- a row's own problems are counted and said, and the row left out; the rest refuse
        rows = IssueCollector(d.max_errors) if d.bad_rows == "skip" else issues
        for source_split in (0, 1):
            for kind in ("normalise", "vocab"):
                _feed(rows, [r for r in results if r.split == source_split], kind, failed)
        if d.valid_split == "auto" and not valid_source and 0 < int((rec.source == 0).sum()) < 2:
            n = int((rec.source == 0).sum())
            issues.error(DataIssue(f"valid_split: auto needs at least 2 valid training rows, found {n}",
                                   self.first_file[0], fix="add rows, or leave valid_split empty"))
        for issue in template_issues:
            issues.error(issue)
        issues.raise_if_errors()
        # encoding problems, split by split as the rows now fall (after valid_split: auto)
        found: dict[int, DataIssue] = {}
        total = 0
        for r, base in zip(results, rec.chunk_base):
            found.update({base + i: issue for i, issue in r.encode_errors})
            total += r.encode_total
        for name, split in splits.items():
            for i in split.members[np.isin(split.members, list(found))]:
                rows.error(found[int(i)])
            self.warnings += length_warnings(name, split.stats, split.history_turns, self._where(split, labels),
                                             self.spec.lengths.block_size)
            if not split.used.size and rows is not issues and rows.errors:  # every row skipped: say why
                for issue in rows.errors:
                    issues.error(issue)
            if not split.used.size and not issues.errors:
                issues.error(no_usable_rows(name, split.stats, self._where(split, labels) or d.path))
        rows.dropped_errors += total - len(found)
        for r in results:
            rows.overflow.merge(r.encode_overflow)
        if rows is not issues and rows.errors:
            self.skipped = skipped_rows(rows)
            self.warnings.append(self.skipped)
        if issues.errors:
            raise DataError(issues.errors, issues.dropped_errors, issues.overflow)

    @staticmethod
    def _where(split: SplitLayout, labels: list[str]) -> Optional[str]:
        return labels[split.first_file] if split.first_file is not None else None

    @staticmethod
    def _save_layout(build: Path, results: list[ChunkResult], splits: dict[str, SplitLayout], labels: list[str],
                     det: Optional[Detection]) -> dict:
        for name, split in splits.items():
            np.save(build / f"members-{name}.npy", split.members)
            np.save(build / f"used-{name}.npy", split.used)
        summary = {"format": det.format if det else "template", "source": labels[0] if labels else None,
                   "rows": [split.stats.rows_used for split in splits.values()]}  # for `cache list`
        return {"shards": [Path(r.shard).name for r in results], "labels": len(labels),
                "splits": {name: split.meta() for name, split in splits.items()}, "summary": summary}

    def _finish(self, det: Optional[Detection], choice: Optional[TemplateChoice], eot: Optional[str], folder: Path,
                meta: dict, labels: list[str], columns: list[str], status: str) -> PreparedData:
        from .report import SplitReport

        if meta["labels"] != len(labels):  # cannot happen for the same key; refuse rather than mislabel rows
            raise ValueError(f"prepared-data cache entry {folder} names {meta['labels']} files, not {len(labels)}")
        records = load_records(folder, meta["shards"])
        splits = {}
        for name, m in meta["splits"].items():
            stats = SplitReport(**m["stats"])
            splits[name] = SplitData(name, stats, records, np.load(folder / f"members-{name}.npy"),
                                     np.load(folder / f"used-{name}.npy"), labels, columns, m["history_turns"])
            if status == "hit":  # the warnings a fresh preparation would give, from the stored numbers
                where = labels[m["first_file"]] if m["first_file"] is not None else None
                self.warnings += length_warnings(name, stats, m["history_turns"], where,
                                                 self.spec.lengths.block_size)
        if status == "hit" and meta.get("skipped"):  # the rows a fresh preparation would skip, said again
            self.warnings.append(DataIssue(**meta["skipped"]))
        notes = split_notes(self.spec, splits)
        prepared = PreparedData(self.spec, det, splits, self.warnings, notes, eot, self.tokenizer, choice, folder,
                                status)
        if status == "hit":
            self.meter.cached(len(prepared.train))
        return prepared


def _needs(accepted: tuple[str, ...]) -> str:
    if accepted == ("preference",):
        return "preference data (prompt, chosen, rejected)"
    if accepted == ("feedback",):
        return "feedback data (prompt, completion and a thumbs-up/down label)"
    return f"{', '.join(accepted)} data"


def _format_fix(trainer: str, accepted: tuple[str, ...]) -> str:
    if "preference" in accepted:
        return "pick prompt, chosen and rejected in Column mapping (data.column_mapping {prompt, chosen, rejected})"
    if "feedback" in accepted:
        return ("pick prompt, response and label in Column mapping (data.column_mapping {prompt, response, label}, "
                "or {messages, label})")
    return f"use data of a format the {trainer} trainer takes, or another trainer"


def _feed(issues: IssueCollector, results: list[ChunkResult], kind: str, failed: set[str]) -> None:
    """Add the chunks' `kind` problems in row order; those a chunk did not keep count as dropped. A file that
    turned out not to be UTF-8 part-way yields no rows at all, so its rows' problems are not reported."""
    for r in results:
        kept = getattr(r, f"{kind}_errors")
        for issue in kept:
            if issue.file not in failed:
                issues.error(issue)
        issues.dropped_errors += getattr(r, f"{kind}_total") - len(kept)
        issues.overflow.merge(getattr(r, f"{kind}_overflow"), lambda issue: issue.file not in failed)
