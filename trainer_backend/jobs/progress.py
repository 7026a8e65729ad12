"""Incremental reader of a job's events.jsonl, and the typed progress snapshot built from it.

The training process appends one JSON line per event. `EventsReader` remembers its byte offset and the
state folded from every line so far, so a poll costs one `stat()` when nothing changed and reads only
the new bytes when something did: cheap enough for many clients polling every second.

Besides the loss, learning rate and grad norm, the snapshot follows the metrics of the RL trainers (events.jsonl
carries TRL's names as extra keys of `log` events; see training/events.py):

- `reward`, `kl`, `reward_margin`: the last logged `reward` (GRPO: mean total reward of the step), `kl` (GRPO
  with grpo.beta > 0, KTO) and `rewards/margins` (KTO, DPO). Scalars: they are in the summary too.
- `reward_series` (step, reward); `reward_function_series` {reward name: [(step, `rewards/<name>/mean`)]};
  `eval_reward_series` (step, `eval_reward`); `kl_series` (step, kl); `completion_length_series` (step,
  `completions/mean_length`). Like every series, only in `to_dict(series=True)` and cut back on a resume.
- `samples`: the completions of the latest `samples` events (GRPO, every grpo.sample_every steps), newest first,
  at most MAX_SAMPLES: {step, prompt, completion, rewards: {name: score or None}, total}.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, TypeGuard

OUTCOME_EVENTS = ("finished", "stopped", "failed", "push_failed")
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
        self.last_log: dict = {}
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
        self.last_event: Optional[str] = None
        self.last_time: Optional[float] = None
        self.last_checkpoint: Optional[str] = None
        self.outcome: Optional[str] = None
        self.error: Optional[str] = None
        self.preparing: Optional[dict] = None  # the latest `preparing` event of a run that has not started
        self.metrics: dict[str, list[tuple[int, float]]] = {}  # LOG_SERIES names and "rewards/<name>" -> points
        self.eval_rewards: list[tuple[int, float]] = []
        self.samples: list[dict] = []  # oldest first, at most MAX_SAMPLES

    def apply(self, ev: dict) -> None:
        kind, t = ev.get("event"), ev.get("time")
        if kind == "preparing":
            self.preparing = ev
        elif kind in ("start", *OUTCOME_EVENTS):
            self.preparing = None
        if kind == "start":
            if self.run_start is not None and self.last_time is not None:
                self.prior_elapsed += max(self.last_time - self.run_start, 0.0)
            self.runs += 1
            self.run_start, self.outcome, self.error = t, None, None
            self.total = ev.get("max_steps", self.total)
            start_step = int(ev.get("start_step") or 0)
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
        elif kind == "log":
            self.last_log = ev
            self.step = int(ev.get("step") or self.step)
            self.total = ev.get("max_steps", self.total)
            self.epoch = ev.get("epoch", self.epoch)
            if ev.get("loss") is not None:
                self.losses.append((self.step, float(ev["loss"])))
            for series, key in ((self.lrs, "learning_rate"), (self.grad_norms, "grad_norm")):
                if isinstance(ev.get(key), (int, float)):
                    series.append((self.step, float(ev[key])))
            self._mark_epoch(ev.get("epoch"))
            self._follow_metrics(ev)
            peak = ev.get("peak_memory_bytes")
            if isinstance(peak, int) and peak > (self.peak_memory[0] or 0):
                self.peak_memory = (peak, ev.get("peak_memory_device"))
            if isinstance(t, (int, float)):
                if self.prev_log and self.step > self.prev_log[0] and t > self.prev_log[1]:
                    self.steps_per_second = (self.step - self.prev_log[0]) / (t - self.prev_log[1])
                self.prev_log = (self.step, float(t))
        elif kind == "eval":
            self.eval_loss = ev.get("eval_loss")
            if self.eval_loss is not None:
                self.evals.append((int(ev.get("step") or self.step), float(self.eval_loss)))
            if _number(ev.get("eval_reward")):
                self.eval_rewards.append((int(ev.get("step") or self.step), float(ev["eval_reward"])))
        elif kind == "samples":
            self._add_samples(ev)
        elif kind == "checkpoint":
            self.last_checkpoint = ev.get("path")
        elif kind in OUTCOME_EVENTS:
            self.outcome = kind
            if ev.get("step") is not None:
                self.step = int(ev["step"])
            if kind == "failed":
                self.error = ev.get("error")
            if kind == "stopped" and ev.get("checkpoint"):
                self.last_checkpoint = ev["checkpoint"]
        if kind is not None:
            self.last_event = kind
        if isinstance(t, (int, float)):
            self.last_time = float(t)

    def _follow_metrics(self, ev: dict) -> None:
        """The RL metrics of a `log` event: total reward, each reward function's mean, KL, completion length."""
        for name, key in LOG_SERIES.items():
            if _number(ev.get(key)):
                self.metrics.setdefault(name, []).append((self.step, float(ev[key])))
        for key, value in ev.items():
            match = _REWARD_MEAN.match(key)
            if match and _number(value):
                self.metrics.setdefault(f"rewards/{match[1]}", []).append((self.step, float(value)))

    def _add_samples(self, ev: dict) -> None:
        step = int(ev.get("step") or self.step)
        for sample in ev.get("samples") or []:
            if isinstance(sample, dict):
                self.samples.append(_sample(step, sample))
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
        if self.run_start is not None and self.last_time is not None:
            elapsed += max(self.last_time - self.run_start, 0.0)
        percent = round(min(100.0 * self.step / self.total, 100.0), 2) if self.total else None
        return ProgressSnapshot(
            step=self.step, total_steps=self.total, percent=percent, epoch=self.epoch,
            elapsed_seconds=round(elapsed, 2), eta_seconds=log.get("eta_seconds") if not self.outcome else None,
            loss=log.get("loss"), learning_rate=log.get("learning_rate"), grad_norm=log.get("grad_norm"),
            tokens_per_second=log.get("tokens_per_second"), tokens_seen=log.get("tokens_seen"),
            peak_memory_bytes=self.peak_memory[0], peak_memory_device=self.peak_memory[1],
            eval_loss=self.eval_loss, loss_series=tuple(self.losses), eval_series=tuple(self.evals),
            lr_series=tuple(self.lrs), grad_norm_series=tuple(self.grad_norms),
            epoch_starts=tuple(self.epoch_starts), steps_per_second=self.steps_per_second,
            runs=self.runs, last_event=self.last_event, last_event_time=self.last_time,
            last_checkpoint=self.last_checkpoint, outcome=self.outcome, error=self.error,
            preparing_percent=round(100 * float(prep.get("progress") or 0), 1) if prep else None,
            preparing_eta_seconds=prep.get("eta_seconds") if prep else None,
            **self._rl_fields(log))

    def _rl_fields(self, log: dict) -> dict[str, Any]:
        series = {name: tuple(self.metrics.get(name, ())) for name in LOG_SERIES}
        functions = tuple((k.split("/", 1)[1], tuple(v)) for k, v in self.metrics.items() if k.startswith("rewards/"))
        margin = log.get("rewards/margins")
        return {"reward": log.get("reward") if _number(log.get("reward")) else None,
                "kl": log.get("kl") if _number(log.get("kl")) else None,
                "reward_margin": margin if _number(margin) else None,
                "reward_series": series["reward"], "kl_series": series["kl"],
                "completion_length_series": series["completion_length"], "reward_function_series": functions,
                "eval_reward_series": tuple(self.eval_rewards),
                # newest step first; a step's samples keep their order (sorted() is stable)
                "samples": tuple(sorted(self.samples, key=lambda x: -x["step"]))}


