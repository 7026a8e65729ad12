"""How a job reads to a person: human durations, rates and times, the progress bar, metric cards, and which
actions are possible in the job's current status. Gradio-free (plain values in, strings/dicts out), so the
Jobs tab stays a thin layer and this is tested without a browser."""
from __future__ import annotations

import html
import re
import time
from typing import Any, Optional

from ..spec import JobSpec
from ..jobs.store import (FAILED, INTERRUPTED, NOT_PUSHED, PRUNED, QUEUED, RESUMABLE, RUNNING, STOPPED,
                          STOPPING, SUCCEEDED, TERMINAL)

# A stop the person asked for is calm grey, never the failure red; an interrupted run (the app went away) amber.
STATUS_COLORS = {QUEUED: "#6b7280", RUNNING: "#4f46e5", STOPPING: "#64748b", STOPPED: "#64748b",
                 SUCCEEDED: "#16a34a", NOT_PUSHED: "#ca8a04", INTERRUPTED: "#ca8a04", PRUNED: "#64748b"}
FAILURE_COLOR = "#dc2626"
# What the progress line says about a job that is not taking steps (a failure says its error in the header).
STATUS_SAYS = {STOPPING: "stopping: saving a checkpoint at the next step",
               STOPPED: "stopped as asked", INTERRUPTED: "interrupted (the app stopped while it ran)",
               FAILED: "failed", NOT_PUSHED: "trained; the Hub push failed",
               PRUNED: "pruned by its sweep (a hopeless trial, stopped at an evaluation; its checkpoint is kept)"}


def human_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(max(seconds, 0)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def human_number(value: Optional[float], unit: str = "") -> str:
    """11264.3 -> '11.3k', 0.5 -> '0.5'; never scientific notation."""
    if value is None:
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            text = f"{value / factor:.1f}{suffix}"
            break
    else:
        text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2g}"
    return f"{text} {unit}".strip()


def human_bytes(value: Optional[float]) -> str:
    if value is None:
        return "—"
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= factor:
            return f"{value / factor:.1f} {suffix}"
    return f"{int(value)} B"


def human_time(timestamp: Optional[float], now: Optional[float] = None) -> str:
    """Server-local time: '14:03 (5 min ago)' today, '24 Nov 14:03' before."""
    if not timestamp:
        return "—"
    now = now or time.time()
    local = time.localtime(timestamp)
    if time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d", time.localtime(now)):
        ago = now - timestamp
        return time.strftime("%H:%M", local) + (f" ({human_duration(ago)} ago)" if ago >= 0 else "")
    return time.strftime("%d %b %Y %H:%M", local)


def format_loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def allowed_actions(status: Optional[str], has_checkpoint: bool = True) -> dict[str, bool]:
    """Which buttons make sense now (the manager still checks; this only keeps impossible ones disabled)."""
    return {"stop": status in (QUEUED, RUNNING),
            "resume": status in RESUMABLE,
            "continue": status in TERMINAL and has_checkpoint,
            "push": status in (SUCCEEDED, NOT_PUSHED)}


def samples_per_step(spec: Optional[JobSpec]) -> Optional[int]:
    if spec is None:
        return None
    tr = spec.training
    return tr.batch_size * tr.gradient_accumulation * max(tr.num_processes or 1, 1)


def current_phase(job: dict, now: Optional[float] = None) -> Optional[str]:
    """What an unfinished job is doing before its steps: 'queued: …', 'starting the training process', 'preparing
    data', 'loading model', 'restoring checkpoint' (with how long so far); None while it trains or once it ended."""
    p, status = job["progress"], job["status"]
    if status == QUEUED:
        return "queued: waiting for a free training slot"
    if status != RUNNING or p.get("phase") == "training":
        return None
    phase = p.get("phase")
    if phase is None and p.get("outcome") == "finished":  # the steps are done; the process writes its results
        return "finishing: saving the adapter and model card"
    if phase is None:  # running, but its process has not written anything yet (a resume: the old run ended)
        return "starting the training process"
    since = p.get("phase_since")
    return phase + (f" · {human_duration((now or time.time()) - since)}" if since else "")


