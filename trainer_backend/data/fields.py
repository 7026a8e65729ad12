"""Reading one cell of a row: a column by name, or a nested field by dotted path (`answers.text`).

Published datasets nest what a format needs: SQuAD keeps its answers as {"text": [...], "answer_start": [...]},
others as a list of {"text": ...}. A dotted path walks into dicts; a list on the way (or at the end, for a text
field) stands for its first element, so `answers.text` is SQuAD's first answer.
"""
from __future__ import annotations

import json
from typing import Any, Optional

MISSING = object()  # what `cell` gives for a column (or path) the row does not have


def maybe_json(value: Any) -> Any:
    """CSV cells may hold a conversation, a list or an object as a JSON string."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):  # not JSON (or absurdly deep): the cell stays text
            return value
    return value


def top_column(path: str, columns: Optional[list[str]] = None) -> str:
    """The row column a mapping entry reads: the entry itself when it names a column, else its first segment."""
    if columns is not None and path in columns:
        return path
    return path.split(".", 1)[0]


def is_path(column: Optional[str], row: dict) -> bool:
    """Whether `column` reads a nested field of `row` (and is not simply a column with a dot in its name)."""
    return bool(column) and column not in row and "." in (column or "")


def cell(row: dict, column: str, first: bool = False) -> Any:
    """The value of `column` in `row` (MISSING when absent). A dotted path walks into nested objects, taking the
    first element of each list it passes; `first`: a list at the end gives its first element too (a text field)."""
    if column in row:
        return row[column]
    if "." not in column:
        return MISSING
    value: Any = row
    for part in column.split("."):
        value = _first_item(maybe_json(value))
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return _first_item(maybe_json(value)) if first else value


def _first_item(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return None if value == [] else value
