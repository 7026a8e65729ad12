"""Datasets as they are published (issue 28): tool calling (OpenAI with tools, ShareGPT function calling, xLAM,
BFCL), TRL's conversational prompt-completion, instruction + context (Dolly), nested answers (SQuAD), and no column
dropped in silence. Each file in tests/data/tools and tests/data/context is a published row shape (SOURCES.md)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from datahelpers import write_jsonl
from trainer_backend.data import DataError, prepare_data
from trainer_backend.data.encode import IGNORE

# file -> (detected format, words the reason must say)
SHAPES = {
    "tools/zava_retail_openai_tools.jsonl": ("messages", ("tool calls", "'tools' declares the tools")),
    "tools/glaive_toolcall_sharegpt.jsonl": ("sharegpt", ("ShareGPT", "tool calls", "'tools' declares")),
    "tools/bfcl_parallel_multiple.jsonl": ("xlam", ("BFCL", "'question', 'function' and 'ground_truth'")),
    "tools/xlam_style_from_bfcl.jsonl": ("xlam", ("xLAM", "'query', 'tools' and 'answers'")),
    "context/dolly_style_from_self_instruct.jsonl": ("alpaca", ("'context' is added to the prompt",)),
    "context/squad_style.jsonl": ("qa", ("'context' is added to the prompt", "'answers.text'", "TRL: prompt-completion")),
    "chat/oasst_prompt_completion.jsonl": ("prompt_completion", ("TRL: conversational prompt-completion",)),
}


def _prepare(make_spec: Any, path: Path, tokenizer: Any, **data: Any) -> Any:
    spec = make_spec({"path": str(path), "chat_template": "hermes", **data},
                     lengths={"block_size": 32768, "model_max_length": 32768})  # Zava rows: ~15 K tokens
    return prepare_data(spec, tokenizer)


def _split(tokenizer: Any, ids: list[int], labels: list[int]) -> tuple[str, str]:
    """(trained text, untrained text) of one encoded row."""
    return (tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE]),
            tokenizer.decode([t for t, l in zip(ids, labels) if l == IGNORE]))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_published_shape_is_detected_validated_and_shown(name: str, real_data: Path, make_spec: Any,
                                                         tiny_tokenizer: Any) -> None:
    fmt, words = SHAPES[name]
    prepared = _prepare(make_spec, real_data / name, tiny_tokenizer)
    report = prepared.report()
    assert report["format"]["format"] == fmt
    for word in words:
        assert word in report["format"]["reason"], report["format"]["reason"]
    split = prepared.train
    assert split.stats.rows_valid == split.stats.rows_read  # every row of the published sample is accepted
    rows = [json.loads(line) for line in (real_data / name).read_text().splitlines()]
    example, encoded = split.example(0), split.row(0)
    trained, context = _split(tiny_tokenizer, encoded["input_ids"], encoded["labels"])
    if "tools" in example:  # the schemas and results are context; the calls are what the model learns
        first_tool = example["tools"][0]["function"]["name"]
        assert first_tool in context and '"parameters"' in context
        call = next(c for m in example["messages"] for c in m.get("tool_calls", []))
        assert f'"name": "{call["function"]["name"]}"' in trained and "<tool_call>" in trained
        assert json.dumps(call["function"]["arguments"], ensure_ascii=False) in trained
        results = [m["content"] for m in example["messages"] if m["role"] == "tool"]
        assert all(r.strip()[:40] in context for r in results if r.strip())  # (a later call may quote one)
    if name.startswith("context/dolly"):
        assert rows[0]["context"] in context and rows[0]["response"].strip() in trained
    if name.startswith("context/squad"):
        assert rows[0]["context"] in context and rows[0]["question"] in context
        assert trained == rows[0]["answers"]["text"][0] + "<|im_end|>"
    if name.startswith("chat/oasst_prompt"):  # only the completion trains, even where the prompt has answers
        assert trained == rows[0]["completion"][0]["content"] + "<|im_end|>"
        assert all(m["content"] in context for m in rows[0]["prompt"])


def test_bfcl_trains_the_first_acceptable_value_and_json_schema_types(real_data: Path) -> None:
    from trainer_backend.data.detection import detect_format
    from trainer_backend.data.formats import normalize_row
    from trainer_backend.spec import ColumnMapping

    rows = [json.loads(line) for line in (real_data / "tools/bfcl_parallel_multiple.jsonl").read_text().splitlines()]
    det = detect_format(list(rows[0]), rows, "auto", ColumnMapping())
    example = normalize_row(rows[0], det)
    calls = example["messages"][-1]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["math_toolkit.sum_of_multiples", "math_toolkit.product_of_primes"]
    assert calls[0]["function"]["arguments"] == {"lower_limit": 1, "upper_limit": 1000, "multiples": [3, 5]}
    assert example["tools"][0]["function"]["parameters"]["type"] == "object"  # BFCL writes "dict"


# ---- broken tool rows: refused before training, with file, row and column ---------------------------------

WEATHER = {"name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "unit": {"type": "string", "enum": ["c", "f"]}},
                          "required": ["city"]}}


def _openai_row(call: dict, result: Any = "sunny", result_id: str = "call_1") -> dict:
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}]
    if result is not None:
        messages.append({"role": "tool", "tool_call_id": result_id, "content": result})
    messages.append({"role": "assistant", "content": "It is sunny."})
    return {"messages": messages, "tools": [{"type": "function", "function": WEATHER}]}


GOOD_CALL = {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "c"})}
BROKEN = {
    "unknown tool": (_openai_row({"name": "get_wether", "arguments": "{}"}), ("get_wether", "get_weather")),
    "arguments not JSON": (_openai_row({"name": "get_weather", "arguments": "{city: Paris"}), ("not",)),
    "arguments off-schema": (_openai_row({"name": "get_weather", "arguments": '{"city": "Paris", "unit": "kelvin"}'}),
                             ("kelvin",)),
    "missing required argument": (_openai_row({"name": "get_weather", "arguments": '{"unit": "c"}'}), ("city",)),
    "result answering no call": (_openai_row(GOOD_CALL, result_id="call_9"), ("call_9",)),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_tool_rows_are_refused_with_file_row_and_column(case: str, make_spec: Any, tiny_tokenizer: Any,
                                                               tmp_path: Path) -> None:
    row, words = BROKEN[case]
    path = write_jsonl(tmp_path / "calls.jsonl", [_openai_row(GOOD_CALL), row])
    with pytest.raises(DataError) as info:
        _prepare(make_spec, path, tiny_tokenizer)
    issue = info.value.issues[0]
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "messages"), issue
    assert issue.fix and all(w in issue.message for w in words), issue.message


def test_a_tool_result_before_any_call_is_refused(make_spec: Any, tiny_tokenizer: Any, tmp_path: Path) -> None:
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "observation", "value": "{\"t\": 1}"},
                             {"from": "gpt", "value": "ok"}], "tools": json.dumps([WEATHER])}
    with pytest.raises(DataError) as info:
        _prepare(make_spec, write_jsonl(tmp_path / "s.jsonl", [row]), tiny_tokenizer)
    assert "answers no call" in info.value.issues[0].message and info.value.issues[0].column == "conversations"


def test_a_template_that_cannot_render_tools_is_refused_naming_ones_that_can(make_spec: Any, tiny_tokenizer: Any,
                                                                           real_data: Path) -> None:
    with pytest.raises(DataError) as info:
        _prepare(make_spec, real_data / "tools/glaive_toolcall_sharegpt.jsonl", tiny_tokenizer, chat_template="chatml")
    issue = info.value.issues[0]
    assert "does not render tool schemas" in issue.message
    assert "hermes" in issue.fix and "qwen2_5" in issue.fix and "llama3_1" in issue.fix


@pytest.fixture(scope="module")
def qwen_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose tokenizer carries Qwen2.5's own template (tool support: <tools>, <tool_call>)."""
    from trainer_backend.data.vendor_templates import trl_vendor_templates
    from trainer_backend.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("qwen"), chat_template=trl_vendor_templates()["qwen2_5"])


