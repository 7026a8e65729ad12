"""The one home of a job folder's layout: every file and folder name a job writes or reads, and where the job
store (the data dir) is.

It sits at the bottom of the package (imports nothing of ours), so any layer can use it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

SPEC_FILE = "spec.yaml"              # the validated job spec (secrets dropped)
REPORT_FILE = "data_report.json"     # the dataset report of the run
EVENTS_FILE = "events.jsonl"         # machine-readable record of the run (progress, metrics, result)
LOG_FILE = "train.log"               # what a person reads: LoRA Studio's own lines and real warnings
DEBUG_LOG_FILE = "debug.log"         # library noise kept for debugging, out of the person's way
EVAL_FILE = "evaluation.json"        # the evaluation report: held-out metrics, general tasks, verdict, judge
EVAL_LOG = "evaluation.log"          # the background evaluation process's output (the harness's, the judge's)
ADAPTER_DIR = "adapter"              # the trained adapter (or full model) + tokenizer
META_FILE = "lora_studio.json"       # inside ADAPTER_DIR: how the adapter was trained (base, template, ...)
CHECKPOINTS_DIR = "checkpoints"      # the trainer's output_dir: checkpoint-<step> folders
CHECKPOINT_PREFIX = "checkpoint-"
ADAPTER_CONFIG = "adapter_config.json"   # inside ADAPTER_DIR when a LoRA adapter was trained
MODEL_CONFIG = "config.json"             # inside ADAPTER_DIR when the full model was trained
SYNC_REPO_PREFIX = "lora-studio-job-"  # name prefix of the Hub repo a synced job is kept in (hub/sync.py)
REMOTE_STATE_FILE = "remote.json"   # a job on HF Jobs: its Job ids, repo and how far the mirror got (remote/)
EXPORT_DIR = "export"                # exported files of a finished job: merged weights, GGUF files, Modelfile
EXPORT_FILE = "export.json"          # inside EXPORT_DIR: what the export made, its progress and each file's check
EXPORT_LOG = "export.log"            # inside EXPORT_DIR: llama.cpp's converter and quantizer output
MERGED_DIR = "merged"                # inside EXPORT_DIR: the merged safetensors + tokenizer
MODELFILE = "Modelfile"              # inside EXPORT_DIR: the Ollama Modelfile
ADAPTER_ARCHIVE = "adapter.zip"      # ADAPTER_DIR zipped for download (made on demand, outside the job folder)
STOP_REQUEST_FILE = "control/stop.json"  # why a stop was asked for (a sweep's pruning); also the path in a job repo
SWEEP_FILE = "sweep.json"            # a sweep job's trials, best trial and budget, rewritten by its driver (sweep/)
SWEEP_STUDY_FILE = "sweep-study.log" # a sweep job's Optuna storage (its journal file): what a resumed sweep reloads

DATA_DIR_ENV = "LORA_STUDIO_DATA_DIR"
SPACES_DATA_ROOT = Path("/data")  # Hugging Face Spaces mounts persistent storage here
LOCAL_DATA_DIR = "lora-studio-data"
PREPARED_DATA_DIR = "prepared-data"  # in the data dir: the prepared-data cache (data/prepared_cache.py)


def store_dir(explicit: Optional[str | Path] = None, spaces_root: Path = SPACES_DATA_ROOT) -> Path:
    """The data dir: `explicit`, else $LORA_STUDIO_DATA_DIR, else <spaces_root>/lora-studio when persistent storage
    is mounted (jobs then survive a Space restart), else ./lora-studio-data."""
    from .settings import settings  # here: this module of names stays free of pydantic

    if explicit:
        return Path(explicit).expanduser().resolve()
    env = settings().data_dir
    if env:
        return Path(env).expanduser().resolve()
    if spaces_root.is_dir() and os.access(spaces_root, os.W_OK | os.X_OK):
        return spaces_root / "lora-studio"
    return (Path.cwd() / LOCAL_DATA_DIR).resolve()


# Set by the job supervisor for the training process: where that process writes the person's log (LOG_FILE).
# Its raw stdout/stderr go to DEBUG_LOG_FILE.
LOG_FILE_ENV = "LORA_STUDIO_LOG_FILE"
# Also set for the training process: which job of the store it is, and whose (a synced job's repo records both).
JOB_ID_ENV = "LORA_STUDIO_JOB_ID"
JOB_OWNER_ENV = "LORA_STUDIO_JOB_OWNER"


def checkpoint_dir(job_dir: str | Path, step: int) -> Path:
    return Path(job_dir) / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{step}"


def checkpoints(job_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a job, oldest first (by step, not by name).

    trainer_state.json is written after the weights and optimizer state, so a folder without it is a save that
    a kill interrupted: resuming from it would fail, so it does not count.
    """
    def step(p: Path) -> int:
        tail = p.name.removeprefix(CHECKPOINT_PREFIX)
        return int(tail) if tail.isdigit() else -1
    found = [p for p in (Path(job_dir) / CHECKPOINTS_DIR).glob(f"{CHECKPOINT_PREFIX}*")
             if step(p) >= 0 and (p / "trainer_state.json").is_file()]
    return sorted(found, key=step)


def latest_checkpoint(job_dir: str | Path) -> Optional[Path]:
    found = checkpoints(job_dir)
    return found[-1] if found else None


def has_trained_model(job_dir: str | Path) -> bool:
    adapter = Path(job_dir) / ADAPTER_DIR
    return (adapter / ADAPTER_CONFIG).is_file() or (adapter / MODEL_CONFIG).is_file()


def write_stop_request(job_dir: str | Path, reason: Optional[str], note: Optional[str] = None) -> None:
    """Why the next stop of this job is asked for (read by the run when it records how it stopped)."""
    import json

    path = Path(job_dir) / STOP_REQUEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reason": reason, "note": note}), encoding="utf-8")


def read_stop_request(job_dir: str | Path) -> tuple[Optional[str], Optional[str]]:
    """(reason, note) of the last stop request of this job; (None, None) for a plain stop or none."""
    import json

    try:
        raw = json.loads((Path(job_dir) / STOP_REQUEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(raw, dict):
        return None, None
    reason, note = raw.get("reason"), raw.get("note")
    return (reason if isinstance(reason, str) else None), (note if isinstance(note, str) else None)
