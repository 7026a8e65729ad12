"""The prepared-data cache: a folder per key (data/fingerprint.py) under <data dir>/prepared-data.

An entry holds the Arrow shards preparation wrote, the split layout and statistics (manifest.json), and the
artefacts derived from them later (a packed training set). Every file is listed in the manifest with its size and
XXH3-128 checksum and is checked on every use: an entry with a missing, short or altered file is deleted and built
again, never read. Entries are built in a private folder and published with one rename, so a reader never sees
half an entry and two processes building the same key cannot mix files. Above the size cap
($LORA_STUDIO_PREPARED_CACHE_GB, default 10) the least recently used entries are evicted.
$LORA_STUDIO_PREPARED_CACHE moves the cache, or turns it off ("off": preparation then writes to a temporary folder).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..job_files import PREPARED_DATA_DIR, store_dir
from ..settings import settings

CACHE_ENV = "LORA_STUDIO_PREPARED_CACHE"
CAP_ENV = "LORA_STUDIO_PREPARED_CACHE_GB"
MANIFEST = "manifest.json"
DERIVED = "derived"
BUILDING = ".building"
FORMAT = 1
_STALE_BUILD_S = 6 * 3600  # a build folder this old whose process is gone is a crash's leftover


def cache_root() -> Optional[Path]:
    """Where entries live; None when the cache is off."""
    value = settings().prepared_cache.strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    return Path(value).expanduser().resolve() if value else store_dir() / PREPARED_DATA_DIR


def cap_bytes() -> int:
    return int(settings().prepared_cache_gb * 1024**3)


def checksum(path: Path) -> str:
    import xxhash  # a dependency of `datasets`; ~10 GB/s, so checking every file on every use is cheap

    h = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def describe_file(path: Path) -> list[Any]:
    """[name, size, checksum]: how the manifest lists a file."""
    return [path.name, path.stat().st_size, checksum(path)]


@dataclass
class Entry:
    path: Path
    manifest: dict[str, Any]

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest["meta"]

    def touch(self) -> None:
        """Mark as used now (eviction removes the least recently used first)."""
        try:
            os.utime(self.path / MANIFEST)
        except OSError:
            pass


def _entry_dir(root: Path, key: str) -> Path:
    return root / key[:40]


def _problem(folder: Path, key: Optional[str]) -> tuple[Optional[dict], Optional[str]]:
    """(manifest, None) when every file of the entry checks out, else (None, what is wrong)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest"
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            (key is not None and manifest.get("key") != key):
        return None, "manifest of another format or key"
    for name, size, digest in manifest.get("files", []):
        path = folder / name
        if not path.is_file():
            return None, f"{name} is missing"
        if path.stat().st_size != size:
            return None, f"{name} has {path.stat().st_size} bytes, expected {size} (truncated or overwritten)"
        if checksum(path) != digest:
            return None, f"{name} does not match its checksum (corrupt)"
    return manifest, None


def load_entry(root: Optional[Path], key: str) -> tuple[Optional[Entry], Optional[str]]:
    """The verified entry for `key`, or (None, why not). An entry that fails the check is deleted."""
    if root is None:
        return None, None
    folder = _entry_dir(root, key)
    if not folder.exists():
        return None, None
    manifest, problem = _problem(folder, key)
    if manifest is None:
        shutil.rmtree(folder, ignore_errors=True)
        return None, problem
    entry = Entry(folder, manifest)
    entry.touch()
    return entry, None


def start_build(root: Optional[Path], key: str) -> Path:
    """A private folder to build an entry in (a temporary one when the cache is off)."""
    if root is None:
        return Path(tempfile.mkdtemp(prefix="lora-studio-prepared-"))
    building = root / BUILDING
    building.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{key[:16]}-{os.getpid()}-", dir=building))


