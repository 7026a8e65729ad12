"""Shared pieces of the Hub suites: the loopback Hub with huggingface_hub pointed at it, tokens, a real short
training run per test module (which pushes when it finishes), and small utilities."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hub_server import HubServer  # tests/ is on sys.path (pytest's rootdir-relative import of test modules)
from trainer_backend.hub import RetryPolicy  # light: the package imports torch/transformers only when used

ALICE = "hf_LeakCanary" + secrets.token_hex(12)  # distinctive: the leak test greps for it everywhere
BOB = "hf_bob" + secrets.token_hex(12)
CAROL = "hf_carol" + secrets.token_hex(12)
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


LIBRARY_SLEEPS: list[float] = []  # huggingface_hub's own backoff (preupload/commit), recorded instead of slept


@pytest.fixture(scope="module")
def loopback_hub() -> Iterator[HubServer]:
    """The loopback Hub, with huggingface_hub pointed at it (and out of the offline mode conftest sets).

    Any request to another host fails the test. huggingface_hub's internal backoff (it retries preupload and
    commit 5 times, waiting 1-8 s) is recorded in LIBRARY_SLEEPS instead of slept, to keep the module fast."""
    import types

    import huggingface_hub
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import _http
    from huggingface_hub.utils._http import default_client_factory

    server = HubServer({ALICE: "alice", BOB: "bob", CAROL: "carol"}).start()

    def loopback_only(request: Any) -> None:
        if request.url.host != "127.0.0.1":
            raise RuntimeError(f"a test tried to reach {request.url.host}: only the loopback Hub is allowed")

    def client_factory() -> Any:
        client = default_client_factory()
        client.event_hooks["request"].append(loopback_only)
        return client

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        # Calls that take no endpoint use these (hf_hub_download builds its URL from the template, read at import).
        mp.setattr(constants, "ENDPOINT", server.url)
        mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        mp.setattr(_http, "time", types.SimpleNamespace(sleep=LIBRARY_SLEEPS.append))
        mp.delenv("HF_TOKEN", raising=False)
        huggingface_hub.set_client_factory(client_factory)
        try:
            yield server
        finally:
            huggingface_hub.set_client_factory(default_client_factory)
    server.close()


@pytest.fixture
def hub(loopback_hub: HubServer) -> Iterator[HubServer]:
    """The module's loopback Hub, running and with no faults pending, for one test."""
    loopback_hub.start()
    LIBRARY_SLEEPS.clear()
    yield loopback_hub
    loopback_hub.clear_faults()
    loopback_hub.start()


def _spec(tiny_model_dir: Path, data_file: Path, out: Path, **hub: Any):
    from trainer_backend.spec import parse_spec

    raw = {"project_name": "tiny-chat", "output_dir": str(out), "model": {"base_model": str(tiny_model_dir)},
           "data": {"path": str(data_file), "max_rows": 20, "chat_template": "chatml", "valid_split": "auto",
                    "valid_fraction": 0.2},
           "lengths": {"block_size": 256, "model_max_length": 512}, "lora": {"r": 4, "alpha": 8},
           "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                        "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "no"},
           "hub": hub}
    return parse_spec(raw, expand=True)[0]  # ${HF_TOKEN}: a person's own spec


TRAINING_OUTPUT: dict[str, str] = {}  # what the module's training run printed and logged (for the leak test)


@pytest.fixture(scope="module")
def job(loopback_hub: HubServer, tiny_model_dir: Path, real_data: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real 2-step SFT run, its spec holding the canary token via `hub.token: ${HF_TOKEN}`; the run pushes
    to the loopback Hub itself when it finishes (hub.push_to_hub)."""
    import contextlib
    import io

    from trainer_backend.hub.publish import train_and_push

    records = io.StringIO()
    handler = logging.StreamHandler(records)
    root = logging.getLogger()
    old_level = root.level
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", ALICE)
        spec = _spec(tiny_model_dir, real_data / "chat" / "oasst_en100_messages.jsonl",
                     tmp_path_factory.mktemp("hub-job") / "job", push_to_hub=True, token="${HF_TOKEN}")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                assert train_and_push(spec).status == "succeeded"
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
    pushed = [json.loads(l) for l in (spec.job_dir / "events.jsonl").read_text().splitlines()
              if '"pushed"' in l]
    assert pushed and pushed[-1]["repo_id"] == "alice/tiny-chat", "the finished run pushed its adapter"
    TRAINING_OUTPUT.update(stdout=out.getvalue(), stderr=err.getvalue(), logs=records.getvalue())
    yield spec


@pytest.fixture(scope="module")
def job_dir(job: Any) -> Path:
    return job.job_dir




def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
