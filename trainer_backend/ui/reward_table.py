"""The Train tab's rewards editor: `grpo.rewards` as a table a person fills in without writing code.

One row per reward: type, name, weight, column and one `setting` cell in words, whose meaning depends on the type
(HELP says it the way the page does). Pure functions both ways, Gradio-free: `rows_to_rewards` (the table -> the
spec's reward dicts; a row that cannot be one raises RewardTableError naming the row) and `rewards_to_rows` (a
loaded spec's rewards -> rows, with a note for anything the table cannot show). Python rewards are CLI-only here:
the type is not offered, and a loaded one is left out with a note.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Literal, Optional, Sequence, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..spec_rl import REWARD_KINDS, RewardSpec

COLUMNS = ["type", "name", "weight", "column", "setting"]
DATATYPES: list[Literal["str", "number"]] = ["str", "str", "number", "str", "str"]
COLUMN_WIDTHS: list[str | int] = ["15%", "15%", "9%", "13%", "48%"]  # gr.Dataframe's type
TABLE_KINDS: tuple[str, ...] = tuple(k for k in REWARD_KINDS if k != "python")
DEFAULT_ROWS: list[list[Any]] = [["numeric_match", "correct", 1.0, "answer", ""]]
EXTRACTS: tuple[str, ...] = get_args(RewardSpec.model_fields["extract"].annotation)
UNITS: tuple[str, ...] = get_args(RewardSpec.model_fields["unit"].annotation)
_DEFAULT = {name: info.default for name, info in RewardSpec.model_fields.items()}

HELP = f"""**Rewards** score each sampled completion; the total is their weighted sum (weight 0 only logs a reward).
`type` is one of {", ".join(f"`{k}`" for k in TABLE_KINDS)}; `name` labels it in the charts (default: the type);
`column` is the dataset column with the reference answer. What `setting` holds:

- `exact_match` (needs `column`): the answer equals the reference, ignoring case and punctuation. Setting: empty,
  or `case-sensitive`, `extract: {"|".join(e for e in EXTRACTS if e != "auto")}` (which part is the answer).
- `numeric_match` (needs `column`): the answer's final number equals the reference's. Setting: the tolerance,
  e.g. `0.01` (empty: exact), and/or `extract: ...`.
- `regex`: the completion matches the pattern, e.g. `<think>.*?</think>\\s*<answer>.*?</answer>` (the whole text
  must match; `search: <pattern>` finds it anywhere).
- `json_valid`: the answer parses as JSON; the setting may be a JSON Schema it must satisfy, e.g.
  `{{"type": "object", "required": ["name"]}}`.
- `length`: full score inside `min-max`, e.g. `20-200 words`, `50-` (at least), `-300 chars` (at most); units
  {", ".join(UNITS)}.
- `contains`: `all: word, other word; none: forbidden` (share of `all` found, 0 if any of `none` appears;
  `column` may hold more words); add `; case-sensitive` to match case.
- `tool_call` (no `column`, no setting; data with tools): the completion's tool call against the row's own call:
  a call that parses, the right tool names, arguments that fit the tool's schema, the exact arguments.

