"""The Chat / Evaluate tab as a person sees it, without a model: one tab button, the question shown before any
model loads, a load shown as a phase, errors without server paths, readable metrics and a table that fits.
(Real generation, both sides at once: tests/test_inference.py.)"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import gradio as gr
import pytest

from trainer_backend.evaluation import EvalReport, metrics_table
from trainer_backend.ui import chat_tab, chat_tools


class FakeService:
    """What the tab calls; chat_turn records when generation was first asked for and what it was asked
    (`turns`: each call's messages, base messages and tools), and answers `answers` when set (tuned, base)."""

    def __init__(self, tmp: Any):
        self.data_dir = tmp / "data"
        self.job_dir = self.data_dir / "jobs" / "20240101-abc123"
        self.calls: list[str] = []
        self.fail: Optional[Exception] = None
        self.turns: list[dict] = []
        self.answers: Optional[tuple[str, str]] = None

    def finished_adapters(self) -> dict[str, str]:
        return {"sentiment · abc123": "abc123", "older · def456": "def456"}

    def adapter_path(self, ref: str) -> str:
        return str(self.job_dir)

    def chat_turn(self, ref: str, messages: list, base_messages: Any, settings: Any, system: Any = None,
                  on_phase: Any = None, tools: Any = None) -> Iterator[tuple[str, Optional[str]]]:
        self.calls.append("chat_turn")
        self.turns.append({"messages": messages, "base_messages": base_messages, "tools": tools})
        on_phase("loading model")
        yield "", ""
        if self.fail:
            raise self.fail
        on_phase("answering")
        if self.answers:
            yield self.answers
            return
        for i in range(1, 4):
            yield "tuned " * i, "base " * i


def _send(fns: dict, text: str, history: Optional[list] = None, base_history: Optional[list] = None,
          tools: str = "", result: str = "", both: bool = True, shown: Any = None) -> Iterator[tuple]:
    """The Chat tab's turn as the page sends it: outputs (message box, tool result box, its row, the two panes,
    their conversations, the Tools note, the Tools accordion)."""
    return fns["respond"].fn("abc123", text, result, history or [], base_history or [], "", tools, 0.0, 0.9, 16, 1.0,
                             both, shown)


def _build(service: Any) -> tuple[gr.Blocks, dict[str, Any]]:
    with gr.Blocks() as demo:
        with gr.Tabs():
            with gr.Tab("Jobs", id="jobs"):
                box = gr.Textbox()
            box.change(lambda *_: None, [box, gr.State(None)], None)  # an inline State: a child of gr.Tabs
            chat_tab.build_chat_tab(service)
    fns = {fn.name: fn for fn in demo.fns.values()}
    return demo, fns


def test_the_chat_tab_has_one_button_in_the_tab_bar(tmp_path: Any) -> None:
    """Gradio 6 draws the bar from the tab items and registers an opened tab at its place among all of gr.Tabs'
    children; when those differ (a component made inside gr.Tabs but outside a tab) opening Chat / Evaluate
    showed it twice. The tab items come first, so both places agree."""
    demo, _ = _build(FakeService(tmp_path))
    config = demo.get_config_file()
    types = {c["id"]: c["type"] for c in config["components"]}

    def tabs_node(node: Any) -> Any:
        if types.get(node["id"]) == "tabs":
            return node
        return next((found for child in node.get("children", []) if (found := tabs_node(child))), None)

    tabs = tabs_node(config["layout"])
    assert tabs is not None
    kinds = [types[child["id"]] for child in tabs["children"]]
    tab_items = [i for i, kind in enumerate(kinds) if kind == "tabitem"]
    assert tab_items == list(range(len(tab_items))) == [0, 1], f"tab items first, in order: {kinds}"


def test_the_question_shows_before_the_model_loads_and_the_load_is_a_phase(tmp_path: Any) -> None:
    service = FakeService(tmp_path)
    _, fns = _build(service)
    turn = _send(fns, "Is it good?")
    cleared, _, _, tuned, base, *_ = next(turn)
    assert service.calls == [], "shown before any generation was asked for"
    assert cleared == "" and tuned[0] == {"role": "user", "content": "Is it good?"} and base[0] == tuned[0]
    assert tuned[-1]["role"] == "assistant" and base[-1]["role"] == "assistant", "both panes wait visibly"
    _, _, _, tuned, base, *_ = next(turn)
    assert "loading the model" in tuned[-1]["content"] and "loading the model" in base[-1]["content"]
    rest = list(turn)
    assert [(o[3][-1]["content"], o[4][-1]["content"]) for o in rest][-2] == ("tuned " * 3, "base " * 3)
    assert all(o[3][-1]["content"].strip() and o[4][-1]["content"].strip() for o in rest), "both grow together"
    said, base_said = rest[-1][5:7]  # the turn's end: each answer kept for the next turn
    assert said[-1] == {"role": "assistant", "content": "tuned tuned tuned"} and base_said[-1]["content"] == "base base base"


def test_a_failed_turn_says_why_in_the_chat_without_server_paths(tmp_path: Any) -> None:
    service = FakeService(tmp_path)
    service.fail = FileNotFoundError(f"{service.job_dir}/adapter: no adapter here (expected adapter_config.json)"
                                     " while reading /opt/cache/models/base/config.json")
    _, fns = _build(service)
    shown = [["sentiment · abc123", "abc123"]]
    *_, last = list(_send(fns, "Hi", both=False, shown=shown))
    text = last[3][-1]["content"]
    assert text.startswith("⚠️ No answer:") and "“sentiment · abc123”/adapter" in text, text
    assert str(tmp_path) not in text and "/opt/" not in text and "config.json" in text, text


def test_the_adapter_list_is_filled_on_page_load_with_the_newest_picked(tmp_path: Any) -> None:
    demo, fns = _build(FakeService(tmp_path))
    on_load = [d for d in demo.get_config_file()["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert any(fns_name == "adapters" for fns_name in [demo.fns[d["id"]].name for d in on_load]), on_load
    update, listed = fns["adapters"].fn(None, None)
    assert update["choices"] == listed == [["sentiment · abc123", "abc123"], ["older · def456", "def456"]]
    assert update["value"] == "abc123", "nothing picked yet: the newest finished job"
    update, _ = fns["adapters"].fn(None, "def456")
    assert "value" not in update, "a pick the user made stays"


def test_max_examples_is_checked_with_a_message_naming_the_field(tmp_path: Any) -> None:
    demo, fns = _build(FakeService(tmp_path))
    box = next(c for c in demo.get_config_file()["components"] if c["props"].get("elem_id") == "eval-max")
    assert box["props"].get("minimum") is None, "no Gradio minimum: its toast names no field"
    for bad in (0, -3, 2.5, None, 20_000):
        summary, *rest = fns["run_eval"].fn("abc123", None, bad, None)
        assert summary.startswith("⚠️ Max examples must be a whole number from 1 to 10,000"), summary
        assert all(r == gr.skip() for r in rest), "the previous results stay"


def test_metrics_are_rounded_with_n_the_better_side_and_a_meaning() -> None:
    report = EvalReport(rows=20, base={"eval_loss": 2.3456789, "perplexity": 10.44, "exact_match": 0.25,
                                       "rouge_l": 0.5750000000000001},
                        fine_tuned={"eval_loss": 1.1, "perplexity": 3.004166, "exact_match": 0.5750000000000001,
                                    "rouge_l": 0.5750000000000001},
                        examples=[{}] * 16)
    rows = {r["metric"]: r for r in metrics_table(report)}
    assert rows["Exact match"]["base"] == "25.0 %" and rows["Exact match"]["fine-tuned"] == "57.5 %"
    assert rows["Exact match"]["better"] == "fine-tuned, by 32.5 points" and rows["Exact match"]["n"] == "16 examples"
    assert rows["Loss"]["better"].startswith("fine-tuned") and rows["Loss"]["n"] == "20 examples"
    assert rows["Loss"]["fine-tuned"] == "1.100" and rows["Perplexity"]["base"] == "10.440"
    assert rows["ROUGE-L"]["better"] == "same" and rows["ROUGE-L"]["base"] == "0.575"
    assert rows["Loss"]["meaning"].startswith("lower is better") and rows["ROUGE-L"]["meaning"].startswith("higher")
    assert not any("0000" in v for r in rows.values() for v in r.values()), rows
    worse = metrics_table(EvalReport(rows=3, base={"reward": 0.9}, fine_tuned={"reward": 0.4}))[0]
    assert worse["better"] == "base, by 0.500" and worse["n"] == "3 prompts"


def test_the_example_table_has_short_headers_and_bounded_cells() -> None:
    examples = [{"prompt": "Q" * 900, "reference": "A", "base": "x", "fine_tuned": "A", "fine_tuned_correct": True,
                 "fine_tuned_failure": None},
                {"prompt": "Q2", "reference": "B", "base": "y", "fine_tuned": "z", "fine_tuned_correct": False,
                 "fine_tuned_failure": "too_long"}]
    update = chat_tab._rows_update(examples, False)
    frame = update["value"]
    assert list(frame.columns) == ["#", "Prompt", "Reference", "Base", "Fine-tuned", "Tuned ✓", "Failure"]
    assert max(len(c) for c in frame.columns) <= 12 and len(update["column_widths"]) == len(frame.columns)
    assert len(frame.iloc[0]["Prompt"]) <= chat_tab.CELL_CHARS + 1 and list(frame["Tuned ✓"]) == ["✓", "✗"]
    assert list(chat_tab._rows(examples, True)["Prompt"]) == ["Q2"], "only the rows the fine-tuned model got wrong"


@pytest.mark.parametrize("message", ["failed at /srv/lora/data/uploads/u1/abcd/held.jsonl line 3",
                                     "no adapter at ~/models/x/adapter"])
def test_other_paths_are_cut_to_their_last_part(message: str) -> None:
    calm = chat_tab._calm(message, {})
    assert "/" not in calm and ("held.jsonl line 3" in calm or "adapter" in calm), calm


def test_a_second_turn_sends_the_earlier_turns_as_text() -> None:
    """Gradio 6 returns earlier chat messages with their content as a list of parts; the model gets plain text."""
    history: list[dict] = [{"role": "user", "content": [{"type": "text", "text": "Capital of Peru?"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Lima"}], "metadata": None},
               {"role": "assistant", "content": "⚠️ No answer: out of memory"},
               {"role": "user", "content": "And of Chile?"}]
    assert chat_tools.for_model(history) == [{"role": "user", "content": "Capital of Peru?"},
                                             {"role": "assistant", "content": "Lima"},
                                             {"role": "user", "content": "And of Chile?"}]


# ---- tools: the Tools box, calls shown as calls, a tool result answering them ----------------------------------
WEATHER = [{"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                           "required": ["city"]}}]  # bare: the box takes any published shape
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'


@pytest.fixture
def qwen_tokenizer(tiny_tokenizer: Any) -> Any:
    """The tiny tokenizer with a tool-capable template (TRL's qwen2_5): it renders tools, calls and results."""
    from trainer_backend.data.vendor_templates import trl_vendor_templates

    tiny_tokenizer.chat_template = trl_vendor_templates()["qwen2_5"]
    return tiny_tokenizer


def _prompts(service: FakeService, tok: Any) -> list[str]:
    """Each side's prompt of the last turn as the model receives it (inference.encode_prompt's token ids)."""
    from trainer_backend.inference import encode_prompt
    from trainer_backend.training.adapter_meta import AdapterMeta

    turn = service.turns[-1]
    sides = [turn["messages"]] + ([turn["base_messages"]] if turn["base_messages"] is not None else [])
    return [tok.decode(encode_prompt(tok, AdapterMeta(base_model="tiny"), msgs, None, None, turn["tools"])
                       ["input_ids"][0]) for msgs in sides]


def test_the_tools_box_reaches_both_models_prompts(tmp_path: Any, qwen_tokenizer: Any) -> None:
    import json

    service = FakeService(tmp_path)
    _, fns = _build(service)
    *_, last = list(_send(fns, "Weather in Paris?", tools=json.dumps(WEATHER)))
    tools = service.turns[0]["tools"]
    assert tools == [{"type": "function", "function": {**WEATHER[0]}}], "canonical shape, both sides the same"
    for prompt in _prompts(service, qwen_tokenizer):
        assert "<tools>" in prompt and '"name": "get_weather"' in prompt and '"city": {"type": "string"}' in prompt
        assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert last[7] == "✓ 1 tool: `get_weather`", "the box says what it read"
    list(_send(fns, "And without?"))
    assert service.turns[-1]["tools"] is None and "<tools>" not in _prompts(service, qwen_tokenizer)[0]


@pytest.mark.parametrize("box, says", [("[{\"name\": \"get_weather\", ", "not valid JSON"),
                                       ('[{"description": "no name"}]', "has no name"),
                                       ('[{"name": "f", "parameters": {"type": "string"}}]', "not an object schema")])
def test_a_bad_tools_box_says_why_under_it_and_generates_nothing(tmp_path: Any, box: str, says: str) -> None:
    service = FakeService(tmp_path)
    _, fns = _build(service)
    outputs = list(_send(fns, "Weather in Paris?", tools=box))
    assert len(outputs) == 1 and service.calls == [], "nothing generated"
    (message, *panes, note, accordion) = outputs[0]
    assert message == gr.skip() and all(p == gr.skip() for p in panes), "what was typed and shown stays"
    assert note.startswith("⚠️ The Tools box does not read:") and says in note and "Fix:" in note, note
    assert accordion["open"] is True, "the note is seen: the Tools box opens"
    assert chat_tools.tools_note(box) == note


def test_an_answer_with_a_tool_call_is_shown_as_a_call() -> None:
    said = chat_tools.answer_message(f"Let me look.\n{CALL}")
    assert said == {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}]}
    text, call = chat_tools.shown([{"role": "user", "content": "Weather?"}, said])[1:]
    assert text == {"role": "assistant", "content": "Let me look."}
    assert call == {"role": "assistant", "content": '`get_weather(city="Paris", days=3)`',
                    "metadata": {"title": "🔧 Tool call"}}
    two = chat_tools.answer_message(CALL + CALL.replace("Paris", "Lima"))
    (bubble,) = chat_tools.shown([two])
    assert bubble["metadata"]["title"] == "🔧 Tool calls (2)" and bubble["content"].count("\n") == 1
    broken = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    said = chat_tools.answer_message(broken)
    assert said == {"role": "assistant", "content": broken}, "kept as written: the model sees what it wrote"
    (shown,) = chat_tools.shown([said])
    assert shown["metadata"]["title"] == "⚠️ Tried to call a tool, but the call does not parse"
    assert shown["content"] == f"```\n{broken}\n```", "the raw text, tags and all"
    assert chat_tools.shown([chat_tools.answer_message("positive")]) == [{"role": "assistant", "content": "positive"}]


def test_a_tool_result_answers_the_call_and_the_models_go_on(tmp_path: Any, qwen_tokenizer: Any) -> None:
    service = FakeService(tmp_path)
    _, fns = _build(service)
    service.answers = (CALL, "I cannot check the weather.")
    *_, first = list(_send(fns, "Weather in Paris?", tools=json_tools()))
    _, box, row, tuned, base, said, base_said, *_ = first
    assert row["visible"] is True and box["label"].startswith('Tool result for get_weather(city="Paris", days=3)')
    assert tuned[-1]["metadata"]["title"] == "🔧 Tool call" and said[-1]["tool_calls"], "kept as a call"
    assert base[-1] == {"role": "assistant", "content": "I cannot check the weather."}

    service.answers = ("It is 21 °C in Paris.", "Fine.")
    *_, after = list(_send(fns, "", said, base_said, tools=json_tools(), result='{"temp_c": 21}'))
    turn = service.turns[-1]
    assert turn["messages"][-2:] == [said[-1], {"role": "tool", "content": '{"temp_c": 21}', "name": "get_weather"}]
    assert turn["base_messages"][-1] == turn["messages"][-1], "the base gets the same result, as with a message"
    assert after[4][-2]["metadata"]["title"] == "📥 Tool result · get_weather (the other model's call)"
    tuned_prompt, base_prompt = _prompts(service, qwen_tokenizer)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>' \
        in tuned_prompt, "the call rendered back to the template as the model wrote it"
    assert '<tool_response>\n{"temp_c": 21}\n</tool_response>' in tuned_prompt and "<tool_response>" in base_prompt
    _, box, row, tuned, *_ = after
    assert row["visible"] is False and box["value"] == ""
    assert tuned[-2] == {"role": "user", "content": '{"temp_c": 21}', "metadata": {"title": "📥 Tool result · get_weather"}}
    assert tuned[-1] == {"role": "assistant", "content": "It is 21 °C in Paris."}

    undo = fns["undo"].fn(after[5], after[6])
    assert undo[2] == said and undo[5]["visible"] is True, "undo takes the result back: the call waits again"


def test_two_calls_wait_for_both_results_before_the_models_go_on(tmp_path: Any) -> None:
    service = FakeService(tmp_path)
    _, fns = _build(service)
    service.answers = (CALL + CALL.replace("Paris", "Lima").replace('"days": 3', '"days": 1'), "no")
    *_, first = list(_send(fns, "Paris and Lima?", tools=json_tools(), both=False))
    said = first[5]
    assert "(1 more after it)" in first[1]["label"]
    outputs = list(_send(fns, "", said, [], tools=json_tools(), result="sunny", both=False))
    assert len(outputs) == 1 and len(service.turns) == 1, "one result of two: nothing generated yet"
    _, box, row, tuned, _, said, *_ = outputs[0]
    assert row["visible"] and box["label"].startswith('Tool result for get_weather(city="Lima", days=1)')
    assert tuned[-1]["metadata"]["title"] == "📥 Tool result · get_weather"
    list(_send(fns, "", said, [], tools=json_tools(), result="rain", both=False))
    assert [m["content"] for m in service.turns[-1]["messages"][-2:]] == ["sunny", "rain"]
    assert service.turns[-1]["base_messages"] is None


def test_a_tool_result_with_no_call_waiting_generates_nothing(tmp_path: Any) -> None:
    service = FakeService(tmp_path)
    _, fns = _build(service)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    outputs = list(_send(fns, "", history, history, result="sunny"))
    assert service.calls == [] and "No tool call waits" in outputs[-1][7]


def json_tools() -> str:
    import json

    return json.dumps(WEATHER)


def test_the_chat_endpoint_takes_tools_as_an_optional_last_argument(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """gradio_client callers: tools as a list or its JSON text after the sampling settings; a call without them
    works as before; a bad list is a message naming the fix; the public demo's visitors send none."""
    from trainer_backend.ui import api

    seen: list[Any] = []

    class Service(FakeService):
        def chat(self, ref: str, messages: list, settings: Any, system: Any = None, tools: Any = None) -> Any:
            seen.append((messages, tools))
            yield "ok"

    with gr.Blocks() as demo:
        api._register_inference_api(Service(tmp_path))
    chat = next(fn for fn in demo.fns.values() if fn.name == "chat").fn
    assert list(chat("abc123", "hi", [], "", 0.0, 0.9, 4, 1.0)) == ["ok"] and seen[-1][1] is None, "as before"
    canonical = [{"type": "function", "function": WEATHER[0]}]
    for given in (WEATHER, json_tools(), canonical):
        list(chat("abc123", "hi", [], "", 0.0, 0.9, 4, 1.0, given))
        assert seen[-1][1] == canonical
    history = [{"role": "user", "content": "Weather?"}, chat_tools.answer_message(CALL),
               {"role": "tool", "content": "21", "name": "get_weather"}]
    list(chat("abc123", "And tomorrow?", history, "", 0.0, 0.9, 4, 1.0, WEATHER))
    assert seen[-1][0][:3] == history, "a history with calls and results reaches the model as sent"
    with pytest.raises(gr.Error, match="tools: tool 1 has no name.*fix: give every tool"):
        list(chat("abc123", "hi", [], "", 0.0, 0.9, 4, 1.0, [{"description": "x"}]))
    monkeypatch.setattr(api, "is_member", lambda _: False)
    with pytest.raises(gr.Error, match="the public demo takes no tools"):
        list(chat("abc123", "hi", [], "", 0.0, 0.9, 4, 1.0, WEATHER))
