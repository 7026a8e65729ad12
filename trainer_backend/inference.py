"""Chat with a trained adapter: the training template, streaming, stop at end-of-turn, base-vs-tuned compare.

One base model is loaded per way of loading it (base, revision, dtype, quantization: as the adapter's training
recorded it, through training/model_loading.load_model) and kept; adapters are attached to it by name, so
switching adapters or comparing with the base (adapter disabled) never loads a second copy.
"""
from __future__ import annotations

import json
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from .access import check_hub_read
from .generation import GenerationSettings
from .job_files import ADAPTER_DIR
from .model_cache import ModelCache, limits_from_env
from .training.adapter_meta import AdapterMeta, ModelLoad, read_adapter_meta

try:  # ZeroGPU Spaces grant a GPU per call to functions wrapped by spaces.GPU; elsewhere it is a no-op
    import spaces

    gpu_call = spaces.GPU
except Exception:  # pragma: no cover - spaces is in requirements, but the app must not die without it
    def gpu_call(fn: Any = None, **_: Any) -> Any:
        return fn if fn is not None else (lambda f: f)


HubToken = Union[str, bool, None]  # access.hub_token: a token, False for none at all, None for the library's default


@dataclass
class AdapterRef:
    """A trained adapter on disk: where it is, which base it needs, how it was trained."""
    path: Path
    base_model: str
    meta: AdapterMeta

    @property
    def load(self) -> ModelLoad:
        """How to load the base: as training did."""
        return self.meta.load_settings()

    @property
    def name(self) -> str:
        return "a" + str(abs(hash(str(self.path.resolve()))))  # a valid, stable adapter name


def resolve_adapter(ref: str, token: HubToken = None) -> AdapterRef:
    """A job dir (with adapter/), an adapter folder, or a Hub repo id -> AdapterRef."""
    path = Path(ref).expanduser()
    if (path / ADAPTER_DIR / "adapter_config.json").is_file():
        path = path / ADAPTER_DIR
    if not (path / "adapter_config.json").is_file():
        if path.exists() or ref.startswith((".", "/")):
            raise FileNotFoundError(f"{ref}: no adapter here (expected adapter_config.json, or a job folder "
                                    "with adapter/)")
        from .hub import pull_adapter  # clear errors for missing / gated repos

        check_hub_read(ref, "model", None, token)  # never someone else's cached copy (access.check_hub_read)
        path = Path(pull_adapter(ref, token=token))
    config = json.loads((path / "adapter_config.json").read_text())
    meta = read_adapter_meta(path) or AdapterMeta(base_model=config["base_model_name_or_path"])
    return AdapterRef(path, meta.base_model or config["base_model_name_or_path"], meta)


