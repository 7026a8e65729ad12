"""The command matrix's axes, generated from the product: trainers from the spec's registry, formats from its
format list, and for each format the repository's own samples (tests/data, detected, not hand-listed). A new
trainer, format or sample file gets its cells without anyone writing them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer_backend.spec import AVAILABLE_TRAINERS, DATA_FORMATS, TRAINER_FORMATS

REAL_DATA = Path(__file__).resolve().parent / "data"
TRAINERS = sorted(AVAILABLE_TRAINERS)
FORMATS = list(DATA_FORMATS)
# Formats no public sample in tests/data has; the test builds one from the tiny model's own tokenizer.
GENERATED = ("tokenized",)
MAX_ROWS = 4
LENGTHS = {"block_size": 256, "model_max_length": 512, "max_prompt_length": 128}  # preference prompts are long


def _detect(path: Path) -> Any:
    from trainer_backend.data.detection import detect_format
    from trainer_backend.data.issues import IssueCollector
    from trainer_backend.data.loading import load_split
    from trainer_backend.spec import ColumnMapping

    raw = load_split(str(path), "train", IssueCollector(5))
    return detect_format(raw.columns, raw.rows[:50], "auto", ColumnMapping())


def sample_files() -> dict[str, list[str]]:
    """format -> the repository's sample files of that format (paths relative to tests/data)."""
    found: dict[str, list[str]] = {f: [] for f in FORMATS}
    for path in sorted(REAL_DATA.rglob("*")):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".csv", ".parquet", ".txt"):
            found.setdefault(_detect(path).format, []).append(path.relative_to(REAL_DATA).as_posix())
    for fmt in GENERATED:
        found[fmt].append(f"generated:{fmt}")
    return found


SAMPLES = sample_files()


def accepts(trainer: str, fmt: str) -> bool:
    return fmt in TRAINER_FORMATS[trainer]


def data_cells() -> list[tuple[str, str, str]]:
    """(trainer, format, sample) for every sample of every format."""
    return [(t, f, s) for t in TRAINERS for f in FORMATS for s in SAMPLES[f]]


def format_cells(only_accepted: bool = False) -> list[tuple[str, str, str]]:
    """(trainer, format, first sample of the format): one cell per trainer x format."""
    return [(t, f, SAMPLES[f][0]) for t in TRAINERS for f in FORMATS
            if SAMPLES[f] and (accepts(t, f) or not only_accepted)]


def resolve_sample(sample: str, folder: Path, model_dir: Path) -> Path:
    """A sample's path; generated ones are written into `folder` from the tiny model's tokenizer."""
    if not sample.startswith("generated:"):
        return REAL_DATA / sample
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    path = folder / "tokenized.jsonl"
    texts = ["The capital of France is Paris.", "Water boils at 100 degrees Celsius at sea level.",
             "A week has seven days.", "Light travels faster than sound.", "Bees make honey."]
    path.write_text("".join(json.dumps({"input_ids": tok(t)["input_ids"]}) + "\n" for t in texts))
    return path


# What a grpo cell scores its completions with: a reward any format's prompts can be scored by (no column).
GRPO = {"rewards": [{"type": "length", "max_length": 40}], "num_generations": 2, "max_completion_length": 16}
# The report sample each trainer's rows give (data/report.py kinds) and how the CLI headlines it.
SAMPLE_KINDS = {"dpo": "preference", "orpo": "preference", "reward": "preference", "kto": "feedback",
                "grpo": "prompt"}
HEADLINES = {"preference": "sample preference pair (", "feedback": "sample feedback row (",
             "prompt": "sample prompt (", "tokens": "sample training string ("}


def spec_for(trainer: str, data_path: Path, model: str, **training: object) -> dict:
    # tool-calling samples need a template that renders tools: hermes (ChatML with Hermes-style tool calls)
    template = "hermes" if data_path.is_file() and data_path.suffix != ".txt" and _detect(data_path).tools \
        else "chatml"
    spec = {"project_name": f"m-{trainer}", "model": {"base_model": model},
            "data": {"path": str(data_path), "chat_template": template, "max_rows": MAX_ROWS},
            "lengths": dict(LENGTHS),
            "training": {"trainer": trainer, "max_steps": 2, "batch_size": 2, "gradient_accumulation": 1,
                         "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no", **training}}
    if trainer == "grpo":
        spec["grpo"] = dict(GRPO)
    return spec


def api_cells() -> list[tuple[str, str, str]]:
    """Every accepted trainer x format, plus one refused format per trainer that refuses some: the refusal
    itself is checked for every sample by the CLI matrix; over HTTP one cell per trainer shows it arrives."""
    accepted = format_cells(only_accepted=True)
    refused = []
    for trainer in TRAINERS:
        first = next(((t, f, s) for t, f, s in format_cells() if t == trainer and not accepts(t, f)), None)
        refused += [first] if first else []
    return accepted + refused
