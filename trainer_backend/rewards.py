"""The reward functions of a GRPO run: what each `RewardSpec.type` (spec_rl.py) computes for one completion.

Every built-in reward scores in [0, 1], so weights alone set how much each one counts. `RewardFunction` is the
callable TRL's GRPOTrainer gets: it reads each completion's reference values from the `references` column (one
JSON object per row, written by the data layer) and hands python rewards the columns as keyword lists.
Light on purpose: no torch or transformers here, so the UI and the data check can import it.
"""
from __future__ import annotations

import importlib.util
import json
import math
import numbers
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from .spec_rl import RewardSpec
from .tool_calls import TOOL_REFERENCE
from .tool_output import tool_call_score


class RewardError(ValueError):
    """A reward that cannot be built or that returned something unusable (shown to the user as is)."""


# ---------------------------------------------------------------------------------------------------------------
# Text helpers


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)


def normalise_text(text: str, case_sensitive: bool = False) -> str:
    """The comparable form of an answer, for the exact_match reward and Evaluate's exact match alike (so a
    completion the reward pays for is one Evaluate counts): NFKC, casefolded, punctuation dropped, the English
    articles dropped (as SQuAD's exact match does), whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)  # full-width digits, ligatures, non-breaking spaces
    if not case_sensitive:
        text = text.casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{")


def _last_answer_tag(text: str) -> Optional[str]:
    found = _ANSWER_TAG.findall(text)
    return found[-1] if found else None


def _last_boxed(text: str) -> Optional[str]:
    """Content of the last balanced \\boxed{...}; braces nest ({\\frac{3}{4}}), so a regex alone cannot."""
    for start in reversed([m.end() for m in _BOXED.finditer(text)]):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
        # unbalanced (a completion cut at max_completion_length): try an earlier one
    return None


def extract_answer(text: str, how: str = "auto") -> str:
    """The part of a completion that is its answer (see RewardSpec.extract)."""
    if how == "full":
        return text.strip()
    if how == "answer_tag":
        return (_last_answer_tag(text) or "").strip()
    if how == "boxed":
        return (_last_boxed(text) or "").strip()
    if how == "last_line":
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""
    if how != "auto":
        raise RewardError(f"unknown extract {how!r}: use auto, full, answer_tag, boxed or last_line")
    for found in (_last_answer_tag(text), _last_boxed(text)):
        if found is not None:
            return found.strip()
    return text.strip()


# A number as models and datasets write it: -3, 1,234, $18.00, 3.5, .5, 50%, 3/4, 1e-3. The lookbehind keeps a
# minus that is really a subtraction (48-24) or a number glued to a word (x2) out of the match.
_NUMBER = re.compile(
    r"(?<![\w.])\$?(?P<sign>[-\u2212])?(?:\$\s?)?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<exp>[eE][-+]?\d+)?"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?))?"
)
_GSM8K_FINAL = re.compile(r"####\s*(.*)")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def _numbers(text: str) -> list[float]:
    text = _LATEX_FRAC.sub(r"\1/\2", unicodedata.normalize("NFKC", text))
    out = []
    for m in _NUMBER.finditer(text):
        value = float(m["num"].replace(",", "") + (m["exp"] or ""))
        if m["den"] and float(m["den"]) != 0:  # a fraction; x/0 keeps its numerator rather than failing
            value /= float(m["den"])
        out.append(-value if m["sign"] else value)
    return [v for v in out if math.isfinite(v)]


def extract_number(text: str) -> Optional[float]:
    """The final number of a text: GSM8K's '#### 42', else the last \\boxed{} number, else the last number."""
    finals = _GSM8K_FINAL.findall(text)
    # the first number after the last '####', the last one in the last box, the last one anywhere
    for found in (_numbers(finals[-1])[:1] if finals else [], _numbers(_last_boxed(text) or "")[-1:],
                  _numbers(text)[-1:]):
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Scoring one completion


def _references(reference: Any) -> list[Any]:
    """A row's reference as a list of acceptable answers (None or empty: none)."""
    items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    return [r for r in items if r is not None and str(r).strip() != ""]


