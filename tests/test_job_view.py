"""The Jobs tab's cards and sample table for the RL trainers, from the progress snapshot's JSON (no browser)."""
from __future__ import annotations

from trainer_backend.ui.job_view import metric_cards, samples_table

BASE = {"status": "running", "times": {}, "metrics": {}}


def labels(cards: list[tuple[str, str]]) -> list[str]:
    return [k for k, _ in cards]


def test_grpo_cards_show_the_last_reward_of_each_reward_function_kl_and_length() -> None:
    progress = {"loss": 0.01, "reward": 1.25, "kl": 0.0123, "reward_function_series": {
        "correct": [[1, 0.0], [2, 0.75]], "format": [[1, 0.5], [2, 0.5]]},
        "completion_length_series": [[2, 118.4]]}
    cards = dict(metric_cards({**BASE, "trainer": "grpo", "progress": progress}))
    assert (cards["last reward"], cards["reward: correct"], cards["reward: format"]) == ("1.250", "0.750", "0.500")
    assert cards["KL"] == "0.0123" and cards["completion length"] == "118 tokens"
    assert cards["last train loss"] == "0.0100"


def test_other_trainers_keep_their_cards_and_kto_adds_the_margin() -> None:
    sft = metric_cards({**BASE, "trainer": "sft", "progress": {"loss": 1.0, "reward": 2.0, "kl": 0.1}})
    assert labels(sft)[:2] == ["last train loss", "eval loss"] and "last reward" not in labels(sft)
    assert "KL" not in labels(sft)
    kto = dict(metric_cards({**BASE, "trainer": "kto", "progress": {"loss": 0.6, "reward_margin": 1.5, "kl": 0.2}}))
    assert kto["reward margin"] == "1.500" and kto["KL"] == "0.2"
    assert "reward margin" not in labels(metric_cards({**BASE, "trainer": "kto", "progress": {"loss": 0.6}}))


def test_samples_table_has_a_column_per_reward_and_shows_the_prompts_end() -> None:
    samples = [{"step": 20, "prompt": "x" * 300 + "What is 2+2?", "completion": "<answer>4</answer>",
                "rewards": {"correct": 1.0, "format": None}, "total": 1.0},
               {"step": 10, "prompt": "short", "completion": "y" * 1000, "rewards": {"correct": 0.0}, "total": 0.0}]
    headers, rows = samples_table({"samples": samples})
    assert headers == ["step", "prompt (end)", "completion", "correct", "format", "total"]
    assert rows[0][0] == 20 and rows[0][1].endswith("What is 2+2?") and rows[0][1].startswith("…")
    assert rows[0][3:] == ["1.000", "—", "1.000"] and rows[1][3:] == ["0.000", "—", "0.000"]
    assert rows[1][2].endswith("…") and len(rows[1][2]) < 1000
    assert samples_table({}) == (["step", "prompt (end)", "completion", "total"], [])
