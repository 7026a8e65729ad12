"""Normalise, validate and encode one chunk of rows into one Arrow shard, in this process or in worker processes.

A chunk is a run of consecutive rows of one split. Each normalised row becomes one record of the shard (in order):
its training columns (empty when a length limit dropped it), the canonical example as JSON, and where it came
from (file index, row number). Rows that fail come back as issues naming their file and row, so a message from a
worker points at the same line of the original file as one found in this process. Per-record facts the report
and the split layout need (outcome, full length, history turns, file) come back as small arrays.
"""
from __future__ import annotations

import json
import os
import pickle
import select
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..settings import settings
from .encode import FAILED
from .issues import DataIssue, Overflow, RowError
from .row_kinds import ChunkSetup
from .templates import render_prompt_template

@dataclass
class ChunkTask:
    split: int        # 0 train, 1 the validation split read from its own source
    chunk: int        # position of the chunk in its split
    rows: list[dict]
    files: list[int]  # per row: index into ChunkSetup.labels
    numbers: list[int]
    out: str          # the shard to write


@dataclass
class ChunkResult:
    split: int
    chunk: int
    rows_read: int
    shard: str
    outcome: np.ndarray      # per record (= per normalised row): encode.py's OK, TRUNCATED, ...
    full_length: np.ndarray
    history: np.ndarray
    files: np.ndarray
    normalise_errors: list[DataIssue] = field(default_factory=list)  # the first max_errors, in row order
    normalise_total: int = 0
    vocab_errors: list[DataIssue] = field(default_factory=list)
    vocab_total: int = 0
    encode_errors: list[tuple[int, DataIssue]] = field(default_factory=list)  # (record, issue)
    encode_total: int = 0
    # the problems past max_errors, grouped (issues.Overflow): each distinct problem still counts its rows
    normalise_overflow: Overflow = field(default_factory=Overflow)
    vocab_overflow: Overflow = field(default_factory=Overflow)
    encode_overflow: Overflow = field(default_factory=Overflow)

    @property
    def records(self) -> int:
        return len(self.outcome)


def default_num_proc() -> int:
    """$LORA_STUDIO_NUM_PROC, else the cores this process may use (shared with the other ranks of a
    multi-process training run on this machine, which prepare the same data at the same time)."""
    forced = settings().num_proc
    if forced is not None:
        return forced
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, cores // ranks)


def process_chunk(setup: ChunkSetup, tokenizer: Any, task: ChunkTask) -> ChunkResult:
    import pyarrow as pa

    limit, kind = setup.max_errors, setup.kind
    roles = setup.detection.mapping.model_dump(exclude_none=True, exclude={"roles"}) if setup.detection else {}
    result = ChunkResult(task.split, task.chunk, len(task.rows), task.out, np.zeros(0, np.int8),
                         np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int32))
    examples: list[dict] = []
    refs: list[tuple[int, int]] = []
    for row, f, number in zip(task.rows, task.files, task.numbers):
        try:
            if setup.prompt_template is not None:
                prompt, completion = render_prompt_template(setup.prompt_template, row, roles)
                ex = {"prompt": prompt, "completion": completion}
            else:
                ex = kind.normalize(row, setup)
        except RowError as exc:
            result.normalise_total += 1
            issue = DataIssue(exc.message, setup.labels[f], number, exc.column, exc.fix)
            if len(result.normalise_errors) < limit:
                result.normalise_errors.append(issue)
            else:
                result.normalise_overflow.add(issue)
            continue
        examples.append(ex)
        refs.append((f, number))
    if setup.vocab_size is not None:
        for issue in _vocab_issues(examples, refs, setup):
            result.vocab_total += 1
            if len(result.vocab_errors) < limit:
                result.vocab_errors.append(issue)
            else:
                result.vocab_overflow.add(issue)
    n = len(examples)
    result.files = np.asarray([f for f, _ in refs], dtype=np.int32)

    def on_error(i: int, exc: RowError) -> None:
        result.encode_total += 1
        f, number = refs[i]
        issue = DataIssue(exc.message, setup.labels[f], number, exc.column, exc.fix)
        if len(result.encode_errors) < limit:
            result.encode_errors.append((i, issue))
        else:
            result.encode_overflow.add(issue)

    columns: dict[str, Any] = {}
    if setup.encode:
        encoded = kind.encode(examples, tokenizer, setup, on_error)
        result.outcome, result.full_length, result.history = encoded.outcome, encoded.full_length, encoded.history
        columns.update(encoded.columns)
    else:  # the template could not be chosen: the normalisation errors are all this preparation reports
        result.outcome, result.full_length = np.full(n, FAILED, np.int8), np.full(n, -1, np.int32)
        result.history = np.zeros(n, np.int16)
    columns["example"] = pa.array([json.dumps(ex, ensure_ascii=False) for ex in examples], pa.string())
    columns["file"] = pa.array(result.files, pa.int32())
    columns["row"] = pa.array([number for _, number in refs], pa.int64())
    write_shard(Path(task.out), pa.table(columns))
    return result


