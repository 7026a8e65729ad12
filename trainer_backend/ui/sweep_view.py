"""What the Jobs tab shows for a sweep, without Gradio: its progress (trials done of planned), cards, the trials table,
and three charts (Vega-Lite, numeric axes): the objective of each trial with the best so far, every trial's
evaluations by step (where the pruned ones stopped), and Optuna's parameter importances."""
from __future__ import annotations

import html
from typing import Any, Optional

from .charts import PALETTE, _base, _series_color
from .job_view import STATUS_COLORS, human_duration

TRIAL_COLUMNS = ["Trial", "Job", "Status", "Objective", "Settings", "Time", "Cost", "Note"]
COLUMN_WIDTHS = ["9%", "8%", "12%", "9%", "22%", "7%", "6%", "27%"]
BEST = "best so far"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def settings_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={_num(v)}" for k, v in params.items())


def finished(sweep: dict) -> int:
    return sum(1 for t in sweep["trials"] if t["state"] in ("complete", "pruned", "failed"))


def progress_html(job: dict, sweep: dict) -> str:
    """Trials finished of planned, what runs now, elapsed and spend."""
    planned = max(sweep.get("trials_planned") or 1, 1)
    done = finished(sweep)
    pct = 100.0 if job["status"] == "succeeded" else min(done / planned * 100, 100.0)
    running = [t["number"] + 1 for t in sweep["trials"] if t["state"] == "running"]
    facts = [f"{done} of {planned} trials finished", f"{pct:.0f}%",
             f"elapsed {human_duration(sweep.get('elapsed_seconds'))}"]
    if running:
        facts.insert(1, "running trial " + ", ".join(map(str, running)))
    if sweep.get("cost_usd") is not None:
        facts.append(f"spent ${sweep['cost_usd']:.2f}")
    color = STATUS_COLORS.get(job["status"], "#dc2626")
    label = html.escape(" · ".join(facts))
    return (f'<div class="ls-progress" data-status="{html.escape(job["status"])}" data-percent="{pct:.1f}">'
            f'<div class="ls-progress-track" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{pct:.1f}"><div class="ls-progress-fill" style="width:{pct:.1f}%;background:{color}">'
            f'</div></div><div class="ls-progress-label">{label}</div></div>')


def cards(sweep: dict) -> list[tuple[str, str]]:
    counts: dict[str, int] = {}
    for t in sweep["trials"]:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    best = next((t for t in sweep["trials"] if t["number"] == sweep.get("best")), None)
    out = [(f"best {sweep['objective_label']}", _num(best["value"]) if best else "—"),
           ("best trial", f"trial {best['number'] + 1}" if best else "—"),
           ("complete", str(counts.get("complete", 0))), ("pruned", str(counts.get("pruned", 0))),
           ("failed", str(counts.get("failed", 0))), ("elapsed", human_duration(sweep.get("elapsed_seconds")))]
    if sweep.get("cost_usd") is not None:
        out.append(("spent", f"${sweep['cost_usd']:.2f}"))
    return out


def summary_markdown(sweep: dict) -> str:
    params = "; ".join(f"`{k}` {v}" for k, v in sweep.get("parameters", {}).items())
    lines = [f"**Sweep** of {sweep.get('trials_planned')} trials ({sweep.get('parallel')} at once) over {params}. "
             f"Objective: **{sweep['objective_label']}** ({'lower' if sweep['direction'] == 'minimize' else 'higher'}"
             f" is better); hopeless trials stopped by **{sweep.get('pruner')}**."]
    best = next((t for t in sweep["trials"] if t["number"] == sweep.get("best")), None)
    if best:
        base = next((t for t in sweep["trials"] if t.get("baseline") and t["state"] == "complete"), None)
        versus = ""
        if base and base["number"] != best["number"] and base["value"] is not None:
            versus = f" (your own settings, trial {base['number'] + 1}: {_num(base['value'])})"
        elif base and base["number"] == best["number"]:
            versus = " — your own settings are still the best"
        lines.append(f"**Best: trial {best['number'] + 1}**, {sweep['objective_label']} **{_num(best['value'])}**"
                     f"{versus}: {settings_text(best['params'])}.")
    if sweep.get("estimate"):
        lines.append(f"Estimate before the start: {sweep['estimate']}.")
    if sweep.get("message") and not (best and sweep.get("state") == "succeeded" and
                                     sweep["message"].startswith("best:")):
        lines.append(sweep["message"])
    if sweep.get("promoted"):
        lines.append(f"Promoted to job `{sweep['promoted']}` (open it in the job list).")
    return "\n\n".join(lines)


def trial_state(t: dict) -> str:
    """A trial's state in words: where a pruned one stopped, what a running one reported last."""
    if t["state"] == "pruned" and t.get("pruned_at_step") is not None:
        return f"pruned at step {t['pruned_at_step']}"
    if t["state"] == "running" and t.get("intermediate"):
        return f"running (step {int(t['intermediate'][-1][0])})"
    return str(t["state"])


