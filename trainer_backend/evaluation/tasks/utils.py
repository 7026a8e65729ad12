"""Datasets of LoRA Studio's local tasks: JSON-lines files beside this module, so the tasks run the same from any
folder and with no network (the harness's `custom_dataset`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _rows(name: str) -> list[dict[str, Any]]:
    with open(HERE / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _test_split(name: str) -> Any:
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_list(_rows(name))})


def reasoning(**_: Any) -> Any:
    return _test_split("reasoning.jsonl")


def text(**_: Any) -> Any:
    return _test_split("text.jsonl")


def instructions(**_: Any) -> Any:
    return _test_split("instructions.jsonl")


def instruction_prompt(doc: dict[str, Any]) -> str:
    system = f"{doc['system']}\n\n" if doc.get("system") else ""
    return f"{system}{doc['prompt']}\n\nAnswer:"
