"""Render a conversation with a chat template and find what the model is trained on.

Trained = each assistant turn as the model generates it: from where the generation prompt ends through the
turn's end-of-turn marker. Nothing of system, user or tool text, and not the assistant header the generation
prompt already holds (DeepSeek's <｜Assistant｜>, GPT-OSS's <|start|>assistant, Qwen's "assistant\\n").

- Templates with {% generation %} markers say what assistant output is; the generation prompt is cut out of it.
- Templates without them: each assistant turn is found by rendering the conversation up to it with and without
  the turn (growing prefixes).
- A turn the template renders differently once later turns exist (its reasoning dropped from history, as Qwen3,
  GPT-OSS and LFM2.5 do) is kept as context and not trained: it is not the text the model would generate there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, cast

from ..library_hooks import DirectChatTemplate, direct_chat_template
from .issues import RowError
from .vendor_templates import shape_messages

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

Span = tuple[int, int]


def has_generation_markers(template: Optional[str]) -> bool:
    return bool(template and _GENERATION_TAG.search(template))


_GENERATION_TAGS = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def without_generation_markers(template: str) -> str:
    """The template as it renders for inference: TRL's {% generation %} markers only say which text trains, and a
    runtime other than transformers' (llama.cpp's, Ollama's) may not know the tag at all."""
    return _GENERATION_TAGS.sub("", template)


@dataclass
class RenderedChat:
    text: str
    spans: list[Span] = field(default_factory=list)  # character spans that carry loss
    history_turns: int = 0  # assistant turns kept as untrained context (the template rewrites them as history)
    bare_answer: bool = False  # the template put nothing of its own after the last answer (no end-of-turn to train)


def render_template(tokenizer: Any, template: str, messages: list[dict], add_generation_prompt: bool = False,
                    with_spans: bool = False, tools: Optional[list[dict]] = None) -> tuple[str, list[Span]]:
    return ChatRenderer(tokenizer, template).render(messages, add_generation_prompt, with_spans, tools=tools)


class ChatRenderer:
    """transformers' render_jinja_template for one template and tokenizer, without what it redoes on every call.
    It copies the conversation into plain JSON types and aliases reasoning fields; for plain JSON without reasoning
    fields (what data files hold) that copy equals the input, so such a conversation is rendered straight from the
    same compiled template with the same variables (library_hooks.DirectChatTemplate: it reaches into transformers'
    and jinja2's internals). Anything else, or everything when those internals are gone, goes through
    render_jinja_template. (An alpaca row's three renders cost 100 µs that way, 25 µs this way: a fifth of its
    preparation.)"""

    def __init__(self, tokenizer: Any, template: str):
        specials: dict[str, Any] = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        specials.setdefault("bos_token", "")
        specials.setdefault("eos_token", "")
        self.template, self.specials, self.marked = template, specials, has_generation_markers(template)
        self.direct: Optional[DirectChatTemplate] = direct_chat_template(template) \
            if all(type(v) is str for v in specials.values()) else None

    def shape(self, messages: list[dict]) -> tuple[list[dict], bool]:
        """The messages as the template reads them, and whether they may take the direct path."""
        shaped = shape_messages(self.template, messages)
        return shaped, self.direct is not None and self.direct.accepts(shaped)

    def render(self, messages: list[dict], add_generation_prompt: bool = False, with_spans: bool = False,
               direct: Optional[bool] = None, tools: Optional[list[dict]] = None) -> tuple[str, list[Span]]:
        """`messages` raw (direct=None), or as `shape` gave them with its verdict (prefixes of them too). `tools`:
        the tool schemas the template renders (tool calling); the direct path takes them as given, which is what
        transformers' plain-JSON copy leaves of schemas read from data files."""
        if direct is None:
            messages, direct = self.shape(messages)
        if self.direct is None or not direct or (with_spans and not self.marked):  # (the latter: transformers warns)
            from transformers.utils.chat_template_utils import render_jinja_template

            # annotated `-> str` in transformers, it returns (rendered chats, each one's generation spans)
            rendered, generated = cast("tuple[list[str], list[list[Span]]]", render_jinja_template(
                [messages], tools=cast("Optional[list[Any]]", tools or None), chat_template=self.template,
                return_assistant_tokens_mask=with_spans, add_generation_prompt=add_generation_prompt, **self.specials))
            return rendered[0], (generated[0] if with_spans else [])
        return self.direct.render(messages, add_generation_prompt, self.specials, with_spans, tools or None)


def render_chat(tokenizer: Any, template: str, messages: list[dict], renderer: Optional[ChatRenderer] = None,
                tools: Optional[list[dict]] = None, train_from: int = 0) -> RenderedChat:
    """The conversation's text and the spans of assistant output the model is trained on (incl. end-of-turn).
    `renderer`: one ChatRenderer of this tokenizer and template, reused over many conversations. `tools`: the
    schemas the conversation may call (rendered, never trained). `train_from`: assistant turns before this message
    index are context (a conversational prompt-completion's prompt)."""
    try:
        return _render_chat(renderer or ChatRenderer(tokenizer, template), messages, tools, train_from)
    except RowError:
        raise
    except Exception as exc:  # the template's raise_exception(): e.g. roles must alternate, no system role
        raise RowError(f"chat template rejected the conversation: {exc}",
                       fix="fix the turn order (or drop the system prompt if the template has no system role), "
                           "or pick another data.chat_template") from None


