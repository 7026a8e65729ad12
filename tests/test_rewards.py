"""GRPO's built-in rewards (trainer_backend/rewards.py) on real GSM8K-style text: each type's clear passes (1) and
clear failures (0), the partial scores in between, python reward files, and the TRL-style call."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pydantic
import pytest

from trainer_backend.rewards import (
    RewardError,
    RewardFunction,
    build_reward_functions,
    extract_answer,
    extract_number,
    load_python_reward,
    normalise_text,
    score,
)
from trainer_backend.spec_rl import RewardSpec

REPO = Path(__file__).resolve().parents[1]
GSM8K = [json.loads(line) for line in (REPO / "tests/data/qa/gsm8k_train.jsonl").read_text().splitlines()[:3]]
NATALIA = GSM8K[0]["answer"]  # "... 72 clips altogether in April and May.\n#### 72"
THINK = "<think>{}</think>\n<answer>{}</answer>"


def r(**kw: Any) -> RewardSpec:
    return RewardSpec(**kw)


# --------------------------------------------------------------------------- text helpers

def test_normalise_text() -> None:
    assert normalise_text("  The  Answer:\tParis!! ") == "answer paris"  # articles do not count (as in SQuAD)
    assert normalise_text("ＰＡＲＩＳ") == "paris"  # NFKC folds full-width letters
    assert normalise_text("Paris.", case_sensitive=True) == "Paris"


def test_extract_answer() -> None:
    text = "I think <answer>12</answer> no wait <answer> 14 </answer> so \\boxed{99}"
    assert extract_answer(text) == "14"  # the last tag wins over \boxed
    assert extract_answer("so it is \\boxed{\\frac{3}{4}}.") == "\\frac{3}{4}"  # nested braces
    assert extract_answer("\\boxed{5} then \\boxed{7") == "5"  # a cut-off box is skipped
    assert extract_answer("  just text  ") == "just text"
    assert extract_answer("no tags", "answer_tag") == ""
    assert extract_answer("no box", "boxed") == ""
    assert extract_answer("<answer>1</answer>", "full") == "<answer>1</answer>"
    assert extract_answer("step 1\nstep 2\nThe answer is 5\n\n", "last_line") == "The answer is 5"


@pytest.mark.parametrize("text, number", [
    (NATALIA, 72.0), ("#### 1,234", 1234.0), ("It costs $18.00.", 18.0), ("-3", -3.0), ("3.5 hours", 3.5),
    ("50% of them", 50.0), ("3/4", 0.75), ("\\boxed{\\frac{1}{2}} and 9 more", 0.5), ("100 - 50 - 30 - 15 = 5", 5.0),
    ("She owes -$20", -20.0), ("no number here", None), ("", None),
])
def test_extract_number(text: str, number: float | None) -> None:
    assert extract_number(text) == number


# --------------------------------------------------------------------------- exact_match

@pytest.mark.parametrize("answer, reference", [
    ("Paris", "paris"), ("  PARIS!  ", "Paris."), ("The Eiffel Tower", "Eiffel tower"), ("an apple", "apple"),
    ("ＰＡＲＩＳ", "Paris"), ("New\u00a0York", "new york"), ("72", "72"), ("72 clips", "72"), ("London", "Paris"),
    ("Paris is the capital", "Paris"), ("¿Qué?", "que"), ("Theory", "ory"), ("«Oui»", "oui"), ("3.5", "35"),
])
def test_evaluate_and_the_exact_match_reward_agree(answer: str, reference: str) -> None:
    """A completion the exact_match reward pays for is one Evaluate counts as exact, and the reverse."""
    from trainer_backend.evaluation import exact_match

    reward = score(r(type="exact_match", column="answer", extract="full"), answer, reference)
    assert reward == float(exact_match(answer, reference))

def test_exact_match() -> None:
    spec = r(type="exact_match", column="answer")
    assert score(spec, "paris", "Paris") == 1.0
    assert score(spec, "  PARIS!  ", "Paris.") == 1.0  # case, punctuation and whitespace do not count
    assert score(spec, "New   York", "new york") == 1.0
    assert score(spec, "London", "Paris") == 0.0
    assert score(spec, "Paris is the capital", "Paris") == 0.0  # exact, not contained
    assert score(spec, THINK.format("France's capital is London? No.", "Paris"), "Paris") == 1.0
    assert score(spec, "Lyon", ["Paris", "Lyon"]) == 1.0  # any of a list of answers
    assert score(spec, "Nice", ["Paris", "Lyon"]) == 0.0
    assert score(spec, "", None) == 0.0 and score(spec, "", "") == 0.0 and score(spec, "x", []) == 0.0
    cased = r(type="exact_match", column="answer", case_sensitive=True)
    assert score(cased, "paris", "Paris") == 0.0 and score(cased, "Paris!", "Paris") == 1.0


# --------------------------------------------------------------------------- numeric_match

def test_numeric_match_gsm8k() -> None:
    spec = r(type="numeric_match", column="answer")
    solved = "April: 48 clips. May: 48/2 = 24. Total 48 + 24 = 72, so the answer is \\boxed{72}."
    assert score(spec, solved, NATALIA) == 1.0
    assert score(spec, solved.replace("{72}", "{71}"), NATALIA) == 0.0
    assert score(spec, THINK.format("0.2 x 50 = 10", "$10"), GSM8K[1]["answer"]) == 1.0
    assert score(spec, "The total is 1,234 apples", 1234) == 1.0
    assert score(spec, "#### $18.00", 18) == 1.0
    assert score(spec, "It is 18", "18.00") == 1.0
    assert score(spec, "I cannot tell", NATALIA) == 0.0  # no number in the completion
    assert score(spec, "72", "none given") == 0.0  # no number in the reference
    assert score(spec, "72", None) == 0.0
    assert score(spec, "72", True) == 0.0  # a bool is not a number of the row
    assert score(spec, "5", ["4", 5]) == 1.0


def test_numeric_match_tolerance() -> None:
    assert score(r(type="numeric_match", column="a"), "3.333", 10 / 3) == 0.0
    loose = r(type="numeric_match", column="a", tolerance=0.01)
    assert score(loose, "3.333", 10 / 3) == 1.0 and score(loose, "3.35", 10 / 3) == 0.0


# --------------------------------------------------------------------------- regex

FORMAT = r"<think>.*?</think>\s*<answer>.*?</answer>"


def test_regex_format() -> None:
    spec = r(type="regex", pattern=FORMAT)
    assert score(spec, THINK.format("48/2 = 24\n48 + 24 = 72", "72")) == 1.0  # DOTALL: newlines inside
    assert score(spec, "  " + THINK.format("x", "72") + "\n") == 1.0  # surrounding whitespace ignored
    assert score(spec, "<think>48 + 24 = 72</think> 72") == 0.0  # missing the answer tag
    assert score(spec, "Sure! " + THINK.format("x", "72")) == 0.0  # full match: nothing before
    anywhere = r(type="regex", pattern=r"<answer>\d+</answer>", full_match=False)
    assert score(anywhere, "Sure! " + THINK.format("x", "72")) == 1.0
    assert score(anywhere, THINK.format("x", "seventy-two")) == 0.0


# --------------------------------------------------------------------------- json_valid

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


def test_json_valid() -> None:
    spec = r(type="json_valid")
    assert score(spec, '{"name": "Weng", "age": 12}') == 1.0
    assert score(spec, '```json\n{"name": "Weng"}\n```') == 1.0
    assert score(spec, '```\n[1, 2]\n```') == 1.0
    assert score(spec, '<answer>{"a": 1}</answer>') == 1.0
    assert score(spec, '{"name": "Weng",}') == 0.0
    assert score(spec, "Here you go: {\"a\": 1}") == 0.0
    assert score(spec, "") == 0.0


def test_json_valid_schema() -> None:
    spec = r(type="json_valid", json_schema=SCHEMA)
    assert score(spec, '{"name": "Weng", "age": 12}') == 1.0
    assert score(spec, '{"name": "Weng", "age": "twelve"}') == 0.0
    assert score(spec, '{"name": "Weng"}') == 0.0
    text_schema = r(type="json_valid", json_schema=json.dumps(SCHEMA))  # typed into a text box
    assert text_schema.json_schema == SCHEMA and score(text_schema, '```json\n{"name": "B", "age": 1}\n```') == 1.0


# --------------------------------------------------------------------------- length

def test_length() -> None:
    words = r(type="length", min_length=10, max_length=20)
    assert score(words, " ".join(["clip"] * 15)) == 1.0
    assert score(words, " ".join(["clip"] * 5)) == 0.5
    assert score(words, " ".join(["clip"] * 25)) == 0.75
    assert score(words, " ".join(["clip"] * 40)) == 0.0 and score(words, " ".join(["clip"] * 400)) == 0.0
    assert score(words, "") == 0.0
    assert score(r(type="length", max_length=5, unit="chars"), "abcde") == 1.0
    assert score(r(type="length", max_length=5, unit="chars"), "abcdefg") == pytest.approx(0.6)
    assert score(r(type="length", min_length=3), " ".join(["w"] * 1000)) == 1.0  # no upper bound
    tokens = r(type="length", max_length=4, unit="tokens")
    assert score(tokens, "one two", completion_tokens=8) == 0.0
    assert score(tokens, "one two") == 1.0  # no token count: words stand in


# --------------------------------------------------------------------------- contains

def test_contains() -> None:
    spec = r(type="contains", all_of=["April", "May", "clips", "June"])
    assert score(spec, NATALIA) == 0.75
    assert score(spec, "April, May, clips and JUNE.") == 1.0
    assert score(spec, "nothing relevant") == 0.0
    banned = r(type="contains", all_of=["72"], none_of=["I'm sorry"])
    assert score(banned, "The answer is 72") == 1.0
    assert score(banned, "im sorry, it is 72") == 0.0  # normalised: case and punctuation do not hide it
    assert score(r(type="contains", none_of=["sorry"]), "fine") == 1.0  # nothing to find: only bans count
    cased = r(type="contains", all_of=["May"], case_sensitive=True)
    assert score(cased, "in May") == 1.0 and score(cased, "it may be") == 0.0


def test_contains_column_words() -> None:
    spec = r(type="contains", column="keywords", all_of=["clips"])
    assert score(spec, NATALIA, "April, May") == 1.0
    assert score(spec, NATALIA, ["April", "September"]) == pytest.approx(2 / 3)
    assert score(spec, "no", "") == 0.0


# --------------------------------------------------------------------------- python rewards

REWARD_PY = """
def helper(x):
    return x

