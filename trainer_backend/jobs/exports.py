"""Downloadable copies of a job's artifacts: the adapter as a .zip, spec.yaml, events.jsonl, evaluation.json; and
the means for its export's files (ui/export_service.py): big ones hard-linked, a merged folder zipped.

Copies go to an export folder outside the job store (by default under the system temp dir), so a web server
can hand them out without being allowed to serve the data dir itself. The zip is rebuilt only when the
adapter changed; every file is written under a temporary name and renamed, so two readers never see half a file.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Optional

from ..job_files import ADAPTER_ARCHIVE, ADAPTER_DIR, EVAL_FILE, EVENTS_FILE, SPEC_FILE, SWEEP_FILE

COPIED_FILES = (SPEC_FILE, EVENTS_FILE, EVAL_FILE, SWEEP_FILE)  # those a job has
# Exported files (GGUF, merged weights) below this size are copied; bigger ones, which the export writes under a
# temporary name and renames, are hard-linked when the export root is on the same filesystem: a GB file is not
# duplicated on disk.
COPY_BELOW_BYTES = 16 << 20


def default_export_root() -> Path:
    return Path(tempfile.gettempdir()) / "lora-studio-exports"


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


def _atomic_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def zip_folder(folder: Path, dest: Path) -> Path:
    """`folder`'s files in a zip at `dest` (paths relative to `folder`), rebuilt only when a file changed."""
    if dest.is_file() and dest.stat().st_mtime >= _newest_mtime(folder):
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    os.replace(tmp, dest)
    return dest


def export_artifacts(job_id: str, job_dir: str | Path, export_root: Optional[Path] = None) -> list[Path]:
    """Paths of the downloadable files of one job (only those that exist)."""
    job_dir = Path(job_dir)
    dest = (export_root or default_export_root()) / job_id
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    adapter = job_dir / ADAPTER_DIR
    if adapter.is_dir() and any(adapter.iterdir()):
        out.append(zip_folder(adapter, dest / ADAPTER_ARCHIVE))
    for name in COPIED_FILES:
        src = job_dir / name
        if src.is_file():
            _atomic_copy(src, dest / name)
            out.append(dest / name)
    return out


def link_or_copy(src: Path, dest: Path) -> Path:
    """`dest` as a hard link to `src` when it is big and on the same filesystem, else a copy; kept when it is
    already there with the same size."""
    size = src.stat().st_size
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if size < COPY_BELOW_BYTES:
            raise OSError("small: copied")  # a small file may be rewritten in place by a later export
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def zip_stored(folder: Path, dest: Path) -> Path:
    """`folder`'s files in a zip without compression (safetensors barely compress; a GB folder zips in seconds),
    built once per export folder."""
    if dest.is_file():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    os.replace(tmp, dest)
    return dest

