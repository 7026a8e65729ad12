"""Every hook into a library's private internals (trainer_backend/library_hooks.py) still takes its private path
with the installed library versions, gives what the public path gives, and falls back to the public path when the
private thing is gone.

A failure of a `*_takes_its_private_path` test means a library update changed what the hook relies on. The app
still works (on the public path, slower); to fix: read the hook's docstring, adapt it to the new version (or drop
the hook if the library now offers a public way), update "Checked against" there, and run this file again.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from trainer_backend import library_hooks as hooks
from trainer_backend.data.templates import SHIPPED_TEMPLATES
from trainer_backend.data.vendor_templates import trl_training_variant, trl_vendor_templates


def _changed(library: str, what: str) -> str:
    return (f"{library} changed: {what}. The app falls back to the public path (slower), but this hook is now dead: "
            f"adapt trainer_backend/library_hooks.py to the installed {library} (see the hook's docstring) or drop it")


# --- Gradio -----------------------------------------------------------------------------------------------------

def _queued_blocks() -> Any:
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.queue()
    return demo


def test_gradio_queue_polling_takes_its_private_path() -> None:
    from trainer_backend.ui.app import PROGRESS_IDLE_POLL_S, QUEUE_IDLE_POLL_S

    demo = _queued_blocks()
    assert hooks.calm_gradio_queue_polling(demo, QUEUE_IDLE_POLL_S, PROGRESS_IDLE_POLL_S), _changed(
        "gradio", "Blocks._queue.sleep_when_free / progress_update_sleep_when_free are gone or no longer floats")
    assert (demo._queue.sleep_when_free, demo._queue.progress_update_sleep_when_free) == \
        (QUEUE_IDLE_POLL_S, PROGRESS_IDLE_POLL_S), _changed("gradio", "the queue's idle polling was not set")


def test_gradio_queue_polling_never_lowers_and_survives_a_missing_queue() -> None:
    demo = _queued_blocks()
    assert hooks.calm_gradio_queue_polling(demo, 0.0001, 0.0001)
    assert demo._queue.sleep_when_free >= 0.001  # only ever raised
    assert not hooks.calm_gradio_queue_polling(SimpleNamespace(), 0.01, 0.05)  # no _queue: nothing done
    odd = SimpleNamespace(_queue=SimpleNamespace(sleep_when_free="fast"))  # not a float: left alone
    assert not hooks.calm_gradio_queue_polling(odd, 0.01, 0.05)
    assert odd._queue.sleep_when_free == "fast"


def test_gradio_queue_rests_when_quiet_and_wakes_on_an_event() -> None:
    import asyncio
    import time

    demo = _queued_blocks()
    hooks.calm_gradio_queue_polling(demo, 0.01, 0.05)
    assert hooks.rest_gradio_queue_when_quiet(demo, 0.2, 0.05, 0.25), _changed(
        "gradio", "Blocks._queue.push is no longer a coroutine method, or active_jobs / the sleep floats are gone")
    queue = demo._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (0.01, 0.05)  # just started: busy
    time.sleep(0.25)
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (0.05, 0.25)  # quiet
    queue.active_jobs.append([object()])  # an event running: busy pace, for its progress
    assert queue.sleep_when_free == 0.01
    queue.active_jobs.clear()
    answer = asyncio.run(queue.push(SimpleNamespace(fn_index=None), None, None))  # Gradio's own push still answers
    assert answer[0] is False and queue.sleep_when_free == 0.01, answer  # and an arriving event wakes the queue
    queue.sleep_when_free = 0.02  # Gradio (or calm_gradio_queue_polling) setting its pace still works
    assert queue.sleep_when_free == 0.02
    assert not hooks.rest_gradio_queue_when_quiet(demo, 0.2, 0.05, 0.25)  # not installed twice
    assert not hooks.rest_gradio_queue_when_quiet(SimpleNamespace(), 0.2, 0.05, 0.25)  # no queue: nothing done


# --- datasets ---------------------------------------------------------------------------------------------------

def test_dataset_fingerprint_takes_its_private_path() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"text": ["a", "b"]})
    fingerprint = getattr(ds, "_fingerprint", None)
    assert isinstance(fingerprint, str) and fingerprint, _changed("datasets", "Dataset._fingerprint is gone")
    assert hooks.dataset_fingerprint(ds) == fingerprint
    assert hooks.dataset_fingerprint(ds.map(lambda r: {"text": r["text"] + "!"})) != fingerprint


def test_dataset_fingerprint_falls_back_to_the_public_cache_files(tmp_path, monkeypatch) -> None:
    from datasets import Dataset, load_from_disk

    for name, rows in (("one", ["a", "b"]), ("two", ["a", "b", "c"])):
        Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / name))
    one, again, two = (load_from_disk(str(tmp_path / n)) for n in ("one", "one", "two"))
    for ds in (one, again, two):
        monkeypatch.delattr(ds, "_fingerprint")
    assert hooks.dataset_fingerprint(one) == hooks.dataset_fingerprint(again)  # same files: same key
    assert hooks.dataset_fingerprint(one) != hooks.dataset_fingerprint(two)
    assert str(hooks.dataset_fingerprint(one)).startswith("files-")
    in_memory = Dataset.from_dict({"text": ["a"]})
    monkeypatch.delattr(in_memory, "_fingerprint")
    assert hooks.dataset_fingerprint(in_memory) is None  # no files to stand for it
    assert hooks.dataset_fingerprint(object()) is None   # never a crash


# --- transformers + jinja2: chat templates ----------------------------------------------------------------------

SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
TOKENIZER = SimpleNamespace(special_tokens_map=SPECIALS)  # all ChatRenderer reads of a tokenizer
CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}]
VENDOR = trl_vendor_templates()
# with {% generation %} markers: our ChatML, TRL's training variant of Qwen3, LFM2.5 as shipped; without: the rest
TEMPLATES = {"chatml": SHIPPED_TEMPLATES["chatml"].source, "alpaca": SHIPPED_TEMPLATES["alpaca"].source,
             "qwen3_training": trl_training_variant("qwen3"), "lfm2_2_5": VENDOR["lfm2_2_5"],
             "qwen3": VENDOR["qwen3"], "gptoss": VENDOR["gptoss"], "llama3_1": VENDOR["llama3_1"]}


def _public(template: str, messages: list[dict], add_generation_prompt: bool, with_spans: bool) -> tuple:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, spans = render_jinja_template([messages], chat_template=template, add_generation_prompt=add_generation_prompt,
                                            return_assistant_tokens_mask=with_spans, **SPECIALS)  # type: ignore[misc]
    return rendered[0], (spans[0] if with_spans else [])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_chat_template_direct_render_takes_its_private_path(name: str) -> None:
    from trainer_backend.data.chat_render import has_generation_markers

    template = TEMPLATES[name]
    assert template
    direct = hooks.direct_chat_template(template)
    assert direct is not None, _changed(
        "transformers or jinja2", "chat_template_utils._compile_jinja_template / _REASONING_FIELDS or the jinja "
        "Template/Environment internals DirectChatTemplate uses are gone")
    assert direct.accepts(CONVO)
    marked = has_generation_markers(template)
    for upto in (2, 3, 5):
        messages = CONVO[:upto]
        for prompt in (False, True):
            for spans in ((False, True) if marked else (False,)):
                case = f"the direct render of {name} ({upto} messages, generation prompt {prompt}, spans {spans})"
                try:
                    got = direct.render(messages, prompt, SPECIALS, spans)
                except Exception as exc:  # e.g. a jinja Context that takes other arguments
                    pytest.fail(_changed("transformers or jinja2", f"{case} fails: {exc!r}"))
                assert got == _public(template, messages, prompt, spans), \
                    _changed("transformers or jinja2", f"{case} differs from render_jinja_template's")


def test_chat_template_direct_render_raises_what_the_template_raises() -> None:
    template = VENDOR["gemma"]  # no system role: the template's raise_exception()
    direct = hooks.direct_chat_template(template)
    assert direct is not None
    with pytest.raises(Exception) as public_error:
        _public(template, CONVO, False, False)
    with pytest.raises(type(public_error.value), match="System role not supported"):
        direct.render(CONVO, False, SPECIALS)


def test_chat_template_direct_render_leaves_what_transformers_rewrites_to_it() -> None:
    direct = hooks.direct_chat_template(TEMPLATES["qwen3"])
    assert direct is not None
    assert direct.reasoning_fields, _changed("transformers", "_REASONING_FIELDS is empty")
    field = direct.reasoning_fields[0]
    assert not direct.accepts([dict(CONVO[2], **{field: "Think."})])  # aliased by transformers
    assert not direct.accepts([{"role": "user", "content": [SimpleNamespace(text="x")]}])  # copied into plain data
    assert not direct.accepts(tuple(CONVO))
    assert direct.accepts([{"role": "user", "content": [{"type": "text", "text": "x"}]}])


def test_the_chat_renderer_uses_the_direct_path() -> None:
    from trainer_backend.data.chat_render import ChatRenderer

    renderer = ChatRenderer(TOKENIZER, TEMPLATES["chatml"])
    assert renderer.direct is not None and renderer.shape(CONVO)[1], _changed(
        "transformers or jinja2", "ChatRenderer no longer takes the direct path")


@pytest.mark.parametrize("missing", ["_COMPILER", "_REASONING_FIELDS", "jinja internals", "tracker"])
def test_chat_rendering_falls_back_to_transformers_public_render(monkeypatch, missing: str) -> None:
    """As after a transformers update that renames its private compile or reasoning fields (which its own public
    render_jinja_template keeps using), or a jinja2 update that changes a compiled template's insides."""
    import jinja2

    from trainer_backend.data.chat_render import ChatRenderer, render_chat

    expected = {name: render_chat(TOKENIZER, t, CONVO) for name, t in TEMPLATES.items()}
    if missing == "jinja internals":  # a compiled template without transformers' tracker extension
        monkeypatch.setattr(hooks, "_JINJA_ENV_PARTS", (*hooks._JINJA_ENV_PARTS, "gone_in_a_jinja_update"))
        assert not hasattr(jinja2.Environment(), "gone_in_a_jinja_update")
    elif missing == "tracker":  # a compile that no longer adds the {% generation %} extension
        from transformers.utils import chat_template_utils as ctu

        monkeypatch.setattr(ctu, "_plain_compile", jinja2.Template, raising=False)
        monkeypatch.setattr(hooks, "_COMPILER", "_plain_compile")
    else:
        monkeypatch.setattr(hooks, missing, "_gone_in_a_transformers_update")
    for name, template in TEMPLATES.items():
        assert hooks.direct_chat_template(template) is None
        renderer = ChatRenderer(TOKENIZER, template)
        assert renderer.direct is None and not renderer.shape(CONVO)[1]
        assert render_chat(TOKENIZER, template, CONVO, renderer) == expected[name], name