def write_shard(path: Path, table: Any) -> None:
    """Arrow IPC stream, the format `datasets.Dataset.from_file` memory-maps."""
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def _vocab_issues(examples: list[dict], refs: list[tuple[int, int]], setup: ChunkSetup) -> list[DataIssue]:
    vocab = setup.vocab_size or 0
    out = []
    for ex, (f, number) in zip(examples, refs):
        bad = [t for t in ex["input_ids"] if t < 0 or t >= vocab]
        if bad:
            out.append(DataIssue(f"token id {bad[0]} is outside the tokenizer's vocabulary (size {vocab})",
                                 setup.labels[f], number, "input_ids", "tokenize with the base model's own tokenizer"))
        labels = ex.get("labels") or []
        if any(l != -100 and (l < 0 or l >= vocab) for l in labels):
            out.append(DataIssue(f"labels must be -100 or a token id below {vocab}", setup.labels[f], number,
                                 "labels"))
    return out


# ---- worker processes -----------------------------------------------------------------------------------------

_worker_state: Optional[tuple[ChunkSetup, Any]] = None


def _start_worker(payload: bytes, parent: int) -> None:
    global _worker_state
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent decides when to stop (and stops us)
        signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    _worker_state = pickle.loads(payload)


def _exit_with(pid: int) -> None:
    """End this worker when the preparing process ends, however it ends: an idle worker waits on a queue that it
    holds open itself, so it (and a fork server waiting for it) would otherwise wait forever once that process is
    killed."""
    try:
        fd = os.pidfd_open(pid)
        select.select([fd], [], [])  # readable once the process has exited
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): look every second
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                continue
    os._exit(1)


def _run_in_worker(task: ChunkTask) -> ChunkResult:
    assert _worker_state is not None
    return process_chunk(_worker_state[0], _worker_state[1], task)


class ChunkRunner:
    """Runs chunks in `num_proc` worker processes, or in this process when num_proc is 1."""

    def __init__(self, setup: ChunkSetup, tokenizer: Any, num_proc: int):
        self.setup, self.tokenizer, self.num_proc = setup, tokenizer, num_proc
        self.pool: Optional[ProcessPoolExecutor] = None
        if num_proc > 1:
            self.pool = ProcessPoolExecutor(num_proc, mp_context=_context(tokenizer),
                                            initializer=_start_worker,
                                            initargs=(pickle.dumps((setup, tokenizer)), os.getpid()))

    def submit(self, task: ChunkTask) -> Future:
        if self.pool is not None:
            return self.pool.submit(_run_in_worker, task)
        done: Future = Future()
        try:
            done.set_result(process_chunk(self.setup, self.tokenizer, task))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            done.set_exception(exc)
        return done

    def close(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None


def _context(tokenizer: Any) -> Any:
    """fork where it is safe (Linux, no other Python thread that could hold a lock): workers start at once with
    everything imported. Elsewhere (the app's server threads) a fork server with our modules preloaded."""
    import multiprocessing as mp

    if sys.platform == "linux" and threading.active_count() == 1:
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, type(tokenizer).__module__])
    return ctx
