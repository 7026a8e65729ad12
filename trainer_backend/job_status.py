"""The one home of job statuses and exit codes, used by the store, the supervisor, the CLI, the API and the UI.

At the bottom of the package (imports nothing of ours). JobStatus values are plain strings (a StrEnum), so they
are stored as TEXT, sent as JSON and compared with strings unchanged.
"""
from __future__ import annotations

from enum import IntEnum, StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    INTERRUPTED = "interrupted"              # the process ended while no supervisor watched; resumable
    NOT_PUSHED = "trained_not_pushed"        # the adapter is on disk; the Hub push failed (retry with push)
    PRUNED = "pruned"                        # a sweep's trial stopped early at an evaluation; keeps its checkpoint


ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.STOPPING})            # a training process exists (or will)
WAITING = frozenset({JobStatus.QUEUED})
UNFINISHED = ACTIVE | WAITING
TERMINAL = frozenset(JobStatus) - UNFINISHED                           # nothing more happens by itself
RESUMABLE = frozenset({JobStatus.STOPPED, JobStatus.FAILED, JobStatus.INTERRUPTED, JobStatus.PRUNED})
PUSHABLE = frozenset({JobStatus.SUCCEEDED, JobStatus.NOT_PUSHED})


class ExitCode(IntEnum):
    """Exit codes of `train`, `validate`, `submit` and `jobs wait` (a job's final status maps onto them)."""
    OK = 0
    FAILED = 1
    INVALID = 2          # the spec or the data is invalid: nothing was trained
    STOPPED = 3
    NOT_PUSHED = 4       # trained, but the Hub push failed
    INTERRUPTED = 5
    PRUNED = 6           # a sweep's trial that its pruner stopped early


EXIT_CODE_OF_STATUS = {JobStatus.SUCCEEDED: ExitCode.OK, JobStatus.FAILED: ExitCode.FAILED,
                       JobStatus.STOPPED: ExitCode.STOPPED, JobStatus.NOT_PUSHED: ExitCode.NOT_PUSHED,
                       JobStatus.INTERRUPTED: ExitCode.INTERRUPTED, JobStatus.PRUNED: ExitCode.PRUNED}


def exit_code_help() -> str:
    """'0 succeeded, 1 failed, ...' for help texts, from the table above (so help and behaviour agree)."""
    return ", ".join(f"{int(code)} {status.value}" for status, code in sorted(EXIT_CODE_OF_STATUS.items(),
                                                                             key=lambda kv: kv[1]))
