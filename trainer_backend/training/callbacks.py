"""The trainer callback that writes a run's events.jsonl (run_events.py: the records; training/events.py: the writer).

Kept apart from events.py because it subclasses transformers' TrainerCallback: what only writes or reads events
(the CLI's validate, the Hub push, HF Jobs' runner) does not import the training stack for it."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

from ..job_files import CHECKPOINT_PREFIX
from ..run_events import Checkpoint, Eval, Log, Start
from .events import EventLog, StopRequest

_LOG_FIELDS = {"loss", "learning_rate", "grad_norm", "epoch", "num_input_tokens_seen"}


def peak_memory() -> tuple[Optional[int], Optional[str]]:
    """The training process's peak memory so far: accelerator memory allocated by torch on a GPU (what decides
    an out-of-memory), else the process's peak resident set (Linux reports KiB)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated()), "GPU"
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "RAM"
    except (ImportError, OSError):
        return None, None


class EventsCallback(TrainerCallback):
    """Writes start/log/eval/checkpoint events, and turns a stop request into save-and-stop."""

    def __init__(self, log: EventLog, stop: Optional[StopRequest] = None, info: Optional[dict] = None):
        self.log, self.stop, self.info = log, stop or StopRequest(), info or {}
        self.t0 = time.time()
        self.last_time, self.last_tokens, self.start_step = self.t0, 0, 0
        self.crash_at = int(os.environ.get("LORA_STUDIO_FAULT_AT_STEP", "0"))  # fault injection for tests

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.t0 = self.last_time = time.time()
        self.start_step = state.global_step
        self.last_tokens = state.num_input_tokens_seen or 0
        self.log.write(Start(max_steps=state.max_steps, num_epochs=args.num_train_epochs,
                             start_step=state.global_step, **self.info))

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.crash_at and state.global_step >= self.crash_at:
            raise RuntimeError(f"injected fault at step {state.global_step} (LORA_STUDIO_FAULT_AT_STEP)")
        if self._stop_everywhere(args):
            control.should_save = True
            control.should_training_stop = True

    def _stop_everywhere(self, args: Any) -> bool:
        """Every rank gets the signal but may see it at a different step: agree (max) so all stop together."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.stop.requested
        import torch

        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.stop.requested = bool(flag.item())
        return self.stop.requested

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now, step = time.time(), state.global_step
        if any(k.startswith("eval_") for k in logs):
            self.log.write(Eval(**{**logs, "step": step, "epoch": state.epoch}))
            return
        if "loss" not in logs:
            return  # the final train summary; reported in `finished`
        tokens = state.num_input_tokens_seen or 0
        elapsed = now - self.t0
        steps_run = step - self.start_step  # steps taken in this process (a resumed run starts mid-way)
        eta = elapsed / steps_run * max(state.max_steps - step, 0) if steps_run > 0 else None
        peak_bytes, peak_device = peak_memory()
        self.log.write(Log(step=step, max_steps=state.max_steps, epoch=state.epoch,
                       progress=round(step / state.max_steps, 4) if state.max_steps else None,
                       loss=logs.get("loss"), learning_rate=logs.get("learning_rate"),
                       grad_norm=logs.get("grad_norm"), tokens_seen=tokens,
                       tokens_per_second=round((tokens - self.last_tokens) / max(now - self.last_time, 1e-9), 1),
                       elapsed_seconds=round(elapsed, 2), eta_seconds=round(eta, 1) if eta is not None else None,
                       peak_memory_bytes=peak_bytes, peak_memory_device=peak_device,
                       **{k: v for k, v in logs.items() if k not in _LOG_FIELDS}))  # e.g. rewards/accuracies
        self.last_time, self.last_tokens = now, tokens

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            self.log.write(Checkpoint(step=state.global_step, path=str(path)))
