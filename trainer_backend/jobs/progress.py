"""Incremental reader of a job's events.jsonl, and the typed progress snapshot built from it.

The training process appends one JSON line per event. `EventsReader` remembers its byte offset and the
state folded from every line so far, so a poll costs one `stat()` when nothing changed and reads only
the new bytes when something did: cheap enough for many clients polling every second.

Besides the loss, learning rate and grad norm, the snapshot follows the metrics of the RL trainers (events.jsonl
carries TRL's names as extra keys of `log` events; see run_events.py):

- `reward`, `kl`, `reward_margin`: the last logged `reward` (GRPO: mean total reward of the step), `kl` (GRPO
  with grpo.beta > 0, KTO) and `rewards/margins` (KTO, DPO). Scalars: they are in the summary too.
- `reward_series` (step, reward); `reward_function_series` {reward name: [(step, `rewards/<name>/mean`)]};
  `eval_reward_series` (step, `eval_reward`); `kl_series` (step, kl); `completion_length_series` (step,
  `completions/mean_length`). Like every series, only in `to_dict(series=True)` and cut back on a resume.
- `phase`, `phase_since`: where the latest run is before its first step (`preparing data`, `loading model`,
  `restoring checkpoint`; from Preparing and Phase events), `training` from its `start`, None once it ended.
- `elapsed_seconds` adds up the time from each run's `start` to its last event: the time a job stood stopped
  between a stop and a resume, and a resume's phases before its first step, are not counted.
- `samples`: the completions of the latest `samples` events (GRPO, every grpo.sample_every steps), newest first,
  at most MAX_SAMPLES: {step, prompt, completion, rewards: {name: score or None}, total}.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..run_events import (OUTCOME_TYPES, Checkpoint, Eval, Failed, Log, Phase, Preparing, RunEvent, Sample, Samples,
                          Start, Stopped, is_number, parse_line)

SERIES_FIELDS = ("loss_series", "eval_series", "lr_series", "grad_norm_series", "epoch_starts", "reward_series",
                 "eval_reward_series", "kl_series", "completion_length_series")
MAX_SAMPLES = 20  # sample completions kept (newest first): what the Jobs tab's table shows
# `log` keys followed as series (the name used here <- the key in events.jsonl)
LOG_SERIES = {"reward": "reward", "kl": "kl", "completion_length": "completions/mean_length"}
_REWARD_MEAN = re.compile(r"^rewards/(.+)/mean$")  # GRPO: one per reward function (not KTO's rewards/chosen)
Points = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class ProgressSnapshot:
    """Where a job's training stands. Frozen: one instance may be handed to many pollers at once."""
    step: int = 0
    total_steps: Optional[int] = None
    percent: Optional[float] = None          # 0..100
    epoch: Optional[float] = None
    elapsed_seconds: float = 0.0             # training time over every run of the job (resumes add up)
    phase: Optional[str] = None              # the latest run's phase (see the module doc); None once it ended
    phase_since: Optional[float] = None      # when that phase began (epoch seconds)
    eta_seconds: Optional[float] = None
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norm: Optional[float] = None
    tokens_per_second: Optional[float] = None
    tokens_seen: Optional[int] = None
    peak_memory_bytes: Optional[int] = None  # the highest any run of the job reported
    peak_memory_device: Optional[str] = None  # GPU (torch allocated) | RAM (process peak resident set)
    eval_loss: Optional[float] = None
    loss_series: tuple[tuple[int, float], ...] = ()   # (step, loss), continuous across resumes
    eval_series: tuple[tuple[int, float], ...] = ()   # (step, eval_loss)
    lr_series: tuple[tuple[int, float], ...] = ()     # (step, learning rate)
    grad_norm_series: tuple[tuple[int, float], ...] = ()  # (step, gradient norm)
    epoch_starts: tuple[tuple[int, int], ...] = ()    # (first step logged in epoch N, N) for N >= 2
    steps_per_second: Optional[float] = None # between the last two logged steps of the current run
    runs: int = 0                            # `start` events seen (1 + number of resumes that got going)
    last_event: Optional[str] = None
    last_event_time: Optional[float] = None
    last_checkpoint: Optional[str] = None
    outcome: Optional[str] = None            # finished | stopped | failed, for the latest run
    error: Optional[str] = None
    preparing_percent: Optional[float] = None   # 0..100 while the run prepares its data (before step 0)
    preparing_eta_seconds: Optional[float] = None
    reward: Optional[float] = None           # GRPO: mean total reward of the last logged step
    kl: Optional[float] = None               # GRPO (grpo.beta > 0), KTO: KL to the reference model, last logged
    reward_margin: Optional[float] = None    # KTO, DPO: rewards/margins, last logged
    reward_series: Points = ()               # (step, mean total reward)
    reward_function_series: tuple[tuple[str, Points], ...] = ()  # (reward name, (step, mean of that reward)...)
    eval_reward_series: Points = ()          # (step, eval_reward)
    kl_series: Points = ()                   # (step, kl)
    completion_length_series: Points = ()    # (step, completions/mean_length), in tokens
    samples: tuple[dict, ...] = ()           # sample completions with their rewards, newest first

    def to_dict(self, series: bool = True) -> dict[str, Any]:
        data = asdict(self)
        for name in SERIES_FIELDS:
            if series:
                data[name] = [list(p) for p in getattr(self, name)]
            else:
                data.pop(name)
        if series:
            data["reward_function_series"] = {n: [list(p) for p in points] for n, points in self.reward_function_series}
            data["samples"] = [dict(s, rewards=dict(s["rewards"])) for s in self.samples]
        else:
            data.pop("reward_function_series")
            data.pop("samples")
        return data

    def summary(self) -> dict[str, Any]:
        """The compact form stored in the job row (no series)."""
        return {k: v for k, v in self.to_dict(series=False).items() if v is not None}


