"""events.jsonl: the machine-readable record of a run (the trainer callback that writes it: callbacks.py).

One JSON object per line, always with `event` and `time`. Events, by who writes them:
  training (training/run.py, training/callbacks.py, trainers/grpo.py)
    preparing           {phase, progress, rows, ...}        reading, checking and tokenising the data
    fitted_to_hardware  {changes}                           settings this machine cannot honour, and what it does
    start               {max_steps, num_epochs, start_step, resumed_from, train_rows, valid_rows, device, world_size}
    log                 {step, max_steps, epoch, progress, loss, learning_rate, grad_norm, tokens_per_second,
                         elapsed_seconds, eta_seconds, (GRPO) reward, ...}
    eval                {step, epoch, eval_loss, ...}
    samples             {step, samples}                     GRPO: completions with their rewards
    checkpoint          {step, path}
    oom_adjusted        {step, error, batch_size, gradient_accumulation, previous_*, resume_from}
    stopped             {step, checkpoint}                  graceful stop on SIGTERM/SIGINT
    finished            {step, metrics, adapter_dir}
    failed              {error, kind, issues, truncated, traceback}
  the Hub (hub/publish.py, hub/sync.py)
    pushed              {repo_id, url, commit, merged}
    push_failed         {error, metrics}
    checkpoint_pulled   {repo_id, checkpoint}               a resume on an empty disk, from the job's Hub repo
    sync_failed         {repo_id, error}                    the last sync; the run's outcome stands
  HF Jobs (remote/runner.py)
    remote_submitted    {backend, flavor, nodes, job_ids, url, repo_id}
    remote_reattached   {job_ids}                           a new runner found its Job still running
jobs/progress.py (OUTCOME_EVENTS) and the CLI's console read them.
"""
from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..job_files import EVENTS_FILE



class EventLog:
    """Append-only JSONL writer; each line is flushed so readers in other processes see it at once."""

    def __init__(self, job_dir: str | Path, echo: Optional[Callable[[dict], None]] = None):
        self.path = Path(job_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo  # e.g. the CLI's progress printer

    def write(self, event: str, **fields: Any) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
        if self.echo:
            self.echo(record)
        return record


def _clean(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def read_events(job_dir: str | Path) -> list[dict]:
    path = Path(job_dir) / EVENTS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return out


class StopRequest:
    """SIGTERM/SIGINT -> stop at the next step boundary, after saving a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:  # a second signal: stop now
                raise KeyboardInterrupt
            self.requested = True
        self.previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def uninstall(self) -> None:
        for sig, previous in getattr(self, "previous", {}).items():
            signal.signal(sig, previous)
