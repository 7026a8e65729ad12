"""A small synthetic tool-use task for the tool-calling learning check (issue 28).

Three tools with short descriptions (they are rendered into every prompt): set_timer(minutes: integer),
get_weather(city: string), convert(amount: number, unit: string). A request names its arguments, so the call is
learnable from the request alone: "Set a timer for fifteen minutes." -> set_timer(minutes=15), "Is it raining in
Oslo?" -> get_weather(city="Oslo"), "Convert six miles to metric." -> convert(amount=6, unit="miles"). A quarter
of the requests need no call ("Say goodbye to Anna." -> "Goodbye!"), so "right not to call" is measured too.

Every request is one wording of its kind with one set of argument values; the held-out rows are (wording, values)
combinations training never shows, while every wording and every value is seen in training somewhere.

What a 2-layer, 64-wide model can learn in a few hundred CPU steps shaped the task: numbers are written out in
words ("fifteen" -> 15) because the tiny model does not learn to copy a request's token into the call as it is
(" 15" -> " 15" stays at chance after 700 full fine-tuning steps), while it learns a mapping (" fifteen" -> " 15",
" Oslo" -> "Oslo") in a few hundred; and the schemas list no enum of cities or units, since a request's city
among the eight in the system turn is another thing to tell apart.

Files: `write_chat_task` (OpenAI chats with a `tools` column, call rows and no-call rows in one file; plus
warmup.jsonl, the training requests answered in prose, for the warm start) and `write_xlam_task` (xLAM rows:
`query`, `tools`, `answers` as JSON strings; calls only, since xLAM cannot say "no call").
"""
from __future__ import annotations

import json
import random
from itertools import product
from pathlib import Path
from typing import Any

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Madrid"]
UNITS = ["miles", "feet", "pounds", "ounces"]
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight", 10: "ten", 12: "twelve", 15: "fifteen",
           20: "twenty"}  # minutes and amounts, written out in words in the requests
NAMES = ["Anna", "Ben", "Carl", "Dora", "Eva", "Finn", "Gus", "Hana"]

TOOLS: list[dict[str, Any]] = [
    {"name": "set_timer", "description": "Start a timer",
     "parameters": {"type": "object", "properties": {"minutes": {"type": "integer"}}, "required": ["minutes"]}},
    {"name": "get_weather", "description": "Weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "convert", "description": "Convert to metric",
     "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "unit": {"type": "string"}},
                    "required": ["amount", "unit"]}},
]

WORDINGS = {
    "set_timer": ["Set a timer for {minutes} minutes.", "Start a {minutes} minute timer.",
                  "Remind me in {minutes} minutes.", "Timer for {minutes} minutes please.",
                  "Can you time {minutes} minutes for me?"],
    "get_weather": ["What is the weather in {city}?", "Is it raining in {city}?", "Weather for {city} please.",
                    "How hot is it in {city} today?", "Tell me the forecast for {city}."],
    "convert": ["Convert {amount} {unit} to metric.", "What is {amount} {unit} in metric?",
                "How much is {amount} {unit} in metric units?", "Please convert {amount} {unit}."],
}
CHAT = [("Hello, my name is {name}.", "Nice to meet you!"), ("Say goodbye to {name}.", "Goodbye!"),
        ("Thank you, {name} says hi.", "You are welcome."), ("Who is {name}?", "I do not know.")]
# The warm start's answers: a chat model that was never shown a tool says what it understood, each argument
# written as a call would write it (" 15", "Oslo" in quotes).
PROSE = {"set_timer": "A timer for {minutes} minutes.", "get_weather": 'The weather in "{city}".',
         "convert": 'That is {amount} "{unit}".'}


