"""Chat templates and prompt templates: turn canonical examples into text with trainable character spans.

Every template shipped here wraps assistant content *and its end-of-turn marker* in {% generation %} so the
model is trained to stop. A tokenizer's own template trains as TRL's training variant of it where TRL ships one
(vendor_templates.py); how the trained spans are found from any template is chat_render.py's job.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

from ..spec import PromptTemplate
from .issues import DataIssue, RowError
from .chat_render import has_generation_markers, render_chat, render_template  # noqa: F401 - has_generation_markers: re-exported
from .vendor_templates import TemplateChoice, choose_own_template

_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# ChatML with Hermes-style tool calling (as Qwen2.5 and Hermes 2/3 write it): the tool schemas in the system turn
# inside <tools></tools>, each call as <tool_call>{"name", "arguments"}</tool_call> in the assistant's turn, tool
# results as <tool_response> blocks in a user turn. Calls and answers are trained; schemas and results are not.
_HERMES = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{ '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with "
    "function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{ '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{{ message['content'] or '' }}"
    "{%- for call in message['tool_calls'] or [] %}{%- set f = call['function'] if call['function'] is defined else call %}"
    "{%- if message['content'] or not loop.first %}{{ '\\n' }}{%- endif %}"
    "{{ '<tool_call>\\n{\\\"name\\\": \\\"' + f['name'] + '\\\", \\\"arguments\\\": ' }}"
    "{{ f['arguments'] if f['arguments'] is string else (f['arguments'] | tojson) }}{{ '}\\n</tool_call>' }}"
    "{%- endfor %}{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{ '<|im_start|>user' }}{%- endif %}"
    "{{ '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
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
    "hermes": ChatTemplate("hermes", _HERMES, "<|im_end|>"),
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

def choose_chat_template(tokenizer: Any, name: str) -> Optional[TemplateChoice]:
    """The template that trains, installed on the tokenizer so it is saved with the adapter (and chat, the model
    card's snippet and downstream `apply_chat_template` render the same text). None for 'none'."""
    if name == "none":
        return None
    if name == "tokenizer":
        choice = choose_own_template(tokenizer)
        if choice is None:
            raise RowError("the tokenizer has no chat template of its own",
                           fix="choose a Chat template: chatml, hermes, zephyr, llama3 or alpaca, or 'none' for plain "
                               "prompt/response text (data.chat_template)")
    else:
        choice = TemplateChoice(SHIPPED_TEMPLATES[name].source, "shipped", name)
    tokenizer.chat_template = choice.source
    return choice


# A conversation with one call and its result: a template that renders tools shows every probe word.
_PROBE_TOOLS: list[dict] = [{"type": "function", "function": {"name": "zqtool", "description": "zqdesc", "parameters": {
    "type": "object", "properties": {"zqparam": {"type": "string"}}, "required": ["zqparam"]}}}]
_PROBE_CALL: list[dict] = [
    {"role": "user", "content": "zq1"},
    {"role": "assistant", "content": "", "tool_calls": [  # a 9-character id: Mistral's templates insist on it
        {"type": "function", "id": "zqcall123", "function": {"name": "zqtool", "arguments": {"zqparam": "zqval"}}}]},
    {"role": "tool", "content": "zqresult", "tool_call_id": "zqcall123", "name": "zqtool"},
    {"role": "assistant", "content": "zq2"}]


def renders_tools(tokenizer: Any, template: str) -> bool:
    """Whether the template renders the tool schemas, the assistant's calls and the tool results (a template
    without tool support drops them silently, and the model would learn answers to calls it never saw)."""
    try:
        text, _ = render_template(tokenizer, template, _PROBE_CALL, tools=_PROBE_TOOLS)
    except Exception:  # noqa: BLE001 - the template's raise_exception(): it does not take this conversation
        return False
    return all(word in text for word in ("zqtool", "zqdesc", "zqval", "zqresult", "zq2"))


@lru_cache(maxsize=1)
def tool_capable_templates() -> tuple[str, ...]:
    """The shipped templates and TRL's vendor templates (the models they belong to) that render tools."""
    from types import SimpleNamespace

    from .vendor_templates import trl_vendor_templates

    plain = SimpleNamespace(special_tokens_map={"bos_token": "", "eos_token": ""})
    shipped = [n for n, t in SHIPPED_TEMPLATES.items() if renders_tools(plain, t.source)]
    vendor = [n for n, text in trl_vendor_templates().items() if renders_tools(plain, text)]
    return tuple(shipped + vendor)


def tools_unrendered(choice: TemplateChoice, path: str) -> DataIssue:
    """The problem of a tool-calling dataset whose chat template cannot render tools, naming templates that can."""
    shipped = [n for n in tool_capable_templates() if n in SHIPPED_TEMPLATES]
    vendor = sorted((n for n in tool_capable_templates() if n not in SHIPPED_TEMPLATES),
                    key=lambda n: (not n.startswith(("qwen", "llama", "mistral")), n))  # the best known first
    named = ", ".join(vendor[:10]) + (f" and {len(vendor) - 10} more" if len(vendor) > 10 else "")
    return DataIssue(
        f"the rows call tools, but the chat template ({choice.describe()}) does not render tool schemas, calls and "
        "results, so the model would never see them", path,
        fix=f"choose Chat template: {' or '.join(shipped)} (data.chat_template; ChatML with Hermes-style "
            f"<tool_call> blocks), or a base model whose own template renders tools (TRL knows these: {named})")


def resolve_chat_template(tokenizer: Any, name: str) -> Optional[str]:
    """The Jinja source of `choose_chat_template`."""
    choice = choose_chat_template(tokenizer, name)
    return choice.source if choice else None


_EOT_PROBE = [{"role": "user", "content": "zq1"}, {"role": "assistant", "content": "zq2"},
              {"role": "user", "content": "zq3"}]


def end_of_turn(tokenizer: Any, choice: TemplateChoice) -> Optional[str]:
    """The string generation must stop at for this template (inference uses it too): for a shipped template its
    marker; otherwise the first token the template puts after an answer inside the trained span (e.g.
    <|im_end|>, <end_of_turn>, <|END_RESPONSE|>), or EOS when the template ends answers with nothing of its own."""
    if choice.origin == "shipped":
        assert choice.name is not None  # a shipped choice always carries its template's name
        return SHIPPED_TEMPLATES[choice.name].end_of_turn or tokenizer.eos_token
    tail = ""
    for probe in (_EOT_PROBE[:2], _EOT_PROBE):  # as the last turn (what chat generates), else followed by a user's
        try:
            chat = render_chat(tokenizer, choice.source, probe)
        except RowError:
            continue
        answer = chat.text.find("zq2") + 3
        ends = [e for s, e in _merged(chat.spans) if s < answer <= e]
        tail = chat.text[answer:ends[0]].strip() if ends else ""
        if tail:
            break
    if not tail:
        return tokenizer.eos_token
    first = tokenizer(tail, add_special_tokens=False, verbose=False)["input_ids"][:1]
    markers = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    return tokenizer.decode(first) if first and first[0] in markers else tail


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


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
    prompt, response = tpl.prompt, tpl.response
    assert prompt is not None and response is not None  # PromptTemplate's validation requires both without a preset
    if tpl.prompt_if_empty:
        only_full = set(_fields(prompt)) - set(_fields(tpl.prompt_if_empty))
        if any(not values.get(f, "").strip() for f in only_full):
            prompt = tpl.prompt_if_empty
    out = []
    for part, name in ((prompt, "prompt"), (response, "response")):
        for f in _fields(part):
            if f not in values:
                raise RowError(f"the {name} template uses {{{f}}} but the row has no such column "
                               f"(columns: {sorted(row)})", f, "fix the placeholder or the column name")
            if name == "response" and not values[f].strip():
                raise RowError(f"response column '{f}' is empty", f, "fill it in or remove the row")
        out.append(part.format_map(values))
    return out[0], out[1]
