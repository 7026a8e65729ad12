"""Submit-time helpers: the trainer's own pre-model checks, path pinning, and how a rejected spec is
recorded (its problems as a list, anything secret-looking scrubbed)."""
from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Optional

from ..redaction import MASK, without_secrets
from ..spec import JobSpec
from .store import ErrorDetails


def validate_data(spec: JobSpec) -> Optional[tuple[str, ErrorDetails]]:
    """Run the trainer's own pre-model checks (tokenizer, every data row). None when all is well."""
    from ..data import DataError
    from ..training.run import prepare_job
    from ..training.trainers import TrainerNotAvailable

    try:  # on a copy: prepare_job fits settings to this machine (int4 -> none on a CPU), a check must not
        prepare_job(spec.model_copy(deep=True))  # change the job it checks (an HF Jobs GPU run keeps its QLoRA)
    except DataError as exc:
        issues = exc.lines(file_name)  # one line per distinct problem, with its rows counted, not one per row
        return f"data validation failed: {issues[0] if issues else exc}", \
            ErrorDetails(kind="data", issues=issues, truncated=exc.truncated)
    except TrainerNotAvailable as exc:
        return str(exc), ErrorDetails(kind="validation", issues=[str(exc)])
    except Exception as exc:  # e.g. a base model that cannot be found: the job could never start
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[-1]
        return text, ErrorDetails(kind="validation", issues=[text])
    return None


def absolutize_paths(spec: JobSpec, cwd: Path) -> None:
    """Relative local paths in the spec are relative to where the job was submitted; pin them down so the
    trainer (and a resume days later, from anywhere) finds the same files."""
    def fix(value: str) -> str:
        p = Path(value).expanduser()
        return str((cwd / p).resolve()) if not p.is_absolute() and (cwd / p).exists() else value
    spec.data.path = ",".join(fix(part.strip()) for part in spec.data.path.split(","))
    spec.model.base_model = fix(spec.model.base_model)
    ckpt = spec.training.resume_from_checkpoint
    if ckpt and ckpt != "latest":
        spec.training.resume_from_checkpoint = fix(ckpt)


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "local"


def name_of(spec: Any) -> str:
    if isinstance(spec, (str, Path)):
        return Path(spec).stem
    if isinstance(spec, dict) and isinstance(spec.get("project_name"), str):
        return spec["project_name"]
    return "invalid-spec"


def redacted(spec: Any) -> Optional[dict]:
    """The submitted spec with anything secret-looking removed, to show next to its validation errors."""
    raw: Any = spec
    if isinstance(spec, (str, Path)):
        try:
            import yaml
            raw = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
        except Exception:
            return None
    if not isinstance(raw, dict):
        return None

    return without_secrets(raw, mask=MASK)


def one_line(error: str, details: ErrorDetails) -> str:
    """`jobs list` shows one line: the headline plus the first problems."""
    head = error.splitlines()[0] if error else "validation failed"
    issues = details.issues
    if details.kind == "validation" and issues and issues[0] not in head:
        head = f"{head} {'; '.join(issues[:3])}"
    return head if len(head) <= 500 else head[:497] + "..."


def bullets(message: str) -> list[str]:
    items = [ln.strip()[2:] for ln in message.splitlines() if ln.strip().startswith("- ")]
    return items or [message]


def file_name(path: str) -> str:
    """A data file as a job's error names it: its own name (an upload keeps its name in the store), not the
    server's folders."""
    return Path(path).name or path
