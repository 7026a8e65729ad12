"""Statuses and exit codes have one home (job_status.py); the stream, the CLI and the spec guard agree with it."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer_backend.job_status import ACTIVE, EXIT_CODE_OF_STATUS, TERMINAL, UNFINISHED, ExitCode, JobStatus


class _OneJob:
    """A job manager that knows one job, in a fixed status."""

    def __init__(self, status: str):
        self.job = SimpleNamespace(id="j1", status=status, error=None)
        self.data_dir = Path(".")

    def get(self, job_id: str):
        return self.job

    def snapshot(self, job_id: str):
        return SimpleNamespace(to_dict=lambda series=False: {"step": 1, "last_event_time": 0})

    def wait(self, job_id: str, timeout=None):
        return self.job


def test_every_status_is_either_terminal_or_unfinished() -> None:
    assert TERMINAL | UNFINISHED == set(JobStatus) and not TERMINAL & UNFINISHED
    assert JobStatus.NOT_PUSHED in TERMINAL and ACTIVE < UNFINISHED
    assert set(EXIT_CODE_OF_STATUS) == TERMINAL, "every way a job can end has an exit code"


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_the_event_stream_ends_for_every_terminal_status(status: str) -> None:
    from trainer_backend.ui.service import StudioService

    events = list(StudioService(_OneJob(status)).events("j1", interval=0.01))
    assert [e["status"] for e in events] == [status]


def test_the_event_stream_of_a_job_that_never_ends_stops_at_its_timeout() -> None:
    from trainer_backend.ui.service import StudioService

    events = list(StudioService(_OneJob(JobStatus.RUNNING)).events("j1", interval=0.01, timeout=0.1))
    assert len(events) == 1 and events[0]["status"] == "running"


def test_jobs_wait_exit_codes_are_the_ones_its_help_promises() -> None:
    from trainer_backend.cli import build_parser
    from trainer_backend.jobs import cli as jobs_cli

    helptext = io.StringIO()
    with contextlib.redirect_stdout(helptext), pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "--help"])
    text = " ".join(helptext.getvalue().split())
    listed = re.search(r"wait for a job to end; exit ((?:\d+ [a-z_]+(?:, )?)+)", text)
    assert listed, text
    promised = {status: int(code) for code, status in re.findall(r"(\d+) ([a-z_]+)", listed.group(1))}
    for status in TERMINAL:
        with contextlib.redirect_stderr(io.StringIO()):
            code = jobs_cli._wait(_OneJob(status), argparse.Namespace(id="j1", timeout=None))
        assert promised[status] == code, f"jobs wait returns {code} for {status}; its help says {promised[status]}"
    assert promised["interrupted"] == ExitCode.INTERRUPTED


def test_accelerate_config_from_a_client_must_be_an_allowed_file(tmp_path: Path) -> None:
    from trainer_backend.spec import parse_spec
    from trainer_backend.uploads import EXAMPLES_DIR, UnsafePath, sanitize_client_spec

    def spec(config: str):
        return parse_spec({"model": {"base_model": "some-org/some-model"},
                           "data": {"path": str(EXAMPLES_DIR / "capitals.jsonl")},
                           "training": {"accelerate_config": config}})[0]
    with pytest.raises(UnsafePath, match="accelerate_config"):  # any file on the server
        sanitize_client_spec(spec("/etc/passwd"), tmp_path)
    mine = tmp_path / "uploads" / "accelerate.yaml"
    mine.parent.mkdir()
    mine.write_text("distributed_type: NO\n")
    assert sanitize_client_spec(spec(str(mine)), tmp_path).training.accelerate_config == str(mine.resolve())
