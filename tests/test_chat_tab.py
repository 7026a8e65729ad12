"""The Chat / Evaluate tab as a person sees it, without a model: one tab button, the question shown before any
model loads, a load shown as a phase, errors without server paths, readable metrics and a table that fits.
(Real generation, both sides at once: tests/test_inference.py.)"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import gradio as gr
import pytest

from trainer_backend.evaluation import EvalReport, metrics_table
from trainer_backend.ui import chat_tab


class FakeService:
    """What the tab calls; chat_turn records when generation was first asked for."""

    def __init__(self, tmp: Any):
        self.data_dir = tmp / "data"
        self.job_dir = self.data_dir / "jobs" / "20240101-abc123"
        self.calls: list[str] = []
        self.fail: Optional[Exception] = None

    def finished_adapters(self) -> dict[str, str]:
        return {"sentiment · abc123": "abc123", "older · def456": "def456"}

    def adapter_path(self, ref: str) -> str:
        return str(self.job_dir)

    def chat_turn(self, ref: str, messages: list, base_messages: Any, settings: Any, system: Any = None,
                  on_phase: Any = None) -> Iterator[tuple[str, Optional[str]]]:
        self.calls.append("chat_turn")
        on_phase("loading model")
        yield "", ""
        if self.fail:
            raise self.fail
        on_phase("answering")
        for i in range(1, 4):
            yield "tuned " * i, "base " * i


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
    respond = fns["respond"].fn
    turn = respond("abc123", "Is it good?", [], [], "", 0.0, 0.9, 16, 1.0, True, None)
    cleared, tuned, base = next(turn)
    assert service.calls == [], "shown before any generation was asked for"
    assert cleared == "" and tuned[0] == {"role": "user", "content": "Is it good?"} and base[0] == tuned[0]
    assert tuned[-1]["role"] == "assistant" and base[-1]["role"] == "assistant", "both panes wait visibly"
    _, tuned, base = next(turn)
    assert "loading the model" in tuned[-1]["content"] and "loading the model" in base[-1]["content"]
    rest = list(turn)
    assert [(t[-1]["content"], b[-1]["content"]) for _, t, b in rest][-1] == ("tuned " * 3, "base " * 3)
    assert all(t[-1]["content"].strip() and b[-1]["content"].strip() for _, t, b in rest), "both grow together"


def test_a_failed_turn_says_why_in_the_chat_without_server_paths(tmp_path: Any) -> None:
    service = FakeService(tmp_path)
    service.fail = FileNotFoundError(f"{service.job_dir}/adapter: no adapter here (expected adapter_config.json)"
                                     " while reading /opt/cache/models/base/config.json")
    _, fns = _build(service)
    shown = [["sentiment · abc123", "abc123"]]
    *_, (_, tuned, _) = list(fns["respond"].fn("abc123", "Hi", [], [], "", 0.0, 0.9, 16, 1.0, False, shown))
    text = tuned[-1]["content"]
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
               {"role": "user", "content": "And of Chile?"}]
    assert chat_tab._conversation(history) == [{"role": "user", "content": "Capital of Peru?"},
                                               {"role": "assistant", "content": "Lima"},
                                               {"role": "user", "content": "And of Chile?"}]
