"""Shared helpers for the benchmarks: paths, local models, child processes with peak RSS, timing, medians.

Nothing here imports torch/transformers at module level, so `bench/run.py` starts fast and child processes
are not slowed down by what the parent imported.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "data"  # real data samples kept in the repo (tests/data/SOURCES.md)
BENCH_ROOT = Path(tempfile.gettempdir()) / "lora-studio-bench"  # outputs never go into the repo
MODELS_DIR = BENCH_ROOT / "models"
_MODELS_LOCK = threading.Lock()

ALPACA_FILES = [SAMPLES / "alpaca" / "gpteacher_roleplay.jsonl", SAMPLES / "alpaca" / "self_instruct_seed_tasks.jsonl"]
CHAT_MESSAGES = SAMPLES / "chat" / "oasst_en100_messages.jsonl"
CHAT_GSM8K = SAMPLES / "chat" / "msft_gsm8k_chat_train_messages.jsonl"


# ---- environment --------------------------------------------------------------------------------------------

def child_env(threads: Optional[int] = None, **extra: str) -> dict[str, str]:
    """Environment for every benchmark child: offline, no telemetry, the same BLAS thread count on both sides."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1",
                "HF_DATASETS_CACHE": str(BENCH_ROOT / "hf-datasets-cache")})
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    env.update(extra)
    return env


def set_threads(threads: Optional[int]) -> None:
    """Apply the thread count in this process (torch already imported or not)."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def new_run_dir(tag: str = "run") -> Path:
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{tag}-", dir=BENCH_ROOT))


# ---- models -------------------------------------------------------------------------------------------------

MODEL_SIZES = {
    # name: (hidden, layers, vocab); byte-level BPE tokenizers trained locally on the real data (no download)
    "tiny": (64, 2, 1024),
    "small": (256, 4, 8192),
}


def _corpus() -> list[str]:
    """Text from the real alpaca and chat files, so the 'small' tokenizer compresses like a real one."""
    texts: list[str] = []
    for path in ALPACA_FILES + [CHAT_MESSAGES, CHAT_GSM8K]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if "messages" in row:
                texts.extend(m["content"] for m in row["messages"])
            else:
                texts.extend(str(row.get(k) or "") for k in ("instruction", "input", "output"))
    return texts


def model_dir(name: str) -> Path:
    """A random-init Llama-style model + tokenizer built locally (cached under the temp bench folder)."""
    hidden, layers, vocab = MODEL_SIZES[name]
    out = MODELS_DIR / f"{name}-h{hidden}-l{layers}-v{vocab}"
    with _MODELS_LOCK:  # benchmarks in threads (--quick) ask for the same model at once: build it once
        if (out / "config.json").exists() and (out / "tokenizer.json").exists():
            return out
        return _build_model(out, hidden, layers, vocab)


def _build_model(out: Path, hidden: int, layers: int, vocab: int) -> Path:
    from trainer_backend.tiny_model import build_tiny_model

    corpus = _corpus()
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=MODELS_DIR))
    build_tiny_model(tmp, corpus=corpus, vocab_size=vocab, hidden_size=hidden, num_layers=layers)
    try:
        tmp.rename(out)  # atomic: a half-built model is never picked up
    except OSError:  # built concurrently by another run
        pass
    return out


# ---- child processes ----------------------------------------------------------------------------------------

@dataclass
class ChildResult:
    cmd: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    log: Path
    timed_out: bool = False
    cpu_s: float = 0.0             # user + system CPU seconds of the whole child

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def check(self) -> "ChildResult":
        if self.returncode != 0:
            raise RuntimeError(f"command failed (exit {self.returncode}{', timed out' if self.timed_out else ''}): "
                               f"{' '.join(self.cmd)}\n--- last lines of {self.log} ---\n{self.tail()}")
        return self


def proc_cpu_seconds(pid: int) -> Optional[float]:
    """user + system CPU seconds used so far by a live process (all its threads), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(cmd: Sequence[str], log: Path, env: Optional[dict] = None, cwd: Optional[Path] = None,
              timeout: float = 600, poll: Optional[Callable[[int], None]] = None,
              poll_interval: float = 0.05) -> ChildResult:
    """Run one command to completion. Peak RSS is the child's own ru_maxrss from wait4 (not a poll, not shared
    with other children), so two children measured one after the other never mask each other.
    `poll(pid)` is called every `poll_interval` seconds while the child runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if poll is not None:
                poll(proc.pid)
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(poll_interval)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it is reaped
    rss_kb = usage.ru_maxrss  # kilobytes on Linux
    return ChildResult(list(cmd), proc.returncode, wall, rss_kb / 1024, log, timed_out,
                       cpu_s=usage.ru_utime + usage.ru_stime)


def python() -> str:
    return sys.executable


# ---- statistics ---------------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def alternate(a: Callable[[int], Any], b: Callable[[int], Any], repeats: int) -> tuple[list, list]:
    """Run a and b `repeats` times each, alternating and swapping who goes first each round (ABBAAB...), so a
    slow drift in machine load hits both sides equally."""
    ra, rb = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ra.append(a(i))
            rb.append(b(i))
        else:
            rb.append(b(i))
            ra.append(a(i))
    return ra, rb


def ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.s = time.perf_counter() - self.t0


def peak_rss_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- results ------------------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    line: str                      # the one line run.py prints
    figures: dict = field(default_factory=dict)
    ok: Optional[bool] = None      # targets met (None: not judged, e.g. smoke mode or skipped)
    skipped: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def verdict(ok: Optional[bool]) -> str:
    return "" if ok is None else (" [target met]" if ok else " [TARGET MISSED]")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "nproc": os.cpu_count()}
    try:
        info["cpu_model"] = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                                 if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")))
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "gradio",
                "gradio_client", "bitsandbytes", "liger-kernel", "flash-attn"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    return info


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path


def read_events(job_dir: Path) -> list[dict]:
    """The product's own events.jsonl reader (typed records), as plain dicts with every key."""
    from trainer_backend.run_events import read_events as product_read_events

    return [e.model_dump() for e in product_read_events(job_dir)]


class ProgressWatcher:
    """Follows a child's JSONL progress file (LoRA Studio's events.jsonl, or the baseline's progress.jsonl) while
    it runs and stamps each new `log` line with the child's CPU seconds at that moment. Both sides of a
    comparison are watched by the same code, so whatever error the sampling has, it has on both."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.points: list[dict] = []   # {wall, cpu, tokens}

    def __call__(self, pid: int) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        cpu = None
        for raw in chunk[: end + 1].splitlines():
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if rec.get("event") != "log" or rec.get("tokens_seen") is None:
                continue
            cpu = proc_cpu_seconds(pid) if cpu is None else cpu
            self.points.append({"wall": rec["time"], "cpu": cpu, "tokens": rec["tokens_seen"]})

    def steady(self) -> dict[str, Optional[float]]:
        """Throughput between the first and the last log line (the first optimizer step is warm-up)."""
        pts = [p for p in self.points if p["cpu"] is not None]
        if len(pts) < 2:
            return {"tokens_per_s": None, "tokens_per_cpu_s": None}
        a, b = pts[0], pts[-1]
        tok = b["tokens"] - a["tokens"]
        return {"tokens_per_s": tok / (b["wall"] - a["wall"]) if b["wall"] > a["wall"] else None,
                "tokens_per_cpu_s": tok / (b["cpu"] - a["cpu"]) if b["cpu"] > a["cpu"] else None}
