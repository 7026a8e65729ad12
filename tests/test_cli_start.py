"""The CLI's data commands start without the training stack (bench/cli_start.py measures their CPU time).

validate and doctor load the tokenizer (transformers' AutoTokenizer, which itself imports torch for its config
classes) and read the prepared data (`datasets`), but never the trainers' libraries (TRL, PEFT, bitsandbytes),
transformers' Trainer, its callbacks or its model classes; jobs and schema import no ML library at all. Each group
runs in a fresh interpreter through cli.main, as `python -m trainer_backend` would, and reports what was imported:
a module-level import of the training stack anywhere on these paths fails here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ML = ("torch", "transformers", "datasets", "peft", "trl", "bitsandbytes", "accelerate", "tokenizers", "numpy")
TRAINING = ("peft", "trl", "bitsandbytes")
# what a run needs and validation does not: transformers' Trainer, its callbacks, its model classes; our callback
TRAINING_MODULES = ("transformers.trainer", "transformers.trainer_callback", "transformers.modeling_utils",
                    "trainer_backend.training.callbacks")

CHILD = r"""
import contextlib, io, json, sys
from trainer_backend.cli import main

ml, marked = json.loads(sys.argv[1]), json.loads(sys.argv[2])
seen = []
for argv in json.loads(sys.argv[3]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    seen.append({"argv": argv, "rc": int(rc), "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:],
                 "packages": sorted({m.split(".")[0] for m in sys.modules} & set(ml)),
                 "modules": [m for m in marked if m in sys.modules]})
print(json.dumps(seen))
"""


def run_commands(commands: list[list[str]], cwd: Path) -> list[dict[str, Any]]:
    """Run the commands one after the other in one fresh interpreter; what each had imported when it ended."""
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(ML), json.dumps(TRAINING_MODULES),
                           json.dumps(commands)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_jobs_and_schema_import_no_ml_library(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    seen = run_commands([["schema"], ["jobs", "list", "--data-dir", data], ["jobs", "list", "--json", "--data-dir", data],
                         ["jobs", "show", "no-such-job", "--data-dir", data]], tmp_path)
    assert [s["rc"] for s in seen] == [0, 0, 0, 1], seen
    assert json.loads(seen[0]["stdout"])["title"] == "JobSpec"
    assert seen[2]["stdout"].strip() == "[]"
    for s in seen:
        assert s["packages"] == [], f"`{' '.join(s['argv'])}` imported {s['packages']}"


def test_validate_and_doctor_import_no_training_stack(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": f"{i} + {i} is {2 * i}."}]} for i in range(6)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "s.yaml").write_text(f"model:\n  base_model: {tiny_model_dir}\ndata:\n  path: d.jsonl\n",
                                     encoding="utf-8")
    seen = run_commands([["validate", "s.yaml"], ["doctor", "s.yaml", "--json"]], tmp_path)
    assert [s["rc"] for s in seen] == [0, 0], seen
    assert "OK: the data is valid for this spec." in seen[0]["stdout"]
    assert json.loads(seen[1]["stdout"])["format"]["format"] == "messages"
    for s in seen:
        assert not set(TRAINING) & set(s["packages"]), f"`{' '.join(s['argv'])}` imported {s['packages']}"
        assert s["modules"] == [], f"`{' '.join(s['argv'])}` imported {s['modules']}"
