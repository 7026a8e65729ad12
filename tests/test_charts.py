"""The loss chart's data as a person reads it: numeric axes, a smoothed line that follows the loss."""
from __future__ import annotations

import random
import statistics

from trainer_backend.ui.charts import EVAL, SMOOTHED, TRAIN, loss_chart, smooth


def _layer_rows(chart: dict, series: str) -> list[dict]:
    return [r for layer in chart["layer"] for r in layer["data"]["values"] if r.get("series") == series]


def test_smoothed_line_follows_a_short_falling_run() -> None:
    """30 logged points falling from 7 to 2: the smoothed line may not trail the loss by more than a point's drop
    (a fixed TensorBoard-style 0.6 trailed by ~3 points and looked like a worse model)."""
    losses = [7 - 5 * i / 29 for i in range(30)]
    drop_per_point = 5 / 29
    lag = max(s - v for s, v in zip(smooth(losses), losses))
    assert lag <= drop_per_point, lag


def test_smoothed_line_calms_a_long_noisy_run() -> None:
    rng = random.Random(0)
    noisy = [2.0 + rng.gauss(0, 0.3) for _ in range(1000)]
    assert statistics.pstdev(smooth(noisy)[100:]) < statistics.pstdev(noisy) / 2.5


def test_loss_chart_axes_are_numbers_and_all_series_are_drawn() -> None:
    progress = {"loss_series": [[s, 3.0 - s / 100] for s in range(1, 101)], "eval_series": [[50, 2.6], [100, 2.2]],
                "total_steps": 100, "epoch_starts": [[51, 2]]}
    chart = loss_chart(progress)
    encodings = [layer["encoding"] for layer in chart["layer"] if "field" in layer["encoding"].get("y", {})]
    assert encodings and all(e["y"]["type"] == "quantitative" and e["x"]["type"] == "quantitative"
                             for e in encodings)
    assert len(_layer_rows(chart, TRAIN)) == 100 and len(_layer_rows(chart, SMOOTHED)) == 100
    assert [r["value"] for r in _layer_rows(chart, EVAL)][:2] == [2.6, 2.2]
    log_chart = loss_chart({"loss_series": [[1, 0.0], [2, 1.0]]}, log_scale=True)
    assert [r["value"] for r in _layer_rows(log_chart, TRAIN)] == [1.0]  # zero cannot sit on a log axis
