"""Vega-Lite specs of the training charts, as plain dicts (no Gradio, no Altair).

Every axis is typed `quantitative` on purpose: a loss must be drawn as a number on a numeric scale, never as
one category per value. The specs ask vega-embed (through `usermeta.embedOptions`) for the SVG renderer, so
the plotted points keep an ARIA label with their values that a person's screen reader, and the browser test,
can read back. Each spec is a `layer` chart whose colour scales carry an explicit `range`: Gradio's plot
component (given chart="line") then sizes it to its container, follows resizes (a chart drawn in a hidden
tab gets its width when the tab opens) and applies the app's theme colours.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

MAX_SMOOTHING = 0.9       # exponential moving average weight for long runs (TensorBoard's slider range)
SMOOTHING_SPAN = 0.05     # the average spans about this share of the logged points
MAX_POINTS = 400          # raw points drawn per series; longer runs are thinned evenly (the line keeps all)
TRAIN, SMOOTHED, EVAL = "train loss", "train loss (smoothed)", "eval loss"
COLORS = {TRAIN: "#94a3b8", SMOOTHED: "#4f46e5", EVAL: "#f97316"}
_EMBED = {"renderer": "svg", "actions": False}
# Gradio's theme gives every mark an accent-coloured stroke; points and labels must not wear it (a raw-loss
# dot would otherwise look like another series).
_NO_STROKE = {"strokeOpacity": 0}


def smoothing_weight(points: int) -> float:
    """A fixed weight lags visibly behind a short run's falling loss (0.6 over 30 points trails by ~3 points);
    span the average over ~5% of the points instead: none for a few points, 0.9 from ~400 on."""
    span = SMOOTHING_SPAN * points
    return min(MAX_SMOOTHING, max(0.0, 1 - 2 / (span + 1)))


def smooth(values: Sequence[float], weight: Optional[float] = None) -> list[float]:
    """Debiased exponential moving average (the first points are not pulled towards zero)."""
    weight = smoothing_weight(len(values)) if weight is None else weight
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i) if weight < 1 else v)
    return out


def _thin(points: Sequence[Sequence[float]], limit: int = MAX_POINTS) -> list[Sequence[float]]:
    if len(points) <= limit:
        return list(points)
    stride = math.ceil(len(points) / limit)
    return list(points[::stride]) + ([points[-1]] if (len(points) - 1) % stride else [])


def _rows(points: Iterable[Sequence[float]], series: str, log_scale: bool) -> list[dict[str, Any]]:
    # A log scale cannot show zero or negatives: such points are left out rather than drawn at infinity.
    return [{"step": int(s), "value": float(v), "series": series} for s, v in points
            if isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not log_scale)]


def _base(title: str, height: int) -> dict[str, Any]:
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "title": title,
            "height": height, "autosize": {"type": "fit", "contains": "padding"},
            "usermeta": {"embedOptions": _EMBED}, "config": {"view": {"stroke": None}}}


def _y(title: str, log_scale: bool) -> dict[str, Any]:
    return {"field": "value", "type": "quantitative", "title": title,
            "scale": {"type": "log" if log_scale else "linear", "zero": False}}


MAX_TICKS = 10         # step ticks on an x-axis
MAX_EPOCH_MARKS = 8    # epoch rules on a loss chart: a short run of many epochs marks every k-th
_NICE = (1, 2, 5)


def _nice_stride(span: int, most: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that cuts `span` into at most `most` pieces."""
    scale = 1
    while True:
        for base in _NICE:
            if span / (base * scale) <= most:
                return base * scale
        scale *= 10


def step_ticks(top: Optional[int]) -> list[int]:
    """Whole-step tick values from 0 to `top` (a step is never 2.5), at most MAX_TICKS + 1 of them."""
    if not top or top < 1:
        return [0, 1]
    stride = _nice_stride(int(top), MAX_TICKS)
    return list(range(0, int(top) + 1, stride))


def _x(steps_max: Optional[int], top: Optional[int] = None) -> dict[str, Any]:
    """The step axis: from 0 to the run's last step when known, whole-number ticks only."""
    scale = {"domain": [0, steps_max]} if steps_max else {}
    return {"field": "step", "type": "quantitative", "title": "step", "scale": scale,
            "axis": {"values": step_ticks(steps_max or top), "format": "d"}}


def epoch_marks(epoch_starts: Sequence[Sequence[int]], most: int = MAX_EPOCH_MARKS) -> list[tuple[int, int]]:
    """(step, epoch) of the epoch starts worth a rule: all of them up to `most`, else every k-th epoch
    (k = 2, 5, 10, ...) so a short run of 37 epochs shows 7 readable marks, not 37 dashed lines."""
    starts = [(int(s), int(n)) for s, n in epoch_starts]
    if len(starts) <= most:
        return starts
    stride = _nice_stride(max(n for _, n in starts), most)
    while len([n for _, n in starts if n % stride == 0]) > most:  # the nice stride counts from 0, epochs from 2
        stride = _nice_stride(stride * 2, 1)
    return [(s, n) for s, n in starts if n % stride == 0]


