"""A small verifiable task for the GRPO learning check: pick the fruit out of two words.

"Which one is a fruit: truck or mango?" -> "<answer>mango</answer>". Two rewards score a completion: its format
(regex) and its answer (exact match with the `answer` column). A short SFT warm start (on the training prompts only)
writes the right word but the answer format in only a fifth of its answers: the model starts knowing what to
answer but rarely how, and GRPO has to teach it the format without losing the answers. Held-out prompts are
word pairs neither the warm start nor GRPO ever shows.
"""
from __future__ import annotations

import json
import random
from itertools import product
from pathlib import Path

FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum"]
THINGS = ["truck", "chair", "table", "brick", "hammer", "spoon", "stone", "shoe", "lamp", "clock"]
FORMAT = r"<answer>\w+</answer>"
REWARDS = [{"type": "regex", "name": "format", "pattern": FORMAT, "weight": 0.5},
           {"type": "exact_match", "name": "correct", "column": "answer", "weight": 0.5}]


def question(a: str, b: str) -> str:
    return f"Which one is a fruit: {a} or {b}?"


def write_task(folder: Path, held_out: int = 24, seed: int = 0, format_share: float = 0.2,
               correct_share: float = 1.0) -> dict[str, Path]:
    """train.jsonl / valid.jsonl (prompt, answer) for GRPO and warmup.jsonl (prompt, response) for the SFT warm
    start; returns their paths and a corpus file for the tokenizer."""
    rng = random.Random(seed)
    pairs = [(f, t) for f, t in product(FRUITS, THINGS)]
    rng.shuffle(pairs)
    splits = {"valid": pairs[:held_out], "train": pairs[held_out:]}
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, chosen in splits.items():
        rows = []
        for fruit, thing in chosen:
            a, b = (fruit, thing) if rng.random() < 0.5 else (thing, fruit)
            rows.append({"prompt": question(a, b), "answer": fruit})
        out[name] = folder / f"{name}.jsonl"
        out[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    warm = []
    for row in (json.loads(line) for line in out["train"].read_text().splitlines()):
        words = row["prompt"].removeprefix("Which one is a fruit: ").rstrip("?").split(" or ")
        wrong = next(w for w in words if w != row["answer"])
        pick = row["answer"] if rng.random() < correct_share else wrong
        warm.append({"prompt": row["prompt"],
                     "response": f"<answer>{pick}</answer>" if rng.random() < format_share else pick})
    out["warmup"] = folder / "warmup.jsonl"
    out["warmup"].write_text("".join(json.dumps(r) + "\n" for r in warm))
    return out


def corpus() -> list[str]:
    words = " ".join(FRUITS + THINGS)
    return [question(a, b) + f" <answer>{a}</answer> {b}" for a, b in product(FRUITS + THINGS, repeat=2)] + [words]
