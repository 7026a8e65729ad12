"""Chat / Evaluate tab: talk to a trained adapter (streaming, training template), compare it with the base
side by side (both answer at the same time), and measure base vs fine-tuned on held-out data.

What the page shows is for people: the message appears at once, a model load is a visible phase, metrics are
rounded with their n, which side is better and what each means, and no server path appears in any message."""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

import gradio as gr
import pandas as pd

from ..generation import EVALUATION, GenerationSettings, setting_range
from ..tool_calls import ToolFormatError
from . import chat_tools
from .gate import PRIVATE
from .service import StudioService

ADAPTER_TICK_SECONDS = 2.0  # a job that just finished shows up here within this time, without a click
MAX_EVAL_EXAMPLES = 10_000  # the named API's bound too (api.py)
PHASES = {"loading model": "⏳ *loading the model (the first message after a start or an adapter switch)…*",
          "answering": "…"}
# The per-example table: short headers, bounded widths, wrapped cells (a long answer never widens the page).
EXAMPLE_COLUMNS = {"prompt": "Prompt", "reference": "Reference", "base": "Base", "fine_tuned": "Fine-tuned",
                   "fine_tuned_correct": "Tuned ✓", "fine_tuned_failure": "Failure"}
REWARD_COLUMNS = {"prompt": "Prompt", "references": "Reference", "base": "Base", "base_reward": "Base reward",
                  "fine_tuned": "Fine-tuned", "fine_tuned_reward": "Tuned reward"}
CELL_CHARS = 300
CSS = """
#eval-rows table, #eval-metrics table { table-layout: fixed; }
#eval-rows th, #eval-metrics th { white-space: normal; line-height: 1.2; }
"""


def _slider(name: str, step: float, label: str) -> gr.Slider:
    """A sampling slider whose range and default are GenerationSettings' own (its caps, in one place)."""
    low, high = setting_range(name)
    return gr.Slider(low, high, GenerationSettings.model_fields[name].default, step=step, label=label)


