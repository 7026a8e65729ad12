"""The Chat tab's conversations with tools: the Tools box read into schemas, an answer read into the calls it makes,
a tool result added for the call it answers, and a conversation drawn for gr.Chatbot.

A pane's conversation is kept as the chat template reads it (tool_calls.py's canonical shapes): user and tool
messages, and assistant messages with `tool_calls` when the model called a tool, so the next turn renders the
calls and their results to the template exactly; gr.Chatbot only shows it (its messages cannot hold calls)."""
from __future__ import annotations

from typing import Any, Optional

from ..tool_calls import ToolFormatError, normalize_tools, tool_names
from ..tool_output import extract_calls, format_call

CALL_TITLE = "🔧 Tool call"
MALFORMED = "Tried to call a tool, but the call does not parse"
NOTHING_WAITS = "⚠️ No tool call waits for a result: send it as a message instead."
NO_ANSWER = "⚠️"  # an answer that failed starts so: shown, never sent to a model again
TOOLS_HELP = ("A JSON list of tool schemas, as OpenAI writes them (`{\"type\": \"function\", \"function\": "
              "{...}}`) or bare (`{\"name\", \"description\", \"parameters\"}`). Both models see them through the "
              "chat template; leave empty for none.")


def read_tools(text: Any) -> Optional[list[dict]]:
    """The Tools box -> canonical tool schemas (None when empty); ToolFormatError for a box that does not read."""
    return normalize_tools(text) or None


def tools_note(text: Any) -> str:
    """What the page says under the Tools box: the tools it read, or what is wrong and how to fix it."""
    try:
        tools = read_tools(text)
    except ToolFormatError as exc:
        return tools_problem(exc)
    if not tools:
        return TOOLS_HELP
    names = ", ".join(f"`{n}`" for n in tool_names(tools))
    return f"✓ {len(tools)} tool{'s' if len(tools) != 1 else ''}: {names}"


def tools_problem(exc: ToolFormatError) -> str:
    fix = f"  \nFix: {exc.fix[:1].upper()}{exc.fix[1:]}." if exc.fix else ""
    return f"⚠️ The Tools box does not read: {exc.message}. Nothing is sent to the models until it does.{fix}"


def text_of(content: Any) -> str:
    """A message's content as text (gr.Chatbot hands earlier turns back as a list of {type, text} parts)."""
    if isinstance(content, list):
        return "".join(str(p["text"]) if isinstance(p, dict) and "text" in p else
                       "" if isinstance(p, dict) else str(p) for p in content)
    return content if isinstance(content, str) else ""


def answer_message(text: str) -> dict[str, Any]:
    """A model's finished answer as the conversation keeps it (stripped, as training data is): with its tool calls
    when it made any that parse."""
    text = text.strip()
    found = extract_calls(text)
    if found.calls and not found.malformed:
        return {"role": "assistant", "content": found.content, "tool_calls": found.calls}
    return {"role": "assistant", "content": text}


def for_model(history: list[dict]) -> list[dict]:
    """The conversation as the model's chat template receives it: text contents, assistant tool calls, tool
    results with the call they answer; an answer that failed (⚠️) is left out."""
    out = []
    for m in history:
        content = text_of(m.get("content"))
        role = m.get("role")
        if role == "assistant" and content.startswith(NO_ANSWER) and not m.get("tool_calls"):
            continue
        message: dict[str, Any] = {"role": role, "content": content}
        for key in ("tool_calls", "tool_call_id", "name"):
            if m.get(key):
                message[key] = m[key]
        out.append(message)
    return out


def waiting_calls(history: list[dict]) -> list[dict]:
    """The calls of the last answer that no tool result answers yet (results answer them in order)."""
    answered = 0
    for m in reversed(history or []):
        if m.get("role") == "tool":
            answered += 1
            continue
        calls = m.get("tool_calls") if m.get("role") == "assistant" else None
        return list(calls[answered:]) if calls else []
    return []


