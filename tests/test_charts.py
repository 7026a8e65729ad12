"""The loss chart's data as a person reads it: numeric axes, a smoothed line that follows the loss."""
from __future__ import annotations

import random
import statistics

from trainer_backend.ui.charts import (COMPLETION_LENGTH, EVAL, EVAL_REWARD, KL, SMOOTHED, TOTAL_REWARD, TRAIN,
                                      kl_length_chart, loss_chart, reward_chart, smooth)


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


def _quantitative_axes(chart: dict) -> bool:
    encodings = [layer["encoding"] for layer in chart["layer"]]
    return bool(encodings) and all(e["y"]["type"] == "quantitative" and e["x"]["type"] == "quantitative"
                                   and e["x"]["field"] == "step" for e in encodings)


GRPO_PROGRESS = {"total_steps": 40, "reward_series": [[s, (20 + s) / 50] for s in range(1, 21)],
                 "reward_function_series": {"correct": [[s, s / 20] for s in range(1, 21)],
                                            "format": [[s, 0.5] for s in range(1, 21)]},
                 "eval_reward_series": [[20, 1.1]], "kl_series": [[1, 0.0], [2, 0.002], [3, 0.004]],
                 "completion_length_series": [[1, 180.0], [2, 150.5], [3, 120.0]]}


def test_reward_chart_draws_the_total_and_each_reward_on_numeric_axes_from_zero_to_the_highest() -> None:
    chart = reward_chart(GRPO_PROGRESS)
    assert _quantitative_axes(chart)
    assert [r["value"] for r in _layer_rows(chart, TOTAL_REWARD)][:2] == [0.42, 0.44]
    assert [(r["step"], r["value"]) for r in _layer_rows(chart, "correct")][-1] == (20, 1.0)
    assert len(_layer_rows(chart, "format")) == 20 and _layer_rows(chart, EVAL_REWARD)[0]["value"] == 1.1
    y = chart["layer"][0]["encoding"]["y"]
    assert y["scale"]["domain"] == [0.0, 1.1]  # 0 to the highest reward seen (here the eval reward)
    assert chart["layer"][0]["encoding"]["x"]["scale"]["domain"] == [0, 40]
    color = chart["layer"][0]["encoding"]["color"]["scale"]
    assert color["domain"] == [TOTAL_REWARD, "correct", "format", EVAL_REWARD]
    assert len(color["range"]) == len(color["domain"])  # Gradio's line chart themes each entry of the range
    negative = reward_chart({"reward_series": [[1, -0.5], [2, 0.25]]})
    assert negative["layer"][0]["encoding"]["y"]["scale"]["domain"] == [-0.5, 0.25]
    empty = reward_chart({})
    assert empty["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0.0, 1.0] and not _layer_rows(empty, TOTAL_REWARD)


def test_kl_and_completion_length_chart_gives_each_its_own_numeric_axis() -> None:
    chart = kl_length_chart(GRPO_PROGRESS)
    assert _quantitative_axes(chart) and chart["resolve"] == {"scale": {"y": "independent"}}
    assert [r["value"] for r in _layer_rows(chart, KL)] == [0.0, 0.002, 0.004]
    assert [r["value"] for r in _layer_rows(chart, COMPLETION_LENGTH)] == [180.0, 150.5, 120.0]
    assert [layer["encoding"]["y"]["axis"]["orient"] for layer in chart["layer"]] == ["left", "right"]
    no_kl = kl_length_chart({"completion_length_series": [[1, 10.0]]})  # grpo.beta = 0 logs no KL
    assert len(no_kl["layer"]) == 1 and _layer_rows(no_kl, COMPLETION_LENGTH)
    assert _quantitative_axes(kl_length_chart({}))


def test_a_short_run_of_many_epochs_gets_a_few_readable_epoch_marks() -> None:
    progress = {"loss_series": [[s, 1.0] for s in range(1, 75)], "total_steps": 74,
                "epoch_starts": [[2 * (n - 1), n] for n in range(2, 38)]}  # 37 epochs of 2 steps
    labels = [r["label"] for layer in loss_chart(progress)["layer"] if layer["mark"]["type"] == "rule"
              for r in layer["data"]["values"]]
    assert 4 <= len(labels) <= 8 and labels[0] == "epoch 5", labels
    few = {**progress, "epoch_starts": [[10, 2], [20, 3]]}
    assert [r["label"] for r in loss_chart(few)["layer"][0]["data"]["values"]] == ["epoch 2", "epoch 3"]


def test_step_axes_tick_whole_steps_only() -> None:
    from trainer_backend.ui.charts import compare_chart, metric_chart, step_ticks

    for top in (1, 7, 12, 60, 1234):
        ticks = step_ticks(top)
        assert all(isinstance(t, int) for t in ticks) and ticks[0] == 0 and len(ticks) <= 11 and ticks[-1] <= top
    assert step_ticks(12) == [0, 2, 4, 6, 8, 10, 12]
    for chart in (loss_chart({"loss_series": [[1, 2.0], [2, 1.0]], "total_steps": 12}),
                  metric_chart([[1, 0.1], [2, 0.2]], "lr", 12), compare_chart([("a", {"loss_series": [[12, 1.0]]})])):
        axis = chart["layer"][-1]["encoding"]["x"]["axis"]
        assert axis["format"] == "d" and axis["values"] == [0, 2, 4, 6, 8, 10, 12]
