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
from typing import Any, Iterator, Optional, Union

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


def encode_prompt(tok: Any, meta: AdapterMeta, messages: list[dict], system: Optional[str] = None,
                  prompt_text: Optional[str] = None) -> Any:
    """The prompt's token ids ({input_ids, attention_mask}, batch of one) exactly as training rendered it: the
    training prompt template (single turn), the chat template, or plain text (prompt_text: already rendered)."""
    msgs = ([{"role": "system", "content": system}] if system else []) + list(messages)
    template = meta.single_turn_prompt()
    if prompt_text is not None:
        text = prompt_text
    elif template:  # trained on a prompt template: single turn, in the same words
        text = _fill_prompt_template(template, messages[-1]["content"])
    elif meta.chat_template == "none" or not tok.chat_template:
        text = "\n\n".join(m["content"] for m in msgs) + "\n"
    else:
        return tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return tok(text, return_tensors="pt")


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
                   prompt_text: Optional[str] = None) -> Any:
        """Token ids of the prompt exactly as training rendered it (prompt_text: already rendered)."""
        return encode_prompt(self.tokenizers[adapter.name], adapter.meta, messages, system, prompt_text)

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
    def stream(self, adapter: AdapterRef, messages: list[dict], settings: GenerationSettings,
               system: Optional[str] = None, use_adapter: bool = True,
               prompt_text: Optional[str] = None) -> Iterator[str]:
        """Yield the answer so far, token by token, until end-of-turn or max_new_tokens."""
        from contextlib import nullcontext

        from transformers import TextIteratorStreamer

        def run() -> None:
            try:
                ctx = nullcontext() if use_adapter else self.model.disable_adapter()
                with ctx:
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                streamer.end()

        errors: list[BaseException] = []
        with self.lock:
            self.activate(adapter)
            tok = self.tokenizers[adapter.name]
            enc = self.prompt_ids(adapter, messages, system, prompt_text).to(self.model.device)
            stop_ids, stop_strings = self.stop_settings(adapter)
            streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
            kwargs = dict(**enc, **settings.kwargs(), eos_token_id=stop_ids, pad_token_id=tok.pad_token_id,
                          streamer=streamer)
            if stop_strings:
                kwargs.update(stop_strings=stop_strings, tokenizer=tok)
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            text = ""
            for piece in streamer:
                text += piece
                cut = next((text.index(s) for s in stop_strings if s in text), None)
                if cut is not None:
                    yield text[:cut]
                    break
                yield text
            worker.join()
        if errors:
            raise errors[0]

    def generate(self, adapter: AdapterRef, messages: list[dict], settings: GenerationSettings,
                 system: Optional[str] = None, use_adapter: bool = True, prompt_text: Optional[str] = None) -> str:
        answer = ""
        for answer in self.stream(adapter, messages, settings, system, use_adapter, prompt_text):
            pass
        return answer.strip()


MAX_ADAPTERS_PER_MODEL = 8  # LoRA weights are small, but a public demo must not grow without end either
# One loaded base per way of loading it (ModelLoad as JSON), bounded (model_cache.py).
MODELS: ModelCache[ChatModel] = ModelCache(*limits_from_env())


def load_chat(ref: str, token: HubToken = None) -> tuple[ChatModel, AdapterRef]:
    """The cached base model for this adapter, with the adapter attached. `token`: the caller's (access.hub_token).
    On a Space a base another caller loaded is served only to a caller whose own token can read it too."""
    adapter = resolve_adapter(ref, token)
    load = adapter.load
    if not Path(load.base_model).expanduser().is_dir():  # a base another caller loaded: may this one read it?
        check_hub_read(load.base_model, "model", load.revision, token)
    chat = MODELS.get(load.model_dump_json(), lambda: ChatModel(load, token))
    chat.attach(adapter)
    return chat, adapter


@gpu_call
def chat_stream(ref: str, messages: list[dict], settings: Optional[GenerationSettings] = None,
                system: Optional[str] = None, use_adapter: bool = True, token: HubToken = None) -> Iterator[str]:
    chat, adapter = load_chat(ref, token)
    yield from chat.stream(adapter, messages, settings or GenerationSettings(), system, use_adapter)


@gpu_call
def chat_turn(ref: str, messages: list[dict], base_messages: Optional[list[dict]],
              settings: Optional[GenerationSettings] = None, system: Optional[str] = None,
              token: HubToken = None) -> Iterator[tuple[str, Optional[str]]]:
    """One chat turn: (fine-tuned answer so far, base answer so far or None), streamed. With `base_messages`
    (compare mode: the base model's own history) the base answers after the fine-tuned one; one generation
    each, on one loaded model."""
    chat, adapter = load_chat(ref, token)
    settings = settings or GenerationSettings()
    tuned = ""
    for tuned in chat.stream(adapter, messages, settings, system):
        yield tuned, None
    if base_messages is None:
        return
    base = ""
    for base in chat.stream(adapter, base_messages, settings, system, use_adapter=False):
        yield tuned, base
    yield tuned, base


@gpu_call
def compare(ref: str, messages: list[dict], settings: Optional[GenerationSettings] = None,
            system: Optional[str] = None, token: HubToken = None) -> dict[str, str]:
    """The same prompt answered by the base model (adapter disabled) and the fine-tuned one."""
    chat, adapter = load_chat(ref, token)
    settings = settings or GenerationSettings()
    return {"base": chat.generate(adapter, messages, settings, system, use_adapter=False),
            "fine_tuned": chat.generate(adapter, messages, settings, system, use_adapter=True)}