def _fill_prompt_template(template: str, message: str) -> str:
    """Single-turn prompt in the training prompt template: every placeholder takes the user's message."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    return template.format_map({f: message for f in fields})


def render_prompt(tok: Any, meta: AdapterMeta, messages: list[dict], system: Optional[str] = None,
                  prompt_text: Optional[str] = None, tools: Optional[list[dict]] = None) -> tuple[str, bool]:
    """The prompt's text exactly as training rendered it (the training prompt template for a single turn, the
    chat template, or plain text; prompt_text: already rendered), and whether the tokenizer adds its own special
    tokens to it (not to a chat template's output, which writes its own). `tools`: the tool schemas the
    conversation may call (tool_calls.py's canonical shape), rendered by the chat template's own tool support."""
    msgs = ([{"role": "system", "content": system}] if system else []) + list(messages)
    template = meta.single_turn_prompt()
    if prompt_text is not None:
        return prompt_text, True
    if template:  # trained on a prompt template: single turn, in the same words
        return _fill_prompt_template(template, messages[-1]["content"]), True
    if meta.chat_template == "none" or not tok.chat_template:
        return "\n\n".join(m["content"] for m in msgs) + "\n", True
    return tok.apply_chat_template(msgs, tools=tools or None, add_generation_prompt=True, tokenize=False), False


def encode_prompt(tok: Any, meta: AdapterMeta, messages: list[dict], system: Optional[str] = None,
                  prompt_text: Optional[str] = None, tools: Optional[list[dict]] = None) -> Any:
    """The prompt's token ids ({input_ids, attention_mask}, batch of one) exactly as training rendered it
    (render_prompt)."""
    text, add_special = render_prompt(tok, meta, messages, system, prompt_text, tools)
    return tok(text, add_special_tokens=add_special, return_tensors="pt")


_PROMPT_TOKENIZERS: OrderedDict[str, Any] = OrderedDict()  # adapter folder -> tokenizer, for prompt_tokens only
_PROMPT_LOCK = threading.Lock()  # a fast tokenizer must not be used by two threads at once


def prompt_tokens(ref: str, messages: list[dict], system: Optional[str] = None, token: HubToken = None) -> int:
    """How many tokens the prompt has as the model will receive it (system prompt, every message, role names and
    template markup: encode_prompt, with the adapter's own tokenizer), without loading the model; a public demo
    checks this before any generation. The tokenizer is loaded apart from ChatModel's (which a generation may be
    using) and kept for the last few adapters."""
    adapter = resolve_adapter(ref, token)
    key = str(adapter.path.resolve())
    with _PROMPT_LOCK:
        tok = _PROMPT_TOKENIZERS.get(key)
        if tok is None:
            from transformers import AutoTokenizer

            tok = _PROMPT_TOKENIZERS[key] = AutoTokenizer.from_pretrained(str(adapter.path))
            while len(_PROMPT_TOKENIZERS) > MAX_ADAPTERS_PER_MODEL:
                _PROMPT_TOKENIZERS.popitem(last=False)
        _PROMPT_TOKENIZERS.move_to_end(key)
        return len(encode_prompt(tok, adapter.meta, messages, system)["input_ids"][0])


class ChatModel:
    """A base model with any number of adapters attached; generation is serialised (adapter state is global)."""

    def __init__(self, load: ModelLoad, token: HubToken = None):
        from .training.model_loading import load_model, serving_device

        self.base_model = load.base_model
        self.load = load
        self.model: Any = load_model(load, "causal", serving_device(),
                                     **({} if token is None else {"token": token})).eval()
        self.adapters: OrderedDict[str, AdapterRef] = OrderedDict()  # least recently used first
        self.tokenizers: dict[str, Any] = {}
        self.lock = threading.Lock()

    def attach(self, adapter: AdapterRef) -> None:
        with self.lock:  # never while a generation of this model runs: which adapter is active is global state
            if adapter.name in self.adapters:
                self.adapters.move_to_end(adapter.name)
                return
            self._drop_oldest_adapters(MAX_ADAPTERS_PER_MODEL - 1)
            self._load_adapter(adapter)

    def _load_adapter(self, adapter: AdapterRef) -> None:
        from peft import PeftModel
        from transformers import AutoTokenizer

        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, str(adapter.path), adapter_name=adapter.name).eval()
        else:
            self.model.load_adapter(str(adapter.path), adapter_name=adapter.name)
        self._cast_adapter(adapter)
        self.adapters[adapter.name] = adapter
        self.tokenizers[adapter.name] = AutoTokenizer.from_pretrained(str(adapter.path))

    def activate(self, adapter: AdapterRef) -> None:
        """Make `adapter` the active one; the caller holds self.lock. Loads it again if other requests' adapters
        pushed it out since load_chat."""
        if adapter.name not in self.adapters:
            self._drop_oldest_adapters(MAX_ADAPTERS_PER_MODEL - 1)
            self._load_adapter(adapter)
        self.adapters.move_to_end(adapter.name)
        self.model.set_adapter(adapter.name)

    def _drop_oldest_adapters(self, keep: int) -> None:
        while len(self.adapters) > max(keep, 1):
            name, _ = self.adapters.popitem(last=False)
            self.tokenizers.pop(name, None)
            self.model.set_adapter(next(reversed(self.adapters)))  # deleting the active one makes peft warn
            self.model.delete_adapter(name)

    def _cast_adapter(self, adapter: AdapterRef) -> None:
        """Compute with the adapter in the dtype it trained in (TRL trains QLoRA adapters in bf16): peft loads
        adapter weights into layers of the base's dtype, and the served logits would not be the trained model's."""
        import torch

        if not adapter.meta.adapter_dtype:
            return
        dtype = getattr(torch, adapter.meta.adapter_dtype)
        for name, param in self.model.named_parameters():
            if f".{adapter.name}." in name:
                param.data = param.data.to(dtype)

    # ---- prompting --------------------------------------------------------------------------------
    def prompt_ids(self, adapter: AdapterRef, messages: list[dict], system: Optional[str] = None,
                   prompt_text: Optional[str] = None, tools: Optional[list[dict]] = None) -> Any:
        """Token ids of the prompt exactly as training rendered it (prompt_text: already rendered)."""
        return encode_prompt(self.tokenizers[adapter.name], adapter.meta, messages, system, prompt_text, tools)

    def stop_settings(self, adapter: AdapterRef) -> tuple[list[int], list[str]]:
        """Token ids and strings that end a turn: EOS, plus the template's end-of-turn marker."""
        tok = self.tokenizers[adapter.name]
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        strings: list[str] = []
        eot = adapter.meta.end_of_turn
        if eot:
            eot_ids = tok(eot, add_special_tokens=False)["input_ids"]
            if len(eot_ids) == 1:
                ids.add(eot_ids[0])
            else:
                strings.append(eot)
        return sorted(ids), strings

    # ---- generation -------------------------------------------------------------------------------
    def can_mix(self, adapter: AdapterRef) -> bool:
        """Whether one batch may hold rows with this adapter on and off (peft's mixed adapter batches; DoRA
        adapters cannot)."""
        config = getattr(self.model, "peft_config", {}).get(adapter.name)
        return not getattr(config, "use_dora", False)

    def stream_many(self, adapter: AdapterRef, asks: list["Ask"], settings: GenerationSettings,
                    system: Optional[str] = None) -> Iterator[list[str]]:
        """Every answer so far, all growing together, token by token, until each reaches end-of-turn or
        max_new_tokens: one generate call over a left-padded batch whose rows have the adapter on or off (peft's
        `adapter_names`, "__base__" for off), so the base and the fine-tuned model answer at the same time on one
        loaded model, with no global adapter switch another request could see. A lone base row (or a DoRA
        adapter, which cannot mix) runs with the adapter disabled instead."""
        import queue
        from contextlib import nullcontext

        import torch

        def run() -> None:
            try:
                off = len(asks) == 1 and not asks[0].use_adapter
                with self.model.disable_adapter() if off else nullcontext():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
            finally:
                snapshots.put(None)

        errors: list[BaseException] = []
        snapshots: "queue.Queue[Optional[list[str]]]" = queue.Queue()
        with self.lock:
            self.activate(adapter)
            tok = self.tokenizers[adapter.name]
            stop_ids, stop_strings = self.stop_settings(adapter)
            pad = tok.pad_token_id if tok.pad_token_id is not None else (stop_ids or [0])[0]
            rows = [self.prompt_ids(adapter, a.messages, system, a.prompt_text, a.tools)["input_ids"][0].tolist()
                    for a in asks]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.model.device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)
            kwargs: dict[str, Any] = dict(input_ids=ids, attention_mask=mask, **settings.kwargs(),
                                          eos_token_id=stop_ids, pad_token_id=pad,
                                          streamer=_RowsStreamer(tok, len(rows), stop_ids, snapshots))
            if len(asks) > 1:
                if not self.can_mix(adapter):
                    raise ValueError("a DoRA adapter cannot answer beside the base in one batch")
                kwargs["adapter_names"] = [adapter.name if a.use_adapter else "__base__" for a in asks]
            if stop_strings:
                kwargs.update(stop_strings=stop_strings, tokenizer=tok)
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            final: list[Optional[str]] = [None] * len(asks)  # a row cut at a stop string grows no more
            while (texts := snapshots.get()) is not None:
                for i, text in enumerate(texts):
                    cut = next((text.index(s) for s in stop_strings if s in text), None)
                    if cut is not None and final[i] is None:
                        final[i] = text[:cut]
                yield [f if f is not None else t for f, t in zip(final, texts)]
            worker.join()
        if errors:
            raise errors[0]

    def stream(self, adapter: AdapterRef, messages: list[dict], settings: GenerationSettings,
               system: Optional[str] = None, use_adapter: bool = True,
               prompt_text: Optional[str] = None, tools: Optional[list[dict]] = None) -> Iterator[str]:
        """Yield the answer so far, token by token, until end-of-turn or max_new_tokens."""
        for texts in self.stream_many(adapter, [Ask(messages, use_adapter, prompt_text, tools)], settings, system):
            yield texts[0]

    def generate_many(self, adapter: AdapterRef, asks: list["Ask"], settings: GenerationSettings,
                      system: Optional[str] = None) -> list[str]:
        """Every answer, complete (one batch: stream_many)."""
        answers = [""] * len(asks)
        for answers in self.stream_many(adapter, asks, settings, system):
            pass
        return [a.strip() for a in answers]

    def generate(self, adapter: AdapterRef, messages: list[dict], settings: GenerationSettings,
                 system: Optional[str] = None, use_adapter: bool = True, prompt_text: Optional[str] = None,
                 tools: Optional[list[dict]] = None) -> str:
        return self.generate_many(adapter, [Ask(messages, use_adapter, prompt_text, tools)], settings, system)[0]


@dataclass
class Ask:
    """One row of a generation batch: the conversation (or the prompt already rendered) and which model answers."""
    messages: list[dict]
    use_adapter: bool = True
    prompt_text: Optional[str] = None
    tools: Optional[list[dict]] = None  # tool schemas the chat template renders (tool_calls.py's shape)


class _RowsStreamer:
    """A generate() streamer for a batch: after each step, every row's answer so far (decoded without special
    tokens; a row that reached a stop token takes no more) into `out`; None when generation ends."""

    def __init__(self, tok: Any, rows: int, stop_ids: list[int], out: Any):
        self.tok, self.stop, self.out = tok, set(stop_ids), out
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() hands over the prompt first
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row] or token in self.stop:
                self.done[row] = True
                continue
            self.ids[row].append(token)
        # a character split across tokens decodes to U+FFFD until its last byte arrives: hold it back till then
        self.out.put([self.tok.decode(r, skip_special_tokens=True).rstrip("\ufffd") for r in self.ids])

    def end(self) -> None:
        self.out.put([self.tok.decode(r, skip_special_tokens=True) for r in self.ids])


