"""Files clients send, and paths clients name: kept inside the app's upload and data directories.

An uploaded file is copied into <data_dir>/uploads/<user>/<content hash>/<sanitised name> after a size check:
the same file sent again (every Check, Plan and Start sends it) is stored once, and two different files with the
same name do not meet. What the user sees names their files as they know them (user_file_name, scrub_paths), and
a saved config names its dataset portably (portable_dataset_name), never by a server path. A spec that
arrives over the UI or API may only name local paths inside the data directory (or the bundled examples);
everything else must be a Hub id. The server, not the client, chooses the job's output directory.
"""
from __future__ import annotations

import os
import hashlib
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Optional

from .data.loading import looks_local
from .settings import settings
from .spec import JobSpec

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class UnsafePath(ValueError):
    pass


def max_upload_bytes() -> int:
    return int(settings().max_upload_mb * 1024 * 1024)


def sanitize_filename(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "upload"
    return base[:120]


MAX_SPEC_BYTES = 256 * 1024
MAX_YAML_ALIASES = 64
# A job spec is a handful of levels deep (grpo.rewards[i].setting is 4). PyYAML's time grows with the square of
# flow-collection depth ([[[[...), and its composer recurses: 4 KB of brackets held a core for 18 s, then died with
# a RecursionError. Depth is counted in the raw text, before any parser sees it.
MAX_SPEC_DEPTH = 32
# A full spec is a few hundred YAML events; 20,000 leave room for long lists and keep parsing well under a second
# (the parse stops counting at the limit, so a 256 KiB spec of tiny nodes costs ~0.1 s to refuse).
MAX_SPEC_EVENTS = 20_000


def nesting_problem(text: str, limit: int = MAX_SPEC_DEPTH) -> Optional[str]:
    """Why `text` nests too deep for a spec, or None. Counts open [ / { (flow collections, JSON) over the whole
    text, quotes included: a string holding 32 unclosed brackets is no job spec either, and a quote-aware count
    could be fooled by a stray quote. Block nesting is bounded by indentation (8 columns a level at most)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif char in "]}" and depth:
            depth -= 1
    if deepest > limit:
        return f"nests [ ] / {{ }} more than {limit} levels deep; a job spec needs fewer than 10"
    widest = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    if widest > limit * 8:
        return f"has a line indented {widest} spaces (more than {limit} levels); a job spec needs fewer than 10"
    return None


def _structure_problem(value: Any, limit: int = MAX_SPEC_DEPTH, budget: int = 5 * MAX_SPEC_EVENTS) -> Optional[str]:
    """What is wrong with a parsed tree's shape, or None, found without recursion. Aliases can nest deeper and
    stand for far more values than the text shows (9 aliases a level, 7 levels: 4.8 million), and everything
    after the parser (validation, the ${VAR} check) walks the expanded tree."""
    stack, seen = [(value, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > budget:
            return f"stands for more than {budget} values once its YAML aliases are expanded"
        if isinstance(node, (dict, list)):
            if depth > limit:
                return f"nests more than {limit} levels deep (through its aliases); a job spec needs fewer than 10"
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return None


def load_client_yaml(text: str, source: str = "spec") -> dict:
    """A spec from a client (API, UI, an uploaded config), bounded before and after parsing: size, nesting depth,
    aliases (a few lines of anchors can stand for billions of nodes once something walks the tree); then
    refused if it names the server's environment (spec_env.refuse_env_refs)."""
    import yaml

    from .errors import SpecError
    from .spec import refuse_env_refs

    text = text or ""
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise SpecError(f"{source} is {len(text) // 1024} KiB; a job spec is at most {MAX_SPEC_BYTES // 1024} KiB")
    problem = nesting_problem(text)
    if problem:
        raise SpecError(f"{source} {problem}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the same YAML, ~5x faster
    try:
        aliases = 0
        for count, event in enumerate(yaml.parse(text, Loader=loader), 1):
            aliases += isinstance(event, yaml.AliasEvent)
            if count > MAX_SPEC_EVENTS:
                raise SpecError(f"{source} has more than {MAX_SPEC_EVENTS} YAML nodes; a job spec has a few hundred")
        if aliases > MAX_YAML_ALIASES:
            raise SpecError(f"{source} uses {aliases} YAML aliases; at most {MAX_YAML_ALIASES} are accepted")
        raw = yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{source} is not valid YAML/JSON: {exc}") from None
    except RecursionError:  # not reachable within the depth limit; never an internal error if it were
        raise SpecError(f"{source} nests too deep to read") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source} must be a mapping (YAML or JSON object)")
    problem = _structure_problem(raw)
    if problem:
        raise SpecError(f"{source} {problem}")
    refuse_env_refs(raw)
    return raw


def user_upload_dir(data_dir: Path, username: Optional[str]) -> Path:
    """Each user's uploads in a folder of their own: nobody can name another person's file."""
    return data_dir / "uploads" / (sanitize_filename(username.lower()) if username else "local")


def store_upload(src: str | Path, upload_dir: Path, original_name: Optional[str] = None) -> Path:
    """Copy an uploaded temp file into `upload_dir` (see user_upload_dir), once per content: the copy lives in a
    folder named by the first 16 hex digits of its SHA-256, so the same bytes under the same name come back as the
    same path (and the prepared-data cache finds them again). Refuses files over the size limit."""
    src = Path(src)
    size = src.stat().st_size
    limit = max_upload_bytes()
    if size > limit:
        raise UnsafePath(f"{original_name or src.name} is {size / 2**20:.1f} MiB; uploads are limited to "
                         f"{limit / 2**20:.0f} MiB (LORA_STUDIO_MAX_UPLOAD_MB)")
    digest = hashlib.sha256()
    with src.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    dest = upload_dir / digest.hexdigest()[:16] / sanitize_filename(original_name or src.name)
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")  # two stores at once: each its own file
    try:
        shutil.copyfile(src, part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


# ---- server paths as the user knows them ------------------------------------------------------------------


def _server_dirs(data_dir: Path) -> list[Path]:
    """Folders whose paths mean nothing to the user: the data dir (uploads, jobs, models), Gradio's uploads, the
    shipped samples, the temp folder."""
    dirs = [data_dir, gradio_upload_dir(), EXAMPLES_DIR, Path(tempfile.gettempdir())]
    out: list[Path] = []
    for d in dirs:
        for form in (d.expanduser(), d.expanduser().resolve()):
            if form not in out:
                out.append(form)
    return sorted(out, key=lambda d: -len(str(d)))  # the most specific folder first


def user_file_name(path: str | Path, data_dir: Path) -> Optional[str]:
    """The name the user knows a server file by (an upload's file name, a sample's name), or None when `path` is
    not in one of the app's folders (a Hub id, a path the user typed themselves)."""
    p = Path(str(path)).expanduser()
    for d in _server_dirs(data_dir):
        if p == d:
            return "the app's data folder" if d in (data_dir, data_dir.resolve()) else "a server folder"
        if p.is_relative_to(d):
            return p.name
    return None


def portable_dataset_name(path: Optional[str], data_dir: Path) -> Optional[str]:
    """What a saved config should say for data.path: a shipped sample as examples/<name> (the repo's own
    configs do), an upload as its file name (put the file beside the config, or upload it again), a Hub id or a
    path the user typed as it is. Several comma-separated files are each turned."""
    if not path:
        return path
    out = []
    for part in (p.strip() for p in path.split(",") if p.strip()):
        p = Path(part).expanduser()
        if p.is_absolute() and _inside(p, [EXAMPLES_DIR]):
            out.append(f"examples/{p.resolve().relative_to(EXAMPLES_DIR.resolve()).as_posix()}")
        else:
            out.append((user_file_name(p, data_dir) if p.is_absolute() else None) or part)
    return ",".join(out)


_PATH_END = r"[^\s'\"`,;()\[\]{}<>]*"


def scrub_paths(value: Any, data_dir: Path, names: Optional[dict[str, str]] = None) -> Any:
    """`value` (a message, or JSON-ready data) with every path into the app's folders replaced by the name the
    user knows (user_file_name); a folder named as a place ("copy it into <data dir>/models") stays. `names`
    maps known paths (an upload's temp and stored copies, which may hold spaces) to the user's name first."""
    if isinstance(value, dict):
        return {k: scrub_paths(v, data_dir, names) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v, data_dir, names) for v in value]
    if not isinstance(value, str) or "/" not in value:
        return value
    for known, name in sorted((names or {}).items(), key=lambda kv: -len(kv[0])):
        if known:
            value = value.replace(known, name)
    dirs = [d for d in [*_server_dirs(data_dir), data_dir / "models", data_dir.resolve() / "models"]
            if str(d) not in ("/", "")]
    alternatives = "|".join(re.escape(str(d)) for d in sorted(set(dirs), key=lambda d: -len(str(d))))
    pattern = rf"(?<![\w.~/-])(?:{alternatives})(?:/{_PATH_END})?"
    return re.sub(pattern, lambda m: m.group(0) if Path(m.group(0).rstrip("/")) in dirs
                  else user_file_name(m.group(0), data_dir) or m.group(0), value)


def model_folder_hint(data_dir: Path) -> str:
    """Where a client may keep a local base model folder (sanitize_client_spec's rule), for refusals."""
    from .access import on_space

    if on_space():
        return "on this Space the base model is a Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or tiny-demo"
    return (f"a local model folder must be inside {data_dir.expanduser().resolve() / 'models'} (copy it there), "
            "or use a Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct)")


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    resolved = path.expanduser().resolve()
    return any(resolved == r.resolve() or resolved.is_relative_to(r.resolve()) for r in roots)


def check_client_path(value: str, roots: Iterable[Path], what: str, own_uploads: bool = False,
                      hint: str = "upload the file or use a Hub id") -> str:
    """The one confinement rule for a path a client names (a data file, split, base model folder, adapter, reward
    file, accelerate config, uploaded config): a Hub id passes; a local path must resolve (symlinks followed, no
    '..' or absolute escapes) inside one of `roots`, or, with `own_uploads`, be a file the caller uploaded through
    Gradio (is_own_gradio_upload). Returns the resolved path(s)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not any(looks_local(p) or Path(p).expanduser().exists() for p in parts):
        return value
    roots = list(roots)
    for part in parts:
        if not (_inside(Path(part), roots) or (own_uploads and is_own_gradio_upload(part))):
            raise UnsafePath(f"{what}: '{part}' is outside the app's upload and data folders; {hint}")
    return ",".join(str(Path(p).expanduser().resolve()) for p in parts)


# ---- files a client sent through Gradio's upload route. On a Space its HTTP gate (ui/http_gate.py) refuses
# visitors and records who sent each file; a file someone else uploaded is never theirs to name.
_GRADIO_UPLOADS: dict[str, set[str]] = {}  # resolved path -> lower-cased usernames that uploaded that content
_GRADIO_UPLOADS_LOCK = threading.Lock()


def gradio_upload_dir() -> Path:
    """Where Gradio keeps uploads (its own rule: GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def record_gradio_upload(path: str | Path, username: Optional[str]) -> None:
    if username:
        with _GRADIO_UPLOADS_LOCK:
            _GRADIO_UPLOADS.setdefault(str(Path(path).resolve()), set()).add(username.lower())


def forget_gradio_upload(path: str | Path) -> None:
    with _GRADIO_UPLOADS_LOCK:
        _GRADIO_UPLOADS.pop(str(Path(path).resolve()), None)


def gradio_uploaders(path: str | Path) -> set[str]:
    with _GRADIO_UPLOADS_LOCK:
        return set(_GRADIO_UPLOADS.get(str(Path(path).resolve()), ()))


def is_own_gradio_upload(path: str | Path) -> bool:
    """Is `path` a file in Gradio's upload folder that the current caller sent? Off a Space, one person owns the
    machine: any upload is theirs. On a Space: only one the HTTP gate saw this caller send."""
    from .access import current_caller, on_space

    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file() or not _inside(resolved, [gradio_upload_dir()]):
        return False
    if not on_space():
        return True
    user = current_caller().username
    return user is not None and user.lower() in gradio_uploaders(resolved)


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
                                              "model.base_model", hint=model_folder_hint(data_dir))
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
