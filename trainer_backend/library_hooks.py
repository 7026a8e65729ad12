"""Every place LoRA Studio reaches into a library's private internals, for speed or as a workaround: one function
(or one small class) per hook, each saying what private thing it touches, why, which library versions it was
checked against, and what happens when that thing is gone.

Rules: a hook never crashes when its private thing is missing; it takes the public path instead (or, where there
is none, does without and says what that costs). tests/test_library_hooks.py asserts, for the installed versions,
that every hook still takes its private path (and gives what the public path gives): when a library update breaks
one, that test says which library changed and what to do, while the app keeps working on the public path.

Layer 0: imports nothing of ours, and the libraries only inside the functions (importing this module is free).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

Span = tuple[int, int]


# --- Gradio -----------------------------------------------------------------------------------------------------

def calm_gradio_queue_polling(demo: Any, queue_idle_s: float, progress_idle_s: float) -> bool:
    """Make Gradio's idle queue poll less often: `demo._queue.sleep_when_free` (1 ms in Gradio) and
    `demo._queue.progress_update_sleep_when_free` (10 ms) are raised to at least the given seconds.

    Why: while idle, Gradio's queue looks for new events every 1 ms and for progress updates every 10 ms: ~7% of
    a core on a 2-core Space, taken from the training job all day. There is no public setting for either.
    Checked against: gradio 6.31 (gradio.queueing.Queue, both attributes floats).
    Without them (renamed, or no longer floats): nothing is changed and Gradio polls at its own pace (costs CPU,
    not correctness). Returns whether both were found (the private path was taken)."""
    queue = getattr(demo, "_queue", None)
    found = 0
    for name, seconds in (("sleep_when_free", queue_idle_s), ("progress_update_sleep_when_free", progress_idle_s)):
        current = getattr(queue, name, None)
        if isinstance(current, float):
            setattr(queue, name, max(current, seconds))
            found += 1
    return found == 2


def rest_gradio_queue_when_quiet(demo: Any, quiet_after_s: float, queue_quiet_s: float,
                                 progress_quiet_s: float) -> bool:
    """Once no event has arrived for `quiet_after_s` seconds and none is running, Gradio's queue looks for new
    events every `queue_quiet_s` and for progress every `progress_quiet_s` instead of its (calmed) busy pace; the
    next event that arrives puts it back on the busy pace, after waiting at most `queue_quiet_s` to start.

    Why: at the calmed busy pace (10 ms / 50 ms) an idle app still spends ~2.4 % of a core polling (measured on a
    2-core box): all day on a Space, beside the training job. Quiet, it spends a fifth of that.
    Private things: `demo._queue.push` (a coroutine method Gradio calls as `blocks._queue.push(...)` for every new
    event: wrapped on the instance to note the time), the loops reading `sleep_when_free` /
    `progress_update_sleep_when_free` at every turn (made properties of a subclass the queue is switched to), and
    `active_jobs` (a list, None where a worker is free). Checked against: gradio 6.31.
    Without them: nothing is changed and the queue keeps its busy pace (costs CPU, not correctness). Returns
    whether the quiet pace was installed."""
    import inspect
    import time

    queue = getattr(demo, "_queue", None)
    names = {"sleep_when_free": queue_quiet_s, "progress_update_sleep_when_free": progress_quiet_s}
    push = getattr(queue, "push", None)
    if not (inspect.iscoroutinefunction(push) and isinstance(getattr(queue, "active_jobs", None), list)
            and all(isinstance(getattr(queue, n, None), float) for n in names)) or \
            any(isinstance(getattr(type(queue), n, None), property) for n in names):  # not twice
        return False
    last_event = [time.monotonic()]

    async def push_noting_the_time(*args: Any, **kwargs: Any) -> Any:
        last_event[0] = time.monotonic()
        return await push(*args, **kwargs)

    def pace(name: str, quiet: float) -> property:
        def get(self: Any) -> float:
            busy: float = self.__dict__[name]
            if time.monotonic() - last_event[0] < quiet_after_s or any(j is not None for j in self.active_jobs):
                return busy
            return max(busy, quiet)

        def put(self: Any, value: float) -> None:
            self.__dict__[name] = value
        return property(get, put)

    queue.__class__ = type(f"Quiet{type(queue).__name__}", (type(queue),),
                           {n: pace(n, quiet) for n, quiet in names.items()})
    setattr(queue, "push", push_noting_the_time)  # on the instance: routes.py calls blocks._queue.push
    return True


# --- datasets ---------------------------------------------------------------------------------------------------

def dataset_fingerprint(dataset: Any) -> Optional[str]:
    """The fingerprint `datasets` keeps for a Dataset (`dataset._fingerprint`): a hash of where its data came from
    (for a Hub split, the downloaded revision) and of every transform since.

    Why: the prepared-data cache key of a Hub split (data/fingerprint.py): hashing the rows themselves would cost
    a full pass over the data. `datasets` has no public accessor for it.
    Checked against: datasets 5.2 (`Dataset._fingerprint`, a str).
    Without it: a digest of the public `dataset.cache_files` (the Arrow files' names, which hold the revision, and
    sizes) and the row count, or None when the dataset has no files (then the key has only the split's name)."""
    value = getattr(dataset, "_fingerprint", None)
    if isinstance(value, str):
        return value
    try:
        files = [(f["filename"], os.path.getsize(f["filename"])) for f in dataset.cache_files]
        rows = len(dataset)
    except Exception:  # noqa: BLE001 - not a Dataset as we know it: no fingerprint rather than a crash
        return None
    if not files:
        return None
    return "files-" + hashlib.sha256(json.dumps([files, rows]).encode()).hexdigest()[:16]


# --- transformers + jinja2: chat templates ----------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Only exact JSON types: what transformers' copy into plain data (`_plain_template_data`) returns unchanged."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        return all(type(k) in _SCALARS and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False


class DirectChatTemplate:
    """A chat template rendered straight from transformers' compiled jinja template, without what
    `render_jinja_template` redoes on every call (a copy of the conversation into plain JSON types, aliasing of the
    reasoning fields, a jinja context built with a ChainMap of globals per call). For a conversation `accepts`
    says yes to, `render` returns exactly what `render_jinja_template([messages], chat_template=..., **specials)`
    returns for it (with `return_assistant_tokens_mask`: the same generation spans). An alpaca row's three renders
    cost 100 µs through transformers, 25 µs this way: a fifth of its preparation.

    Private things touched: transformers' `chat_template_utils._compile_jinja_template` (its cached, sandboxed
    compile with the {% generation %} extension, whose `environment.activate_tracker` records spans) and
    `_REASONING_FIELDS` (the fields it aliases); jinja2's `Template.root_render_func`, `.blocks`, `.globals`,
    `.name`, `environment.context_class`, `.concat` and `.handle_exception` (what `Template.render` and
    `Template.generate` do inside). `accepts` mirrors what transformers' private `_plain_template_data` and
    `_alias_reasoning_fields` leave unchanged.
    Checked against: transformers 5.23, jinja2 3.1.6.
    Without them: `direct_chat_template` returns None and every render goes through `render_jinja_template`."""

    def __init__(self, compiled: Any, reasoning_fields: tuple[str, ...]):
        self.compiled = compiled
        self.reasoning_fields = reasoning_fields
        self.globals: dict[str, Any] = dict(compiled.globals)  # what Template.render merges into each context

    def accepts(self, messages: Any) -> bool:
        """Plain JSON without reasoning fields (what data files hold): transformers' copy and aliasing leave such a
        conversation as it is, so rendering it directly gives the same text."""
        fields = self.reasoning_fields
        return type(messages) is list and all(
            type(m) is dict and _plain(m) and all(m.get(f) is None for f in fields) for m in messages)

    def render(self, messages: list[dict], add_generation_prompt: bool, specials: dict[str, str],
               with_spans: bool = False, tools: Optional[list[dict]] = None) -> tuple[str, list[Span]]:
        """Template.render (or, with spans, transformers' tracked Template.generate) with the variables
        render_jinja_template passes: the context Template.new_context would make, with the globals merged once
        (a ChainMap merged per call was most of a short template's render time). Errors are raised as jinja
        raises them (with the template's own traceback)."""
        c = self.compiled
        env = c.environment
        ctx = env.context_class(env, {**self.globals, "messages": messages, "tools": tools, "documents": None,
                                      "add_generation_prompt": add_generation_prompt, **specials},
                                c.name, c.blocks, globals=self.globals)
        if not with_spans:
            try:
                return env.concat(c.root_render_func(ctx)), []
            except Exception:  # noqa: BLE001 - re-raised by jinja with the template's own traceback
                env.handle_exception()
                raise
        blocks: list[str] = []
        indices: list[Span] = []
        with env.activate_tracker(blocks, indices):  # transformers' {% generation %} extension records spans
            try:
                for block in c.root_render_func(ctx):
                    blocks.append(block)
            except Exception:  # noqa: BLE001
                env.handle_exception()
                raise
            text = "".join(blocks)
        return text, indices


# transformers.utils.chat_template_utils' names for its cached compile and the reasoning fields it aliases
_COMPILER, _REASONING_FIELDS = "_compile_jinja_template", "_REASONING_FIELDS"
_JINJA_TEMPLATE_PARTS = ("root_render_func", "blocks", "globals", "name", "environment")
_JINJA_ENV_PARTS = ("context_class", "concat", "handle_exception", "activate_tracker")


def direct_chat_template(template: str) -> Optional[DirectChatTemplate]:
    """The template compiled as transformers compiles it, to render directly (DirectChatTemplate says why and
    what it touches); None when transformers or jinja2 no longer have what that needs, or when the template does
    not compile (then the public path fails each row with transformers' own message, as before)."""
    try:
        from transformers.utils import chat_template_utils as ctu
    except Exception:  # noqa: BLE001 - no transformers here: the public path reports it
        return None
    fields = getattr(ctu, _REASONING_FIELDS, None)
    compile_template = getattr(ctu, _COMPILER, None)
    if fields is None or compile_template is None:
        return None
    try:
        compiled = compile_template(template)
    except Exception:  # noqa: BLE001 - a template that does not compile fails each row as before
        return None
    env = getattr(compiled, "environment", None)
    if not all(hasattr(compiled, n) for n in _JINJA_TEMPLATE_PARTS) or \
            not all(hasattr(env, n) for n in _JINJA_ENV_PARTS) or getattr(env, "is_async", False):
        return None
    return DirectChatTemplate(compiled, tuple(fields))


# --- Optuna -----------------------------------------------------------------------------------------------------

def optuna_running_trial(study: Any, frozen: Any) -> Optional[Any]:
    """The live `optuna.trial.Trial` of a running trial known only as a FrozenTrial (`study.get_trials()`), to report
    its evaluations and ask the pruner: `optuna.trial.Trial(study, frozen._trial_id)`.

    Why: a sweep's driver that restarts (Resume after a crash) has lost the Trial objects `study.ask()` gave it; the
    storage id that builds one again is private (FrozenTrial._trial_id); Optuna has no public lookup by number.
    Checked against: optuna 5.1 (`_trial_id` an int; `Trial(study, trial_id)` public).
    Without it: None; the driver then follows such a trial to its end without reporting to the pruner (it cannot be
    pruned) and records its result by number (`study.tell(number, ...)`, public)."""
    trial_id = getattr(frozen, "_trial_id", None)
    if not isinstance(trial_id, int):
        return None
    import optuna

    return optuna.trial.Trial(study, trial_id)
