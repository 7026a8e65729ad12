"""Every trainer x every data format it accepts x every command a user has (issue 14).

Axes come from the product (tests/matrix.py): the trainer registry, the format list and the repository's
own samples. Accepted combinations must exit 0 with a report that names the format and shows the sample;
refused ones must exit 2 with a message naming the trainer and the fix, never a traceback. CLI cells run
in-process (cli.main) like tests/test_cli.py; train and submit cells are marked slow (they run in make test).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from matrix import (FORMATS, GENERATED, HEADLINES, SAMPLE_KINDS, SAMPLES, TRAINERS, accepts, data_cells, format_cells,
                    resolve_sample, spec_for)
from trainer_backend.cli import main

# One BLAS thread per trainer: on 2 shared cores OpenMP spin-waiting otherwise slows a step many times.
JOB_ENV = ("--env", "OMP_NUM_THREADS=1", "--env", "MKL_NUM_THREADS=1")


def _cell_id(cell: tuple) -> str:
    return "-".join(str(p).replace("/", ".").replace("generated:", "gen.") for p in cell)


def _write(tmp_path: Path, trainer: str, sample: str, model: Path, **training: object) -> Path:
    spec = spec_for(trainer, resolve_sample(sample, tmp_path, model), str(model), **training)
    spec["output_dir"] = str(tmp_path / "job")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_every_format_and_trainer_has_cells() -> None:
    missing = [f for f in FORMATS if not SAMPLES[f]]
    assert not missing, f"formats without a sample in tests/data (add one, or generate it in matrix.py): {missing}"
    for trainer in TRAINERS:  # a trainer that accepts nothing would silently have no working cell
        assert any(accepts(trainer, f) for f in FORMATS), trainer
    assert all(s.startswith("generated:") or (Path(__file__).parent / "data" / s).is_file()
               for f in FORMATS for s in SAMPLES[f] if f not in GENERATED)


@pytest.mark.parametrize("trainer, fmt, sample", data_cells(), ids=[_cell_id(c) for c in data_cells()])
def test_cli_validate_and_doctor(trainer: str, fmt: str, sample: str, tiny_model_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    spec = str(_write(tmp_path, trainer, sample, tiny_model_dir))
    if not accepts(trainer, fmt):
        for command in (["validate", spec], ["doctor", spec, "--json"]):
            code, out, err = _run(capsys, *command)
            assert code == 2 and out == "", (command, out)
            assert f"trainer '{trainer}' needs" in err and f"looks like {fmt} data" in err and "fix:" in err
        return

    code, out, err = _run(capsys, "validate", spec)
    assert code == 0, err[-3000:]
    assert f"format:        {fmt} — " in out and f"trainer:       {trainer}" in out
    assert "OK: the data is valid for this spec." in out
    kind = SAMPLE_KINDS.get(trainer, "tokens")
    headline = HEADLINES[kind]
    assert headline in out

    code, out, _ = _run(capsys, "doctor", spec)
    assert code == 0 and headline in out and "OK:" not in out

    code, out, _ = _run(capsys, "doctor", spec, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["format"]["format"] == fmt and report["trainer"] == trainer
    assert report["splits"]["train"]["rows_used"] >= 1
    assert report["sample"]["kind"] == kind and report["sample"]["rendered"]
    if trainer in ("dpo", "orpo"):  # the exact strings TRL gets: prompt up to the assistant header, then answers
        assert report["sample"]["prompt"].endswith("<|im_start|>assistant\n")
        assert report["sample"]["chosen"] != report["sample"]["rejected"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer, fmt, sample", format_cells(only_accepted=True),
                         ids=[_cell_id(c) for c in format_cells(only_accepted=True)])
def test_cli_train_two_steps(trainer: str, fmt: str, sample: str, tiny_model_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    spec = str(_write(tmp_path, trainer, sample, tiny_model_dir))
    code, out, err = _run(capsys, "train", spec)
    assert code == 0, err[-3000:]
    assert "step 2/2" in out and "adapter saved to" in out
    events = [json.loads(line) for line in (tmp_path / "job" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 2
    assert json.loads((tmp_path / "job" / "data_report.json").read_text())["format"]["format"] == fmt
    assert (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_cli_submit_and_jobs_wait_every_trainer(tiny_model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """One cell per trainer (its first accepted format), all queued at once so one supervisor runs them."""
    store = str(tmp_path / "store")
    submitted = {}
    for trainer in TRAINERS:
        fmt = next(f for f in FORMATS if accepts(trainer, f) and SAMPLES[f])
        folder = tmp_path / trainer
        folder.mkdir()
        spec = str(_write(folder, trainer, SAMPLES[fmt][0], tiny_model_dir))
        code, out, err = _run(capsys, "submit", spec, "--data-dir", store, *JOB_ENV)
        assert code == 0, err[-3000:]
        assert "queued job" in err
        submitted[trainer] = out.strip().splitlines()[-1]
    for trainer, job_id in submitted.items():
        code, _, err = _run(capsys, "jobs", "wait", job_id, "--data-dir", store, "--timeout", "300")
        assert code == 0, (trainer, err[-3000:])
        assert f"job {job_id} succeeded" in err


@pytest.mark.parametrize("trainer", [t for t in TRAINERS if not accepts(t, "text")])
def test_cli_submit_refuses_an_invalid_combination(trainer: str, tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    spec = str(_write(tmp_path, trainer, SAMPLES["text"][0], tiny_model_dir))
    code, out, err = _run(capsys, "submit", spec, "--data-dir", str(tmp_path / "store"))
    assert code == 2 and f"trainer '{trainer}' needs " in err and "will not run" in err