def reward(prompts, completions, completion_ids=None, answer=None, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]

def too_few(prompts, completions, **kwargs):
    return [1.0]

def words(prompts, completions, **kwargs):
    return ["good"] * len(completions)

def maybe(prompts, completions, **kwargs):
    return [None] * len(completions)

NOT_A_FUNCTION = 3
"""


@pytest.fixture
def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_reward.py"
    path.write_text(REWARD_PY)
    return path


def refs(*rows: dict[str, Any]) -> list[str]:
    return [json.dumps(row) for row in rows]


def test_python_reward(reward_file: Path) -> None:
    fn = RewardFunction(r(type="python", file=str(reward_file), name="mine"))
    out = fn(prompts=["q1", "q2"], completions=["it is 72", "it is 5"], references=refs({"answer": "72"},
                                                                                            {"answer": "6"}))
    assert out == [1.0, 0.0] and fn.__name__ == "mine"
    maybe = RewardFunction(r(type="python", file=str(reward_file), function="maybe"))
    assert maybe(["q"], ["c"]) == [None]  # None: this reward does not apply (TRL ignores it)
    assert pickle.loads(pickle.dumps(fn))(["q"], ["72"], references=refs({"answer": "72"})) == [1.0]


def test_python_reward_errors(reward_file: Path, tmp_path: Path) -> None:
    with pytest.raises(RewardError, match=r"defines no function 'rewrad'; it defines: helper, maybe, reward, "):
        load_python_reward(str(reward_file), "rewrad")
    with pytest.raises(RewardError, match="does not exist"):
        load_python_reward(str(tmp_path / "missing.py"), "reward")
    (tmp_path / "r.txt").write_text("def reward(**kw): return []")
    with pytest.raises(RewardError, match="not a .py file"):
        load_python_reward(str(tmp_path / "r.txt"), "reward")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(RewardError, match="failed to import: ModuleNotFoundError: No module named"):
        load_python_reward(str(tmp_path / "broken.py"), "reward")
    with pytest.raises(RewardError, match="'NOT_A_FUNCTION' is a int, not a function"):
        load_python_reward(str(reward_file), "NOT_A_FUNCTION")
    few = RewardFunction(r(type="python", file=str(reward_file), function="too_few"))
    with pytest.raises(RewardError, match=r"my_reward.py:too_few\) returned 1 scores for 2 completions"):
        few(["a", "b"], ["c", "d"])
    bad = RewardFunction(r(type="python", file=str(reward_file), function="words"))
    with pytest.raises(RewardError, match="must return numbers or None; it returned 'good'"):
        bad(["a"], ["c"])


def test_python_reward_files_do_not_collide(tmp_path: Path) -> None:
    for sub, value in (("a", 0.25), ("b", 0.5)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "reward.py").write_text(f"def reward(completions, **kw):\n    return [{value}] * "
                                                  "len(completions)\n")
    fa, fb = (load_python_reward(str(tmp_path / sub / "reward.py"), "reward") for sub in ("a", "b"))
    assert fa(completions=["x"]) == [0.25] and fb(completions=["x"]) == [0.5]


# --------------------------------------------------------------------------- TRL-style calls

def test_reward_functions_trl_call() -> None:
    specs = [r(type="numeric_match", column="answer", name="correct"),
             r(type="regex", pattern=FORMAT, weight=0.5),
             r(type="length", max_length=2, unit="tokens")]
    correct, fmt, length = build_reward_functions(specs)
    assert [f.__name__ for f in (correct, fmt, length)] == ["correct", "regex", "length"]
    assert correct.name == "correct" and correct.spec is specs[0]
    completions = [THINK.format("48 + 24", "72"), "The answer is 71"]
    rows = refs({"question": GSM8K[0]["question"], "answer": NATALIA}, {"answer": NATALIA})
    assert correct(prompts=["q", "q"], completions=completions, completion_ids=[[1], [2]], references=rows,
                   trainer_state=None, log_metric=print) == [1.0, 0.0]
    assert fmt(prompts=["q", "q"], completions=completions) == [1.0, 0.0]
    assert length(["q", "q"], completions, completion_ids=[[1, 2], [1, 2, 3, 4, 5, 6]]) == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "\\boxed{72}"}], [{"role": "assistant", "content": "no idea"}]]
    assert correct(["q", "q"], chat, references=rows) == [1.0, 0.0]


def test_reward_function_missing_column() -> None:
    fn = RewardFunction(r(type="exact_match", column="answer"))
    with pytest.raises(RewardError, match="reads column 'answer', which the row lacks \\(it has: label\\)"):
        fn(["q"], ["x"], references=refs({"label": "x"}))
    with pytest.raises(RewardError, match="no `references`"):
        fn(["q"], ["x"])


# --------------------------------------------------------------------------- spec validation

def test_spec_errors() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"pattern '<answer>\(.\*' does not compile"):
        r(type="regex", pattern="<answer>(.*")
    with pytest.raises(pydantic.ValidationError, match="json_schema is not a valid JSON Schema: 'strng' is not valid"):
        r(type="json_valid", json_schema={"type": "strng"})
    with pytest.raises(pydantic.ValidationError, match="json_schema is not valid JSON"):
        r(type="json_valid", json_schema="{type: object")
    with pytest.raises(pydantic.ValidationError, match=r"\(numeric_match\) needs `column`"):
        r(type="numeric_match")
    with pytest.raises(pydantic.ValidationError, match=r"min_length \(9\) > max_length \(3\)"):
        r(type="length", min_length=9, max_length=3)


# --------------------------------------------------------------------------- tool_call

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather forecast for a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}}}
PARIS_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOL_ROW = {"calls": [PARIS_CALL], "tools": [WEATHER_TOOL]}
HERMES_CALL = '<tool_call>\n{{"name": "get_weather", "arguments": {}}}\n</tool_call>'


def test_tool_call_reward() -> None:
    spec = r(type="tool_call")
    assert spec.column is None and spec.label == "tool_call"
    assert score(spec, HERMES_CALL.format('{"city": "Paris"}'), TOOL_ROW) == 1.0
    assert score(spec, HERMES_CALL.format('{"city": "Lyon"}'), TOOL_ROW) == pytest.approx(0.7)
    assert score(spec, HERMES_CALL.format('{"city": "Paris", "unit": "k"}'), TOOL_ROW) == pytest.approx(0.5)
    assert score(spec, "It is sunny in Paris.", TOOL_ROW) == 0.0
    assert score(spec, "Hello!", {"calls": [], "tools": [WEATHER_TOOL]}) == 1.0  # nothing to call: do not call
    assert score(spec, HERMES_CALL.format("{}"), json.dumps(TOOL_ROW)) == pytest.approx(0.5)  # JSON text; no city
    with pytest.raises(RewardError, match=r"needs the row's tool calls, and this row has none"):
        score(spec, HERMES_CALL.format("{}"), None)


def test_tool_call_reward_trl_call() -> None:
    fn = RewardFunction(r(type="tool_call", name="calls"))
    rows = refs({"prompt": "Weather in Paris?", "tool_reference": TOOL_ROW},
                {"tool_reference": {"calls": [], "tools": [WEATHER_TOOL]}})
    completions = [HERMES_CALL.format('{"city": "Paris"}'), "Hi! What can I do for you?"]
    assert fn(prompts=["q", "q"], completions=completions, completion_ids=[[1], [2]], references=rows,
              trainer_state=None) == [1.0, 1.0]
    chat = [[{"role": "assistant", "content": HERMES_CALL.format('{"city": "Rome"}')}],
            [{"role": "assistant", "content": [{"type": "text", "text": HERMES_CALL.format('{"city": "Paris"}')}]}]]
    assert fn(["q", "q"], chat, references=rows) == [pytest.approx(0.7), 0.0]  # the second should not call
    assert pickle.loads(pickle.dumps(fn))(["q"], completions[:1], references=rows[:1]) == [1.0]


def test_tool_call_reward_without_tool_data() -> None:
    fn = RewardFunction(r(type="tool_call"))
    with pytest.raises(RewardError, match=r"'tool_call' \(tool_call\) scores tool calls, but the data has no tool "
                                          r"calls"):
        fn(["q"], ["x"], references=refs({"answer": "72"}))
    with pytest.raises(RewardError, match="no `references`"):
        fn(["q"], ["x"])
    with pytest.raises(pydantic.ValidationError, match=r"\(tool_call\) reads no column"):
        r(type="tool_call", column="answer")


def test_tool_call_in_the_rewards_table() -> None:
    from trainer_backend.ui.reward_table import RewardTableError, rewards_to_rows, rows_to_rewards

    assert rows_to_rewards([["tool_call", "calls", 1, "", ""]]) == [{"type": "tool_call", "name": "calls",
                                                                     "weight": 1.0}]
    assert rewards_to_rows([{"type": "tool_call", "weight": 0.5}]) == ([["tool_call", "", 0.5, "", ""]], [])
    with pytest.raises(RewardTableError, match="a tool_call reward has no setting"):
        rows_to_rewards([["tool_call", "", 1, "", "strict"]])
    with pytest.raises(RewardTableError, match=r"\(tool_call\) reads no column"):
        rows_to_rewards([["tool_call", "", 1, "answer", ""]])