def test_a_vendor_template_with_tool_support_renders_the_tools(qwen_tiny: Path, make_spec: Any,
                                                               real_data: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_tiny)
    prepared = _prepare(make_spec, real_data / "tools/xlam_style_from_bfcl.jsonl", tok, chat_template="tokenizer")
    report = prepared.report()
    assert "qwen2_5" in report["chat_template_source"] and "<tools>" in report["sample"]["rendered"]
    trained, _ = _split(tok, prepared.train.row(0)["input_ids"], prepared.train.row(0)["labels"])
    assert trained.startswith("<tool_call>") and trained.endswith("</tool_call><|im_end|>")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in SHAPES if n.startswith("tools/")))
def test_tool_samples_train_two_steps_with_the_tokenizers_own_template(name: str, qwen_tiny: Path, real_data: Path,
                                                                        tmp_path: Path) -> None:
    from trainer_backend.spec import parse_spec
    from trainer_backend.training.run import run_training

    spec, _ = parse_spec({
        "project_name": "tools", "output_dir": str(tmp_path / "job"), "model": {"base_model": str(qwen_tiny)},
        "data": {"path": str(real_data / name), "max_rows": 4},
        # Zava's system prompt and 15 tools are ~8 K tokens here: the prompt is cut from the left to fit
        "lengths": {"block_size": 768, "model_max_length": 1024, "max_prompt_length": 384},
        "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                     "save_strategy": "no", "eval_strategy": "no"}})
    run_training(spec)
    events = [json.loads(line) for line in (tmp_path / "job" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 2
    report = json.loads((tmp_path / "job" / "data_report.json").read_text())
    assert "qwen2_5" in report["chat_template_source"] and "<tool_call>" in report["sample"]["rendered"]


# ---- context columns, nested fields, unused columns --------------------------------------------------------


def test_a_nested_field_and_a_context_can_be_mapped_by_hand(make_spec: Any, tiny_tokenizer: Any,
                                                            tmp_path: Path) -> None:
    rows = [{"q": f"Question {i}?", "doc": {"passage": f"Passage {i}."},
             "gold": [{"text": f"Answer {i}", "score": 1}]} for i in range(4)]
    path = write_jsonl(tmp_path / "nested.jsonl", rows)
    prepared = _prepare(make_spec, path, tiny_tokenizer, format="qa",
                        column_mapping={"prompt": "q", "input": "doc.passage", "response": "gold.text"})
    trained, context = _split(tiny_tokenizer, prepared.train.row(0)["input_ids"], prepared.train.row(0)["labels"])
    assert trained == "Answer 0<|im_end|>" and "Question 0?" in context and "Passage 0." in context
    assert prepared.report()["format"].get("unused", []) == []


def test_a_column_the_format_does_not_read_is_listed_never_dropped_in_silence(make_spec: Any, tiny_tokenizer: Any,
                                                                              tmp_path: Path) -> None:
    rows = [{"instruction": f"Say {i}", "output": f"{i}", "source": f"book {i}", "notes": ""} for i in range(4)]
    prepared = _prepare(make_spec, write_jsonl(tmp_path / "a.jsonl", rows), tiny_tokenizer)
    report = prepared.dataset_report()
    assert report.format.unused == [{"column": "source", "sample": "book 0"}]  # 'notes' is empty in every row
    text = "\n".join(report.text_lines())
    assert re.search(r"not used: +column 'source' is not used \(e\.g\. 'book 0'\); to use it, map it", text)
    assert "data.column_mapping: input adds it to the prompt" in report.markdown()


def test_a_grpo_reward_column_is_not_unused(make_spec: Any, tiny_tokenizer: Any, tmp_path: Path) -> None:
    rows = [{"prompt": f"What is {i}+{i}?", "answer": str(2 * i), "topic": "sums"} for i in range(4)]
    spec = make_spec({"path": str(write_jsonl(tmp_path / "p.jsonl", rows)), "chat_template": "chatml"},
                     training={"trainer": "grpo"},
                     grpo={"rewards": [{"type": "numeric_match", "column": "answer"}], "max_completion_length": 16})
    report = prepare_data(spec, tiny_tokenizer).report()
    assert [u["column"] for u in report["format"]["unused"]] == ["topic"]


def test_bad_rows_skip_trains_on_the_rest_and_says_what_it_left_out(make_spec: Any, tiny_tokenizer: Any,
                                                                      tmp_path: Path) -> None:
    """Published tool datasets have a few calls off their own schemas (Glaive, BFCL): refused by default, and with
    data.bad_rows: skip those rows are left out and counted, also when the preparation comes from the cache."""
    rows = [_openai_row(GOOD_CALL), BROKEN["arguments off-schema"][0], _openai_row(GOOD_CALL)]
    path = write_jsonl(tmp_path / "calls.jsonl", rows)
    with pytest.raises(DataError):
        _prepare(make_spec, path, tiny_tokenizer)
    for attempt in ("built", "hit"):
        prepared = _prepare(make_spec, path, tiny_tokenizer, bad_rows="skip")
        assert prepared.cache == attempt
        assert prepared.train.stats.rows_used == 2 and [r for _, r in prepared.train.refs] == [1, 3], attempt
        warning = next(w for w in prepared.report()["warnings"] if "skipped" in w)
        assert warning.startswith("1 row with problems skipped (data.bad_rows: skip)") and "row 2" in warning
        assert "kelvin" in warning, attempt


def test_bad_rows_skip_still_refuses_when_every_row_is_bad(make_spec: Any, tiny_tokenizer: Any,
                                                           tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "calls.jsonl", [BROKEN["unknown tool"][0]])
    with pytest.raises(DataError) as info:
        _prepare(make_spec, path, tiny_tokenizer, bad_rows="skip")
    assert "get_wether" in str(info.value)