def build_chat_tab(service: StudioService) -> dict[str, Any]:
    tabs = gr.context.Context.block  # the gr.Tabs this tab joins (see _tab_items_first)
    with gr.Tab("Chat / Evaluate", id="chat"):
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        adapter = gr.Dropdown([], label="Adapter: a finished job, a folder or a Hub repo id",
                              allow_custom_value=True, elem_id="adapter-select")
        listed = gr.State(None)  # the adapter list the page shows: a tick updates it only when it changed
        timer = gr.Timer(ADAPTER_TICK_SECONDS)
        with gr.Accordion("Sampling", open=False):
            system = gr.Textbox(label="System prompt")
            with gr.Row():
                temperature = _slider("temperature", 0.05, "temperature (0 = greedy)")
                top_p = _slider("top_p", 0.01, "top-p")
                max_new = _slider("max_new_tokens", 1, "max new tokens")
                rep_pen = _slider("repetition_penalty", 0.05, "repetition penalty")
        with gr.Accordion("Tools", open=False, elem_id="chat-tools") as tools_box:
            tools = gr.Code(label="Tools: a JSON list of tool schemas", language="json", lines=6, max_lines=16,
                            elem_id="chat-tools-json")
            tools_note = gr.Markdown(chat_tools.TOOLS_HELP, elem_id="chat-tools-note")
        compare_mode = gr.Checkbox(False, label="Compare with the base model (same weights, adapter off)")
        with gr.Row():
            tuned_bot = gr.Chatbot(label="Fine-tuned (adapter on)", height=380, elem_id="chat-tuned")
            base_bot = gr.Chatbot(label="Base (adapter off)", height=380, visible=False, elem_id="chat-base")
        tuned_said, base_said = gr.State([]), gr.State([])  # each pane's conversation, as the template reads it
        message = gr.Textbox(label="Message", placeholder="Ask something and press Enter", elem_id="chat-input")
        with gr.Row(visible=False, elem_id="chat-tool-row") as tool_row:  # shown while a call waits for its result
            tool_result = gr.Textbox(label="Tool result", elem_id="chat-tool-result", scale=4,
                                     placeholder="Paste what the tool returned (JSON or text) and press Enter")
            tool_send = gr.Button("Send tool result", elem_id="chat-tool-send", scale=1)
        with gr.Row():
            undo_btn = gr.Button("Undo")
            clear_btn = gr.Button("Clear")
        with gr.Accordion("Evaluate on held-out data", open=False, elem_id="evaluate-box") as eval_box:
            with gr.Row():
                eval_file = gr.File(label="Data file (default: the job's validation split)")
                eval_max = gr.Number(50, label="Max examples (1 to 10,000)", precision=0, elem_id="eval-max")
                eval_btn = gr.Button("Evaluate", variant="primary", elem_id="eval-run")
            eval_summary = gr.Markdown(elem_id="eval-summary")
            eval_metrics = gr.Dataframe(label="Metrics", interactive=False, wrap=True, elem_id="eval-metrics",
                                        column_widths=["15%", "10%", "10%", "19%", "11%", "35%"])
            wrong_only = gr.Checkbox(False, label="Only rows the fine-tuned model got wrong")
            eval_rows = gr.Dataframe(label="Per-example answers", interactive=False, wrap=True, max_height=520,
                                     elem_id="eval-rows")
            eval_state = gr.State([])
    _tab_items_first(tabs)

    def adapters(shown: Any, current: Optional[str]) -> tuple[Any, Any]:
        choices = [[label, job_id] for label, job_id in service.finished_adapters().items()]
        if choices == shown:
            return gr.skip(), gr.skip()
        if not current and choices:  # nothing picked yet: the newest finished job, ready to chat with
            return gr.update(choices=choices, value=choices[0][1]), choices
        return gr.update(choices=choices), choices

    def settings(t: float, p: float, n: float, r: float) -> GenerationSettings:
        try:
            return GenerationSettings.checked(temperature=t, top_p=p, max_new_tokens=n, repetition_penalty=r)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def respond(ref: str, text: str, result: str, history: list, base_history: list, sys: str, tools_text: Any,
                t: float, p: float, n: float, r: float, both: bool, shown: Any) -> Iterator[tuple]:
        """A message and/or a tool result sent: both panes answer it (outputs: the message and tool result boxes,
        the two panes, their conversations, the Tools box's note and its accordion)."""
        if not ref:
            raise gr.Error("Pick an adapter first (the Adapter list above).", print_exception=False)
        text, result = text or "", (result or "").strip()
        if not text.strip() and not result:
            return
        try:
            tool_list = chat_tools.read_tools(tools_text)
        except ToolFormatError as exc:  # said under the box (opened), nothing generated, what was typed stays
            yield (gr.skip(),) * 7 + (chat_tools.tools_problem(exc), gr.update(open=True))
            return
        gen = settings(t, p, n, r)
        conversations = chat_tools.sent(history, base_history, text, result, both)
        if conversations is None:  # a result, but no call waits for one (the box shows only while one does)
            yield (gr.skip(),) * 7 + (chat_tools.NOTHING_WAITS, gr.skip())
            return
        history, base_history = conversations
        note = chat_tools.tools_note(tools_text)

        def panes(tuned: Optional[str], base: Optional[str], done: bool = False) -> tuple:
            """The outputs with each pane's answer so far (None: no answer this turn); done: the turn's end."""
            said = [history + ([chat_tools.answer_message(tuned)] if tuned is not None else []),
                    base_history + ([chat_tools.answer_message(base)] if both and base is not None else [])]
            if done:
                return ("", *_tool_box(said[0], said[1] if both else None), chat_tools.shown(said[0]),
                        chat_tools.shown(said[1]) if both else gr.skip(), said[0], said[1], note, gr.skip())
            bubbles = [chat_tools.shown(history) + [_said(tuned or "")],
                       chat_tools.shown(base_history) + [_said(base or "")]]
            return ("", gr.update(value=""), gr.update(visible=False), bubbles[0], bubbles[1] if both else gr.skip(),
                    gr.skip(), gr.skip(), note, gr.skip())

        if not text.strip() and chat_tools.waiting_label(history, base_history if both else None):
            yield panes(None, None, done=True)  # more calls of that answer wait: the models go on when all have one
            return
        yield panes(PHASES["answering"], PHASES["answering"])  # the question shows before anything loads
        phase: list[str] = []
        tuned: str = ""
        base: Optional[str] = ""
        try:
            for tuned, base in service.chat_turn(ref, chat_tools.for_model(history),
                                                 chat_tools.for_model(base_history) if both else None, gen,
                                                 sys or None, on_phase=phase.append, tools=tool_list):
                waiting = PHASES.get(phase[-1], "…") if phase else "…"
                yield panes(tuned or waiting, base or waiting)
        except Exception as exc:  # shown where the answer would be, in the user's names, never a server path
            problem = f"⚠️ No answer: {_calm(str(exc), _names(service, ref, shown))}"
            tuned, base = tuned or problem, base or problem
        yield panes(tuned, base, done=True)  # an answer's tool calls shown as calls, kept for the next turn

    def undo(history: list, base_history: list) -> tuple:
        history, base_history = chat_tools.undone(history), chat_tools.undone(base_history)
        return (chat_tools.shown(history), chat_tools.shown(base_history), history, base_history,
                *_tool_box(history, base_history))

    def run_eval(ref: str, file: Any, max_examples: Any, shown: Any,
                 progress: gr.Progress = gr.Progress()) -> tuple:
        # A problem is written under the fields (it stays, unlike a toast) and the old results stay as they were.
        if not ref:
            return "⚠️ Pick an adapter first (the Adapter list above).", gr.skip(), gr.skip(), gr.skip()
        try:
            count = _max_examples(max_examples)
        except ValueError as exc:
            return f"⚠️ {exc}", gr.skip(), gr.skip(), gr.skip()
        path = file if isinstance(file, str) or file is None else file.name
        try:
            report = service.evaluate(ref, path, count, EVALUATION, progress=lambda f, d: progress(f, desc=d))
        except (ValueError, FileNotFoundError, OSError) as exc:
            return f"⚠️ {_calm(str(exc), _names(service, ref, shown, path))}", gr.skip(), gr.skip(), gr.skip()
        table = _metrics_frame(report)
        return _summary(report, table, path), table, report.examples, _rows_update(report.examples, False)

    adapter_out = [adapter, listed]
    page = gr.context.Context.root_block
    assert page is not None, "build_chat_tab runs inside gr.Blocks"
    page.load(adapters, [listed, adapter], adapter_out, show_progress="hidden", **PRIVATE)
    timer.tick(adapters, [listed, adapter], adapter_out, show_progress="hidden", **PRIVATE)
    compare_mode.change(lambda on: gr.update(visible=on), compare_mode, base_bot, **PRIVATE)
    turn_in = [adapter, message, tool_result, tuned_said, base_said, system, tools, temperature, top_p, max_new,
               rep_pen, compare_mode, listed]
    turn_out = [message, tool_result, tool_row, tuned_bot, base_bot, tuned_said, base_said, tools_note, tools_box]
    for send in (message.submit, tool_result.submit, tool_send.click):  # a tool result is the same turn
        send(respond, turn_in, turn_out, show_progress="hidden", **PRIVATE)
    tools.blur(chat_tools.tools_note, tools, tools_note, show_progress="hidden", **PRIVATE)
    panes_out = [tuned_bot, base_bot, tuned_said, base_said, tool_result, tool_row]
    undo_btn.click(undo, [tuned_said, base_said], panes_out, **PRIVATE)
    clear_btn.click(lambda: ([], [], [], [], *_tool_box([], None)), None, panes_out, **PRIVATE)
    eval_btn.click(run_eval, [adapter, eval_file, eval_max, listed],
                   [eval_summary, eval_metrics, eval_state, eval_rows], **PRIVATE)
    wrong_only.change(_rows_update, [eval_state, wrong_only], eval_rows, **PRIVATE)
    # For app.py: a trained job's "Chat with it" / "Evaluate" pick its adapter here (and open Evaluate).
    return {"adapter": adapter, "listed": listed, "evaluate": eval_box}


