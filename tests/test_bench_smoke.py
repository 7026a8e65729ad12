"""The benchmarks' smoke mode (issue 8): `python bench/run.py --quick` must keep running, so it never rots.

Benchmarks are not pass/fail here: only that every benchmark runs end to end and prints its line. The quick mode
uses tiny locally built models and a few steps; its figures are not measurements (see docs/benchmarks.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("overhead", "packing", "data_prep", "app", "gpu", "plan", "cli_start", "sweep")


def test_bench_quick_runs_every_benchmark_from_an_empty_cache(tmp_path: Path) -> None:
    # A fresh TMPDIR: the bench builds its models from nothing, as on a new machine (a warm model cache once hid
    # a thread-unsafe first import of transformers that failed only cold).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    lines = proc.stdout.splitlines()
    for name in BENCHMARKS:
        mine = [l for l in lines if l.startswith(f"{name}: ")]
        assert mine, f"no result line for {name}:\n{proc.stdout[-3000:]}"
        assert "ERROR" not in mine[0], mine[0]
    assert "job_status" in next(l for l in lines if l.startswith("app: "))  # measured, or 'not available yet'
    assert (tmp_path / "lora-studio-bench" / "models").is_dir()  # built here, not found in an old cache
    assert "no cross-sample attention (sdpa+eager): OK" in next(l for l in lines if l.startswith("packing: "))