MAX_ADAPTERS_PER_MODEL = 8  # LoRA weights are small, but a public demo must not grow without end either
# One loaded base per way of loading it (ModelLoad as JSON), bounded (model_cache.py).
MODELS: ModelCache[ChatModel] = ModelCache(*limits_from_env())


def is_loaded(adapter: AdapterRef) -> bool:
    """Whether this adapter's base is loaded already (a chat turn answers without a load phase)."""
    return adapter.load.model_dump_json() in MODELS.keys()


def load_chat(ref: Union[str, AdapterRef], token: HubToken = None) -> tuple[ChatModel, AdapterRef]:
    """The cached base model for this adapter, with the adapter attached. `token`: the caller's (access.hub_token).
    On a Space a base another caller loaded is served only to a caller whose own token can read it too."""
    adapter = ref if isinstance(ref, AdapterRef) else resolve_adapter(ref, token)
    load = adapter.load
    if not Path(load.base_model).expanduser().is_dir():  # a base another caller loaded: may this one read it?
        check_hub_read(load.base_model, "model", load.revision, token)
    chat = MODELS.get(load.model_dump_json(), lambda: ChatModel(load, token))
    chat.attach(adapter)
    return chat, adapter


@gpu_call
def chat_stream(ref: str, messages: list[dict], settings: Optional[GenerationSettings] = None,
                system: Optional[str] = None, use_adapter: bool = True, token: HubToken = None,
                tools: Optional[list[dict]] = None) -> Iterator[str]:
    """The answer so far, token by token. `tools`: the tool schemas the chat template renders (tool_calls.py)."""
    chat, adapter = load_chat(ref, token)
    yield from chat.stream(adapter, messages, settings or GenerationSettings(), system, use_adapter, tools=tools)