def _tab_items_first(tabs: Any) -> None:
    """Gradio 6's tab bar registers a mounted tab at its position among ALL children of gr.Tabs, while the bar was
    drawn from the tabs alone: any other component created inside gr.Tabs but outside a gr.Tab (an inline
    gr.State(None) in an event's inputs, say) shifts this last tab's position, and opening it adds a second
    "Chat / Evaluate" button. Keeping the tab items first (their order unchanged) makes both positions agree."""
    children = getattr(tabs, "children", None)
    if isinstance(tabs, gr.Tabs) and children:
        children.sort(key=lambda block: not isinstance(block, gr.Tab))  # stable: tabs keep their order


def _tool_box(tuned: list[dict], base: Optional[list[dict]]) -> tuple[Any, Any]:
    """(the Tool result box, its row): shown, naming the call, while a call waits for its result; emptied."""
    waiting = chat_tools.waiting_label(tuned, base)
    return gr.update(label=waiting or "Tool result", value=""), gr.update(visible=bool(waiting))


def _said(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _max_examples(value: Any) -> int:
    """The Max examples box, checked here so the message names it (Gradio's own minimum check names no field)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (1 <= number <= MAX_EVAL_EXAMPLES) or not number.is_integer():
        shown = "empty" if value is None else f"{value:g}" if isinstance(value, (int, float)) else repr(value)
        raise ValueError(f"Max examples must be a whole number from 1 to {MAX_EVAL_EXAMPLES:,} (it is {shown}).")
    return int(number)


def _names(service: StudioService, ref: str, shown: Any, data_path: Optional[str] = None) -> dict[str, str]:
    """Server paths a message may carry -> the names the user knows them by: the picked job's folder -> its label
    in the Adapter list, the uploaded file -> its file name, the data folder -> nothing."""
    from pathlib import Path

    names: dict[str, str] = {}
    labels = {job_id: label for label, job_id in (shown or [])}
    try:
        folder = service.adapter_path(ref)
        names[str(folder)] = f"“{labels.get(ref, Path(folder).name)}”"
        names[str(Path(folder).resolve())] = names[str(folder)]
    except Exception:
        pass
    if data_path:
        names[str(data_path)] = f"“{Path(data_path).name}”"
    names[str(service.data_dir) + "/"] = ""
    return names


_PATH = re.compile(r"(?<![\w.:/~-])(?:~/|/)(?:[^\s/'\"“”:,;()]+/)+([^\s/'\"“”:,;()]+)")


def _calm(message: str, names: dict[str, str]) -> str:
    """`message` with each known server path replaced by its name, and any other absolute path by its last part."""
    for path in sorted(names, key=len, reverse=True):
        message = message.replace(path, names[path])
    return _PATH.sub(lambda m: m.group(1), message)


def _metrics_frame(report: Any) -> pd.DataFrame:
    from ..evaluation import metrics_table

    rows = metrics_table(report)
    return pd.DataFrame(rows, columns=["metric", "base", "fine-tuned", "better", "n", "meaning"]).rename(
        columns={"metric": "Metric", "base": "Base", "fine-tuned": "Fine-tuned", "better": "Better",
                 "n": "n", "meaning": "What it means"})


def _summary(report: Any, table: pd.DataFrame, path: Optional[str]) -> str:
    from pathlib import Path

    source = f"“{Path(path).name}”" if path else "the job's validation split"
    wins = sum(str(b).startswith("fine-tuned") for b in table["Better"])
    scored = len(report.examples)
    what = f"**{report.rows}** held-out example{'s' if report.rows != 1 else ''} from {source}"
    if scored and scored != report.rows:
        what += f" ({scored} with a reference answer to compare)"
    return (f"Scored {what}; greedy answers of at most {EVALUATION.max_new_tokens} new tokens.  \n"
            f"The fine-tuned model is better on **{wins} of {len(table)}** metrics.")


def _rows_update(examples: list[dict], wrong_only: bool) -> Any:
    """The per-example table with widths for its columns (answer columns wide, marks narrow)."""
    frame = _rows(examples, wrong_only)
    widths = {"#": "5%", "Prompt": "21%", "Reference": "13%", "Base": "21%", "Fine-tuned": "21%", "Tuned ✓": "8%",
              "Failure": "11%", "Base reward": "9%", "Tuned reward": "10%"}
    return gr.update(value=frame, column_widths=[widths[c] for c in frame.columns])


def _rows(examples: list[dict], wrong_only: bool) -> pd.DataFrame:
    rewards = any("fine_tuned_reward" in e for e in examples or [])
    columns = REWARD_COLUMNS if rewards else EXAMPLE_COLUMNS
    rows = [e for e in examples or [] if not (wrong_only and not rewards and e.get("fine_tuned_correct"))]

    def cell(key: str, v: Any) -> Any:  # a runaway base answer should not push the table off screen
        if isinstance(v, bool):
            return "✓" if v else "✗"
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, list):
            v = " | ".join(map(str, v))
        return v[:CELL_CHARS] + "…" if isinstance(v, str) and len(v) > CELL_CHARS else ("" if v is None else v)

    frame = pd.DataFrame([{title: cell(k, e.get(k)) for k, title in columns.items()} for e in rows],
                         columns=list(columns.values()))
    frame.insert(0, "#", range(1, len(frame) + 1))
    return frame