class _State:
    """Everything folded from the lines read so far."""

    def __init__(self) -> None:
        self.last_log = Log()
        self.step = 0
        self.total: Optional[int] = None
        self.epoch: Optional[float] = None
        self.eval_loss: Optional[float] = None
        self.peak_memory: tuple[Optional[int], Optional[str]] = (None, None)
        self.losses: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.lrs: list[tuple[int, float]] = []
        self.grad_norms: list[tuple[int, float]] = []
        self.epoch_starts: list[tuple[int, int]] = []
        self.prev_log: Optional[tuple[int, float]] = None  # (step, time) of the previous log of this run
        self.steps_per_second: Optional[float] = None
        self.runs = 0
        self.prior_elapsed = 0.0  # seconds trained by earlier runs
        self.run_start: Optional[float] = None
        self.run_last: Optional[float] = None  # the latest event of the run in progress (or of the last one)
        self.in_run = False  # between a `start` and that run's outcome
        self.phase: Optional[str] = None
        self.phase_since: Optional[float] = None
        self.eta: Optional[float] = None  # from the current run's last log (a resume starts without one)
        self.last_event: Optional[str] = None
        self.last_time: Optional[float] = None
        self.last_checkpoint: Optional[str] = None
        self.outcome: Optional[str] = None
        self.error: Optional[str] = None
        self.preparing: Optional[Preparing] = None  # the latest `preparing` event of a run that has not started
        self.metrics: dict[str, list[tuple[int, float]]] = {}  # LOG_SERIES names and "rewards/<name>" -> points
        self.eval_rewards: list[tuple[int, float]] = []
        self.samples: list[dict] = []  # oldest first, at most MAX_SAMPLES

    def apply(self, ev: RunEvent) -> None:
        t = ev.time
        if isinstance(ev, Preparing):
            self.preparing = ev
            self._enter("preparing data", t)
        elif isinstance(ev, Phase):
            self._enter(ev.phase, t)
            if ev.phase != "preparing data":
                self.preparing = None
        elif isinstance(ev, (Start, *OUTCOME_TYPES)):
            self.preparing = None
        if self.in_run and not isinstance(ev, (Preparing, Phase)):
            self.run_last = float(t)
        if isinstance(ev, Start):
            self._start(ev)
        elif isinstance(ev, Log):
            self._log(ev)
        elif isinstance(ev, Eval):
            self.eval_loss = ev.eval_loss
            if ev.eval_loss is not None:
                self.evals.append((ev.step or self.step, float(ev.eval_loss)))
            eval_reward = ev.metric("eval_reward")
            if eval_reward is not None:
                self.eval_rewards.append((ev.step or self.step, eval_reward))
        elif isinstance(ev, Samples):
            self._add_samples(ev)
        elif isinstance(ev, Checkpoint):
            self.last_checkpoint = ev.path
        elif isinstance(ev, OUTCOME_TYPES):
            self.outcome, self.in_run, self.phase, self.phase_since, self.eta = ev.event, False, None, None, None
            step = getattr(ev, "step", None)
            if step is not None:
                self.step = int(step)
            if isinstance(ev, Failed):
                self.error = ev.error
            if isinstance(ev, Stopped) and ev.checkpoint:
                self.last_checkpoint = ev.checkpoint
        self.last_event = ev.event
        self.last_time = float(t)

    def _enter(self, phase: str, t: float) -> None:
        if phase != self.phase or self.phase_since is None:
            self.phase, self.phase_since = phase, float(t)
        if self.in_run:  # a run that never wrote its outcome (killed) is over once the next one gets going
            self.in_run = False

    def _start(self, ev: Start) -> None:
        if self.run_start is not None and self.run_last is not None:
            self.prior_elapsed += max(self.run_last - self.run_start, 0.0)
        self.runs += 1
        self.run_start, self.run_last, self.in_run, self.eta = ev.time, ev.time, True, None
        self.phase, self.phase_since = "training", ev.time
        self.outcome, self.error = None, None
        self.total = ev.max_steps if ev.max_steps is not None else self.total
        start_step = ev.start_step
        # A resume restarts from the checkpoint's step: drop points logged after it by the run that
        # died (they are re-done), so the series stays one continuous curve.
        self.losses = [p for p in self.losses if p[0] <= start_step]
        self.evals = [p for p in self.evals if p[0] <= start_step]
        self.lrs = [p for p in self.lrs if p[0] <= start_step]
        self.grad_norms = [p for p in self.grad_norms if p[0] <= start_step]
        self.epoch_starts = [p for p in self.epoch_starts if p[0] <= start_step]
        self.metrics = {k: [p for p in v if p[0] <= start_step] for k, v in self.metrics.items()}
        self.eval_rewards = [p for p in self.eval_rewards if p[0] <= start_step]
        self.samples = [x for x in self.samples if x["step"] <= start_step]
        self.prev_log, self.steps_per_second = None, None
        self.step = start_step

    def _log(self, ev: Log) -> None:
        self.last_log, self.eta = ev, ev.eta_seconds
        self.step = ev.step or self.step
        self.total = ev.max_steps if ev.max_steps is not None else self.total
        self.epoch = ev.epoch if ev.epoch is not None else self.epoch
        if ev.loss is not None:
            self.losses.append((self.step, float(ev.loss)))
        for series, value in ((self.lrs, ev.learning_rate), (self.grad_norms, ev.grad_norm)):
            if is_number(value):
                series.append((self.step, float(value)))
        self._mark_epoch(ev.epoch)
        self._follow_metrics(ev)
        peak = ev.peak_memory_bytes
        if peak is not None and peak > (self.peak_memory[0] or 0):
            self.peak_memory = (peak, ev.peak_memory_device)
        if self.prev_log and self.step > self.prev_log[0] and ev.time > self.prev_log[1]:
            self.steps_per_second = (self.step - self.prev_log[0]) / (ev.time - self.prev_log[1])
        self.prev_log = (self.step, float(ev.time))

    def _follow_metrics(self, ev: Log) -> None:
        """The RL metrics of a `log` event: total reward, each reward function's mean, KL, completion length."""
        for name, key in LOG_SERIES.items():
            value = ev.metric(key)
            if value is not None:
                self.metrics.setdefault(name, []).append((self.step, value))
        for key, raw in ev.extra_metrics().items():
            match = _REWARD_MEAN.match(key)
            if match and is_number(raw):
                self.metrics.setdefault(f"rewards/{match[1]}", []).append((self.step, float(raw)))

    def _add_samples(self, ev: Samples) -> None:
        step = ev.step or self.step
        self.samples.extend(_sample(step, sample) for sample in ev.samples)
        del self.samples[:-MAX_SAMPLES]

    def _mark_epoch(self, epoch: Any) -> None:
        """Remember the first logged step of each new epoch (the chart draws a rule there)."""
        if not isinstance(epoch, (int, float)) or epoch <= 0:
            return
        number = int(epoch - 1e-9) + 1  # epoch 1.0 is the end of the first epoch, 1.01 is in the second
        last = self.epoch_starts[-1][1] if self.epoch_starts else 1
        if number > last:
            self.epoch_starts.append((self.step, number))

    def snapshot(self) -> ProgressSnapshot:
        log, prep = self.last_log, self.preparing
        elapsed = self.prior_elapsed
        if self.run_start is not None and self.run_last is not None:
            elapsed += max(self.run_last - self.run_start, 0.0)
        percent = round(min(100.0 * self.step / self.total, 100.0), 2) if self.total else None
        return ProgressSnapshot(
            step=self.step, total_steps=self.total, percent=percent, epoch=self.epoch,
            elapsed_seconds=round(elapsed, 2), eta_seconds=self.eta if self.in_run else None,
            phase=self.phase, phase_since=self.phase_since,
            loss=log.loss, learning_rate=log.learning_rate, grad_norm=log.grad_norm,
            tokens_per_second=log.tokens_per_second, tokens_seen=log.tokens_seen,
            peak_memory_bytes=self.peak_memory[0], peak_memory_device=self.peak_memory[1],
            eval_loss=self.eval_loss, loss_series=tuple(self.losses), eval_series=tuple(self.evals),
            lr_series=tuple(self.lrs), grad_norm_series=tuple(self.grad_norms),
            epoch_starts=tuple(self.epoch_starts), steps_per_second=self.steps_per_second,
            runs=self.runs, last_event=self.last_event, last_event_time=self.last_time,
            last_checkpoint=self.last_checkpoint, outcome=self.outcome, error=self.error,
            preparing_percent=round(100 * prep.progress, 1) if prep else None,
            preparing_eta_seconds=prep.eta_seconds if prep else None,
            **self._rl_fields(log))

    def _rl_fields(self, log: Log) -> dict[str, Any]:
        series = {name: tuple(self.metrics.get(name, ())) for name in LOG_SERIES}
        functions = tuple((k.split("/", 1)[1], tuple(v)) for k, v in self.metrics.items() if k.startswith("rewards/"))
        return {"reward": log.metric("reward"), "kl": log.metric("kl"), "reward_margin": log.metric("rewards/margins"),
                "reward_series": series["reward"], "kl_series": series["kl"],
                "completion_length_series": series["completion_length"], "reward_function_series": functions,
                "eval_reward_series": tuple(self.eval_rewards),
                # newest step first; a step's samples keep their order (sorted() is stable)
                "samples": tuple(sorted(self.samples, key=lambda x: -x["step"]))}


