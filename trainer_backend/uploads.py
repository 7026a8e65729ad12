"""Files clients send, and paths clients name: kept inside the app's upload and data directories.

An uploaded file is copied into <data_dir>/uploads/<random>/<sanitised name> after a size check. A spec that
arrives over the UI or API may only name local paths inside the data directory (or the bundled examples);
everything else must be a Hub id. The server, not the client, chooses the job's output directory.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterable, Optional

from .data.loading import looks_local
from .spec import JobSpec

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
DEFAULT_MAX_UPLOAD_MB = 512


class UnsafePath(ValueError):
    pass


def max_upload_bytes() -> int:
    return int(float(os.environ.get("LORA_STUDIO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)) * 1024 * 1024)


def sanitize_filename(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "upload"
    return base[:120]


MAX_SPEC_BYTES = 256 * 1024
MAX_YAML_ALIASES = 64


def load_client_yaml(text: str) -> dict:
    """A spec from a client: bounded in size, and no alias bombs (a few lines of YAML anchors can stand for
    billions of nodes once something walks the tree)."""
    import yaml

    from .errors import SpecError

    text = text or ""
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is {len(text) // 1024} KiB; a job spec is at most {MAX_SPEC_BYTES // 1024} KiB")
    try:
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))
        if aliases > MAX_YAML_ALIASES:
            raise SpecError(f"spec uses {aliases} YAML aliases; at most {MAX_YAML_ALIASES} are accepted")
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"spec is not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("spec must be a mapping (YAML or JSON object)")
    return raw


def user_upload_dir(data_dir: Path, username: Optional[str]) -> Path:
    """Each user's uploads in a folder of their own: nobody can name another person's file."""
    return data_dir / "uploads" / (sanitize_filename(username.lower()) if username else "local")


def store_upload(src: str | Path, upload_dir: Path, original_name: Optional[str] = None) -> Path:
    """Copy an uploaded temp file into `upload_dir` (see user_upload_dir); refuses files over the size limit."""
    src = Path(src)
    size = src.stat().st_size
    limit = max_upload_bytes()
    if size > limit:
        raise UnsafePath(f"{original_name or src.name} is {size / 2**20:.1f} MiB; uploads are limited to "
                         f"{limit / 2**20:.0f} MiB (LORA_STUDIO_MAX_UPLOAD_MB)")
    dest = upload_dir / secrets.token_hex(8) / sanitize_filename(original_name or src.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    resolved = path.expanduser().resolve()
    return any(resolved == r.resolve() or resolved.is_relative_to(r.resolve()) for r in roots)


def check_client_path(value: str, roots: Iterable[Path], what: str) -> str:
    """A Hub id passes; a local path must resolve inside one of `roots` (no '..' or absolute escapes)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not any(looks_local(p) or Path(p).expanduser().exists() for p in parts):
        return value
    roots = list(roots)
    for part in parts:
        if not _inside(Path(part), roots):
            raise UnsafePath(f"{what}: '{part}' is outside the app's upload and data folders; upload the file "
                             "or use a Hub id")
    return ",".join(str(Path(p).expanduser().resolve()) for p in parts)


def sanitize_client_spec(spec: JobSpec, data_dir: Path, roots: Optional[list[Path]] = None) -> JobSpec:
    """Apply the path rules to a spec from the UI or API; returns a copy safe to run on this server. Data may
    come from `roots` (default: the data dir and the examples); a local base model only from the data dir's
    models folder (the offline demo) or `roots`."""
    roots = roots or [data_dir, EXAMPLES_DIR]
    spec = spec.model_copy(deep=True)
    spec.data.path = check_client_path(spec.data.path, roots, "data.path")
    if spec.data.valid_split and spec.data.valid_split != "auto" and looks_local(spec.data.valid_split):
        spec.data.valid_split = check_client_path(spec.data.valid_split, roots, "data.valid_split")
    spec.model.base_model = check_client_path(spec.model.base_model, [*roots, data_dir / "models"],
                                              "model.base_model")
    if spec.training.accelerate_config:  # handed to `accelerate launch --config_file`: never any server file
        spec.training.accelerate_config = check_client_path(spec.training.accelerate_config, roots,
                                                            "training.accelerate_config")
    for reward in spec.grpo.rewards:  # a Python reward runs on this server: only a file the client uploaded
        if reward.file:  # never a Hub id, never relative to wherever the trainer runs
            if not _inside(Path(reward.file), roots):
                raise UnsafePath(f"grpo reward '{reward.label}': file '{reward.file}' is outside the app's upload "
                                 "folders; upload the .py file and name the uploaded copy")
            reward.file = str(Path(reward.file).expanduser().resolve())
    if spec.training.resume_from_checkpoint not in (None, "latest"):
        raise UnsafePath("training.resume_from_checkpoint: only 'latest' may be given from the app")
    spec.output_dir = None  # the job manager places the job under the data dir
    return spec