Clauses are separated by `;`. A Python reward file is set in the YAML / CLI (`type: python, file: ...`)."""


class RewardTableError(ValueError):
    """A row of the rewards table that is not a reward (the message names the row and what to change)."""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _rows(table: Any) -> list[list[Any]]:
    if hasattr(table, "to_numpy"):  # a pandas DataFrame (gr.Dataframe's default type)
        table = table.to_numpy().tolist()
    return [list(row) + [None] * (len(COLUMNS) - len(row)) for row in (table or [])]


def _clauses(text: str) -> list[tuple[str, str]]:
    """'all: a, b; case-sensitive' -> [('all', 'a, b'), ('case-sensitive', '')]."""
    out = []
    for part in (p.strip() for p in text.split(";")):
        if part:
            key, _, value = part.partition(":")
            out.append((key.strip().lower(), value.strip()))
    return out


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RewardTableError(f"{what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise RewardTableError(f"{what} '{text}' is not a finite number")
    return value


def _options(kind: str, text: str, allowed: Sequence[str]) -> dict[str, Any]:
    """The clauses of exact_match, numeric_match and contains settings."""
    out: dict[str, Any] = {}
    for key, value in _clauses(text):
        if key == "case-sensitive" and key in allowed and not value:
            out["case_sensitive"] = True
        elif key == "extract" and key in allowed:
            if value not in EXTRACTS:
                raise RewardTableError(f"extract '{value}' is not one of {', '.join(EXTRACTS)}")
            out["extract"] = value
        elif key == "tolerance" and key in allowed:
            out["tolerance"] = _number(value, "tolerance")
        elif kind == "numeric_match" and not value and "tolerance" not in out:
            out["tolerance"] = _number(key, "tolerance")
        elif key in ("all", "none") and key in allowed:
            out["all_of" if key == "all" else "none_of"] = [w.strip() for w in value.split(",") if w.strip()]
        else:
            raise RewardTableError(f"'{key}{': ' + value if value else ''}' is not a {kind} setting; use "
                                   f"{_USAGE[kind]}")
    return out


_USAGE = {"exact_match": "'case-sensitive' and/or 'extract: <how>'",
          "numeric_match": "a tolerance such as '0.01' and/or 'extract: <how>'",
          "contains": "'all: a, b', 'none: c' and/or 'case-sensitive', separated by ';'"}


_LENGTH = re.compile(rf"^(\d+)?\s*-\s*(\d+)?\s*({'|'.join(UNITS)})?$")


def parse_setting(kind: str, text: str) -> dict[str, Any]:
    """A `setting` cell -> the RewardSpec fields it sets for this reward type (see HELP)."""
    if kind == "regex":
        search = text.lower().startswith("search:")
        pattern = text.split(":", 1)[1].strip() if search else text
        if not pattern:
            raise RewardTableError("a regex reward needs its pattern in `setting`")
        return {"pattern": pattern, **({"full_match": False} if search else {})}
    if kind == "json_valid":
        if not text:
            return {}
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RewardTableError(f"the JSON Schema in `setting` is not valid JSON: {exc.msg} at character "
                                   f"{exc.pos + 1}") from None
        if not isinstance(schema, dict):
            raise RewardTableError("the JSON Schema in `setting` must be an object, e.g. {\"type\": \"object\"}")
        return {"json_schema": schema}
    if kind == "tool_call":
        if text:
            raise RewardTableError("a tool_call reward has no setting: it reads the row's own tool call; clear "
                                   "`setting`")
        return {}
    if kind == "length":
        m = _LENGTH.match(text.lower())
        if not m or not (m[1] or m[2]):
            raise RewardTableError(f"length setting '{text}' is not 'min-max', e.g. '20-200 words', '50-' or "
                                   "'-300 chars'")
        out: dict[str, Any] = {"min_length": int(m[1])} if m[1] else {}
        return {**out, **({"max_length": int(m[2])} if m[2] else {}), **({"unit": m[3]} if m[3] else {})}
    allowed = {"exact_match": ("case-sensitive", "extract"), "numeric_match": ("tolerance", "extract"),
               "contains": ("all", "none", "case-sensitive")}[kind]
    return _options(kind, text, allowed)


def row_to_reward(row: Sequence[Any]) -> dict[str, Any]:
    """One table row -> a reward dict (only what the row sets: the spec's defaults apply to the rest)."""
    if any(_cell(v) for v in row[len(COLUMNS):]):
        raise RewardTableError(f"only the columns {', '.join(COLUMNS)} are read; move the extra cells into "
                               "`setting` or delete that column")
    kind, name, weight, column, setting = (_cell(v) for v in row[: len(COLUMNS)])
    if kind not in TABLE_KINDS:
        hint = " (a Python reward file is set in the YAML / CLI)" if kind == "python" else ""
        raise RewardTableError(f"type '{kind}' is not one of {', '.join(TABLE_KINDS)}{hint}" if kind
                               else f"`type` is empty: use one of {', '.join(TABLE_KINDS)}")
    reward: dict[str, Any] = {"type": kind}
    if name:
        reward["name"] = name
    reward["weight"] = _number(weight, "weight") if weight else _DEFAULT["weight"]
    if column:
        reward["column"] = column
    reward.update(parse_setting(kind, setting))
    try:
        RewardSpec.model_validate(reward)
    except ValidationError as exc:
        raise RewardTableError("; ".join(_message(e) for e in exc.errors())) from None
    return reward


def _message(error: ErrorDetails) -> str:
    msg = str(error.get("msg") or "").removeprefix("Value error, ")
    loc = ".".join(str(p) for p in error.get("loc") or ())
    return f"{loc}: {msg}" if loc else msg


def _label(row: Sequence[Any]) -> str:
    kind, name = _cell(row[0]), _cell(row[1])
    return f" ({kind} '{name}')" if kind and name else f" ({kind or name})" if kind or name else ""


def rows_to_rewards(table: Any) -> list[dict[str, Any]]:
    """The rewards table -> `grpo.rewards` (blank rows are skipped). RewardTableError names the first bad row."""
    rewards: list[dict[str, Any]] = []
    seen: dict[str, int] = {}  # reward label -> its row number
    for number, row in enumerate(_rows(table), start=1):
        if not any(_cell(v) for v in row):
            continue
        try:
            reward = row_to_reward(row)
        except RewardTableError as exc:
            raise RewardTableError(f"rewards row {number}{_label(row)}: {exc}") from None
        label = reward.get("name") or reward["type"]
        if label in seen:
            raise RewardTableError(f"rewards rows {seen[label]} and {number} are both named '{label}': give each "
                                   "its own `name` (the charts and the model card tell them apart by it)")
        seen[label] = number
        rewards.append(reward)
    return rewards


def table_problem(table: Any) -> Optional[str]:
    """What is wrong with the table, or None."""
    try:
        rows_to_rewards(table)
    except RewardTableError as exc:
        return str(exc)
    return None


def _setting(r: RewardSpec) -> str:
    extract = [f"extract: {r.extract}"] if r.extract != _DEFAULT["extract"] else []
    case = ["case-sensitive"] if r.case_sensitive else []
    if r.type == "regex":
        pattern = r.pattern or ""  # a validated regex reward always has one
        return pattern if r.full_match else f"search: {pattern}"
    if r.type == "json_valid":
        return json.dumps(r.json_schema, ensure_ascii=False) if r.json_schema is not None else ""
    if r.type == "length":
        low = "" if r.min_length is None else str(r.min_length)
        return f"{low}-{'' if r.max_length is None else r.max_length} {r.unit}"
    if r.type == "numeric_match":
        tolerance = [f"{r.tolerance:g}"] if r.tolerance != _DEFAULT["tolerance"] else []
        return "; ".join(tolerance + extract)
    if r.type == "tool_call":
        return ""
    if r.type == "contains":
        words = [f"all: {', '.join(r.all_of)}"] if r.all_of else []
        return "; ".join(words + ([f"none: {', '.join(r.none_of)}"] if r.none_of else []) + case)
    return "; ".join(case + extract)  # exact_match


def _lost(r: RewardSpec) -> list[str]:
    """Settings of a loaded reward that its row cannot carry."""
    lost = []
    if r.type == "json_valid" and r.extract != _DEFAULT["extract"]:
        lost.append(f"extract: {r.extract}")
    if r.type == "contains" and any(("," in w or ";" in w) for w in [*r.all_of, *r.none_of]):
        lost.append("words with ',' or ';' in them")
    return lost


def rewards_to_rows(rewards: Sequence[RewardSpec | dict]) -> tuple[list[list[Any]], list[str]]:
    """A spec's rewards -> (table rows, notes on what the table leaves out). No rewards at all: the default row
    (a spec of another trainer loaded, then switched to grpo, starts from it)."""
    if not rewards:
        return [list(row) for row in DEFAULT_ROWS], []
    rows, notes = [], []
    for reward in rewards:
        r = reward if isinstance(reward, RewardSpec) else RewardSpec.model_validate(reward)
        if r.type == "python":
            notes.append(f"reward '{r.label}' (python, {r.file}) is not shown: Python rewards are set in the YAML / "
                         "CLI, and a spec saved from this page leaves it out")
            continue
        lost = _lost(r)
        if lost:
            notes.append(f"reward '{r.label}': the table cannot show {', '.join(lost)}; set it in the YAML / CLI")
        rows.append([r.type, r.name or "", r.weight, r.column or "", _setting(r)])
    return rows, notes


def apply_trainer_sections(raw: dict[str, Any], table: Any) -> Optional[str]:
    """Keep the form's `grpo` / `kto` settings only when that trainer is chosen (other trainers' specs stay free of
    them), and give a grpo spec the table's rewards. Returns the table's problem (the rewards are then left out)."""
    trainer = (raw.get("training") or {}).get("trainer")
    for section in ("grpo", "kto"):
        if trainer != section:
            raw.pop(section, None)
    if trainer != "grpo":
        return None
    try:
        raw.setdefault("grpo", {})["rewards"] = rows_to_rewards(table)
    except RewardTableError as exc:
        return str(exc)
    return None