def progress_html(job: dict, now: Optional[float] = None) -> str:
    """A real progress bar: step/total and percent, elapsed, ETA (while running), tokens/s and samples/s; before
    the first step the phase the run is in; a stopped job in grey with what happened, not in the failure red."""
    p, status = job["progress"], job["status"]
    total, step = p.get("total_steps"), p.get("step") or 0
    pct = 100.0 if status == SUCCEEDED else (p.get("percent") or 0.0)
    color = STATUS_COLORS.get(status, FAILURE_COLOR)
    facts = [f"step {step} / {total or '?'}", f"{pct:.0f}%", f"elapsed {human_duration(p.get('elapsed_seconds'))}"]
    phase = current_phase(job, now)
    if phase is not None:
        facts = [phase] + (facts if step else [])
        if p.get("phase") == "preparing data" and p.get("preparing_percent") is not None:
            eta = p.get("preparing_eta_seconds")
            facts[0] = f"preparing data {p['preparing_percent']:.0f}%" + (f" · ETA {human_duration(eta)}"
                                                                          if eta is not None else "")
    elif status == RUNNING:
        facts.append(f"ETA {human_duration(p.get('eta_seconds'))}" if p.get("eta_seconds") is not None
                     else "ETA estimating…")
        facts += [f"{human_number(p.get('tokens_per_second'))} tokens/s",
                  f"{human_number(job.get('samples_per_second'))} samples/s"]
    if status in STATUS_SAYS:
        facts.insert(0, STATUS_SAYS[status])
    label = html.escape(" · ".join(facts))
    return (f'<div class="ls-progress" data-status="{html.escape(status)}" data-percent="{pct:.1f}">'
            f'<div class="ls-progress-track" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{pct:.1f}"><div class="ls-progress-fill" style="width:{pct:.1f}%;'
            f'background:{color}"></div></div><div class="ls-progress-label">{label}</div></div>')


def trainer_of(spec: Optional[JobSpec]) -> Optional[str]:
    """The trainer a stored job spec names (None for a spec refused before it was complete)."""
    return spec.training.trainer if spec else None


def format_score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def rl_cards(job: dict) -> list[tuple[str, str]]:
    """GRPO: last total reward, each reward function's last mean, KL, completion length. KTO: margin and KL."""
    p, trainer = job["progress"], job.get("trainer")
    cards: list[tuple[str, str]] = []
    if trainer == "grpo":
        cards.append(("last reward", format_score(p.get("reward"))))
        for name, points in (p.get("reward_function_series") or {}).items():
            cards.append((f"reward: {name}", format_score(points[-1][1] if points else None)))
        if p.get("completion_length_series"):
            cards.append(("completion length", f"{p['completion_length_series'][-1][1]:.0f} tokens"))
    elif trainer == "kto" and p.get("reward_margin") is not None:
        cards.append(("reward margin", format_score(p["reward_margin"])))
    if trainer in ("grpo", "kto") and p.get("kl") is not None:
        cards.append(("KL", f"{p['kl']:.4g}"))
    return cards


PROMPT_TAIL, COMPLETION_HEAD = 160, 800  # characters of a sample shown in the table


def samples_table(progress: dict) -> tuple[list[str], list[list[Any]]]:
    """GRPO's sample completions as (headers, rows), newest first: step, the prompt's end, the completion, each
    reward's score and the weighted total."""
    samples = progress.get("samples") or []
    names = list(dict.fromkeys(name for s in samples for name in s["rewards"]))
    rows = []
    for s in samples:
        prompt, completion = s["prompt"], s["completion"]
        prompt = prompt if len(prompt) <= PROMPT_TAIL else "…" + prompt[-PROMPT_TAIL:]
        completion = completion if len(completion) <= COMPLETION_HEAD else completion[:COMPLETION_HEAD] + "…"
        rows.append([s["step"], prompt, completion, *(format_score(s["rewards"].get(n)) for n in names),
                     format_score(s["total"])])
    return ["step", "prompt (end)", "completion", *names, "total"], rows


def samples_column_widths(headers: list[str]) -> list[str]:
    """The samples table's column widths: the texts get most of the row, each score an equal share of the rest."""
    scores = len(headers) - 3
    return ["6%", "30%", "40%", *[f"{24 / scores:.2f}%"] * scores]


