"""What a training process imports: bitsandbytes only for a run that uses it (peft would import it, and torch's
compiler stack with it, ~2 CPU-s of every training start)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_backend.ml_stack import needs_bitsandbytes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return tmp_path


def test_only_a_run_that_uses_bitsandbytes_needs_it(base: Path, tmp_path: Path) -> None:
    assert not needs_bitsandbytes("none", "adamw_torch", str(base))
    assert needs_bitsandbytes("int4", "adamw_torch", str(base)) and needs_bitsandbytes("int8", "adamw_torch", str(base))
    assert needs_bitsandbytes("none", "paged_adamw_8bit", str(base)) and needs_bitsandbytes("none", "adamw_8bit", str(base))
    assert needs_bitsandbytes("none", "adamw_torch", "org/model-on-the-hub"), "a config not on disk: cannot tell"
    saved_quantized = tmp_path / "bnb-4bit"
    saved_quantized.mkdir()
    (saved_quantized / "config.json").write_text(json.dumps({"quantization_config": {"load_in_4bit": True}}))
    assert needs_bitsandbytes("none", "adamw_torch", str(saved_quantized)), "a checkpoint saved in 4-bit loads with it"


@pytest.mark.slow  # imports transformers and peft in a fresh interpreter
def test_left_out_bitsandbytes_is_not_installed_for_transformers_and_peft() -> None:
    probe = ("from trainer_backend.ml_stack import leave_out_bitsandbytes\n"
             "assert leave_out_bitsandbytes()\n"
             "import importlib.util\n"
             "from transformers.utils import is_bitsandbytes_available\n"
             "from peft.import_utils import is_bnb_available\n"
             "import sys\n"
             "print(importlib.util.find_spec('bitsandbytes'), is_bitsandbytes_available(), is_bnb_available(),"
             " 'torch._inductor.compile_fx' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "False", "False", "False"]
