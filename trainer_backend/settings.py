"""Every LORA_STUDIO_* variable a person or operator sets: one typed model, read from the environment.

`settings()` returns the current values. Each call looks the variables up (a few dozen dictionary lookups) and
parses them again only when one changed since the last call, so a value is read where it is used, as it always
was: a test that sets a variable mid-process, a job's own `--env`, the supervisor's environment all see what is
set now, while parsing (and any warning) happens once per distinct environment. `settings.cache_clear()` forgets
the parsed values.

A bad value never fails deep inside a module. For the variables marked lenient (the caps and counts that always
fell back) text that does not parse warns, naming the variable and what it takes, and keeps the default; a number
out of range is moved into it. Any other bad value (sizes, upload limits, polling intervals, the forced process
count: today's crashes) raises SettingsError naming every bad variable and what each accepts; the app calls
settings() before it builds anything, so it stops at start.

The README's table of variables is generated from the model (`python -m trainer_backend.settings --markdown`;
tests/test_settings.py checks they agree). Bottom of the package: imports nothing of ours.
"""
from __future__ import annotations

import math
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping, Optional

import annotated_types
from pydantic import BaseModel, ConfigDict, Field

PREFIX = "LORA_STUDIO_"

# Variables our own processes set for each other (or tests set to inject faults). A person never sets them, so
# they are not settings: each keeps its name where it is used (job_files.py, remote/hf_jobs.py, training/), and
# the README lists them apart, as internal, so a name seen in a training process's environment is explained.
INTERNAL: tuple[tuple[str, str], ...] = (
    ("LORA_STUDIO_JOB_ID", "the job a training process belongs to (set by the supervisor)"),
    ("LORA_STUDIO_JOB_OWNER", "whose job it is (set by the supervisor)"),
    ("LORA_STUDIO_LOG_FILE", "where a training process writes the person's log (set by the supervisor)"),
    ("LORA_STUDIO_SYNC_REPO", "the Hub repo an HF Job mirrors into (set by the remote runner)"),
    ("LORA_STUDIO_NODE_RANK", "this node's rank in a multi-node HF Job (set by the remote runner)"),
    ("LORA_STUDIO_NODES", "how many nodes a multi-node HF Job has (set by the remote runner)"),
    ("LORA_STUDIO_MASTER_ALIAS", "the rendezvous node's name in the Job's network (set by the remote runner)"),
    ("LORA_STUDIO_MASTER_PORT", "the rendezvous port (set by the remote runner)"),
    ("LORA_STUDIO_MASTER_ADDR", "overrides the rendezvous host (debugging; the loopback Hub's tests)"),
    ("LORA_STUDIO_FAULT_AT_STEP", "tests: the training callback raises at this step"),
    ("LORA_STUDIO_FAULT_OOM_TOKENS", "tests: a forward pass over more tokens than this runs out of memory"),
    ("LORA_STUDIO_TEST_CPU_REPORT", "tests: a file that gets the CPU-seconds of every test (tests/conftest.py)"),
)


class SettingsError(ValueError):
    """One or more LORA_STUDIO_* variables hold a value that cannot be used; the message names each."""


class SettingWarning(UserWarning):
    """A lenient variable's bad value was ignored (the default is used)."""


_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from a size as Gradio writes them: 512kb, 2gb, 100 (1024-based)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r} (write e.g. 512mb or 2gb)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _text(raw: str) -> str:
    return raw


def _names(raw: str) -> frozenset[str]:
    return frozenset(a.strip() for a in raw.split(",") if a.strip())


def _user_names(raw: str) -> frozenset[str]:
    return frozenset(u.lower() for u in _names(raw))


def _not_zero(raw: str) -> bool:
    return raw != "0"


def _positive_gb(raw: str) -> Optional[float]:
    gb = float(raw)
    return gb if gb > 0 else None  # 0 or less: the default


