"""The loss curve of a run as a PNG, drawn from events.jsonl for the model card.

Drawn with Pillow (installed with gradio) rather than matplotlib, which is not among the app's dependencies.
Without Pillow the plot is skipped and the card says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

Series = list[tuple[float, float]]  # (step, value)

WIDTH, HEIGHT, MARGIN = 800, 450, 60
TRAIN_COLOUR, EVAL_COLOUR, AXIS_COLOUR = (31, 119, 180), (255, 127, 14), (90, 90, 90)


def loss_series(job_dir: str | Path) -> tuple[Series, Series]:
    """Train loss (`log` events) and eval loss (`eval` events), by optimizer step."""
    from ..run_events import Eval, Log, is_number, read_events

    train: Series = []
    evals: Series = []
    for ev in read_events(job_dir):
        if isinstance(ev, Log) and is_number(ev.loss):
            train.append((float(ev.step), float(ev.loss)))
        elif isinstance(ev, Eval) and is_number(ev.eval_loss):
            evals.append((float(ev.step), float(ev.eval_loss)))
    return train, evals


def write_loss_plot(job_dir: str | Path, out: str | Path) -> Optional[str]:
    """Write the PNG; returns None on success, else why there is no plot (for the model card)."""
    train, evals = loss_series(job_dir)
    if not train and not evals:
        return "no loss was logged (events.jsonl has no log or eval events)"
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return "loss plot skipped: Pillow is not installed"

    points = train + evals
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 0.1)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def xy(step: float, value: float) -> tuple[float, float]:
        x = MARGIN + (step - x_lo) / (x_hi - x_lo) * (WIDTH - 2 * MARGIN)
        y = HEIGHT - MARGIN - (value - y_lo) / (y_hi - y_lo) * (HEIGHT - 2 * MARGIN)
        return x, y

    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, top, right, bottom = MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN
    for i in range(5):  # horizontal grid lines with value labels
        value = y_lo + (y_hi - y_lo) * i / 4
        _, y = xy(x_lo, value)
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((4, y - 6), f"{value:.3g}", fill=AXIS_COLOUR, font=font)
    draw.rectangle((left, top, right, bottom), outline=AXIS_COLOUR)
    for step in (x_lo, (x_lo + x_hi) / 2, x_hi):
        x, _ = xy(step, y_lo)
        draw.text((x - 10, bottom + 8), f"{step:g}", fill=AXIS_COLOUR, font=font)
    draw.text((WIDTH / 2 - 15, HEIGHT - 22), "step", fill=AXIS_COLOUR, font=font)
    draw.text((left, 20), "training loss", fill=TRAIN_COLOUR, font=font)
    if evals:
        draw.text((left + 120, 20), "eval loss", fill=EVAL_COLOUR, font=font)

    for series, colour in ((train, TRAIN_COLOUR), (evals, EVAL_COLOUR)):
        coords = [xy(s, v) for s, v in sorted(series)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for x, y in coords:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return None