def publish(build: Path, root: Optional[Path], key: str, files: list[Path], meta: dict[str, Any]) -> Entry:
    """Write the manifest and move the build into place (atomically). With the cache off it stays where it is."""
    manifest = {"format": FORMAT, "key": key, "created": time.time(), "meta": meta,
                "files": [describe_file(p) for p in files]}
    (build / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    if root is None:
        return Entry(build, manifest)
    target = _entry_dir(root, key)
    try:
        os.rename(build, target)
    except OSError:  # built meanwhile by another process: keep a sound one, else replace it with ours
        theirs, _ = _problem(target, key)
        if theirs is not None:
            shutil.rmtree(build, ignore_errors=True)
            return Entry(target, theirs)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(build, target)
    entry = Entry(target, manifest)
    evict(root, cap_bytes(), keep={target.name})
    return entry


def discard(build: Path) -> None:
    shutil.rmtree(build, ignore_errors=True)


# ---- artefacts derived from an entry (e.g. the packed training set) -------------------------------------------

def derived_file(entry: Path, name: str) -> Path:
    return entry / DERIVED / name


def derived_ok(entry: Path, name: str) -> bool:
    """Is the artefact there and intact? (A broken one is removed.)"""
    path, record = derived_file(entry, name), derived_file(entry, name + ".json")
    try:
        size, digest = json.loads(record.read_text(encoding="utf-8"))
        if path.stat().st_size == size and checksum(path) == digest:
            return True
    except (OSError, ValueError, TypeError):
        pass
    for p in (path, record):
        p.unlink(missing_ok=True)
    return False


def record_derived(entry: Path, name: str) -> None:
    path = derived_file(entry, name)
    tmp = path.with_name(path.name + f".json.{os.getpid()}")
    tmp.write_text(json.dumps(describe_file(path)[1:]), encoding="utf-8")
    os.replace(tmp, derived_file(entry, name + ".json"))


# ---- listing, eviction, clearing ------------------------------------------------------------------------------

@dataclass
class EntryInfo:
    key: str
    path: Path
    size: int
    last_used: float
    meta: dict[str, Any]
    problem: Optional[str] = None  # only when asked to verify


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def entries(root: Optional[Path], verify: bool = False) -> list[EntryInfo]:
    """Every entry, most recently used first."""
    if root is None or not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name == BUILDING:
            continue
        manifest_path = folder / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            used = manifest_path.stat().st_mtime
        except (OSError, ValueError):
            manifest, used = {}, folder.stat().st_mtime
        problem = _problem(folder, None)[1] if verify else (None if manifest else "no manifest")
        out.append(EntryInfo(manifest.get("key", folder.name), folder, _size(folder), used,
                             manifest.get("meta", {}), problem))
    return sorted(out, key=lambda e: e.last_used, reverse=True)


def evict(root: Path, cap: int, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Remove least recently used entries until the cache fits in `cap` bytes; returns the removed keys."""
    _remove_stale_builds(root)
    found = entries(root)
    total = sum(e.size for e in found)
    removed = []
    for e in reversed(found):  # least recently used first
        if total <= cap:
            break
        if e.path.name in keep:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        total -= e.size
        removed.append(e.key)
    return removed


def clear(root: Optional[Path], keys: Optional[list[str]] = None) -> list[str]:
    """Remove the entries whose key starts with one of `keys` (all entries when None); returns their keys."""
    removed = []
    for e in entries(root):
        if keys is None or any(e.key.startswith(k) or e.path.name.startswith(k) for k in keys):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.key)
    if keys is None and root is not None:
        shutil.rmtree(root / BUILDING, ignore_errors=True)
    return removed


def _remove_stale_builds(root: Path) -> None:
    building = root / BUILDING
    if not building.is_dir():
        return
    now = time.time()
    for folder in building.iterdir():
        try:
            pid: Optional[int] = int(folder.name.split("-")[1])
        except (IndexError, ValueError):
            pid = None
        if pid is not None:
            try:
                os.kill(pid, 0)
                continue  # its builder is still at work
            except ProcessLookupError:
                pass
            except PermissionError:  # another user's live process
                continue
        else:
            try:
                if now - folder.stat().st_mtime < _STALE_BUILD_S:
                    continue
            except OSError:
                continue
        shutil.rmtree(folder, ignore_errors=True)