def sent(history: Any, base: Any, text: str, result: str, both: bool) -> Optional[tuple[list[dict], list[dict]]]:
    """(the fine-tuned pane's conversation, the base's) with what the person sent: a tool result answering each
    pane's waiting call, then the message; the base's only in compare mode. None: a result, but no call waits."""
    history, base = list(history or []), list(base or [])
    if result:
        if not waiting_calls(history) and not (both and waiting_calls(base)):
            return None
        history, base = (with_tool_result(history, base if both else None, result),
                         with_tool_result(base, history, result) if both else base)
    if text.strip():
        history.append({"role": "user", "content": text})
        base += [{"role": "user", "content": text}] if both else []
    return history, base


def with_tool_result(history: list[dict], other: Optional[list[dict]], result: str) -> list[dict]:
    """`history` with `result` answering its next waiting call. A side with no call waiting (the other model
    called a tool, this one did not) gets the same result, named after the other side's call: both models answer
    the same input, as with a message."""
    own = waiting_calls(history)
    calls = own or waiting_calls(other or [])
    message: dict[str, Any] = {"role": "tool", "content": result}
    if calls and not own:
        message["other_call"] = True  # shown so: this model made no such call (not sent to the model)
    if calls:
        call = calls[0]
        message["name"] = call["function"]["name"]
        if call.get("id"):
            message["tool_call_id"] = call["id"]
    return list(history) + [message]


def undone(history: list[dict]) -> list[dict]:
    """The conversation without its last turn: the last message the person sent (text or tool result) onwards."""
    sent = [i for i, m in enumerate(history or []) if m.get("role") in ("user", "tool")]
    return list(history[:sent[-1]]) if sent else []


def shown(history: list[dict]) -> list[dict]:
    """The conversation as gr.Chatbot messages: calls in a "🔧 Tool call" bubble, one readable line each, a call
    that does not parse said so with the raw text, a tool result in a "📥 Tool result" bubble."""
    out: list[dict] = []
    for m in history or []:
        role, content = m.get("role"), text_of(m.get("content"))
        if role == "tool":
            name = f" · {m['name']}" if m.get("name") else ""
            name += " (the other model's call)" if m.get("other_call") else ""
            out.append({"role": "user", "content": content, "metadata": {"title": f"📥 Tool result{name}"}})
        elif role == "assistant":
            out.extend(answer_bubbles(m))
        else:
            out.append({"role": "user" if role == "user" else "assistant", "content": content})
    return out


def answer_bubbles(message: dict) -> list[dict]:
    """One answer as gr.Chatbot messages (see `shown`)."""
    content = text_of(message.get("content"))
    calls = message.get("tool_calls") or []
    if not calls:
        found = extract_calls(content) if not content.startswith(NO_ANSWER) else None
        if found is None or not found.malformed:
            return [{"role": "assistant", "content": content}]
        body = f"```\n{content.replace('```', '` ` `')}\n```"  # the raw text, tags and all
        return [{"role": "assistant", "content": body, "metadata": {"title": f"⚠️ {MALFORMED}"}}]
    out = [{"role": "assistant", "content": content}] if content.strip() else []
    lines = "\n".join(f"`{format_call(c)}`  " for c in calls).rstrip()  # one call a line, under the bubble's title
    title = CALL_TITLE if len(calls) == 1 else f"{CALL_TITLE}s ({len(calls)})"
    return out + [{"role": "assistant", "content": lines, "metadata": {"title": title}}]


def waiting_label(tuned: list[dict], base: Optional[list[dict]]) -> Optional[str]:
    """The Tool result box's label while a call waits for its result (None when none does)."""
    calls = waiting_calls(tuned) or waiting_calls(base or [])
    if not calls:
        return None
    more = f" ({len(calls) - 1} more after it)" if len(calls) > 1 else ""
    return f"Tool result for {format_call(calls[0])}{more}"
