"""Shared fixtures: a tiny local model (no downloads) and the real data samples kept in tests/data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "tests" / "data"  # samples of real public datasets; tests/data/SOURCES.md

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
# The report after training runs only in the tests of it (they set it back to 1 for their job): the other few
# dozen trained jobs would each pay for it.
os.environ.setdefault("LORA_STUDIO_AUTO_EVALUATION", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process: the tiny models gain nothing from a second one, and on a 2-core box the pytest
# process, the app, a supervisor and a training process already share the cores (extra threads spin, burning
# CPU-seconds for no speed: -26 % CPU on the in-process training tests, same wall time within 7 %).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Prepared data is cached in a folder of this run (shared with the processes it starts), never in the checkout.
if "LORA_STUDIO_PREPARED_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="lora-studio-prepared-cache-")
    os.environ["LORA_STUDIO_PREPARED_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, True)


@pytest.fixture(scope="session")
def real_data() -> Path:
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer_backend.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """A fresh tokenizer per test: the pipeline installs the chosen chat template on the tokenizer it gets."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def make_spec(tiny_model_dir: Path, tmp_path: Path):
    """Build a validated JobSpec from a few sections; the job dir is under tmp_path."""
    from trainer_backend.spec import parse_spec

    def make(data: dict, **sections: Any):
        raw = {"project_name": "test-run", "output_dir": str(tmp_path / "job"),
               "model": {"base_model": str(tiny_model_dir)}, "data": data,
               "lengths": {"block_size": 256, "model_max_length": 512}}
        for key, value in sections.items():
            raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
        return parse_spec(raw)[0]
    return make


@pytest.fixture(scope="session")
def shared_app(tmp_path_factory: pytest.TempPathFactory):
    """One started app (python app.py on a free loopback port) for the API matrix and the README test."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from apphelpers import AppServer

    server = AppServer(tmp_path_factory.mktemp("shared-app") / "data",
                       env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    yield server
    server.stop()



# `LORA_STUDIO_TEST_CPU_REPORT=cpu.tsv pytest ...`: CPU-seconds per test phase (this process plus the children it
# waited for), to find where the suite's CPU goes. Detached processes (a job's supervisor) are not counted, as
# /usr/bin/time does not count them either.
if os.environ.get("LORA_STUDIO_TEST_CPU_REPORT"):
    import resource

    def _cpu_seconds() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: Any):
        before = _cpu_seconds()
        yield
        with open(os.environ["LORA_STUDIO_TEST_CPU_REPORT"], "a", encoding="utf-8") as fh:
            fh.write(f"{_cpu_seconds() - before:.2f}\t{item.nodeid}\n")
