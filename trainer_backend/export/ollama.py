"""An Ollama Modelfile whose TEMPLATE renders conversations exactly as the job's Jinja chat template trained them.

The template is read from the Jinja template itself, not from a per-family table: probe conversations with
sentinel texts are rendered, the renderings are cut into turn pieces (what goes before and after each role's text,
what the generation prompt adds, the system prompt the template injects when there is none), and the pieces are
checked by reassembling other conversations and comparing them character for character with the Jinja rendering.
A template that the pieces cannot reproduce (the last answer rendered otherwise, reasoning stripped from history,
a generation prompt that opens a think block, ...) gets no TEMPLATE; Ollama then uses the GGUF's own.

Ollama's side (server and template/template.go): a Modelfile SYSTEM becomes a leading system message when a request
has none; the template sees all system messages joined as .System and every message (system ones too) in .Messages;
llama.cpp adds the BOS token itself when it tokenizes the prompt (GGUFs of tokenizers that add one say so), so the
TEMPLATE leaves it out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ..data.chat_render import render_template


class TurnFormatError(ValueError):
    """The template cannot be expressed as turn pieces; the message says why."""


@dataclass(frozen=True)
class TurnFormat:
    """The fixed texts a chat template puts around each turn (every rendering = these pieces plus message texts)."""
    bos: str  # the BOS token the template opens with (the runtime adds it, so the TEMPLATE leaves it out)
    leading: str  # anything else before the first turn
    system_prefix: str
    system_suffix: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str  # what the generation prompt adds
    assistant_suffix: str  # the end of an assistant turn
    default_system: str | None  # rendered when the conversation has no system message (None: no system turn then)
    system_in_first_user: bool = False  # system prefix, text and suffix open the first user turn's content (Gemma 3)
    closing: str = ""  # after the last turn when no generation prompt follows (Phi-3's EOS); never in a prompt
    trims_content: bool = False  # Jinja strips whitespace around message texts; Go templates cannot, Ollama won't


_S, _U1, _A1, _U2 = "zqsys1", "zqusr1", "zqast1", "zqusr2"


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _conversation(roles: str) -> list[dict[str, str]]:
    """'sua' -> system, user, assistant messages with distinct sentinel texts (not the probes' ones)."""
    names = {"s": "system", "u": "user", "a": "assistant"}
    return [_msg(names[r], f"zqv{r}{i}") for i, r in enumerate(roles)]


# (roles, add_generation_prompt): the conversation shapes the pieces must reproduce
_CHECKED_SHAPES = [("u", False), ("u", True), ("su", True), ("sua", False), ("suau", True), ("uauau", True),
                   ("uaua", False), ("suaua", False)]  # s: system, u: user, a: assistant


def read_turn_format(tokenizer: Any, template: str) -> TurnFormat:
    """The template's turn pieces, verified; TurnFormatError(reason) when it cannot be written that way."""
    def render(messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
        try:
            return render_template(tokenizer, template, messages, add_generation_prompt=generation_prompt)[0]
        except Exception as exc:  # noqa: BLE001 - the template's raise_exception() (no system role, ...) or a bug
            roles = "/".join(m["role"] for m in messages)
            raise TurnFormatError(f"the template rejects a {roles} conversation: {exc}") from None

    texts = [render([_msg("user", _U1)]), render([_msg("user", _U1)], True),
             render([_msg("user", _U1), _msg("assistant", _A1)]),
             render([_msg("user", _U1), _msg("assistant", _A1), _msg("user", _U2)]),
             render([_msg("system", _S), _msg("user", _U1)])]
    bos, eos = (t if isinstance(t, str) else "" for t in (tokenizer.bos_token, tokenizer.eos_token))
    bos = bos if bos and all(t.startswith(bos) for t in texts) else ""
    user, user_gen, user_answer, two_users, sys_user = (t[len(bos):] for t in texts)
    closing = eos if eos and user.endswith(eos) and not user_gen.startswith(user) else ""
    user, user_answer = user[:len(user) - len(closing)], user_answer[:len(user_answer) - len(closing)]
    if not user_gen.startswith(user):
        raise TurnFormatError("the generation prompt is not appended to the conversation")
    assistant_prefix = user_gen[len(user):]
    user_head, user_suffix = _around(user, _U1, "user")
    assistant_suffix = _around(user_answer, _A1, "assistant")[1]
    between = _around(_around(two_users, _A1, "assistant")[1], _U2, "user")[0]
    if not between.startswith(assistant_suffix):
        raise TurnFormatError("an assistant turn ends otherwise when another turn follows it")
    user_prefix = between[len(assistant_suffix):]
    if not user_head.endswith(user_prefix):
        raise TurnFormatError("the first user turn opens otherwise than later ones")
    user_head = user_head[:len(user_head) - len(user_prefix)]
    system_head, system_tail = _around(sys_user, _S, "system")
    system_to_user = system_tail[:max(0, system_tail.find(_U1))]
    folded, default_system = False, None
    if _U1 in system_tail and system_to_user.endswith(user_prefix):  # a turn of its own
        system_suffix = system_to_user[:len(system_to_user) - len(user_prefix)]
        if system_head.startswith(user_head):  # and none without a system message
            leading, system_prefix = user_head, system_head[len(user_head):]
        elif user_head.startswith(system_head) and user_head.endswith(system_suffix) \
                and len(user_head) >= len(system_head) + len(system_suffix):  # always there: a default text
            leading, system_prefix = "", system_head
            default_system = user_head[len(system_head):len(user_head) - len(system_suffix)]
        else:
            raise TurnFormatError("what precedes the first turn depends on the system message in a way turn "
                                  "pieces cannot express")
    elif _U1 in system_tail and system_head.startswith(user_head + user_prefix):  # opens the first user turn
        folded, leading, system_suffix = True, user_head, system_to_user
        system_prefix = system_head[len(user_head + user_prefix):]
    else:
        raise TurnFormatError("the system message is neither a turn of its own before the first user turn nor "
                              "the start of that turn")
    trims = " zqpad \n" not in render([_msg("user", " zqpad \n")])
    fmt = TurnFormat(bos, leading, system_prefix, system_suffix, user_prefix, user_suffix, assistant_prefix,
                     assistant_suffix, default_system, folded, closing, trims)
    checks = [(messages, prompt, "/".join(m["role"] for m in messages) + (" + generation prompt" if prompt else ""))
              for messages, prompt in ((_conversation(roles), prompt) for roles, prompt in _CHECKED_SHAPES)]
    # an answer as a reasoning model generates it, in history: Ollama sends it back as is; dropping it is a rewrite
    reasoned = [_msg("user", _U1), _msg("assistant", "<think>\nzqr\n</think>\n\nzqa"), _msg("user", _U2)]
    checks.append((reasoned, True, "an earlier answer holding <think> reasoning"))
    for messages, prompt, shape in checks:
        _compare(render(messages, prompt), render_go_pieces(fmt, messages, prompt), shape)
    return fmt


def derive_turn_format(tokenizer: Any, template: str) -> TurnFormat | None:
    """The verified turn pieces, or None when the template cannot be expressed (read_turn_format says why)."""
    try:
        return read_turn_format(tokenizer, template)
    except TurnFormatError:
        return None


def _around(text: str, sentinel: str, role: str) -> tuple[str, str]:
    at = text.find(sentinel)
    if at < 0:
        raise TurnFormatError(f"the template does not render the {role} message's text")
    return text[:at], text[at + len(sentinel):]


def _compare(jinja: str, pieces: str, shape: str) -> None:
    if jinja != pieces:
        at = next((i for i, (a, b) in enumerate(zip(jinja, pieces)) if a != b), min(len(jinja), len(pieces)))
        raise TurnFormatError(f"{shape}: the template renders {jinja[max(0, at - 20):at + 40]!r} where the turn "
                              f"pieces give {pieces[max(0, at - 20):at + 40]!r} (it renders some turns otherwise "
                              "than the others, e.g. the last answer, or rewrites message texts)")


def render_go_pieces(fmt: TurnFormat, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """The text `ollama_template(fmt)` renders for `messages`, computed in Python, BOS included (the runtime adds
    it). add_generation_prompt=True is Ollama's chat: the assistant prefix after a last non-assistant message, a
    last assistant message left open to be continued. False: every turn closed (the training text). Tool messages
    are not rendered (the TEMPLATE has no tool calling)."""
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")  # as Ollama joins them
    merged: list[dict[str, Any]] = []
    for m in messages:  # Ollama merges consecutive messages of one role (but tool results)
        if merged and merged[-1]["role"] == m["role"] != "tool":
            merged[-1] = {**merged[-1], "content": f"{merged[-1]['content']}\n\n{m['content']}"}
        else:
            merged.append(m)
    out = [fmt.bos, fmt.leading]
    if not fmt.system_in_first_user and (system or fmt.default_system is not None):
        out += [fmt.system_prefix, system or fmt.default_system or "", fmt.system_suffix]
    first_user = True
    for i, m in enumerate(merged):
        last = add_generation_prompt and i == len(merged) - 1
        if m["role"] == "user":
            out.append(fmt.user_prefix)
            if fmt.system_in_first_user and system and first_user:
                out += [fmt.system_prefix, system, fmt.system_suffix]
            out += [str(m["content"]), fmt.user_suffix]
            first_user = False
        elif m["role"] == "assistant":
            out += [fmt.assistant_prefix, str(m["content"]), "" if last else fmt.assistant_suffix]
        if last and m["role"] != "assistant":
            out.append(fmt.assistant_prefix)
    return "".join(out) + ("" if add_generation_prompt else fmt.closing)


@dataclass(frozen=True)
class _Go:
    """A Go template action (the code between {{ and }}); plain strings beside it are piece text."""
    code: str


def ollama_template(fmt: TurnFormat) -> str:
    """The Go text/template (Ollama's .Messages form) that renders conversations as `render_go_pieces` does."""
    first_user: list[str | _Go] = []
    if fmt.system_in_first_user:  # $first: no user message yet (system messages come first in .Messages)
        system: list[str | _Go] = [_Go("$first := true")]
        first_user = [_Go("if and $.System $first"), fmt.system_prefix, _Go("$.System"), fmt.system_suffix,
                      _Go("end"), _Go("$first = false")]
    elif fmt.default_system is None:
        system = [_Go("if .System"), fmt.system_prefix, _Go(".System"), fmt.system_suffix, _Go("end")]
    else:
        system = [fmt.system_prefix, _Go("if .System"), _Go(".System"), _Go("else"), fmt.default_system, _Go("end"),
                  fmt.system_suffix]
    parts: list[str | _Go] = [
        fmt.leading, *system,
        _Go("range $i, $_ := .Messages"), _Go("$last := eq (len (slice $.Messages $i)) 1"),
        _Go('if eq .Role "user"'), fmt.user_prefix, *first_user, _Go(".Content"), fmt.user_suffix,
        _Go('else if eq .Role "assistant"'), fmt.assistant_prefix, _Go(".Content"),
        _Go("if not $last"), fmt.assistant_suffix, _Go("end"), _Go("end"),
        _Go('if and $last (ne .Role "assistant")'), fmt.assistant_prefix, _Go("end"),
        _Go("end")]
    out: list[str] = []
    text = ""  # piece text since the last action: escaped as one (a "{{" may span two pieces)
    for part in parts:
        if isinstance(part, str):
            text += part
            continue
        # a line break between two actions, trimmed by "{{-"; never a trim next to piece text
        opening = "{{ " if text else "\n{{- " if out else "{{- "
        out += [_go_text(text), f"{opening}{part.code} }}}}"]
        text = ""
    return "".join(out) + _go_text(text)


_GO_UNSAFE = re.compile(r'\{\{|\{\Z|"""|[^\n\t\x20-\x7e]')  # non-ASCII: escaped only when not printable


def _go_text(s: str) -> str:
    """Piece text as Go template text: "{{" (and a last "{", which the next action's "{{" would join), a triple
    quote (it would end the Modelfile's TEMPLATE \"\"\"...\"\"\") and characters the Modelfile parser drops
    (non-printable) are written as Go string literals."""
    def escape(m: re.Match[str]) -> str:
        t = m.group()
        if t in ("{{", "{"):
            return f'{{{{ "{t}" }}}}'
        if t == '"""':
            return '""{{ "\\"" }}'
        return t if t.isprintable() else '{{ "' + (f"\\u{ord(t):04x}" if ord(t) <= 0xFFFF else f"\\U{ord(t):08x}") \
            + '" }}'
    return _GO_UNSAFE.sub(escape, s)


def stop_tokens(fmt: TurnFormat | None, tokenizer: Any, end_of_turn: str | None) -> list[str]:
    """The strings generation stops at: the job's end-of-turn, the special tokens ending an assistant turn, EOS."""
    specials = {t for t in [*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()]
                if isinstance(t, str) and t.strip() == t != ""}
    stops = [end_of_turn] if end_of_turn else []
    if fmt is not None:
        suffix = fmt.assistant_suffix
        found = [t for t in specials if t in suffix]
        found = sorted((t for t in found if not any(t != o and t in o for o in found)), key=suffix.find)
        stops += found or ([suffix.strip()] if suffix.strip() else [])  # no special token: the suffix's text
    if isinstance(tokenizer.eos_token, str) and tokenizer.eos_token in specials:
        stops.append(tokenizer.eos_token)
    # a PARAMETER value is one line of printable text
    return [s for s in dict.fromkeys(stops) if s.isprintable() and s.strip() == s]


def _quotable(text: str) -> bool:
    """Whether `text` survives Modelfile \"\"\"...\"\"\" quoting: no escapes exist there; the parser drops
    non-printable characters and ends the value at the first line break after a triple quote."""
    return all(c.isprintable() or c in "\n\t" for c in text) and \
        not any(text[:m.start()].rstrip().endswith('"""') for m in re.finditer("\n", text))


def _arg(value: str) -> str:
    return f'"{value}"' if not value or value != value.strip() or " " in value or value.startswith('"') else value


def modelfile(from_path: str, fmt: TurnFormat | None, stops: list[str], system_prompt: str | None,
              adapter_path: str | None = None, parameters: dict[str, Any] | None = None,
              no_template_reason: str | None = None) -> str:
    """The Modelfile text. `system_prompt`: the job's (it wins over the template's default system prompt).
    `no_template_reason`: why `fmt` is None (read_turn_format's error), written as a comment."""
    lines = [f"FROM {_arg(from_path)}"]
    if adapter_path:
        lines.append(f"ADAPTER {_arg(adapter_path)}")
    system = system_prompt or (fmt.default_system if fmt is not None else None) or None
    if system is not None and not _quotable(system):
        if fmt is None or fmt.system_in_first_user:
            raise ValueError("the system prompt cannot be written in a Modelfile (a line ends with \"\"\" or it "
                             "holds non-printable characters) and there is no TEMPLATE to carry it")
        lines.append("# The system prompt cannot be quoted in SYSTEM: the TEMPLATE renders it when a chat has none")
        fmt, system = replace(fmt, default_system=system), None
    if fmt is not None:
        lines.append(f'TEMPLATE """{ollama_template(fmt)}"""')
    else:
        why = " ".join((no_template_reason or "the chat template cannot be written as an Ollama template").split())
        lines.append(f"# No TEMPLATE: {why}. Ollama falls back to the chat template stored in the GGUF (or its own "
                     "guess of it), which may render conversations differently from training.")
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    for key, value in (parameters or {}).items():
        lines += [f"PARAMETER {key} {_arg(str(v))}" for v in (value if isinstance(value, list) else [value])]
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
