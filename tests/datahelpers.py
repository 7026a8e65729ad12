"""Shared pieces of the broken-input suites (test_validation*.py): a tiny tokenizer, `run` / `fails` fixtures
and small file writers. Row numbers are 1-based: the JSONL line, the CSV spreadsheet row (header = 1)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional

import pytest

from trainer_backend.data import DataError, DataIssue, prepare_data
from trainer_backend.spec import parse_spec


@pytest.fixture(scope="session")
def validation_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer_backend.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("validation-tiny-model"))


@pytest.fixture
def run(validation_tokenizer_dir: Path, tmp_path: Path):
    """run(path, **data_keys, lengths=..., training=...) -> PreparedData. A fresh tokenizer per call, because
    shipped chat templates are installed on the tokenizer."""
    from transformers import AutoTokenizer

    def _run(path: Any, lengths: Optional[dict] = None, training: Optional[dict] = None, **data: Any):
        raw = {"project_name": "validation", "output_dir": str(tmp_path / "job"),
               "model": {"base_model": str(validation_tokenizer_dir)},
               "data": {"path": str(path), **data},
               "lengths": {"block_size": 128, "model_max_length": 2048, **(lengths or {})},
               "training": {"eval_strategy": "no", **(training or {})}}
        spec, _ = parse_spec(raw)
        return prepare_data(spec, AutoTokenizer.from_pretrained(validation_tokenizer_dir))
    return _run


@pytest.fixture
def fails(run):
    """fails(path, **kw) -> DataError (the test fails if prepare_data accepts the data)."""
    def _fails(path: Any, **kw: Any) -> DataError:
        with pytest.raises(DataError) as info:
            run(path, **kw)
        exc = info.value
        assert exc.issues and all(isinstance(i, DataIssue) for i in exc.issues)
        return exc
    return _fails


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def qa(i: int) -> dict:
    return {"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."}


def chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def only(exc: DataError, row: Optional[int] = None) -> DataIssue:
    """The single issue (for `row`, if given)."""
    found = [i for i in exc.issues if row is None or i.row == row]
    assert len(found) == 1, f"expected one issue{'' if row is None else f' at row {row}'}:\n{exc}"
    return found[0]


def assert_readable(exc: DataError, issue: DataIssue) -> None:
    """The printed error names the file, the row and the column, and carries the fix."""
    text = str(exc)
    assert issue.file and issue.file in text
    if issue.row is not None:
        assert f"row {issue.row}" in text
    if issue.column:
        assert f"column '{issue.column}'" in text
    if issue.fix:
        assert issue.fix in text