def _as_number(value: Any) -> Optional[float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return extract_number(str(value))


def _words(reference: Any) -> list[str]:
    """A contains reward's words from a column: a list, or one string of comma-separated words."""
    if reference is None:
        return []
    items = reference if isinstance(reference, (list, tuple)) else str(reference).split(",")
    return [str(w).strip() for w in items if str(w).strip()]


def _length_score(n: int, low: Optional[int], high: Optional[int]) -> float:
    if low is not None and n < low:
        return n / low  # low > n >= 0, so no division by zero
    if high is not None and n > high:
        return max(0.0, 1.0 - (n - high) / high)  # 0 at twice the limit
    return 1.0


_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class _Scorer:
    """One built-in reward, with its regex and JSON Schema validator built once."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self.pattern = re.compile(spec.pattern, re.DOTALL) if spec.type == "regex" and spec.pattern else None
        self.validator: Any = None
        if spec.type == "json_valid" and spec.json_schema is not None:
            from jsonschema import validators  # only json_valid rewards need it

            self.validator = validators.validator_for(spec.json_schema)(spec.json_schema)

    def score(self, completion: str, reference: Any = None, completion_tokens: Optional[int] = None) -> float:
        s, t = self.spec, self.spec.type
        if t == "exact_match":
            got = normalise_text(extract_answer(completion, s.extract), s.case_sensitive)
            return float(any(got == normalise_text(str(r), s.case_sensitive) for r in _references(reference)))
        if t == "numeric_match":
            a = extract_number(extract_answer(completion, s.extract))
            if a is None:
                return 0.0
            wanted = [b for b in map(_as_number, _references(reference)) if b is not None]
            return float(any(abs(a - b) <= s.tolerance for b in wanted))
        if t == "regex":
            assert self.pattern is not None  # RewardSpec's validation requires a compiling pattern
            hit = self.pattern.fullmatch(completion.strip()) if s.full_match else self.pattern.search(completion)
            return float(hit is not None)
        if t == "json_valid":
            text = extract_answer(completion, s.extract)
            fenced = _FENCE.fullmatch(text)
            try:
                value = json.loads(fenced.group(1) if fenced else text)
            except ValueError:  # JSONDecodeError, and numbers too long to convert
                return 0.0
            return float(self.validator is None or self.validator.is_valid(value))
        if t == "length":
            n = {"words": len(completion.split()), "chars": len(completion)}.get(s.unit)
            if n is None:  # tokens; without completion_ids words are the nearest measure
                n = completion_tokens if completion_tokens is not None else len(completion.split())
            return _length_score(n, s.min_length, s.max_length)
        if t == "tool_call":
            if isinstance(reference, str) and reference.strip().startswith("{"):
                reference = json.loads(reference)  # the row's {"calls", "tools"} kept as JSON text
            if not isinstance(reference, dict) or "calls" not in reference:
                raise RewardError(f"reward '{s.label}' (tool_call) needs the row's tool calls, and this row has none: "
                                  "the data has no tool calls (give it rows with tools and an assistant tool call)")
            return tool_call_score(completion, reference.get("calls") or [], reference.get("tools") or [])
        if t == "contains":
            def norm(x: str) -> str:
                return x if s.case_sensitive else normalise_text(x)

            text = norm(completion)
            if any(w and w in text for w in map(norm, s.none_of)):
                return 0.0
            words = [w for w in map(norm, list(s.all_of) + (_words(reference) if s.column else [])) if w]
            return sum(w in text for w in words) / len(words) if words else 1.0
        raise RewardError(f"reward '{s.label}': type {t!r} is not scored by score() (python rewards run as a "
                          "RewardFunction)")


def score(reward: RewardSpec, completion: str, reference: Any = None,
          completion_tokens: Optional[int] = None) -> float:
    """One completion's score in [0, 1]; `reference` is the row's value of reward.column (None without one), for
    tool_call the row's {"calls": [...], "tools": [...]} (references[TOOL_REFERENCE])."""
    return _Scorer(reward).score(completion, reference, completion_tokens)


# ---------------------------------------------------------------------------------------------------------------
# Python rewards and the callables TRL gets


def load_python_reward(path: str, function: str) -> Callable[..., list]:
    """The function `function` of the .py file `path`, imported under a module name of its own."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise RewardError(f"reward file {path} does not exist")
    if file.suffix != ".py":
        raise RewardError(f"reward file {path} is not a .py file")
    # A unique name: two reward files both called reward.py must not replace each other in sys.modules.
    module_spec = importlib.util.spec_from_file_location(f"lora_studio_reward_{uuid.uuid4().hex}", file)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"reward file {path} cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error is theirs to read
        raise RewardError(f"reward file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, function):
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and getattr(v, "__module__", None) == module.__name__)
        raise RewardError(f"reward file {path} defines no function {function!r}; it defines: "
                          f"{', '.join(defined) or 'no functions'}")
    fn = getattr(module, function)
    if not callable(fn):
        raise RewardError(f"{path}: {function!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _completion_text(completion: Any) -> str:
    """A completion's text: a string, or (conversational) a list of messages ending with the assistant's."""
    if isinstance(completion, list):
        content = completion[-1].get("content", "") if completion else ""
        if isinstance(content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    return str(completion)


def _parse_references(references: Optional[list[Any]], n: int, label: str) -> list[dict[str, Any]]:
    if references is None:
        raise RewardError(f"reward '{label}' reads a dataset column but the batch has no `references`")
    if len(references) != n:
        raise RewardError(f"reward '{label}': {len(references)} references for {n} completions")
    return [json.loads(r) if isinstance(r, str) else dict(r) for r in references]


class RewardFunction:
    """One reward as TRL's GRPOTrainer calls it: f(prompts, completions, completion_ids, **columns) -> scores."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self.name = spec.label
        self.__name__ = self.name  # TRL names the logged metric rewards/<__name__>
        self._scorer = _Scorer(spec) if spec.type != "python" else None
        self._python = load_python_reward(spec.file or "", spec.function) if spec.type == "python" else None

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the spec when pickled (e.g. to a worker process): a function loaded from a file under a
        # generated module name cannot be pickled by reference.
        return (RewardFunction, (self.spec,))

    def __repr__(self) -> str:
        return f"RewardFunction({self.name!r}, type={self.spec.type!r})"

    def __call__(self, prompts: list, completions: list, completion_ids: Optional[list] = None,
                 references: Optional[list[str]] = None, **kwargs: Any) -> list[Optional[float]]:
        if self._python is not None:
            return self._call_python(prompts, completions, completion_ids, references)
        assert self._scorer is not None
        column, refs = self.spec.column, [None] * len(completions)
        if column:
            rows = _parse_references(references, len(completions), self.name)
            for row in rows:
                if column not in row:  # the data check refuses such rows; this names the column if one slips by
                    raise RewardError(f"reward '{self.name}' reads column '{column}', which the row lacks (it "
                                      f"has: {', '.join(row) or 'no columns'})")
            refs = [row[column] for row in rows]
        elif self.spec.type == "tool_call":
            rows = _parse_references(references, len(completions), self.name)
            if any(TOOL_REFERENCE not in row for row in rows):  # the data check refuses such rows first
                raise RewardError(f"reward '{self.name}' (tool_call) scores tool calls, but the data has no tool "
                                  "calls: a row lacks its reference call; use a dataset with tools and assistant "
                                  "tool calls, or remove this reward")
            refs = [row[TOOL_REFERENCE] for row in rows]
        out: list[Optional[float]] = []
        for i, completion in enumerate(completions):
            tokens = len(completion_ids[i]) if completion_ids is not None else None
            out.append(self._scorer.score(_completion_text(completion), refs[i], tokens))
        return out

    def _call_python(self, prompts: list, completions: list, completion_ids: Optional[list],
                     references: Optional[list[str]]) -> list[Optional[float]]:
        assert self._python is not None
        where = f"{self.spec.file}:{self.spec.function}"
        columns: dict[str, list[Any]] = {}
        if references is not None:
            rows = _parse_references(references, len(completions), self.name)
            names = list(dict.fromkeys(k for row in rows for k in row))  # every column, in first-seen order
            # a column named like one of TRL's arguments would clash with it; the argument wins
            columns = {c: [row.get(c) for row in rows] for c in names
                       if c not in ("prompts", "completions", "completion_ids")}
        try:
            result = self._python(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        except Exception as exc:
            raise RewardError(f"reward '{self.name}' ({where}) raised {type(exc).__name__}: {exc}") from exc
        if hasattr(result, "tolist"):  # a numpy array or tensor of scores
            result = result.tolist()
        if not isinstance(result, (list, tuple)):
            raise RewardError(f"reward '{self.name}' ({where}) must return a list with one number (or None) per "
                              f"completion; it returned a {type(result).__name__}")
        if len(result) != len(completions):
            raise RewardError(f"reward '{self.name}' ({where}) returned {len(result)} scores for "
                              f"{len(completions)} completions; it must return one per completion")
        bad = [r for r in result if r is not None and not isinstance(r, numbers.Real)]
        if bad:
            raise RewardError(f"reward '{self.name}' ({where}) must return numbers or None; it returned "
                              f"{bad[0]!r} ({type(bad[0]).__name__})")
        return [None if r is None else float(r) for r in result]


def build_reward_functions(rewards: list[RewardSpec]) -> list[RewardFunction]:
    """One RewardFunction per spec, in order (TRL pairs them with reward_weights by position)."""
    return [RewardFunction(spec) for spec in rewards]
