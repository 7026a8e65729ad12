"""Evaluate on a tool-calling job: function-call accuracy of base vs fine-tuned on held-out rows, each metric over
the rows it applies to (its n kept per side), in the report, the metrics table, the CLI printout and the model card.
The unit tests fake the chat model with canned answers; the last test trains a tiny model end to end."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from trainer_backend.evaluation import heldout as evaluation
from trainer_backend.evaluation import EvalReport, metrics_table
from trainer_backend.job_files import EVAL_FILE, SPEC_FILE

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "description": "Time in a time zone",
                                           "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                                                          "required": ["tz"]}}}]


def call(name: str, **arguments: Any) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def hermes(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def calls(*made: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": list(made)}


# Four held-out rows: (example, base answer, fine-tuned answer)
ROWS = [
    ({"messages": [user("Weather in Paris?"), calls(call("get_weather", city="Paris"))], "tools": TOOLS},
     "It is sunny, I think.", hermes("get_weather", city="Paris")),                 # base missed the call
    ({"messages": [user("London: weather, then time"), calls(call("get_weather", city="London")),
                   {"role": "tool", "name": "get_weather", "content": "rainy"},
                   calls(call("get_time", tz="UTC"))], "tools": TOOLS},
     hermes("get_weather", city="UTC"), hermes("get_time", tz="CET")),              # wrong tool / wrong arguments
    ({"messages": [user("Say hello"), {"role": "assistant", "content": "Hello!"}], "tools": TOOLS},
     hermes("get_time", tz="UTC"), "Hi there!"),                                    # unwanted call / right not to
    ({"messages": [user("Weather in Rome?"), calls(call("get_weather", city="Rome"))], "tools": TOOLS},
     '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',         # malformed
     hermes("get_weather", city=3)),                                                # arguments off the schema
]


class FakeModel:
    def __init__(self) -> None:
        self.off = False

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        self.off = True
        yield
        self.off = False


class FakeChat:
    """What evaluate() uses of inference.ChatModel: canned answers per (prompt, side), asks recorded."""

    def __init__(self, answers: dict[tuple[str, bool], str]) -> None:
        self.lock, self.model, self.answers, self.asks = threading.Lock(), FakeModel(), answers, []

    def activate(self, adapter: Any) -> None:
        pass

    def can_mix(self, adapter: Any) -> bool:
        return True

    def generate_many(self, adapter: Any, asks: list, settings: Any, system: Any = None) -> list[str]:
        self.asks.extend(asks)
        return [self.answers[(json.dumps(a.messages), a.use_adapter)] for a in asks]


class FakeSplit:
    columns = ["input_ids", "labels"]

    def __init__(self, examples: list[dict]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, k: int) -> dict:
        return self.examples[k]

    def row(self, k: int) -> dict:
        return {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}


@pytest.fixture
def fake_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    job = tmp_path / "job"
    (job / "adapter").mkdir(parents=True)
    (job / SPEC_FILE).write_text("project_name: tools\n")
    answers = {}
    for example, base, tuned in ROWS:
        prompt = json.dumps(example["messages"][:-1])
        answers[(prompt, False)], answers[(prompt, True)] = base, tuned
    chat = FakeChat(answers)
    adapter = SimpleNamespace(path=job / "adapter", meta=SimpleNamespace(prompt_template=None))
    monkeypatch.setattr(evaluation, "load_chat", lambda ref, token=None: (chat, adapter))
    monkeypatch.setattr(evaluation, "_load_eval_split",
                        lambda path, data: (FakeSplit([r[0] for r in ROWS]), None))
    monkeypatch.setattr(evaluation, "_mean_loss", lambda model, ids, labels: (2.0 if model.off else 1.0, 1))
    return {"job": job, "chat": chat}


def test_tool_metrics_are_averaged_over_the_rows_each_applies_to(fake_job: dict) -> None:
    report = evaluation.evaluate(str(fake_job["job"]))
    base, tuned = report.base, report.fine_tuned
    # reference calls in rows 1, 2, 4: valid call, right tool, exact call over 3 rows on both sides
    assert base["tool_valid_call"] == pytest.approx(1 / 3) and tuned["tool_valid_call"] == 1.0
    assert base["tool_name"] == 0.0 and tuned["tool_name"] == 1.0
    assert base["tool_exact_arguments"] == 0.0 and tuned["tool_exact_arguments"] == pytest.approx(1 / 3)
    # schema validity over the rows where the side made a call: base 2 (both fit), fine-tuned 3 (one does not)
    assert base["tool_schema_valid"] == 1.0 and tuned["tool_schema_valid"] == pytest.approx(2 / 3)
    # no call wanted in row 3 only
    assert base["tool_no_call"] == 0.0 and tuned["tool_no_call"] == 1.0
    assert report.counts["base"] == {"eval_loss": 4, "perplexity": 4, "tool_valid_call": 3, "tool_name": 3,
                                     "tool_exact_arguments": 3, "tool_schema_valid": 2, "tool_no_call": 1}
    assert report.counts["fine_tuned"]["tool_schema_valid"] == 3
    assert "exact_match" not in tuned, "a tool job is scored by its calls, not by text match"
    assert base["eval_loss"] == 2.0 and tuned["eval_loss"] == 1.0, "loss and perplexity are kept"
    saved = json.loads((fake_job["job"] / EVAL_FILE).read_text())["held_out"]
    assert saved["counts"] == report.counts and saved["fine_tuned"]["tool_no_call"] == 1.0


def test_answers_are_generated_with_the_rows_tools_for_the_last_assistant_turn(fake_job: dict) -> None:
    evaluation.evaluate(str(fake_job["job"]))
    asks = fake_job["chat"].asks
    assert len(asks) == 8 and all(a.tools == TOOLS for a in asks)
    assert [a.use_adapter for a in asks[:2]] == [False, True], "base and fine-tuned, one batch per row"
    assert [m["role"] for m in asks[2].messages] == ["user", "assistant", "tool"], "the target is the last turn"


def test_each_example_row_shows_the_calls_and_what_went_wrong(fake_job: dict) -> None:
    rows = evaluation.evaluate(str(fake_job["job"])).examples
    assert rows[0]["prompt"] == "Weather in Paris?" and rows[0]["reference"] == 'get_weather(city="Paris")'
    assert rows[0]["base"] == "It is sunny, I think." and rows[0]["fine_tuned"] == 'get_weather(city="Paris")'
    assert rows[1]["prompt"] == "[get_weather result] rainy" and rows[1]["reference"] == 'get_time(tz="UTC")'
    assert rows[2]["reference"] == "Hello!" and rows[2]["fine_tuned"] == "Hi there!"
    assert rows[3]["base"].startswith("<tool_call>"), "a malformed call is shown as written"
    assert rows[3]["fine_tuned"] == "get_weather(city=3)"
    assert [r["base_correct"] for r in rows] == [False] * 4
    assert [r["fine_tuned_correct"] for r in rows] == [True, False, True, False]
    assert [r["base_failure"] for r in rows] == ["missed_call", "wrong_tool", "unwanted_call", "malformed_call"]
    assert [r["fine_tuned_failure"] for r in rows] == [None, "wrong_arguments", None, "invalid_arguments"]
    assert rows[3]["fine_tuned_scores"]["tool_schema_valid"] == 0.0


def test_the_table_shows_percentages_the_better_side_and_n_per_metric(fake_job: dict) -> None:
    table = {r["metric"]: r for r in metrics_table(evaluation.evaluate(str(fake_job["job"])))}
    valid = table["Valid call rate"]
    assert (valid["base"], valid["fine-tuned"], valid["n"]) == ("33.3 %", "100.0 %", "3 examples")
    assert valid["better"] == "fine-tuned, by 66.7 points" and valid["meaning"].startswith("higher is better")
    schema = table["Schema-valid calls"]
    assert (schema["base"], schema["fine-tuned"]) == ("100.0 %", "66.7 %")
    assert schema["better"] == "base, by 33.3 points" and schema["n"] == "base 2, fine-tuned 3 examples"
    assert table["Right not to call"]["n"] == "1 example" and table["Exact call"]["fine-tuned"] == "33.3 %"
    assert table["Loss"]["n"] == "4 examples" and table["Right tool"]["better"] == "fine-tuned, by 100.0 points"


def test_a_metric_that_applied_to_no_row_is_a_dash() -> None:
    report = EvalReport(rows=2, base={"tool_schema_valid": None}, fine_tuned={"tool_schema_valid": 1.0},
                        counts={"base": {"tool_schema_valid": 0}, "fine_tuned": {"tool_schema_valid": 2}})
    (row,) = metrics_table(report)
    assert (row["base"], row["fine-tuned"], row["better"]) == ("—", "100.0 %", "—")
    assert row["n"] == "base 0, fine-tuned 2 examples"


def test_an_old_saved_report_reads_back_with_its_n() -> None:
    old = {"rows": 20, "base": {"exact_match": 0.0, "perplexity": 551.9},
           "fine_tuned": {"exact_match": 0.95, "perplexity": 2.01}, "examples": [{"prompt": "p"}] * 16}
    table = {r["metric"]: r for r in metrics_table(EvalReport.from_dict(old))}
    assert table["Exact match"]["n"] == "16 examples" and table["Perplexity"]["n"] == "20 examples"


def test_the_cli_prints_the_tool_metrics_readable(fake_job: dict, capsys: pytest.CaptureFixture) -> None:
    from trainer_backend.cli import main

    assert main(["evaluate", str(fake_job["job"])]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Schema-valid calls"))
    assert "100.0 %" in line and "66.7 %" in line and "base 2, fine-tuned 3 examples" in line, out
    assert "base, by 33.3 points" in line and "Right not to call" in out and "None" not in out


def test_the_model_card_has_the_evaluation_table_and_says_on_which_rows(fake_job: dict) -> None:
    from trainer_backend.model_card import _evaluation

    evaluation.evaluate(str(fake_job["job"]))
    saved = json.loads((fake_job["job"] / EVAL_FILE).read_text())["held_out"]
    card = "\n".join(_evaluation(saved))  # a held-out report alone (evaluation.json before the report had parts)
    assert "| metric | base | fine-tuned | change (95 % CI) | n |" in card
    assert "| Valid call rate | 33.3 % | 100.0 % | — | 3 examples |" in card
    assert "| Schema-valid calls | 100.0 % | 66.7 % | — | base 2, fine-tuned 3 examples |" in card
    assert "4 rows of the job's held-out validation split" in card and "tool schemas" in card
    assert "Paris" not in card, "per-example rows (user data) stay off the card"
    given = "\n".join(_evaluation({**saved, "source": "extra.jsonl"}))
    assert "4 rows of `extra.jsonl`, a file given at evaluation (not the job's held-out split)" in given
    assert saved["table"] == metrics_table(EvalReport.from_dict(saved)), "evaluation.json keeps the table it shows"
    old = "\n".join(_evaluation({"rows": 20, "base": {"exact_match": 0.0}, "fine_tuned": {"exact_match": 0.95}}))
    assert "| exact_match | 0 | 0.95 |" in old and "Held-out rows: 20" in old, "a report saved before tables"


def test_a_text_job_keeps_its_metrics_and_now_records_their_n(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    job = tmp_path / "job"
    (job / "adapter").mkdir(parents=True)
    rows = [{"messages": [user("2+2?"), {"role": "assistant", "content": "4"}]},
            {"messages": [user("3+3?"), {"role": "assistant", "content": "6"}]}]
    chat = FakeChat({(json.dumps(r["messages"][:1]), side): a for r, a in zip(rows, ("4", "7"))
                     for side in (False, True)})
    adapter = SimpleNamespace(path=job / "adapter", meta=SimpleNamespace(prompt_template=None))
    monkeypatch.setattr(evaluation, "load_chat", lambda ref, token=None: (chat, adapter))
    monkeypatch.setattr(evaluation, "_load_eval_split", lambda path, data: (FakeSplit(rows), None))
    monkeypatch.setattr(evaluation, "_mean_loss", lambda model, ids, labels: (1.0, 1))
    report = evaluation.evaluate(str(job), data_path=str(tmp_path / "held.jsonl"))
    assert report.fine_tuned["exact_match"] == 0.5 and report.counts["base"]["exact_match"] == 2
    assert report.source == "held.jsonl" and all(a.tools is None for a in chat.asks)
    assert not any(k.startswith("tool_") for k in report.fine_tuned)


# End to end on a trained tool-calling job (prepare -> train -> evaluate with the tools in the prompt): the
# learning check in tests/test_tool_learning.py, which asserts all this run did and more.