def _render_chat(r: ChatRenderer, messages: list[dict], tools: Optional[list[dict]] = None,
                 train_from: int = 0) -> RenderedChat:
    marked = r.marked
    shaped, direct = r.shape(messages)
    text, spans = r.render(shaped, with_spans=marked, direct=direct, tools=tools)
    spans = [(s, e) for s, e in spans if e > s]
    positions = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    turns = [_locate_turn(r, shaped, direct, messages[i], i, text, marked, tools) for i in positions]
    own: list[Span] = []  # without markers: the spans found by growing prefixes
    history_turns = 0
    for k, turn in enumerate(turns):
        if turn is None:  # an opening assistant turn the template cannot render a prompt for: as marked
            continue
        header_start, start, turn_end, as_generated = turn
        if positions[k] < train_from:  # part of the prompt: context, like the user's turns
            next_start = next((t[0] for t in turns[k + 1:] if t is not None), len(text))
            spans = [piece for span in spans for piece in _minus(span, (header_start, next_start))]
            continue
        if not as_generated:
            history_turns += 1
            # the whole turn, up to where the next assistant turn's header starts, is context
            next_start = next((t[0] for t in turns[k + 1:] if t is not None), len(text))
            spans = [piece for span in spans for piece in _minus(span, (header_start, next_start))]
            continue
        spans = [piece for span in spans for piece in _minus(span, (header_start, start))]
        own.append((start, turn_end))
    # a separator after the end-of-turn marker is never generated (generation stops at the marker): not trained
    trained = [(s, s + len(text[s:e].rstrip())) for s, e in (spans if marked else own)]
    trained = _without_trailing_eos(text, [(s, e) for s, e in trained if e > s], messages, r.specials["eos_token"])
    return RenderedChat(text, trained, history_turns,
                        _ends_with_answer(text[:trained[-1][1]] if trained else text, messages))


def _ends_with_answer(trained_text: str, messages: list[dict]) -> bool:
    """Whether `trained_text` ends with the last answer itself, nothing of the template's after it."""
    content = messages[-1].get("content") if messages and messages[-1]["role"] == "assistant" else None
    return isinstance(content, str) and bool(content.strip()) and trained_text.rstrip().endswith(content.strip())


def _without_trailing_eos(text: str, spans: list[Span], messages: list[dict], eos: str) -> list[Span]:
    """Templates that close the conversation with EOS after the last turn's own end-of-turn marker (TRL's Phi-3
    variants mark it as generated; Phi-3.5's EOS is its <|end|>, so it trains "<|end|>\n<|end|>"): the model stops
    at the marker and never generates that EOS, so it is not trained. An EOS that is the marker itself (the answer
    ends right before it: zephyr, DeepSeek) stays."""
    if not eos or not spans or messages[-1]["role"] != "assistant":
        return spans
    s, e = spans[-1]
    if not text[s:e].endswith(eos):
        return spans
    head = text[s:e - len(eos)].rstrip()
    if head:  # the marker and the EOS in one span
        return spans if _ends_with_answer(head, messages) else spans[:-1] + [(s, s + len(head))]
    before = text[spans[-2][1]:s] if len(spans) > 1 else None
    return spans[:-1] if before is not None and not before.strip() else spans


def _locate_turn(r: ChatRenderer, shaped: list[dict], direct: bool, message: dict, i: int, text: str,
                 marked: bool, tools: Optional[list[dict]] = None) -> Optional[tuple[int, int, int, bool]]:
    """(header start, generation start, turn end, rendered as generated?) of assistant turn i, positions in text."""
    try:
        prompt_end, _ = r.render(shaped[:i], direct=direct, tools=tools)
        with_prompt, _ = r.render(shaped[:i], add_generation_prompt=True, direct=direct, tools=tools)
    except Exception:  # noqa: BLE001 - e.g. a template that indexes messages[0] given none
        if i == 0 and marked:
            return None
        raise
    # the last turn renders as the whole conversation (rendered already)
    upto = text if i + 1 == len(shaped) else r.render(shaped[: i + 1], direct=direct, tools=tools)[0]
    if not marked and not upto.startswith(with_prompt):
        raise RowError("the chat template's generation prompt is not how it renders an assistant turn, so what "
                       "the model generates cannot be located",
                       fix="choose a shipped template (data.chat_template: chatml), or set "
                           "training.completion_only_loss: false to train on the whole text knowingly")
    start = common_prefix_length(with_prompt, text)  # where the model starts generating this turn
    header_start = min(common_prefix_length(prompt_end, text), start)
    # the separator after a turn is not the answer; an end-of-turn marker rendered otherwise in history ends it too
    turn_end = min(len(upto.rstrip()), common_prefix_length(upto, text))
    return header_start, start, turn_end, _renders_as_generated(text, upto, message)


def common_prefix_length(a: str, b: str) -> int:
    """len(os.path.commonprefix([a, b])), by bisecting on slice comparisons (C speed, not a Python loop)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while hi - lo > 1:  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _renders_as_generated(text: str, upto: str, message: dict) -> bool:
    """Does the full conversation render this turn as it renders when the turn is the last one (= as generated)?
    Compared through the answer's text: the end-of-turn marker may differ (GPT-OSS ends its last turn with
    <|return|>, earlier ones with <|end|>)."""
    content = message.get("content")
    cut = upto.rfind(content) + len(content) if isinstance(content, str) and content and content in upto \
        else len(upto)
    return text.startswith(upto[:cut])


def _minus(span: Span, cut: Span) -> list[Span]:
    (s, e), (a, b) = span, cut
    if b <= s or a >= e or b <= a:
        return [span]
    return [p for p in ((s, a), (b, e)) if p[1] > p[0]]