def _epoch_rules(epoch_starts: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    if not epoch_starts:
        return []
    marks = [{"step": s, "label": f"epoch {n}"} for s, n in epoch_marks(epoch_starts)]
    return [{"data": {"values": marks}, "mark": {"type": "rule", "strokeDash": [4, 4], "color": "#9ca3af"},
             "encoding": {"x": {"field": "step", "type": "quantitative"}}},
            {"data": {"values": marks},
             "mark": {"type": "text", "align": "left", "baseline": "top", "dx": 3, "dy": 2, "color": "#6b7280",
                      "fontSize": 10, **_NO_STROKE},
             "encoding": {"x": {"field": "step", "type": "quantitative"}, "y": {"value": 0},
                          "text": {"field": "label"}}}]


def loss_chart(progress: dict, log_scale: bool = False, title: str = "Loss") -> dict[str, Any]:
    """Train loss (raw points + smoothed line) and eval loss on one numeric y-axis, epochs marked on x."""
    train = progress.get("loss_series") or []
    evals = progress.get("eval_series") or []
    smoothed = list(zip([s for s, _ in train], smooth([v for _, v in train])))
    raw_rows = _rows(_thin(train), TRAIN, log_scale)
    smooth_rows, eval_rows = _rows(smoothed, SMOOTHED, log_scale), _rows(evals, EVAL, log_scale)
    names = [n for n, rows in ((TRAIN, raw_rows), (SMOOTHED, smooth_rows), (EVAL, eval_rows)) if rows]
    color = {"field": "series", "type": "nominal", "title": None,
             "scale": {"domain": names or [TRAIN], "range": [COLORS[n] for n in names] or [COLORS[TRAIN]]},
             "legend": {"orient": "top"}}
    y = _y("loss (log scale)" if log_scale else "loss", log_scale)
    x = _x(progress.get("total_steps"), progress.get("step"))
    tooltip = [{"field": "series", "type": "nominal"}, {"field": "step", "type": "quantitative"},
               {"field": "value", "type": "quantitative", "title": "loss", "format": ".4f"}]
    layers = _epoch_rules(progress.get("epoch_starts") or []) + [
        {"data": {"values": raw_rows}, "mark": {"type": "point", "filled": True, "size": 22, "opacity": 0.55, **_NO_STROKE},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        {"data": {"values": smooth_rows + eval_rows}, "mark": {"type": "line", "strokeWidth": 2},
         "encoding": {"x": x, "y": y, "color": color}},
        {"data": {"values": eval_rows},
         "mark": {"type": "point", "filled": True, "size": 50, **_NO_STROKE},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
    ]
    return {**_base(title, 280), "layer": layers}


def metric_chart(points: Sequence[Sequence[float]], title: str, total_steps: Optional[int] = None,
                 color: str = "#0d9488") -> dict[str, Any]:
    """A small single-series chart (learning rate, grad norm)."""
    rows = _rows(_thin(points), title, False)
    x = _x(total_steps, max((r["step"] for r in rows), default=None))
    return {**_base(title, 120), "layer": [{
        "data": {"values": rows}, "mark": {"type": "line", "color": color, "strokeWidth": 1.5},
        "encoding": {"x": x, "y": {**_y(title, False), "axis": {"format": "~g", "tickCount": 4}},
                     "tooltip": [{"field": "step", "type": "quantitative"},
                                 {"field": "value", "type": "quantitative", "title": title, "format": ".4g"}]}}]}


def compare_chart(runs: Sequence[tuple[str, dict]], log_scale: bool = False) -> dict[str, Any]:
    """Several jobs' smoothed train loss (lines) and eval loss (points) on shared numeric axes."""
    lines, points = [], []
    for label, progress in runs:
        train = progress.get("loss_series") or []
        lines += _rows(_thin(list(zip([s for s, _ in train], smooth([v for _, v in train])))), label, log_scale)
        points += _rows(progress.get("eval_series") or [], label, log_scale)
    y = _y("train loss, smoothed (lines) · eval loss (dots)" + (" — log scale" if log_scale else ""), log_scale)
    labels = list(dict.fromkeys(label for label, _ in runs))
    color = {"field": "series", "type": "nominal", "title": None, "legend": {"orient": "top", "labelLimit": 400},
             "scale": {"domain": labels, "range": ["#4f46e5"] * len(labels)}}  # themed per series by Gradio
    tooltip = [{"field": "series", "type": "nominal", "title": "job"}, {"field": "step", "type": "quantitative"},
               {"field": "value", "type": "quantitative", "title": "loss", "format": ".4f"}]
    x = _x(None, max((r["step"] for r in lines + points), default=None))
    return {**_base("Compare runs", 300), "layer": [
        {"data": {"values": lines}, "mark": {"type": "line", "strokeWidth": 2},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        {"data": {"values": points}, "mark": {"type": "point", "filled": True, "size": 50, **_NO_STROKE},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}}]}


TOTAL_REWARD, EVAL_REWARD = "total reward", "eval reward"
KL, COMPLETION_LENGTH = "KL", "completion length"
# Gradio themes a line chart's series by their index in the colour range; these are the colours without a theme.
PALETTE = ("#4f46e5", "#f97316", "#0d9488", "#db2777", "#ca8a04", "#7c3aed", "#16a34a", "#0284c7")


def _series_color(names: Sequence[str]) -> dict[str, Any]:
    return {"field": "series", "type": "nominal", "title": None, "legend": {"orient": "top", "labelLimit": 300},
            "scale": {"domain": list(names) or ["—"],
                      "range": [PALETTE[i % len(PALETTE)] for i in range(max(len(names), 1))]}}


def reward_domain(rows: Sequence[dict]) -> list[float]:
    """From 0 (or the lowest reward, when a reward goes negative) to the highest reward seen."""
    values = [r["value"] for r in rows]
    low, high = min([0.0, *values]), max([0.0, *values])
    return [low, high if high > low else low + 1.0]


def reward_chart(progress: dict) -> dict[str, Any]:
    """GRPO: the mean total reward per step and one line per reward function (its mean score), eval reward as
    dots; y from 0 to the highest reward seen, x = step."""
    total = _rows(_thin(progress.get("reward_series") or []), TOTAL_REWARD, False)
    functions = progress.get("reward_function_series") or {}
    per_function = [row for name, points in functions.items() for row in _rows(_thin(points), name, False)]
    evals = _rows(progress.get("eval_reward_series") or [], EVAL_REWARD, False)
    drawn = {r["series"] for r in total + per_function + evals}
    color = _series_color([n for n in (TOTAL_REWARD, *functions, EVAL_REWARD) if n in drawn])
    y = {"field": "value", "type": "quantitative", "title": "reward (mean over the step's completions)",
         "scale": {"domain": reward_domain(total + per_function + evals)}}
    x = _x(progress.get("total_steps"), progress.get("step"))
    tooltip = [{"field": "series", "type": "nominal", "title": "reward"}, {"field": "step", "type": "quantitative"},
               {"field": "value", "type": "quantitative", "title": "mean", "format": ".3f"}]
    return {**_base("Reward", 260), "layer": [
        {"data": {"values": per_function}, "mark": {"type": "line", "strokeWidth": 1.5},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        {"data": {"values": total}, "mark": {"type": "line", "strokeWidth": 3},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        {"data": {"values": evals}, "mark": {"type": "point", "filled": True, "size": 50, **_NO_STROKE},
         "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}}]}


def kl_length_chart(progress: dict) -> dict[str, Any]:
    """GRPO: KL to the reference model (left axis) and the mean completion length in tokens (right axis)."""
    kl = _rows(_thin(progress.get("kl_series") or []), KL, False)
    length = _rows(_thin(progress.get("completion_length_series") or []), COMPLETION_LENGTH, False)
    color = _series_color([n for n, rows in ((KL, kl), (COMPLETION_LENGTH, length)) if rows])
    x = _x(progress.get("total_steps"), progress.get("step"))

    def layer(rows: list[dict], title: str, orient: str, fmt: str) -> dict[str, Any]:
        # tick labels as a person writes them (Vega's default reads "2e+2" for 200 on a short axis)
        y = {"field": "value", "type": "quantitative", "title": title, "scale": {"zero": True},
             "axis": {"orient": orient, "tickCount": 4, "format": "~g" if orient == "left" else "d"}}
        return {"data": {"values": rows}, "mark": {"type": "line", "strokeWidth": 1.5},
                "encoding": {"x": x, "y": y, "color": color,
                             "tooltip": [{"field": "series", "type": "nominal"},
                                         {"field": "step", "type": "quantitative"},
                                         {"field": "value", "type": "quantitative", "format": fmt}]}}

    layers = [layer(rows, title, orient, fmt) for rows, title, orient, fmt in (
        (kl, "KL", "left", ".4g"), (length, "completion length (tokens)", "right", ".1f")) if rows]
    # KL (~0.01) and lengths (~100 tokens) share no scale: each line gets its own y-axis
    # (a short chart with a legend and two axis titles needs the title set off, or Gradio's box cuts it)
    return {**_base("KL / completion length", 220),
            "title": {"text": "KL / completion length", "offset": 14, "anchor": "start"},
            "layer": layers or [layer([], "KL", "left", ".4g")], "resolve": {"scale": {"y": "independent"}}}
