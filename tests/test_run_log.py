"""The person's training log: LoRA Studio's lines and real warnings in, library noise out (training/run_log.py)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from trainer_backend.training.run_log import FilteredTee, is_noise

REPO = Path(__file__).resolve().parents[1]

NOISE = [
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. Please make sure "
    "you already `pip install kernels` and the kernels >= 0.11.1",
    "/x/site-packages/transformers/utils/generic.py:1: FutureWarning: `torch_dtype` is deprecated! Use `dtype`",
    "  warnings.warn(",
    "[transformers] mtime may not be reliable on this filesystem, falling back to numerical ordering",
    "Map: 100%|\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588| 30/30 [00:00<00:00, 2012.3 examples/s]",
    " 45%|\u2588\u2588\u2588\u2588\u258c     | 9/20 [00:01<00:01,  8.1it/s]\r 50%|",
]
KEPT = [
    "training: 4 steps on cpu, 26 train / 4 valid rows",
    "[####                ]  20.0% step 1/4 loss 7.1000 lr 2.00e-04 1200 tok/s ETA 0:03",
    "warning: UserWarning: the tokenizer has no pad token; using <|endoftext|> (transformers)",
    "Traceback (most recent call last):",
    '  File "/x/trainer_backend/training/run.py", line 90, in _run',
    "RuntimeError: injected fault at step 2 (LORA_STUDIO_FAULT_AT_STEP)",
]


def test_noise_is_recognised_and_real_lines_are_not() -> None:
    assert [line for line in NOISE if not is_noise(line)] == []
    assert [line for line in KEPT if is_noise(line)] == []


def test_tee_keeps_everything_raw_and_only_real_lines_for_the_person() -> None:
    raw, person = io.StringIO(), io.StringIO()
    tee = FilteredTee(raw, person)
    text = "\n".join(NOISE[:2] + KEPT[:2] + NOISE[2:] + KEPT[2:]) + "\n"
    for i in range(0, len(text), 7):  # arrives in pieces, as writes do
        tee.write(text[i:i + 7])
    assert raw.getvalue() == text
    assert person.getvalue().splitlines() == KEPT


def test_a_training_process_writes_a_clean_log_and_keeps_the_noise_apart(tmp_path: Path) -> None:
    """The process the supervisor starts, with the environment it gets: raw output to debug.log, clean train.log."""
    log, debug = tmp_path / "train.log", tmp_path / "debug.log"
    script = (
        "import sys, warnings, logging\n"
        "from trainer_backend.training import run_log\n"
        "run_log.install()\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning("
        "\"Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'\")\n"
        "warnings.warn('`torch_dtype` is deprecated! Use `dtype` instead!', FutureWarning)\n"
        "warnings.warn('padding side is left for training', UserWarning)\n"
        "sys.stderr.write(' 40%|\u2588\u2588\u2588\u2588      | 4/10\\r 50%|\u2588\u2588\u2588\u2588\u2588     | 5/10\\r')\n"
        "print('training: 4 steps on cpu, 26 train / 4 valid rows')\n"
        "raise RuntimeError('injected fault')\n"
    )
    with debug.open("wb") as raw:
        proc = subprocess.run([sys.executable, "-c", script], stdout=raw, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "LORA_STUDIO_LOG_FILE": str(log), "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    person = log.read_text()
    assert "training: 4 steps on cpu" in person
    assert "warning: UserWarning: padding side is left for training" in person
    assert "Traceback (most recent call last):" in person and "RuntimeError: injected fault" in person
    for noise in ("kernels-community", "FutureWarning", "%|", "\u2588"):
        assert noise not in person, person
    everything = debug.read_text()
    assert "kernels-community" in everything and "FutureWarning" in everything and "40%|" in everything