def metric_cards(job: dict) -> list[tuple[str, str]]:
    """(label, value) cards: the RL trainers' rewards (rl_cards), final train/eval loss, runtime, tokens seen,
    throughput, started/finished."""
    p, m, times = job["progress"], job.get("metrics") or {}, job.get("times") or {}
    cards = rl_cards(job) + [("last train loss", format_loss(p.get("loss"))),
                             ("eval loss", format_loss(m.get("eval_loss", p.get("eval_loss"))))]
    if m.get("train_loss") is not None:
        cards.append(("mean train loss", format_loss(m["train_loss"])))
    cards += [("runtime", human_duration(m.get("train_runtime", p.get("elapsed_seconds")))),
             ("tokens seen", human_number(p.get("tokens_seen"))),
             ("samples/s", human_number(m.get("train_samples_per_second", job.get("samples_per_second"))))]
    if p.get("peak_memory_bytes"):
        cards.append((f"peak {p.get('peak_memory_device') or 'memory'}", human_bytes(p["peak_memory_bytes"])))
    cards += [("started", human_time(times.get("started_at"))), ("finished", human_time(times.get("finished_at")))]
    return cards


def cards_html(cards: list[tuple[str, str]]) -> str:
    items = "".join(f'<div class="ls-card"><div class="ls-card-label">{html.escape(k)}</div>'
                    f'<div class="ls-card-value">{html.escape(v)}</div></div>' for k, v in cards)
    return f'<div class="ls-cards">{items}</div>'


def header_markdown(job: dict) -> str:
    lines = [f"### {job['name']} · `{job['id']}` · **{job['status']}**"]
    compute = job.get("compute") or {}
    if compute.get("backend") == "hf_jobs":
        links = " · ".join(f"[HF Job {i + 1}]({url})" for i, url in enumerate(compute.get("urls") or []))
        nodes = f" × {compute['nodes']} nodes" if (compute.get("nodes") or 1) > 1 else ""
        repo = f" · kept in `{compute['repo_id']}`" if compute.get("repo_id") else ""
        lines.append(f"Runs on **Hugging Face Jobs** · `{compute.get('flavor')}`{nodes}"
                     + (f" · {links}" if links else " · starting") + repo)
    if job.get("hub_identity"):  # whose job, and whose Hub identity it reads and pushes with
        lines.append(f"Started by **{job.get('owner') or 'unknown'}** · acts on the Hub as: {job['hub_identity']}")
    if job.get("error"):  # a pruned trial's "error" is why its sweep stopped it: no failure
        label = "Why it was pruned" if job["status"] == PRUNED else "Error"
        lines.append(f"**{label}:** {without_paths(job['error'], (job.get('paths') or {}).get('job_dir'))}")
    return "\n\n".join(lines)


def next_steps(job: dict) -> bool:
    """Whether the job has a trained model to chat with, evaluate and push (its "next step" buttons)."""
    return job["status"] in (SUCCEEDED, NOT_PUSHED) and bool((job.get("paths") or {}).get("adapter"))


# An absolute path as a server prints it, not part of a URL ("https://host/a/b": the slashes follow ':', '/' or a
# name) and not a relative one ("checkpoints/checkpoint-30").
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+=,~-]+/)*[\w.@+=,~-]+/?")
_CHECKPOINT_SAVED = re.compile(r"^checkpoint saved: \S*?checkpoint-(\d+)/?\s*$")


def without_paths(text: str, job_dir: Optional[str] = None) -> str:
    """`text` without the server's absolute paths: what lies in the job's folder by its name there
    ("checkpoints/checkpoint-30", "adapter"), anything else by its last part ("…/trainer.py")."""
    root = (job_dir or "").rstrip("/") + "/"

    def short(match: re.Match) -> str:
        path = match.group(0)
        if job_dir and path.startswith(root):
            return path[len(root):] or "."
        if job_dir and path.rstrip("/") == root.rstrip("/"):
            return "the job's folder"
        return "…/" + path.rstrip("/").rsplit("/", 1)[-1]
    return _ABSOLUTE_PATH.sub(short, text)


def readable_log(text: str, job_dir: Optional[str] = None) -> str:
    """The log tail as the Jobs tab shows it: "checkpoint saved: step 30" (one line, no path) and no server
    paths in any other line either."""
    lines = []
    for line in text.splitlines():
        saved = _CHECKPOINT_SAVED.match(line.strip())
        lines.append(f"checkpoint saved: step {saved.group(1)}" if saved else without_paths(line, job_dir))
    return "\n".join(lines)


CSS = """
.ls-progress-track { height: 14px; border-radius: 7px; background: var(--neutral-200, #e5e7eb); overflow: hidden; }
.ls-progress-fill { height: 100%; border-radius: 7px; transition: width .6s ease; }
.ls-progress-label { margin-top: 4px; font-size: var(--text-md); }
.ls-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.ls-card { flex: 1 1 110px; border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px; }
.ls-card-label { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.ls-card-value { font-size: var(--text-lg); font-weight: 600; }
"""