def test_a_template_that_does_not_compile_takes_the_public_path() -> None:
    from trainer_backend.data.chat_render import ChatRenderer, render_chat
    from trainer_backend.data.issues import RowError

    assert hooks.direct_chat_template("{% if %}") is None
    with pytest.raises(RowError, match="chat template rejected"):
        render_chat(TOKENIZER, "{% if %}", CONVO, ChatRenderer(TOKENIZER, "{% if %}"))


# --- Optuna -----------------------------------------------------------------------------------------------------

def test_optuna_running_trial_takes_its_private_path() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    asked = [study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}) for _ in range(2)]
    frozen = study.get_trials(deepcopy=False)[1]
    live = hooks.optuna_running_trial(study, frozen)
    assert live is not None, _changed("optuna", "FrozenTrial._trial_id is gone")
    live.report(0.5, 3)
    live.set_user_attr("job_id", "abc")
    again = study.get_trials(deepcopy=False)[1]
    assert again.intermediate_values == {3: 0.5} and again.user_attrs == {"job_id": "abc"}, \
        _changed("optuna", "Trial(study, FrozenTrial._trial_id) is another trial")
    assert asked[1].number == again.number


def test_optuna_running_trial_without_the_private_id_is_none() -> None:
    assert hooks.optuna_running_trial(object(), object()) is None
