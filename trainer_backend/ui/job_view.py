"""How a job reads to a person: human durations, rates and times, the progress bar, metric cards, and which
actions are possible in the job's current status. Gradio-free (plain values in, strings/dicts out), so the
Jobs tab stays a thin layer and this is tested without a browser."""
from __future__ import annotations

import html
import time
from typing import Any, Optional

from ..spec import JobSpec
from ..jobs.store import ACTIVE, NOT_PUSHED, QUEUED, RESUMABLE, RUNNING, SUCCEEDED, TERMINAL

STATUS_COLORS = {QUEUED: "#6b7280", RUNNING: "#4f46e5", SUCCEEDED: "#16a34a", NOT_PUSHED: "#ca8a04"}
FAILURE_COLOR = "#dc2626"


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


def progress_html(job: dict) -> str:
    """A real progress bar: step/total and percent, elapsed, ETA (while running), tokens/s and samples/s."""
    p, status = job["progress"], job["status"]
    total, step = p.get("total_steps"), p.get("step") or 0
    pct = 100.0 if status == SUCCEEDED else (p.get("percent") or 0.0)
    color = STATUS_COLORS.get(status, FAILURE_COLOR)
    facts = [f"step {step} / {total or '?'}", f"{pct:.0f}%", f"elapsed {human_duration(p.get('elapsed_seconds'))}"]
    if status in ACTIVE:
        facts.append(f"ETA {human_duration(p.get('eta_seconds'))}" if p.get("eta_seconds") is not None
                     else "ETA estimating…")
    elif status == QUEUED:
        facts = ["waiting for a free training slot"]
    if status in ACTIVE and p.get("preparing_percent") is not None:  # before step 0: the data is being prepared
        pct = p["preparing_percent"]
        eta = p.get("preparing_eta_seconds")
        facts = [f"preparing data {pct:.0f}%"] + ([f"ETA {human_duration(eta)}"] if eta is not None else [])
    elif status in ACTIVE:
        facts += [f"{human_number(p.get('tokens_per_second'))} tokens/s",
                  f"{human_number(job.get('samples_per_second'))} samples/s"]
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
    if job.get("error"):
        lines.append(f"**Error:** {job['error']}")
    return "\n\n".join(lines)


CSS = """
.ls-progress-track { height: 14px; border-radius: 7px; background: var(--neutral-200, #e5e7eb); overflow: hidden; }
.ls-progress-fill { height: 100%; border-radius: 7px; transition: width .6s ease; }
.ls-progress-label { margin-top: 4px; font-size: var(--text-md); }
.ls-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.ls-card { flex: 1 1 110px; border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px; }
.ls-card-label { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.ls-card-value { font-size: var(--text-lg); font-weight: 600; }
"""