def _kinds() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every (wording, arguments) combination of each kind of request ("chat": no call)."""
    return {
        "set_timer": [(w, {"minutes": m}) for w, m in product(WORDINGS["set_timer"], NUMBERS)],
        "get_weather": [(w, {"city": c}) for w, c in product(WORDINGS["get_weather"], CITIES)],
        "convert": [(w, {"amount": a, "unit": u}) for w, a, u in product(WORDINGS["convert"], NUMBERS, UNITS)],
        "chat": [(f"{q}\t{a}", {"name": n}) for (q, a), n in product(CHAT, NAMES)],
    }


def _split(pairs: list[tuple[str, dict]], held_out: int, rng: random.Random) -> tuple[list, list]:
    """(train, held out): held-out combinations whose wording and every value also occur in training."""
    rng.shuffle(pairs)
    held: list[tuple[str, dict]] = []
    train = list(pairs)
    for pair in pairs:
        if len(held) == held_out:
            break
        rest = [p for p in train if p != pair]
        if any(p[0] == pair[0] for p in rest) and all(any(p[1].get(k) == v for p in rest) for k, v in pair[1].items()):
            held.append(pair)
            train = rest
    return train, held


def _covering(pairs: list[tuple[str, dict]], n: int) -> list[tuple[str, dict]]:
    """n of the pairs (repeated when there are fewer) that show every wording and every value the pairs have."""
    seen: set[str] = set()
    first: list[tuple[str, dict]] = []
    rest: list[tuple[str, dict]] = []
    for pair in pairs:
        keys = {pair[0]} | {f"{k}={v}" for k, v in pair[1].items()}
        (first if keys - seen else rest).append(pair)
        seen |= keys
    chosen = (first + rest)[:max(n, len(first))]
    return (chosen * (1 + n // len(chosen)))[:n]


def _request(kind: str, wording: str, args: dict[str, Any]) -> tuple[str, dict, str]:
    """(request, the assistant's turn answering it, the warm start's prose answer)."""
    if kind == "chat":
        question, answer = wording.split("\t")
        return question.format(**args), {"role": "assistant", "content": answer}, answer
    call = {"type": "function", "function": {"name": kind, "arguments": args}}
    said = {k: NUMBERS[v] if isinstance(v, int) else v for k, v in args.items()}
    return wording.format(**said), {"role": "assistant", "content": "", "tool_calls": [call]}, \
        PROSE[kind].format(**args)


def task_rows(train_per_kind: int = 60, held_per_kind: int = 8, seed: int = 0) -> dict[str, list[dict]]:
    """{"train": [...], "valid": [...]}, each row {kind, request, turn, prose}; as many no-call rows as rows of
    each tool (a quarter of the task), the kinds interleaved."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"train": [], "valid": []}
    for kind, pairs in _kinds().items():
        train, held = _split(list(pairs), held_per_kind, rng)
        for name, chosen in (("train", _covering(train, train_per_kind)), ("valid", held)):
            for wording, args in chosen:
                request, turn, prose = _request(kind, wording, args)
                out[name].append({"kind": kind, "request": request, "turn": turn, "prose": prose})
    for rows in out.values():
        rng.shuffle(rows)
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_chat_task(folder: Path, **kwargs: Any) -> dict[str, Path]:
    """train.jsonl / valid.jsonl: OpenAI chats with the tools in a `tools` column (no-call rows included);
    warmup.jsonl: the training requests answered in prose, no tools (the held-out requests are in none)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = task_rows(**kwargs)
    user = [[{"role": "user", "content": r["request"]}] for r in rows["train"]]
    return {
        **{name: _jsonl(folder / f"{name}.jsonl", [{"messages": [{"role": "user", "content": r["request"]}, r["turn"]],
                                                    "tools": TOOLS} for r in chosen])
           for name, chosen in rows.items()},
        "warmup": _jsonl(folder / "warmup.jsonl", [{"messages": u + [{"role": "assistant", "content": r["prose"]}]}
                                                   for u, r in zip(user, rows["train"])]),
    }


def write_xlam_task(folder: Path, **kwargs: Any) -> dict[str, Path]:
    """train.jsonl / valid.jsonl as xLAM rows (query, tools and answers as JSON strings), call rows only."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: _jsonl(folder / f"{name}.jsonl", [
        {"query": r["request"], "tools": json.dumps(TOOLS),
         "answers": json.dumps([c["function"] for c in r["turn"]["tool_calls"]])}
        for r in chosen if r["kind"] != "chat"]) for name, chosen in task_rows(**kwargs).items()}


def corpus(repeat: int = 2) -> list[str]:
    """Texts for the tiny model's tokenizer: every request of the task, its call rendered by the shipped hermes
    template (the system turn with the tool schemas too) and its prose answer, so whole words and numbers are
    tokens."""
    from types import SimpleNamespace

    from trainer_backend.data.chat_render import render_template
    from trainer_backend.data.templates import SHIPPED_TEMPLATES
    from trainer_backend.tool_calls import normalize_tools

    tokenizer = SimpleNamespace(special_tokens_map={"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"})
    template, tools = SHIPPED_TEMPLATES["hermes"].source, normalize_tools(TOOLS)
    texts = []
    for kind, pairs in _kinds().items():
        for wording, args in pairs:
            request, turn, prose = _request(kind, wording, args)
            texts.append(render_template(tokenizer, template, [{"role": "user", "content": request}, turn],
                                         tools=tools)[0] + prose)
    return texts * repeat