@dataclass(frozen=True)
class Env:
    """How a field is read. `parse` turns the text into the value (blank text counts as unset, except for plain
    text, which is taken as written); `accepts` is what the variable takes, in words; `lenient`: see the module
    docstring; `shown` is the default as the README writes it, in markdown (else the field's default)."""
    parse: Callable[[str], Any]
    accepts: str
    lenient: bool = False
    shown: Optional[str] = None


_INT, _NUM = "a whole number", "a number"
_SIZE = "a size such as 512mb or 2gb (1024-based)"


class Settings(BaseModel):
    """One field per variable: LORA_STUDIO_ + the field's name in capitals."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    # ---- where things live, what runs -------------------------------------------------------------------------
    data_dir: Annotated[str, Env(_text, "a folder", shown="`/data/lora-studio` when `/data` is "
                                 "writable, else `./lora-studio-data`")] = Field(
        "", description="the job store: SQLite registry, job folders, uploads, the prepared-data cache")
    llama_cpp_dir: Annotated[str, Env(_text, "a folder")] = Field(
        "", description="llama.cpp's converter folder for GGUF export (convert_hf_to_gguf.py, conversion/, gguf-py/); "
                        "default: the copy `make install` fetched for the installed llama-cpp-python")
    auto_evaluation: Annotated[bool, Env(_not_zero, "`0` (off) or anything else (on)", shown="`1`")] = Field(
        True, description="the evaluation report after training that a job's `evaluation.auto` asks for (`0`: no job "
                          "on this machine runs it, e.g. a CI box training smoke jobs; Evaluate still runs it)")
    max_concurrent_jobs: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        1, ge=1, description="training jobs run at once per data dir (1: one job owns the machine's GPUs)")
    train_nice: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        10, ge=0, le=19, description="how much lower the training process's CPU priority is (POSIX nice; 0: off), "
                                     "so the app stays responsive while a job runs")
    num_processes: Annotated[Optional[int], Env(int, _INT, shown="one per visible GPU, else 1")] = Field(
        None, description="training processes of a job whose spec sets no `training.num_processes`")
    num_proc: Annotated[Optional[int], Env(int, _INT, lenient=True, shown="the cores this process may use")] = Field(
        None, ge=1, description="worker processes that prepare (tokenise) a dataset")
    hardware: Annotated[str, Env(_text, "a Spaces hardware name such as l4x1", shown="detected")] = Field(
        "", description="the hardware a job plan prices and times (on a Space `SPACE_HARDWARE` "
                        "wins); a name the plan does not know is ignored")
    prepared_cache: Annotated[str, Env(_text, "a folder, or `off`", shown="`prepared-data/` in the data dir")] = Field(
        "", description="where prepared datasets are cached; `off` (or `0`, `false`, `no`) turns the "
                                                    "cache off")
    prepared_cache_gb: Annotated[float, Env(float, _NUM, lenient=True)] = Field(
        10.0, ge=0, allow_inf_nan=False, description="disk the prepared-data cache keeps; above it the least "
                                                     "recently used entries are evicted")
    # ---- who may do what, uploads ------------------------------------------------------------------------------
    allowed_users: Annotated[frozenset[str], Env(_user_names, "comma-separated Hub user names",
                                                 shown="none")] = Field(
        frozenset(), description="on a Space, who besides the owner and the owning org's members may use the app")
    restore_from_hub: Annotated[bool, Env(_not_zero, "`0` (off) or anything else (on)", shown="`1`")] = Field(
        True, description="with `HF_TOKEN` set, jobs kept on the Hub that this disk lost come back at start")
    max_upload_mb: Annotated[float, Env(float, _NUM + " of MiB")] = Field(
        512.0, ge=0, allow_inf_nan=False, description="largest file an upload may store")
    max_upload: Annotated[str, Env(_text, "a whole number and b, kb, mb, gb or tb (Gradio's form)")] = Field(
        "512mb", description="Gradio's own per-file upload limit (Gradio reads the value)")
    upload_quota: Annotated[int, Env(parse_size, _SIZE, shown="`2gb`")] = Field(
        2 * 1024**3, description="on a Space, uploads each member may hold (not yet expired)")
    upload_total: Annotated[int, Env(parse_size, _SIZE, shown="`8gb`")] = Field(
        8 * 1024**3, description="on a Space, uploads all members may hold together")
    upload_max_age_hours: Annotated[float, Env(float, _NUM + " of hours")] = Field(
        24.0, ge=0, allow_inf_nan=False, description="on a Space, uploads are deleted this long after they were sent")
    trusted_proxy_hops: Annotated[Optional[int], Env(int, _INT, lenient=True,
                                                     shown="1 on a Space, else 0")] = Field(
        None, ge=0, le=16, description="proxies in front of the app that append to `X-Forwarded-For` (who a "
                                       "public-demo visitor is)")
    # ---- the public demo ---------------------------------------------------------------------------------------
    public_adapters: Annotated[frozenset[str], Env(_names, "comma-separated job ids or Hub repo ids",
                                                   shown="none")] = Field(
        frozenset(), description="adapters any visitor of a Space may chat with and compare, within the caps below")
    demo_max_new_tokens: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        128, ge=1, description="public demo: new tokens per answer (never above the model's own cap)")
    demo_max_prompt_tokens: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        1024, ge=1, description="public demo: the whole prompt as the model receives it, chat template included")
    demo_max_prompt_chars: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        2000, ge=1, description="public demo: characters of roles, contents and the system prompt, checked first")
    demo_max_messages: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        16, ge=1, description="public demo: messages per request (history, the new message, the system prompt)")
    demo_requests_per_minute: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        10, ge=1, description="public demo: requests per minute per visitor")
    demo_max_concurrent: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        2, ge=1, description="public demo: generations at once, all visitors together")
    # ---- chat --------------------------------------------------------------------------------------------------
    chat_models: Annotated[int, Env(int, _INT, lenient=True)] = Field(
        2, ge=1, description="base models chat, compare and evaluate keep loaded (least recently used out)")
    chat_memory_gb: Annotated[Optional[float], Env(_positive_gb, _NUM + " of GB", lenient=True,
                                                   shown="half the GPU's memory, else half the RAM")] = Field(
        None, gt=0, allow_inf_nan=False, description="memory the loaded base models' weights may take together "
                                                     "(0: the default)")
    # ---- jobs on HF Jobs ---------------------------------------------------------------------------------------
    remote_poll: Annotated[float, Env(float, _NUM + " of seconds")] = Field(
        5.0, ge=0, allow_inf_nan=False, description="how often the remote runner checks an HF Job and its mirror")
    remote_stop_grace: Annotated[float, Env(float, _NUM + " of seconds")] = Field(
        40.0, ge=0, allow_inf_nan=False, description="after a stop request, how long an HF Job may take to end "
                                                     "before it is cancelled")
    stop_poll: Annotated[float, Env(float, _NUM + " of seconds")] = Field(
        5.0, ge=0, allow_inf_nan=False, description="inside an HF Job, how often it checks for a stop request")


FIELDS = tuple(Settings.model_fields)
DEFAULTS = Settings()


def env_name(field: str) -> str:
    return PREFIX + field.upper()


NAMES = tuple(env_name(f) for f in FIELDS)


def _env(field: str) -> Env:
    return next(m for m in Settings.model_fields[field].metadata if isinstance(m, Env))


def _bounds(field: str) -> tuple[Optional[float], Optional[float]]:
    low: Optional[float] = None
    high: Optional[float] = None
    for m in Settings.model_fields[field].metadata:
        if isinstance(m, annotated_types.Ge):
            low = float(m.ge)  # type: ignore[arg-type]  # our bounds are numbers
        elif isinstance(m, annotated_types.Le):
            high = float(m.le)  # type: ignore[arg-type]
    return low, high


def accepts(field: str) -> str:
    """What the variable takes, in words, bounds included."""
    low, high = _bounds(field)
    text = _env(field).accepts
    if low is not None and high is not None:
        return f"{text} from {low:g} to {high:g}"
    return f"{text} ≥ {low:g}" if low is not None else text


def shown_default(field: str) -> str:
    meta, default = _env(field), Settings.model_fields[field].default
    if meta.shown is not None:
        return meta.shown
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


class _Bad(Exception):
    pass


_WARNED: dict[Any, Any] = {}


def _parse(field: str, raw: str) -> Any:
    """The value of `raw`; raises _Bad when it cannot be used (a lenient number out of range is moved into it)."""
    meta = _env(field)
    try:
        value = meta.parse(raw)
    except (ValueError, OverflowError) as exc:
        raise _Bad() from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad()
    low, high = _bounds(field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        kind = type(value)
        for bound, outside in ((low, low is not None and value < low), (high, high is not None and value > high)):
            if outside and not meta.lenient:
                raise _Bad()
            if outside and bound is not None:
                value = kind(bound)
    return value


def read(field: str, env: Mapping[str, str]) -> Any:
    """One variable's value in `env` (the default when unset). A lenient variable's bad value warns and gives
    the default; any other bad value raises SettingsError."""
    name, meta = env_name(field), _env(field)
    raw = env.get(name)
    if raw is None or (meta.parse is not _text and not raw.strip()):
        return Settings.model_fields[field].default
    try:
        return _parse(field, raw)
    except _Bad:
        problem = f"{name}={raw!r}: expected {accepts(field)}"
        if not meta.lenient:
            raise SettingsError(problem) from None
        # attributed to this file, line 0: no source line is printed; shown once per message and process
        default = shown_default(field).replace("`", "")
        warnings.warn_explicit(f"{problem}; using the default, {default}", SettingWarning, __file__, 0,
                               registry=_WARNED)
        return Settings.model_fields[field].default


def from_env(env: Mapping[str, str]) -> Settings:
    """Every variable of `env`; raises SettingsError naming each bad one."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in FIELDS:
        try:
            values[field] = read(field, env)
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("bad LoRA Studio setting" + ("s" if len(problems) > 1 else "") + ":\n  "
                            + "\n  ".join(problems) + "\n(see README, Settings)")
    return Settings.model_validate(values)