def trials_table(sweep: dict) -> tuple[list[str], list[list[Any]], list[str]]:
    """(headers, rows, column widths): one row per trial; the cost column only where trials have a price."""
    priced = any(t.get("cost_usd") is not None for t in sweep["trials"])
    keep = [i for i, c in enumerate(TRIAL_COLUMNS) if priced or c != "Cost"]
    rows = []
    for t in sweep["trials"]:
        mark = " ★" if t["number"] == sweep.get("best") else ""
        base = " (yours)" if t.get("baseline") else ""
        cost = f"${t['cost_usd']:.2f}" if t.get("cost_usd") is not None else ""
        row = [f"{t['number'] + 1}{mark}{base}", t.get("job_id") or "", trial_state(t), _num(t["value"]),
               settings_text(t["params"]), human_duration(t.get("seconds")) if t.get("seconds") is not None else "",
               cost, t.get("note") or ""]
        rows.append([row[i] for i in keep])
    return [TRIAL_COLUMNS[i] for i in keep], rows, [COLUMN_WIDTHS[i] for i in keep]


def objective_chart(sweep: dict) -> dict[str, Any]:
    """Each finished trial's objective (dots, by state) and the best so far (a step line), over trial number."""
    label = sweep["objective_label"]
    minimize = sweep["direction"] == "minimize"
    dots, best_rows, best = [], [], None
    for t in sweep["trials"]:
        if t["value"] is None or t["state"] not in ("complete", "pruned", "stopped"):
            continue
        series = "complete" if t["state"] == "complete" else "pruned (last evaluation)"
        dots.append({"trial": t["number"] + 1, "value": float(t["value"]), "series": series})
        if t["state"] == "complete":
            best = t["value"] if best is None else (min if minimize else max)(best, t["value"])
            best_rows.append({"trial": t["number"] + 1, "value": float(best), "series": BEST})
    names = [n for n in ("complete", "pruned (last evaluation)", BEST) if any(r["series"] == n for r in
                                                                              dots + best_rows)]
    x = {"field": "trial", "type": "quantitative", "title": "trial", "axis": {"tickMinStep": 1, "format": "d"},
         "scale": {"domain": [0.5, max(len(sweep["trials"]), 1) + 0.5]}}
    y = {"field": "value", "type": "quantitative", "title": label, "scale": {"zero": False}}
    color = _series_color(names)
    tip = [{"field": "series", "type": "nominal"}, {"field": "trial", "type": "quantitative"},
           {"field": "value", "type": "quantitative", "title": label, "format": ".4g"}]
    return {**_base(f"{label} of each trial", 240), "layer": [
        {"data": {"values": best_rows}, "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 2},
         "encoding": {"x": x, "y": y, "color": color}},
        {"data": {"values": dots}, "mark": {"type": "point", "filled": True, "size": 70, "strokeOpacity": 0},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tip}}]}


def curves_chart(sweep: dict) -> dict[str, Any]:
    """Every trial's reported evaluations by step: the pruned ones end where their pruner stopped them."""
    rows = []
    for t in sweep["trials"]:
        name = f"trial {t['number'] + 1}" + (" ★" if t["number"] == sweep.get("best") else "") + \
            (" ✂" if t["state"] == "pruned" else "")
        rows += [{"step": int(s), "value": abs(float(v)) if sweep["objective"].startswith("heldout.") else float(v),
                  "series": name} for s, v in t.get("intermediate") or []]
    names = [str(n) for n in dict.fromkeys(r["series"] for r in rows)]
    title = "eval loss" if sweep["objective"].startswith("heldout.") else sweep["objective_label"]
    top = max((int(s) for t in sweep["trials"] for s, _ in t.get("intermediate") or []), default=1)
    x = {"field": "step", "type": "quantitative", "title": "step", "scale": {"domain": [0, top]},
         "axis": {"format": "d", "tickMinStep": 1}}
    y = {"field": "value", "type": "quantitative", "title": title, "scale": {"zero": False}}
    tip = [{"field": "series", "type": "nominal"}, {"field": "step", "type": "quantitative"},
           {"field": "value", "type": "quantitative", "title": title, "format": ".4g"}]
    color = _series_color(names)
    return {**_base(f"Each trial's evaluations ({title}; ✂ pruned there)", 260), "layer": [
        {"data": {"values": rows}, "mark": {"type": "line", "strokeWidth": 1.5, "point": True},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tip}}]}


def importance_chart(sweep: dict) -> Optional[dict[str, Any]]:
    """Optuna's parameter importances (fANOVA), once two complete trials differ; None before."""
    values = sweep.get("importances") or {}
    if not values:
        return None
    rows = [{"parameter": k, "importance": float(v)} for k, v in values.items()]
    return {**_base("Which settings mattered (Optuna's importance)", 40 + 28 * len(rows)), "layer": [{
        "data": {"values": rows}, "mark": {"type": "bar", "color": PALETTE[0]},
        "encoding": {"y": {"field": "parameter", "type": "nominal", "sort": "-x", "title": None},
                     "x": {"field": "importance", "type": "quantitative", "title": "share of the objective's "
                                                                                     "variation",
                           "scale": {"domain": [0, 1]}, "axis": {"format": "%"}},
                     "tooltip": [{"field": "parameter", "type": "nominal"},
                                 {"field": "importance", "type": "quantitative", "format": ".0%"}]}}]}
