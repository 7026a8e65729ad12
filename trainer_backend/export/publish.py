"""What of an export goes to the Hub, and the card that says what each file is and how its check went.

The GGUF files and the Modelfile go to `<repo>-GGUF` (what llama.cpp, LM Studio and Ollama users look for; its
own card) or into the adapter's repo (the card gets a section). A file that failed its round-trip check is left
out and the card says why: never shipped silently. Left out too: the merged folder (its own `-merged` push), the
base's f16 GGUF (the base's, not the job's) and Modelfile.adapter (it points at that base file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..job_files import EXPORT_DIR, MODELFILE
from ..jobs.exports import link_or_copy
from .report import card_section
from .state import ExportRecord, FileEntry, read_record

NOT_PUSHED_FORMATS = ("merged", "base_f16")


class ExportNotReady(ValueError):
    """There is no finished export to push; the message says what to do."""


def finished_export(job_dir: Path) -> ExportRecord:
    record = read_record(job_dir)
    if record is None:
        raise ExportNotReady("this job has no export yet: export it first (Export in the Jobs tab, /export_job, or "
                             "`python -m trainer_backend export JOB --formats q4_K_M modelfile`)")
    if record.state != "succeeded":
        raise ExportNotReady(f"the job's export is {record.state}: wait for it, or export again")
    return record


def shipped_files(record: ExportRecord) -> tuple[list[FileEntry], list[FileEntry]]:
    """(files to push, files left out because their check failed)."""
    candidates = [f for f in record.files if f.format not in NOT_PUSHED_FORMATS]
    failed = [f for f in candidates if f.check and f.check["verdict"] == "fail"]
    return [f for f in candidates if f not in failed], failed


def stage_export(job_dir: Path, stage: Path, record: ExportRecord) -> list[str]:
    """Put the files to push into `stage`; returns their names."""
    source = job_dir / EXPORT_DIR
    files, _ = shipped_files(record)
    stage.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in files]
    if record.modelfile and MODELFILE in record.modelfile.get("files", []) and any(
            f.name == record.modelfile.get("from") for f in files):
        names.append(MODELFILE)
    for name in names:
        link_or_copy(source / name, stage / name)  # GGUF files can be many GB: linked, not copied
    return names


def gguf_card(repo_id: str, adapter_repo: str, base_model: str, record: ExportRecord,
              license: Optional[str] = None) -> str:
    """README.md of the `-GGUF` repo."""
    from ..model_card import is_hub_id

    front = ["---", *([f"base_model: {base_model}"] if is_hub_id(base_model) else []), "library_name: gguf", "tags:", "- gguf", "- llama.cpp", "- lora",
             "- lora-studio"] + ([f"license: {license}"] if license else []) + ["---", ""]
    body = [f"# {repo_id.split('/')[-1]}", "",
            f"GGUF files of the fine-tuned adapter [{adapter_repo}](https://huggingface.co/{adapter_repo}) on "
            f"{base_model}, made by LoRA Studio with llama.cpp's own tools from one load of base + adapter.", ""]
    return "\n".join(front + body) + "\n" + export_section(record)


def export_section(record: ExportRecord) -> str:
    """The card section: the check table, the left-out files and how to run the files."""
    _, failed = shipped_files(record)
    lines = [card_section(record)]
    if failed:
        lines.append("Left out of this repo because their round-trip check failed: " + "; ".join(
            f"{f.name} ({'; '.join(f.check['problems'] if f.check else [])})" for f in failed) + "\n")
    lines.append("Run a GGUF with llama.cpp: `llama-cli -m FILE.gguf -cnv` (the chat template is in the file); a "
                 "LoRA GGUF goes on top of the base model's own GGUF: `llama-cli -m BASE.gguf --lora FILE.gguf`.\n")
    return "\n".join(lines)
