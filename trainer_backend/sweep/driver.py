"""The process of a sweep job, run by the job supervisor in place of a training process:

    python -m trainer_backend.sweep.driver <sweep job>/spec.yaml

It asks Optuna for each trial's settings, submits the trial as an ordinary job (a child of the sweep, in the same
queue: one at a time here, `sweep.parallel` at once on HF Jobs), follows the trial's events, reports each evaluation
to the study and, when the pruner says so, stops the trial (it saves a checkpoint and ends `pruned`, its events say
at which evaluation and why). A finished trial's objective goes back to the study; sweep.json (record.py) is
rewritten after every change. The study is an Optuna journal file in the sweep's folder (and its Hub repo when the
sweep is synced), so a driver that died — a restart, a kill — is replaced by Resume: it reloads the study, follows
the trials still running, resumes the ones that were interrupted or paused, and goes on.

SIGTERM (Stop): every running trial is stopped (keeping its checkpoint) and the sweep ends `stopped`; Resume
continues those trials from their checkpoints.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..access import HF_TOKEN_ENV
from ..job_files import JOB_ID_ENV, LOG_FILE, LOG_FILE_ENV, SWEEP_STUDY_FILE
from ..job_status import ExitCode, JobStatus
from ..jobs.manager import JobManager
from ..hub.sync import synced_job
from ..jobs.paths import default_data_dir
from ..jobs.store import Job, JobNotFound
from ..library_hooks import optuna_running_trial
from ..run_events import EventTail, Failed, Finished, Phase, Stopped
from ..spec import JobSpec, load_job_spec
from ..training.events import EventLog
from . import budget
from .objective import Objective, final_value, objective_problem, resolve
from .record import SweepRecord, read_record, write_record
from .space import base_values, distributions, trial_spec
from .summary import (ATTR_BASELINE, ATTR_JOB, ATTR_NOTE, ATTR_PAUSED, ATTR_PRIOR, ATTR_PRUNE, ATTR_STOP_REASON,
                      build_record, importances, run_seconds)

POLL_SECONDS = 0.5
FAILURE_STREAK = 3        # this many failed trials before any other result: the sweep stops (the data? the base?)
STOP_WAIT_SECONDS = 45.0  # a Stop waits this long for its trials to checkpoint (the supervisor's deadline is 60 s)


def open_study(spec: JobSpec, job_dir: Path) -> Any:
    """The sweep's Optuna study in its journal file: created on the first run, reloaded by a resume."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep = spec.sweep
    assert sweep is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(job_dir / SWEEP_STUDY_FILE)))
    existing = len(storage.get_all_studies())
    seed = (sweep.seed if sweep.seed is not None else spec.training.seed) + (_trial_count(storage) if existing else 0)
    if sweep.sampler == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    else:  # a few random trials first, fewer for a small budget; parallel trials pretend the running ones did badly
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, sweep.trials // 3)),
                                             constant_liar=sweep.parallel > 1)
    first = spec.training.eval_steps if spec.training.eval_strategy == "steps" and spec.training.eval_steps else 1
    pruner: Any = {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=first, reduction_factor=3),
                   "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                       min_resource=first, reduction_factor=3),
                   "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
                   "none": optuna.pruners.NopPruner}[sweep.pruner]()
    return optuna.create_study(study_name="sweep", storage=storage, sampler=sampler, pruner=pruner,
                               direction=sweep.resolved_direction(), load_if_exists=True)


def _trial_count(storage: Any) -> int:
    study_id = storage.get_all_studies()[0]._study_id
    return len(storage.get_all_trials(study_id, deepcopy=False))


