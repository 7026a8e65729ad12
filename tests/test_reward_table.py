"""The Train tab's rewards table <-> grpo.rewards: every row a person can type becomes the reward it reads as, a
loaded spec comes back as the same rows, and a row that is not a reward is refused with its row number."""
from __future__ import annotations

import pytest

from trainer_backend.spec import parse_spec
from trainer_backend.spec_rl import RewardSpec
from trainer_backend.ui.reward_table import (DEFAULT_ROWS, TABLE_KINDS, RewardTableError, rewards_to_rows,
                                             rows_to_rewards, table_problem)

ROWS = [
    ["numeric_match", "correct", 1, "answer", "0.01; extract: boxed"],
    ["regex", "format", 0.5, "", "<think>.*?</think>\\s*<answer>.*?</answer>"],
    ["regex", "tag", 0.25, "", "search: <answer>"],
    ["length", "", None, "", "20-200 words"],
    ["contains", "keywords", "2", "", "all: paris, france; none: london; case-sensitive"],
    ["json_valid", "json", 1.0, "", '{"type": "object", "required": ["name"]}'],
    ["exact_match", "exact", 1, "answer", ""],
    [None, "", float("nan"), "", ""],  # a blank row (gr.Dataframe's empty cells): skipped
]


def test_rows_become_the_rewards_they_read_as() -> None:
    rewards = rows_to_rewards(ROWS)
    assert rewards[0] == {"type": "numeric_match", "name": "correct", "weight": 1.0, "column": "answer",
                          "tolerance": 0.01, "extract": "boxed"}
    assert rewards[1] == {"type": "regex", "name": "format", "weight": 0.5,
                          "pattern": "<think>.*?</think>\\s*<answer>.*?</answer>"}
    assert rewards[2]["full_match"] is False and rewards[2]["pattern"] == "<answer>"
    assert rewards[3] == {"type": "length", "weight": 1.0, "min_length": 20, "max_length": 200, "unit": "words"}
    assert rewards[4] == {"type": "contains", "name": "keywords", "weight": 2.0, "all_of": ["paris", "france"],
                          "none_of": ["london"], "case_sensitive": True}
    assert rewards[5]["json_schema"] == {"type": "object", "required": ["name"]}
    assert len(rewards) == 7 and all(RewardSpec.model_validate(r) for r in rewards)
    assert rows_to_rewards([["length", "short", 1, "", "-300 chars"]])[0] == {
        "type": "length", "name": "short", "weight": 1.0, "max_length": 300, "unit": "chars"}


def test_a_loaded_specs_rewards_come_back_as_the_same_rows() -> None:
    rewards = rows_to_rewards(ROWS)
    rows, notes = rewards_to_rows([RewardSpec.model_validate(r) for r in rewards])
    assert not notes and rows_to_rewards(rows) == rewards
    assert rows[0] == ["numeric_match", "correct", 1.0, "answer", "0.01; extract: boxed"]
    assert rows[2][4] == "search: <answer>" and rows[3][4] == "20-200 words"
    assert rewards_to_rows([]) == (DEFAULT_ROWS, [])  # a spec without rewards starts from the default row
    assert rows_to_rewards(DEFAULT_ROWS) == [{"type": "numeric_match", "name": "correct", "weight": 1.0,
                                              "column": "answer"}]


def test_python_rewards_and_what_the_table_cannot_show_are_noted() -> None:
    rows, notes = rewards_to_rows([{"type": "python", "name": "mine", "file": "r.py"},
                                   {"type": "json_valid", "extract": "answer_tag"}])
    assert rows == [["json_valid", "", 1.0, "", ""]]
    assert "'mine' (python, r.py) is not shown" in notes[0] and "extract: answer_tag" in notes[1]
    assert "python" not in TABLE_KINDS