@gpu_call
def chat_turn(ref: str, messages: list[dict], base_messages: Optional[list[dict]],
              settings: Optional[GenerationSettings] = None, system: Optional[str] = None,
              token: HubToken = None, on_phase: Optional[Callable[[str], None]] = None,
              tools: Optional[list[dict]] = None) -> Iterator[tuple[str, Optional[str]]]:
    """One chat turn: (fine-tuned answer so far, base answer so far or None), streamed. With `base_messages`
    (compare mode: the base model's own history) both answer at the same time, in one batch on one loaded model
    (ChatModel.stream_many; a DoRA adapter answers first, then the base). `on_phase("loading model")` is called,
    and ("", "" or None) yielded so a page can show it, before a base that is not loaded yet loads. `tools`: the
    tool schemas both sides may call (the chat template renders them; tool_calls.py's shape)."""
    adapter = resolve_adapter(ref, token)
    compare_mode = base_messages is not None
    if on_phase is not None and not is_loaded(adapter):
        on_phase("loading model")
        yield "", "" if compare_mode else None
    chat, adapter = load_chat(adapter, token)
    if on_phase is not None:
        on_phase("answering")
    settings = settings or GenerationSettings()
    asks = [Ask(messages, tools=tools)] + ([Ask(base_messages, use_adapter=False, tools=tools)]
                                           if base_messages is not None else [])
    if len(asks) == 1 or chat.can_mix(adapter):
        for texts in chat.stream_many(adapter, asks, settings, system):
            yield texts[0], texts[1] if compare_mode else None
        return
    tuned = ""
    for tuned in chat.stream(adapter, messages, settings, system, tools=tools):
        yield tuned, ""
    for base in chat.stream(adapter, asks[1].messages, settings, system, use_adapter=False, tools=tools):
        yield tuned, base


@gpu_call
def compare(ref: str, messages: list[dict], settings: Optional[GenerationSettings] = None,
            system: Optional[str] = None, token: HubToken = None,
            tools: Optional[list[dict]] = None) -> dict[str, str]:
    """The same prompt answered by the base model (adapter disabled) and the fine-tuned one, in one batch when the
    adapter allows it. `tools`: the tool schemas both may call."""
    chat, adapter = load_chat(ref, token)
    settings = settings or GenerationSettings()
    if chat.can_mix(adapter):
        tuned, base = chat.generate_many(adapter, [Ask(messages, tools=tools), Ask(messages, False, tools=tools)],
                                         settings, system)
        return {"base": base, "fine_tuned": tuned}
    return {"base": chat.generate(adapter, messages, settings, system, use_adapter=False, tools=tools),
            "fine_tuned": chat.generate(adapter, messages, settings, system, use_adapter=True, tools=tools)}
