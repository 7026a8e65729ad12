"""Chat / Evaluate tab: talk to a trained adapter (streaming, training template), compare it with the base
side by side, and measure base vs fine-tuned on held-out data."""
from __future__ import annotations

from typing import Any, Iterator

import gradio as gr
import pandas as pd

from ..generation import EVALUATION, GenerationSettings, setting_range
from .gate import PRIVATE
from .service import StudioService

ADAPTER_TICK_SECONDS = 2.0  # a job that just finished shows up here within this time, without a click


def _slider(name: str, step: float, label: str) -> gr.Slider:
    """A sampling slider whose range and default are GenerationSettings' own (its caps, in one place)."""
    low, high = setting_range(name)
    return gr.Slider(low, high, GenerationSettings.model_fields[name].default, step=step, label=label)


def build_chat_tab(service: StudioService) -> None:
    with gr.Tab("Chat / Evaluate", id="chat"):
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
        compare_mode = gr.Checkbox(False, label="Compare with the base model (same weights, adapter off)")
        with gr.Row():
            tuned_bot = gr.Chatbot(label="Fine-tuned", height=380, elem_id="chat-tuned")
            base_bot = gr.Chatbot(label="Base", height=380, visible=False, elem_id="chat-base")
        message = gr.Textbox(label="Message", placeholder="Ask something and press Enter", elem_id="chat-input")
        with gr.Row():
            undo_btn = gr.Button("Undo")
            clear_btn = gr.Button("Clear")
        with gr.Accordion("Evaluate on held-out data", open=False):
            with gr.Row():
                eval_file = gr.File(label="Data file (default: the job's validation split)")
                eval_max = gr.Number(50, label="max examples", precision=0, minimum=1)
                eval_btn = gr.Button("Evaluate", variant="primary")
            eval_metrics = gr.Dataframe(label="Metrics", interactive=False, elem_id="eval-metrics")
            wrong_only = gr.Checkbox(False, label="Only rows the fine-tuned model got wrong")
            eval_rows = gr.Dataframe(label="Per-example predictions", interactive=False, wrap=True)
            eval_state = gr.State([])

    def adapters(shown: Any) -> tuple[Any, Any]:
        choices = [[label, path] for label, path in service.finished_adapters().items()]
        if choices == shown:
            return gr.skip(), gr.skip()
        return gr.update(choices=choices), choices

    def settings(t: float, p: float, n: float, r: float) -> GenerationSettings:
        try:
            return GenerationSettings.checked(temperature=t, top_p=p, max_new_tokens=n, repetition_penalty=r)
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def respond(ref: str, text: str, history: list, base_history: list, sys: str, t: float, p: float, n: float,
                r: float, both: bool) -> Iterator[tuple]:
        if not ref:
            raise gr.Error("Pick an adapter first.")
        if not text.strip():
            return
        history = list(history or []) + [{"role": "user", "content": text}]
        msgs = [{"role": m["role"], "content": m["content"]} for m in history if isinstance(m.get("content"), str)]
        base_history = list(base_history or []) + [{"role": "user", "content": text}]
        base_msgs = [{"role": m["role"], "content": m["content"]} for m in base_history] if both else None
        for tuned, base in service.chat_turn(ref, msgs, base_msgs, settings(t, p, n, r), sys or None):
            yield "", history + [{"role": "assistant", "content": tuned}], \
                base_history + ([{"role": "assistant", "content": base}] if base is not None else [])

    def undo(history: list, base_history: list) -> tuple[list, list]:
        return (history or [])[:-2], (base_history or [])[:-2]

    def run_eval(ref: str, file: Any, max_examples: float, progress: gr.Progress = gr.Progress()) -> tuple:
        if not ref:
            raise gr.Error("Pick an adapter first.")
        path = file if isinstance(file, str) or file is None else file.name
        try:
            report = service.evaluate(ref, path, int(max_examples or 50), EVALUATION,
                                      progress=lambda f, d: progress(f, desc=d))
        except (ValueError, FileNotFoundError) as exc:
            raise gr.Error(str(exc)) from None
        metrics = pd.DataFrame([{"metric": k, "base": report.base[k], "fine-tuned": report.fine_tuned[k]}
                                for k in report.fine_tuned])
        return metrics, report.examples, _rows(report.examples, False)

    timer.tick(adapters, listed, [adapter, listed], **PRIVATE)
    compare_mode.change(lambda on: gr.update(visible=on), compare_mode, base_bot, **PRIVATE)
    message.submit(respond, [adapter, message, tuned_bot, base_bot, system, temperature, top_p, max_new, rep_pen,
                             compare_mode], [message, tuned_bot, base_bot], **PRIVATE)
    undo_btn.click(undo, [tuned_bot, base_bot], [tuned_bot, base_bot], **PRIVATE)
    clear_btn.click(lambda: ([], []), None, [tuned_bot, base_bot], **PRIVATE)
    eval_btn.click(run_eval, [adapter, eval_file, eval_max], [eval_metrics, eval_state, eval_rows], **PRIVATE)
    wrong_only.change(_rows, [eval_state, wrong_only], eval_rows, **PRIVATE)


def _rows(examples: list[dict], wrong_only: bool) -> pd.DataFrame:
    cols = ["prompt", "reference", "base", "fine_tuned", "fine_tuned_correct", "fine_tuned_failure"]
    rows = [e for e in examples or [] if not (wrong_only and e.get("fine_tuned_correct"))]
    def short(v: Any) -> Any:  # a runaway base answer should not push the table off screen
        return v[:200] + "…" if isinstance(v, str) and len(v) > 200 else v
    return pd.DataFrame([{c: short(e.get(c)) for c in cols} for e in rows], columns=cols)