@pytest.mark.parametrize("row, message", [
    (["regx", "a", 1, "", "x"], "rewards row 2 (regx 'a'): type 'regx' is not one of exact_match"),
    (["", "a", 1, "", "x"], "rewards row 2 (a): `type` is empty"),
    (["python", "a", 1, "", ""], "a Python reward file is set in the YAML / CLI"),
    (["regex", "a", 1, "", ""], "rewards row 2 (regex 'a'): a regex reward needs its pattern"),
    (["regex", "a", 1, "", "("], "pattern '(' does not compile"),
    (["numeric_match", "a", 1, "", ""], "needs `column`"),
    (["numeric_match", "a", "heavy", "answer", ""], "weight 'heavy' is not a number"),
    (["numeric_match", "a", 1, "answer", "close"], "tolerance 'close' is not a number"),
    (["exact_match", "a", 1, "answer", "extract: middle"], "extract 'middle' is not one of auto, full"),
    (["length", "a", 1, "", "short"], "length setting 'short' is not 'min-max'"),
    (["length", "a", 1, "", "300-20"], "min_length (300) > max_length (20)"),
    (["contains", "a", 1, "", "some words"], "'some words' is not a contains setting"),
    (["contains", "a", 1, "", ""], "needs all_of, none_of or a column"),
    (["json_valid", "a", 1, "", "{type: object}"], "is not valid JSON"),
    (["json_valid", "a", 1, "", "[1]"], "must be an object"),
    (["json_valid", "a", 1, "", '{"type": "objekt"}'], "not a valid JSON Schema"),
    (["regex", "a", 500, "", "x"], "rewards row 2 (regex 'a'): weight: Input should be less than or equal to 100"),
    (["regex", "a", 1, "", "x", "extra"], "only the columns type, name, weight, column, setting are read"),
])
def test_a_bad_row_is_refused_naming_the_row(row: list, message: str) -> None:
    table = [DEFAULT_ROWS[0], row]
    with pytest.raises(RewardTableError) as exc:
        rows_to_rewards(table)
    assert message in str(exc.value) and str(exc.value).startswith("rewards row")
    assert table_problem(table) == str(exc.value) and table_problem(DEFAULT_ROWS) is None


def test_two_rewards_with_one_name_are_refused_with_both_rows() -> None:
    problem = table_problem([["regex", "", 1, "", "a"], ["exact_match", "x", 1, "y", ""], ["regex", "", 1, "", "b"]])
    assert problem and problem.startswith("rewards rows 1 and 3 are both named 'regex'")


def test_the_table_feeds_a_valid_grpo_spec() -> None:
    raw = {"model": {"base_model": "tiny-demo"}, "data": {"path": "x.jsonl"},
           "training": {"trainer": "grpo", "batch_size": 4, "gradient_accumulation": 1},
           "grpo": {"num_generations": 4, "max_completion_length": 64, "rewards": rows_to_rewards(ROWS)}}
    spec, _ = parse_spec(raw, "ui")
    assert [r.label for r in spec.grpo.rewards][:3] == ["correct", "format", "tag"]
    assert rewards_to_rows(spec.grpo.rewards)[0][0] == ROWS[0][:4] + ["0.01; extract: boxed"]


def test_the_form_keeps_grpo_and_kto_settings_only_for_their_trainer() -> None:
    from trainer_backend.ui.reward_table import apply_trainer_sections

    form = {"training": {"trainer": "sft"}, "grpo": {"num_generations": 4}, "kto": {"desirable_weight": 1.0}}
    assert apply_trainer_sections(form, DEFAULT_ROWS) is None and set(form) == {"training"}
    grpo = {"training": {"trainer": "grpo"}, "grpo": {"num_generations": 4}, "kto": {"desirable_weight": 1.0}}
    assert apply_trainer_sections(grpo, DEFAULT_ROWS) is None and "kto" not in grpo
    assert grpo["grpo"] == {"num_generations": 4, "rewards": rows_to_rewards(DEFAULT_ROWS)}
    bad = {"training": {"trainer": "grpo"}}
    assert apply_trainer_sections(bad, [["regex", "", 1, "", ""]]).startswith("rewards row 1 (regex)")
    assert bad == {"training": {"trainer": "grpo"}}  # no half-read rewards in the spec


def test_grpo_and_kto_settings_have_their_own_form_groups() -> None:
    """Every simple grpo.* / kto.* field gets a widget in its trainer's group, none in the general settings."""
    from trainer_backend.spec_rl import GRPOSpec, KTOSpec
    from trainer_backend.ui.form_fields import spec_fields

    groups = {key: meta["group"] for key, _, meta in spec_fields()}
    grpo = {k for k, g in groups.items() if g == "grpo"}
    kto = {k for k, g in groups.items() if g == "kto"}
    assert all(g in ("grpo", "kto") for k, g in groups.items() if k.startswith(("grpo.", "kto.")))
    assert groups["training.trainer"] == "method"
    assert grpo == {f"grpo.{name}" for name in GRPOSpec.model_fields if name != "rewards"}  # rewards: the table
    assert kto == {f"kto.{name}" for name in KTOSpec.model_fields}