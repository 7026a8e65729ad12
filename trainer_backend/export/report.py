"""An export record in words: the check table (Jobs tab, CLI, /export_status) and the model card's section."""
from __future__ import annotations

from typing import Any, Optional

from .thresholds import THRESHOLDS
from .state import ExportRecord, FileEntry

CHECK_COLUMNS = ["File", "Format", "Size", "Check", "Prompt tokens", "Top-1 agreement", "Mean KL", "Same stop",
                 "What differs"]
VERDICT_WORDS = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail"}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _check_cells(check: Optional[dict[str, Any]]) -> list[str]:
    if not check:
        return ["not checked", "", "", "", "", ""]
    n = check["prompts"]
    kl = check.get("mean_kl")
    return [VERDICT_WORDS.get(check["verdict"], check["verdict"]), f"{check['tokens_identical']}/{n} identical",
            f"{check['top1_agreement']:.1%} of {check['positions']}", "" if kl is None else f"{kl:.2g}",
            f"{check['same_stop']}/{n}", "; ".join(check.get("problems") or []) or "nothing"]


def check_rows(record: ExportRecord) -> list[list[str]]:
    """One row per file made (CHECK_COLUMNS); files the check does not apply to say so."""
    rows = []
    for entry in record.files:
        cells = _check_cells(entry.check) if entry.check or entry.format not in ("merged", "base_f16") else \
            ["checked at merge" if entry.format == "merged" else "the LoRA GGUF's base", "", "", "", "", ""]
        rows.append([entry.name, entry.format, human_size(entry.bytes), *cells])
    if record.modelfile:
        m = record.modelfile
        verdict = "✅ pass" if m["template"] and m["identical"] == m["prompts"] else \
            ("⚠️ no TEMPLATE" if not m["template"] else "❌ fail")
        what = m.get("reason") or ("TEMPLATE renders every held-out prompt like training" if m["template"] and
                                   m["identical"] == m["prompts"] else "TEMPLATE renders prompts differently")
        for name in m["files"]:
            rows.append([name, "modelfile", "", verdict, f"{m['identical']}/{m['prompts']} identical", "", "",
                         "stops: " + ", ".join(m["stops"]), what])
    return rows


def failed_files(record: ExportRecord) -> list[FileEntry]:
    return [f for f in record.files if f.check and f.check["verdict"] == "fail"]


def thresholds_line() -> str:
    parts = [f"{fmt}: top-1 ≥ {t.top1_pass:.0%}, KL ≤ {t.kl_pass}, same stop ≥ {t.same_stop_pass:.0%}"
             for fmt, t in THRESHOLDS.items() if fmt != "f32"]
    return "Pass thresholds — " + "; ".join(parts) + " (a LoRA GGUF is held to f16's)."


def card_section(record: ExportRecord, repo_id: Optional[str] = None) -> str:
    """The model card's 'GGUF files' section: each file and its round-trip check against the adapter."""
    lines = ["## GGUF files", "",
             f"Made with llama.cpp's own converter and quantizer (llama-cpp-python {record.runtime}) and checked "
             "against the adapter they came from on held-out prompts rendered with the training template.", ""]
    if repo_id:
        lines += [f"Files: https://huggingface.co/{repo_id}/tree/main", ""]
    lines += ["| " + " | ".join(CHECK_COLUMNS) + " |", "|" + "---|" * len(CHECK_COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in check_rows(record)]
    lines += ["", thresholds_line(), ""]
    if record.modelfile and record.modelfile.get("files"):
        lines += [f"Run it with Ollama: download the files, then `ollama create my-model -f {record.modelfile['files'][0]}`.",
                  ""]
    return "\n".join(lines)