def _sample(step: int, sample: Sample) -> dict:
    """One sample completion as the snapshot keeps it: plain strings and numbers (JSON-ready, nothing else)."""
    return {"step": step, "prompt": sample.prompt, "completion": sample.completion,
            "rewards": {k: v if is_number(v) else None for k, v in sample.rewards.items()},
            "total": sample.total if is_number(sample.total) else None}


class EventsReader:
    """Follows one events.jsonl from `base_offset` (bytes before it belong to an older, unrelated run)."""

    def __init__(self, path: str | Path, base_offset: int = 0):
        self.path = Path(path)
        self.base_offset = base_offset
        self._lock = threading.Lock()  # the UI polls one job from many request threads
        self._reset()

    def _reset(self) -> None:
        self._offset = self.base_offset
        self._inode: Optional[int] = None
        self._partial = b""
        self._state = _State()
        self._snapshot = ProgressSnapshot()

    def poll(self) -> bool:
        """Read whatever was appended since the last call. Returns True when the state changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._inode is not None:  # the job dir was removed
                self._reset()
                return True
            return False
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            self._reset()  # replaced or truncated: start over
        self._inode = st.st_ino
        if st.st_size <= self._offset:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(st.st_size - self._offset)
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # a line still being written has no newline yet
        changed = False
        for line in lines:
            event = parse_line(line) if line.strip() else None
            if event is not None:  # a corrupt line (a crash mid-write) or an unknown kind is skipped
                self._state.apply(event)
                changed = True
        if changed:
            self._snapshot = self._state.snapshot()
        return changed

    def snapshot(self, live: bool = False, now: Optional[float] = None) -> ProgressSnapshot:
        """Current snapshot. `live` (a process is training right now) makes elapsed/ETA tick between events."""
        with self._lock:
            self.poll()
            snap = self._snapshot
        if not live or snap.last_event_time is None or snap.phase != "training":
            return snap  # elapsed ticks while steps are taken, not while a run prepares or stands stopped
        lag = max((now or time.time()) - snap.last_event_time, 0.0)
        eta = max(snap.eta_seconds - lag, 0.0) if snap.eta_seconds is not None else None
        return replace(snap, elapsed_seconds=round(snap.elapsed_seconds + lag, 2),
                       eta_seconds=round(eta, 1) if eta is not None else None)


def file_size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
