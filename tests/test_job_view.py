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


def _job(status: str, **progress: object) -> dict:
    return {"status": status, "progress": {"step": 10, "total_steps": 40, "percent": 25.0, **progress},
            "paths": {"job_dir": "/srv/data/jobs/ab12"}}


def test_a_stop_you_asked_for_is_grey_and_says_so_a_failure_is_red() -> None:
    from trainer_backend.ui.job_view import FAILURE_COLOR, progress_html

    stopped, failed = progress_html(_job("stopped")), progress_html(_job("failed"))
    assert FAILURE_COLOR not in stopped and "stopped as asked" in stopped and "step 10 / 40" in stopped
    assert FAILURE_COLOR in failed and "failed" in failed
    assert "ETA" not in progress_html(_job("stopping")) and "saving a checkpoint" in progress_html(_job("stopping"))


def test_a_resume_shows_its_phase_instead_of_an_eta_estimate() -> None:
    from trainer_backend.ui.job_view import progress_html

    assert "queued: waiting for a free training slot" in progress_html(_job("queued"))
    assert "starting the training process" in progress_html(_job("running", phase=None))
    finishing = progress_html(_job("running", step=40, percent=100.0, phase=None, outcome="finished"))
    assert "finishing: saving the adapter" in finishing and "starting" not in finishing  # not back to the start
    loading = progress_html(_job("running", phase="restoring checkpoint", phase_since=100.0), now=112.0)
    assert "restoring checkpoint · 12 s" in loading and "ETA" not in loading and "step 10 / 40" in loading
    preparing = progress_html(_job("running", step=0, phase="preparing data", preparing_percent=37.0))
    assert "preparing data 37%" in preparing
    training = progress_html(_job("running", phase="training", eta_seconds=30.0))
    assert "ETA 30 s" in training and "restoring" not in training


def test_the_log_says_checkpoint_saved_by_step_and_shows_no_server_path() -> None:
    from trainer_backend.ui.job_view import header_markdown, readable_log

    log = ("===== attempt 2 at 2026-01-01 10:00:00: /opt/venv/bin/python -m trainer_backend train "
           "/srv/data/jobs/ab12/spec.yaml\ncheckpoint saved: /srv/data/jobs/ab12/checkpoints/checkpoint-30\n"
           "adapter saved to /srv/data/jobs/ab12/adapter\nsee https://huggingface.co/me/model/tree/main")
    shown = readable_log(log, "/srv/data/jobs/ab12").splitlines()
    assert shown[1] == "checkpoint saved: step 30"
    assert shown[2] == "adapter saved to adapter" and "spec.yaml" in shown[0]
    assert shown[3].endswith("https://huggingface.co/me/model/tree/main"), "a URL is not a path"
    assert not any("/srv" in line or "/opt" in line for line in shown)
    job = {**_job("failed"), "name": "n", "id": "ab12", "error": "FileNotFoundError: /srv/data/jobs/ab12/x.jsonl"}
    assert "/srv" not in header_markdown(job) and "x.jsonl" in header_markdown(job)


def test_a_trained_job_offers_chat_evaluate_and_push() -> None:
    from trainer_backend.ui.job_view import next_steps

    done = {"status": "succeeded", "paths": {"adapter": "/x/adapter"}}
    assert next_steps(done) and next_steps({**done, "status": "trained_not_pushed"})
    assert not next_steps({**done, "status": "stopped"}) and not next_steps({**done, "paths": {}})