def _number(value: Any) -> TypeGuard[float]:  # an int or a float, finite, not a bool
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sample(step: int, sample: dict) -> dict:
    """One sample completion as the snapshot keeps it: plain strings and numbers (JSON-ready, nothing else)."""
    raw_rewards = sample.get("rewards")
    rewards = raw_rewards if isinstance(raw_rewards, dict) else {}
    total = sample.get("total")
    return {"step": step, "prompt": str(sample.get("prompt") or ""), "completion": str(sample.get("completion") or ""),
            "rewards": {str(k): float(v) if _number(v) else None for k, v in rewards.items()},
            "total": float(total) if _number(total) else None}


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
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a corrupt line (e.g. a crash mid-write): skip it, keep going
                continue
            if isinstance(event, dict):
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
        if not live or snap.last_event_time is None or snap.outcome or not snap.runs:
            return snap
        lag = max((now or time.time()) - snap.last_event_time, 0.0)
        eta = max(snap.eta_seconds - lag, 0.0) if snap.eta_seconds is not None else None
        return replace(snap, elapsed_seconds=round(snap.elapsed_seconds + lag, 2),
                       eta_seconds=round(eta, 1) if eta is not None else None)


def events_in_range(path: str | Path, start: int = 0) -> list[dict]:
    """All complete events at or after byte `start` (used once per run end; not for polling)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def file_size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