class SweepDriver:
    def __init__(self, spec: JobSpec, data_dir: Path, job_id: str, token: Optional[str]):
        assert spec.sweep is not None
        self.spec, self.sweep, self.token = spec, spec.sweep, token
        self.job_dir = spec.job_dir
        self.manager = JobManager(data_dir, recover=False)
        self.job = self.manager.get(job_id)
        self.objective: Objective = resolve(self.sweep)
        self.events = EventLog(self.job_dir)
        self.study = open_study(spec, self.job_dir)
        self.dists = distributions(spec)
        previous = read_record(self.job_dir)
        self.record = previous or SweepRecord()
        self.elapsed_before = previous.elapsed_seconds if previous else 0.0
        self.started = time.monotonic()
        self.tails: dict[int, EventTail] = {}
        self.live: dict[int, Any] = {}  # trial number -> its optuna Trial (to report to, prune, annotate)
        self.price: Optional[budget.Price] = None
        self.stopping = False
        self.budget_note: Optional[str] = None

    def say(self, line: str) -> None:
        """A line of the sweep's log (the Jobs tab's log tail): each trial started, pruned, finished."""
        path = os.environ.get(LOG_FILE_ENV) or str(self.job_dir / LOG_FILE)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} [sweep] {line}\n")

    # ---- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._ask_stop)
        signal.signal(signal.SIGINT, self._ask_stop)
        self.events.write(Phase(phase="searching"))
        problem = objective_problem(self.objective)
        if problem:
            return self._fail(problem)
        self.price = budget.trial_price(self.spec, self.token)
        if not self.study.trials:
            refused = self._check_estimate()
            if refused:
                return self._fail(refused)
            self.say(f"searching {', '.join(self.sweep.parameters)} in {self.sweep.trials} trials for the best "
                     f"{self.objective.label} ({self.objective.better}); {self.record.estimate}")
            base = base_values(self.spec) if self.sweep.include_base else {}
            if base:
                self.study.enqueue_trial(base, user_attrs={ATTR_BASELINE: True})
            elif self.sweep.include_base:
                self.say("no baseline trial: the spec's own values lie outside every searched range")
        self._adopt()
        while True:
            self._poll()
            if self.stopping:
                return self._stop_all()
            reached = self._budget_reached()
            if reached and not self.budget_note:
                self.say(f"{reached}: no more trials; running ones stop (keeping their checkpoints)")
            self.budget_note = reached
            if self.budget_note:
                self._stop_running("budget", self.budget_note)
            elif not self._failing():
                self._launch()
            self._save()
            if not self._running() and (self.budget_note or self._failing() or
                                        len(self.study.trials) >= self.sweep.trials):
                return self._finish()
            time.sleep(POLL_SECONDS)

    def _ask_stop(self, *_: Any) -> None:
        self.stopping = True

    def _check_estimate(self) -> Optional[str]:
        est = budget.estimate(self.spec, self.price)
        self.record.estimate = est.text
        return budget.over_budget(self.spec, est)

    # ---- trials ------------------------------------------------------------------------------------------------
    def _running(self) -> list[Any]:
        from optuna.trial import TrialState

        return [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]

    def _job_of(self, trial: Any) -> Optional[Job]:
        try:
            return self.manager.get(trial.user_attrs[ATTR_JOB])
        except (KeyError, JobNotFound):
            return None

    def _adopt(self) -> None:
        """After a restart or a Stop: the trials the study still counts as running. A trial job that is running or
        queued is followed; one that was interrupted, or paused by the sweep's Stop, is resumed from its checkpoint."""
        for trial in self._running():
            job = self._job_of(trial)
            if job is None:
                self._tell(trial, None, "failed", "its job is gone (deleted, or lost with the machine)")
            elif ATTR_PRUNE not in trial.user_attrs and (job.status == JobStatus.INTERRUPTED or (
                    job.status == JobStatus.STOPPED and trial.user_attrs.get(ATTR_PAUSED))):
                self._resume(trial, job)
            elif job.is_terminal:  # it ended while no driver watched: its result counts as if watched
                self._ended(trial, job)

    def _resume(self, trial: Any, job: Job) -> None:
        prior = float(trial.user_attrs.get(ATTR_PRIOR, 0.0)) + run_seconds(job)
        self._set(trial, ATTR_PRIOR, prior)
        self._set(trial, ATTR_PAUSED, False)
        try:
            self.manager.resume(job.id, hub_token=self.token, hub_identity=self.job.hub_identity)
            self.say(f"trial {trial.number + 1}: its job {job.id} was {job.status}; resumed from its checkpoint")
        except Exception as exc:  # noqa: BLE001 - e.g. already at its last step: the trial ends with what it has
            self._tell(trial, None, "failed", f"could not resume its job {job.id}: {exc}")

    def _launch(self) -> None:
        while len(self._running()) < self.sweep.parallel and len(self.study.trials) < self.sweep.trials:
            trial = self.study.ask(self.dists)
            raw = trial_spec(self.spec, trial.params, trial.number, self.objective)
            job = self.manager.submit(raw, owner=self.job.owner, validate_data=False, env=self.job.env,
                                      parent_id=self.job.id, hub_token=self.token, hub_identity=self.job.hub_identity)
            trial.set_user_attr(ATTR_JOB, job.id)
            self.live[trial.number] = trial
            settings = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            self.say(f"trial {trial.number + 1} queued as job {job.id}: {settings}")
            if job.status == JobStatus.FAILED:  # its spec was refused at submit: named in the job's error
                self._tell(self.study.get_trials(deepcopy=False)[trial.number], None, "failed", job.error)

    def _poll(self) -> None:
        for trial in self._running():
            job = self._job_of(trial)
            if job is None:
                self._tell(trial, None, "failed", "its job is gone")
                continue
            self._report(trial, job)
            if job.is_terminal:
                self._ended(trial, job)

    def _report(self, trial: Any, job: Job) -> None:
        """Each new evaluation of the trial goes to the study; the pruner may stop the trial right after it."""
        tail = self.tails.setdefault(trial.number, EventTail.of(job.job_dir, job.events_offset))
        for event in tail.new_events():
            point = self.objective.intermediate(event)
            if point is None or point[0] in trial.intermediate_values or ATTR_PRUNE in trial.user_attrs:
                continue
            step, value = point
            live = self._live(trial)
            if live is None:  # an adopted trial whose Trial cannot be rebuilt: followed to its end, never pruned
                continue
            live.report(value, step)
            trial = self.study.get_trials(deepcopy=False)[trial.number]
            # Asked at every evaluation, whatever the job's status: the pruner records the value at each rung as
            # the trial passes it (successive halving, Hyperband). An evaluation read while the job is queued (the
            # earlier run of a trial resumed after a restart) or already ended, and not asked about, would put the
            # trial's rung at a later, better value, and later trials would be pruned against it.
            if self.sweep.pruner != "none" and live.should_prune() and \
                    job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                note = (f"pruned at its evaluation at step {step}: {self.objective.label} {abs(value):.4g} is not "
                        f"among the best at that step ({self.sweep.pruner}, {self.objective.better})")
                live.set_user_attr(ATTR_PRUNE, step)
                live.set_user_attr(ATTR_NOTE, note)
                self.manager.stop(job.id, reason="pruned", note=note)
                self.say(f"trial {trial.number + 1} {note}")
                return

    def _ended(self, trial: Any, job: Job) -> None:
        status = JobStatus(job.status)
        if status in (JobStatus.SUCCEEDED, JobStatus.NOT_PUSHED):
            tail = self.tails.get(trial.number) or EventTail.of(job.job_dir, job.events_offset)
            tail.new_events()
            value = final_value(self.objective, tail.seen, job.job_dir)
            if value is not None:  # Optuna's importances as soon as a result is in (the chart follows the sweep)
                self._tell(trial, value, "complete", None)
                self.record.importances = importances(self.study)
                return
            why = f"its run measured no {self.objective.name}" + \
                (" (the evaluation report is off on this machine: LORA_STUDIO_AUTO_EVALUATION)"
                 if self.objective.heldout_metric else "")
            self._tell(trial, None, "failed", why)
        elif status == JobStatus.PRUNED or (status in (JobStatus.STOPPED, JobStatus.INTERRUPTED)
                                            and ATTR_PRUNE in trial.user_attrs):
            self._tell(trial, None, "pruned", trial.user_attrs.get(ATTR_NOTE))
        elif status == JobStatus.STOPPED and trial.user_attrs.get(ATTR_STOP_REASON) == "budget":
            self._tell(trial, None, "pruned", self.budget_note or "the sweep's budget ended")
        elif status == JobStatus.INTERRUPTED:
            self._resume(trial, job)
        else:  # failed, or stopped by hand from the Jobs tab
            self._tell(trial, None, "failed", (job.error or "it failed") if status == JobStatus.FAILED
                       else "stopped by hand")

    def _live(self, trial: Any) -> Optional[Any]:
        """The live Trial of a running one: asked by this process, or rebuilt after a restart (library_hooks)."""
        if trial.number not in self.live:
            rebuilt = optuna_running_trial(self.study, trial)
            if rebuilt is None:
                return None
            self.live[trial.number] = rebuilt
        return self.live[trial.number]

    def _set(self, trial: Any, key: str, value: Any) -> None:
        live = self._live(trial)
        if live is not None:
            live.set_user_attr(key, value)

    def _tell(self, trial: Any, value: Optional[float], outcome: str, note: Optional[str]) -> None:
        from optuna.trial import TrialState

        if note:
            self._set(trial, ATTR_NOTE, note)
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome, TrialState.FAIL)
        if outcome == "complete":
            self.say(f"trial {trial.number + 1} finished: {self.objective.label} {value:.4g}")
        elif outcome == "failed":
            self.say(f"trial {trial.number + 1} failed: {note}")
        self.study.tell(trial.number, value if state == TrialState.COMPLETE else None, state=state,
                        skip_if_finished=True)

    def _failing(self) -> bool:
        from optuna.trial import TrialState

        done = [t.state for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]
        return len(done) >= FAILURE_STREAK and all(s == TrialState.FAIL for s in done)

    # ---- budgets and stops -------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def _budget_reached(self) -> Optional[str]:
        limit = self.sweep.time_budget_seconds
        if limit is not None and self._elapsed() >= limit:
            return f"the sweep's time budget ({self.sweep.time_budget}) is used up"
        if self.sweep.max_cost is not None and self.record.cost_usd is not None and \
                self.record.cost_usd >= self.sweep.max_cost:
            return f"the sweep's cost budget (${self.sweep.max_cost:.2f}) is spent"
        return None

    def _stop_running(self, reason: str, note: str) -> None:
        for trial in self._running():
            job = self._job_of(trial)
            if job is not None and not job.is_terminal and trial.user_attrs.get(ATTR_STOP_REASON) != reason \
                    and ATTR_PRUNE not in trial.user_attrs:  # a trial being pruned ends pruned, whatever else
                self._set(trial, ATTR_STOP_REASON, reason)
                self.manager.stop(job.id, reason="budget" if reason == "budget" else None, note=note)

    def _stop_all(self) -> int:
        """Stop: pause every running trial (each saves a checkpoint); Resume continues them."""
        paused = []
        for trial in self._running():
            job = self._job_of(trial)
            if job is not None and not job.is_terminal and ATTR_PRUNE not in trial.user_attrs:
                self._set(trial, ATTR_PAUSED, True)
                self.manager.stop(job.id)
                paused.append(job.id)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while paused and time.monotonic() < deadline and \
                any(not self.manager.get(j).is_terminal for j in paused):
            time.sleep(POLL_SECONDS)
        self.record.message = f"stopped; {len(paused)} running trial(s) saved a checkpoint: Resume continues them" \
            if paused else "stopped: Resume continues the search"
        self._save("stopped")
        self.say(self.record.message)
        self.events.write(Stopped(note=self.record.message))
        return ExitCode.STOPPED

    # ---- the end and the record --------------------------------------------------------------------------------
    def _finish(self) -> int:
        self.record.importances = importances(self.study)
        self._save()
        complete = [t for t in self.record.trials if t.state == "complete"]
        if not complete:
            first = next((t.note for t in self.record.trials if t.note), "no trial finished")
            return self._fail(f"no trial finished with a {self.objective.name}: {first}")
        best_row = self.record.best_trial
        assert best_row is not None
        self.record.message = (f"best: trial {best_row.number + 1} with {self.objective.label} {best_row.value:.4g} "
                               f"({len(complete)} complete, {self.record.counts().get('pruned', 0)} pruned)"
                               + (f"; {self.budget_note}" if self.budget_note else ""))
        self._save("succeeded")
        self.say(f"done: {self.record.message}")
        self.events.write(Finished(step=len(self.record.trials), metrics={
            "best_trial": best_row.number + 1, "best_value": best_row.value, "best_job": best_row.job_id,
            "best_params": best_row.params, "trials": len(self.record.trials)}))
        return ExitCode.OK

    def _fail(self, message: str) -> int:
        self.say(f"failed: {message}")
        self.record.message = message
        self._save("failed")
        self.events.write(Failed(error=message, kind="spec"))
        return ExitCode.FAILED

    def _save(self, state: Optional[str] = None) -> None:
        """Rewrite sweep.json when anything a reader shows changed (or the sweep ends)."""
        fresh = build_record(self.spec, self.study, self._job_of, self.objective, self.price, self.record,
                             state or "running", self._elapsed(), self.job_dir)
        quiet = {"updated": 0, "elapsed_seconds": 0}
        if state or fresh.to_dict() | quiet != self.record.to_dict() | quiet or \
                fresh.elapsed_seconds - self.record.elapsed_seconds >= 10:
            self.record = fresh
            write_record(self.job_dir, fresh)


def main(argv: Optional[list[str]] = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m trainer_backend.sweep.driver <sweep job>/spec.yaml", file=sys.stderr)
        return ExitCode.INVALID
    spec, _ = load_job_spec(args[0])
    job_id = os.environ.get(JOB_ID_ENV)
    if spec.sweep is None or not job_id:
        print("error: not a sweep job of the job store (no sweep section, or no job id)", file=sys.stderr)
        return ExitCode.INVALID
    events = EventLog(spec.job_dir)
    # A synced sweep: its repo keeps the study and the record too; a resume on an empty disk gets them back first.
    with synced_job(spec, events):
        return SweepDriver(spec, default_data_dir(), job_id, os.environ.get(HF_TOKEN_ENV)).run()


if __name__ == "__main__":
    sys.exit(main())
