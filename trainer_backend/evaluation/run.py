"""The evaluation report's steps: held-out metrics, general tasks, the judge — within a time budget.

It runs in the job's own process right after training (the spec's `evaluation.auto`), or in a background process
that Evaluate starts from the Jobs tab, /evaluate_job or `python -m trainer_backend evaluate JOB --report`: a
closed tab or a dropped connection does not stop it. evaluation.json is rewritten after every step (record.py),
so the Jobs tab shows each part as soon as it is measured.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..access import HF_TOKEN_ENV
from ..background import start_detached, wait_until_settled
from ..job_files import ADAPTER_DIR, EVAL_LOG
from ..spec_evaluation import EvaluationSpec
from .record import EvaluationRecord, read_record, report_path, write_record

PARTS = ("held_out", "general", "judge")
# what share of the progress bar each part takes (of the parts that run)
_WEIGHTS = {"held_out": 0.4, "general": 0.45, "judge": 0.15}


class EvaluationRefused(ValueError):
    """The report cannot run as asked (no trained model, one already running): said before anything loads."""


def preflight(job_dir: str | Path) -> None:
    from ..training.adapter_meta import read_adapter_meta

    if read_adapter_meta(Path(job_dir) / ADAPTER_DIR) is None:
        raise EvaluationRefused("the job holds no trained model yet: evaluate it once training has finished")
    record = read_record(job_dir)
    if record and record.state == "running" and record.pid not in (os.getpid(), os.getppid()):
        raise EvaluationRefused("an evaluation of this job is already running: its progress is shown; wait for it")


class Reporter:
    def __init__(self, job_dir: Path, settings: EvaluationSpec, token: Any, parts: tuple[str, ...],
                 on_progress: Optional[Callable[[EvaluationRecord], None]]) -> None:
        self.job_dir, self.settings, self.token = job_dir, settings, token
        self.parts = tuple(p for p in parts if p != "judge" or settings.judge)
        self.on_progress = on_progress
        self.deadline = time.time() + settings.time_budget
        previous = read_record(job_dir)
        # a new run keeps the parts it does not redo (an Evaluate of general tasks keeps the held-out table)
        self.record = EvaluationRecord(settings=settings.model_dump(mode="json"), pid=os.getpid())
        if previous:
            self.record.held_out = None if "held_out" in self.parts else previous.held_out
            self.record.general = [] if "general" in self.parts else previous.general
            self.record.judge = None if "judge" in self.parts else previous.judge
        self._done = 0.0

    def progress(self, part: str, fraction: float, message: str) -> None:
        total = sum(_WEIGHTS[p] for p in self.parts) or 1.0
        self.record.fraction = round(min(1.0, (self._done + _WEIGHTS[part] * fraction) / total), 4)
        self.record.message = message
        self.save()

    def save(self) -> None:
        write_record(self.job_dir, self.record)
        if self.on_progress:
            self.on_progress(self.record)

    def run(self) -> EvaluationRecord:
        self.save()
        try:
            for part in self.parts:
                started = time.time()
                if part != "held_out" and time.time() >= self.deadline:
                    self.record.notes.append(f"{part.replace('_', ' ')}: left out by the time budget "
                                             f"({self.settings.time_budget} s); Evaluate runs it")
                else:
                    getattr(self, f"_{part}")()
                self.record.seconds[part] = round(time.time() - started, 2)
                self._done += _WEIGHTS[part]
            self.record.state = "succeeded"
            self.record.message = (self.record.verdict or {}).get("text") or "evaluated"
        except Exception as exc:
            from ..redaction import redact

            self.record.state = "failed"
            self.record.error = redact(f"{type(exc).__name__}: {exc}", self.token if isinstance(self.token, str)
                                       else None, os.environ.get(self.settings.judge_key_env))
            self.record.message = self.record.error
        finally:
            self.record.finished = time.time()
            self.record.fraction = 1.0 if self.record.state == "succeeded" else self.record.fraction
            self.save()
        return self.record

    def _held_out(self) -> None:
        from ..inference import MODELS
        from .heldout import evaluate

        try:
            report = evaluate(str(self.job_dir), None, self.settings.max_examples, token=self.token,
                              deadline=self.deadline, save=False,
                              progress=lambda f, m: self.progress("held_out", f, f"held-out: {m}"))
        except (FileNotFoundError, ValueError) as exc:  # no validation split, a reward model: said, not fatal
            self.record.notes.append(f"held-out: {exc}")
            return
        finally:
            MODELS.clear()  # the harness loads its own copy next: never two in memory
        self.record.held_out = report.to_dict()
        if report.stopped_early:
            self.record.notes.append(f"held-out: {report.rows} examples scored in the time budget")

    def _general(self) -> None:
        from ..trainer_registry import trainer_info
        from ..training.adapter_meta import read_adapter_meta
        from .harness import run_tasks

        if not self.settings.general_tasks:
            return
        meta = read_adapter_meta(self.job_dir / ADAPTER_DIR)
        if meta and trainer_info(meta.trainer).head != "causal":
            self.record.notes.append(f"general tasks: a {meta.trainer} model scores text and writes none; the "
                                     "harness's tasks need a model that writes")
            return
        _, notes = run_tasks(self.job_dir, self.settings.general_tasks, self.settings.task_limit,
                                  token=self.token, deadline=self.deadline,
                                  progress=lambda f, m: self.progress("general", f, m),
                                  on_score=self._add_score)
        self.record.notes += notes  # the scores went into the record one by one (_add_score)

    def _add_score(self, score: Any) -> None:
        self.record.general.append(score.to_dict())
        self.save()

    def _judge(self) -> None:
        from .judge import judge_answers

        items = judge_items(self.job_dir, self.record, self.settings.judge_prompts, self.token)
        if not items:
            self.record.notes.append("judge: no held-out prompt with a written answer to compare")
            return
        s = self.settings
        assert s.judge is not None
        result = judge_answers(items, s.judge, endpoint_model=s.judge_model, key_env=s.judge_key_env,
                               token=self.token if isinstance(self.token, str) else None,
                               progress=lambda f, m: self.progress("judge", f, f"judge: {m}"))
        self.record.judge = result.to_dict()


def judge_items(job_dir: Path, record: EvaluationRecord, limit: int, token: Any) -> list[Any]:
    """Prompt, base answer, fine-tuned answer: the held-out part's own answers when it wrote them, else both sides
    answer held-out prompts now (greedy, the Evaluate settings)."""
    from .judge import JudgeItem

    examples = (record.held_out or {}).get("examples") or []
    items = [JudgeItem(str(e["prompt"]), str(e["base"]), str(e["fine_tuned"])) for e in examples
             if isinstance(e.get("base"), str) and isinstance(e.get("fine_tuned"), str)]
    if items:
        return items[:limit]
    from ..generation import EVALUATION
    from ..inference import MODELS, load_chat
    from .heldout import held_out_prompts

    try:
        prompts = held_out_prompts(job_dir, limit)
    except (FileNotFoundError, ValueError):
        return []
    chat, adapter = load_chat(str(job_dir), token)
    try:
        for messages in prompts:
            base = chat.generate(adapter, messages, EVALUATION, use_adapter=False)
            tuned = chat.generate(adapter, messages, EVALUATION, use_adapter=True)
            items.append(JudgeItem(str(messages[-1]["content"]), base, tuned))
    finally:
        MODELS.clear()
    return items


def run_report(job_dir: str | Path, settings: EvaluationSpec, token: Any = None, parts: tuple[str, ...] = PARTS,
               on_progress: Optional[Callable[[EvaluationRecord], None]] = None) -> EvaluationRecord:
    """The report in this process (after training, in the background process, in tests)."""
    preflight(job_dir)
    return Reporter(Path(job_dir), settings, token, parts, on_progress).run()


def start_evaluation(job_dir: str | Path, settings: EvaluationSpec, token: "str | bool | None",
                     parts: tuple[str, ...] = PARTS) -> int:
    """The report in a detached process; returns its pid. `token`: see background.token_env."""
    job_dir = Path(job_dir)
    preflight(job_dir)
    previous = read_record(job_dir)
    starting = previous or EvaluationRecord()
    # until the process writes its own record, this one says "starting" under the app's pid
    starting.state, starting.pid, starting.message, starting.fraction = "running", os.getpid(), \
        "starting the evaluation", 0.0
    starting.started = time.time()
    write_record(job_dir, starting)

    def exited(code: int) -> None:
        record = read_record(job_dir)
        # still the record this start wrote (not a later start's, which also carries the app's pid)
        if record and record.state == "running" and record.pid == os.getpid() and \
                record.started == starting.started:
            record.state, record.finished = "failed", time.time()
            record.error = record.message = f"the evaluation process exited with code {code} before it " \
                                            f"started; see {EVAL_LOG}"
            write_record(job_dir, record)

    return start_detached("trainer_backend.evaluation.run",
                          [str(job_dir), "--settings", settings.model_dump_json(), "--parts", ",".join(parts)],
                          job_dir, job_dir / EVAL_LOG, token, on_exit=exited)


def wait_for_report(job_dir: str | Path, timeout: float, interval: float = 1.0) -> Optional[EvaluationRecord]:
    return wait_until_settled(lambda: read_record(job_dir), timeout, interval)


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainer_backend.evaluation.run")
    parser.add_argument("job_dir")
    parser.add_argument("--settings", default="{}", help="the evaluation section as JSON")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args(argv)
    token = os.environ.get(HF_TOKEN_ENV) or None  # the caller's, set by start_evaluation; never in a file
    settings = EvaluationSpec.model_validate(json.loads(args.settings))
    parts = tuple(p for p in args.parts.split(",") if p in PARTS)
    record = run_report(args.job_dir, settings, token, parts,
                        on_progress=lambda r: print(f"[{r.fraction:.0%}] {r.message}", flush=True))
    print(f"evaluation {record.state}: {record.message} ({report_path(args.job_dir)})", flush=True)
    return 0 if record.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
