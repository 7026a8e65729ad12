"""Chat templates and prompt templates: turn canonical examples into text with trainable character spans.

Every template shipped here wraps assistant content *and its end-of-turn marker* in {% generation %} so the
model is trained to stop. For a tokenizer's own template without those markers, assistant spans are found by
rendering growing prefixes of the conversation (works for any template that renders earlier turns stably).
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Optional

from ..spec import PromptTemplate
from .issues import RowError

_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{{ '\\n' }}{% else %}{{ message['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
_LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_ALPACA = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n### Response:\\n' }}"
    "{% else %}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\\n\\n' }}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str
    end_of_turn: Optional[str]  # the string that ends an assistant turn; None = the tokenizer's eos


SHIPPED_TEMPLATES = {
    "chatml": ChatTemplate("chatml", _CHATML, "<|im_end|>"),
    "zephyr": ChatTemplate("zephyr", _ZEPHYR, None),
    "llama3": ChatTemplate("llama3", _LLAMA3, "<|eot_id|>"),
    "alpaca": ChatTemplate("alpaca", _ALPACA, None),
}

PROMPT_PRESETS = {
    "alpaca": PromptTemplate(
        prompt="Below is an instruction that describes a task, paired with an input that provides further context. "
               "Write a response that appropriately completes the request.\n\n### Instruction:\n{prompt}\n\n"
               "### Input:\n{input}\n\n### Response:\n",
        prompt_if_empty="Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n### Instruction:\n{prompt}\n\n### Response:\n",
        response="{response}"),
    "qa": PromptTemplate(prompt="### Question:\n{prompt}\n\n### Answer:\n", response="{response}"),
}

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: Optional[str]) -> bool:
    return bool(template) and bool(_GENERATION_TAG.search(template))


def resolve_chat_template(tokenizer: Any, name: str) -> Optional[str]:
    """The Jinja source to use, installed on the tokenizer so it is saved with the adapter. None for 'none'."""
    if name == "none":
        return None
    if name == "tokenizer":
        if not getattr(tokenizer, "chat_template", None):
            raise RowError("the tokenizer has no chat template of its own",
                           fix="set data.chat_template to chatml, zephyr, llama3 or alpaca (or 'none' for plain "
                               "prompt/response text)")
        return tokenizer.chat_template
    tokenizer.chat_template = SHIPPED_TEMPLATES[name].source
    return tokenizer.chat_template


def end_of_turn(tokenizer: Any, chat_template: str) -> Optional[str]:
    """The string generation must stop at for this template (inference uses it too)."""
    if chat_template in SHIPPED_TEMPLATES:
        return SHIPPED_TEMPLATES[chat_template].end_of_turn or tokenizer.eos_token
    for marker in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|END_OF_TURN_TOKEN|>"):
        if chat_template == "tokenizer" and marker in (tokenizer.chat_template or ""):
            return marker
    return tokenizer.eos_token


# ---- chat rendering ---------------------------------------------------------------------------------


def render_template(tokenizer: Any, template: str, messages: list[dict], add_generation_prompt: bool = False,
            with_spans: bool = False) -> tuple[str, list[tuple[int, int]]]:
    from transformers.utils.chat_template_utils import render_jinja_template

    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    specials.setdefault("bos_token", "")
    specials.setdefault("eos_token", "")
    rendered, indices = render_jinja_template([messages], chat_template=template,
                                              return_assistant_tokens_mask=with_spans,
                                              add_generation_prompt=add_generation_prompt, **specials)
    return rendered[0], (indices[0] if with_spans else [])


def render_chat(tokenizer: Any, template: str, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation; return the text and the character spans of assistant output (incl. end-of-turn)."""
    try:
        if has_generation_markers(template):
            text, spans = render_template(tokenizer, template, messages, with_spans=True)
            return text, [(s, e) for s, e in spans if e > s]
        text, _ = render_template(tokenizer, template, messages)
        spans = []
        for i, msg in enumerate(messages):
            if msg["role"] != "assistant":
                continue
            before, _ = render_template(tokenizer, template, messages[:i], add_generation_prompt=True)
            upto, _ = render_template(tokenizer, template, messages[: i + 1])
            if not (upto.startswith(before) and text.startswith(upto)):
                raise RowError("the tokenizer's chat template renders earlier turns differently as the conversation "
                               "grows, so assistant turns cannot be located", fix="choose a shipped template "
                               "(data.chat_template: chatml) or set training.completion_only_loss: false")
            spans.append((len(before), len(upto.rstrip())))  # the separator after a turn is not the answer
        return text, spans
    except RowError:
        raise
    except Exception as exc:  # the template's raise_exception(): e.g. roles must alternate
        raise RowError(f"chat template rejected the conversation: {exc}",
                       fix="fix the turn order, or pick another data.chat_template") from None


# ---- prompt templates -------------------------------------------------------------------------------


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def render_prompt_template(tpl: PromptTemplate, row: dict, roles: dict[str, str]) -> tuple[str, str]:
    """Fill a prompt template. `roles` maps {prompt, input, response, system} to the row's column names."""
    if tpl.preset:
        base = PROMPT_PRESETS[tpl.preset]
        tpl = PromptTemplate(prompt=tpl.prompt or base.prompt, response=tpl.response or base.response,
                             prompt_if_empty=tpl.prompt_if_empty or base.prompt_if_empty)
    values = {k: ("" if v is None else str(v)) for k, v in row.items()}
    values.update({role: values.get(col, "") for role, col in roles.items() if col})
    prompt = tpl.prompt
    if tpl.prompt_if_empty:
        only_full = set(_fields(tpl.prompt)) - set(_fields(tpl.prompt_if_empty))
        if any(not values.get(f, "").strip() for f in only_full):
            prompt = tpl.prompt_if_empty
    out = []
    for part, name in ((prompt, "prompt"), (tpl.response, "response")):
        for f in _fields(part):
            if f not in values:
                raise RowError(f"the {name} template uses {{{f}}} but the row has no such column "
                               f"(columns: {sorted(row)})", f, "fix the placeholder or the column name")
            if name == "response" and not values[f].strip():
                raise RowError(f"response column '{f}' is empty", f, "fill it in or remove the row")
        out.append(part.format_map(values))
    return out[0], out[1]