class _Current:
    """settings(): the values of os.environ now, parsed once per distinct set of values."""

    def __init__(self) -> None:
        self._hit: Optional[tuple[tuple[Optional[str], ...], Settings]] = None
        self._lock = threading.Lock()

    def __call__(self) -> Settings:
        key = tuple(os.environ.get(n) for n in NAMES)
        hit = self._hit
        if hit is None or hit[0] != key:
            with self._lock:
                hit = self._hit = (key, from_env({n: v for n, v in zip(NAMES, key) if v is not None}))
        return hit[1]

    def cache_clear(self) -> None:
        self._hit = None


settings = _Current()


# ---- the README's table ---------------------------------------------------------------------------------------
def markdown_table() -> str:
    """The README's table: every variable, generated from the model (tests/test_settings.py keeps them equal)."""
    rows = ["| Variable | Default | Accepts | What it does |", "|---|---|---|---|"]
    for field in FIELDS:
        info, meta = Settings.model_fields[field], _env(field)
        bad = "; else the default, with a warning" if meta.lenient else ""
        rows.append(f"| `{env_name(field)}` | {shown_default(field)} | {accepts(field)}{bad} | {info.description} |")
    rows += ["", "Internal: set by LoRA Studio for its own processes, or by tests; never set them yourself.", "",
             "| Variable | What it is |", "|---|---|"]
    rows += [f"| `{name}` | {what} |" for name, what in INTERNAL]
    return "\n".join(rows) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        print(markdown_table(), end="")
        return 0
    if args:
        print("usage: python -m trainer_backend.settings [--markdown]", file=sys.stderr)
        return 2
    try:
        current = settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for field in FIELDS:
        print(f"{env_name(field)}={getattr(current, field)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
