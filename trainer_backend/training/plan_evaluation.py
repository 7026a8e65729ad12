"""How long the evaluation report after training will take (a line of the plan), before any GPU time is spent.

Estimated, on a GPU only, and never above the report's own time budget (evaluation.time_budget), which is what
bounds it anywhere. Generating is bound by memory bandwidth: each new token reads every weight once, so a token
costs weight bytes / (bandwidth x 60 %) plus ~15 ms of Python and kernel launches per step (HF generate, batch 1,
measured order on small models). Held-out rows: each is answered by base and fine-tuned in one batch, up to the
Evaluate length (128 tokens); GRPO prompts get 4 samples of up to max_completion_length each; preference and KTO rows are
scored by a forward pass. General tasks: a generation task (ifeval, gsm8k, ...) generates up to 256 tokens a
prompt in batches of 8 for both sides; a log-likelihood task costs ~20 ms a request. Three loads (the chat model,
the harness's copy, a judge) at 2 GB/s.
"""
from __future__ import annotations

from typing import Optional

from ..generation import EVALUATION
from ..spec import JobSpec
from ..trainer_registry import trainer_info

# memory bandwidth, GB/s, by the first part of a hardware name (Spaces tiers and this machine's GPU name)
BANDWIDTH_GBS = {"t4": 320, "l4": 300, "a10g": 600, "a100": 2039, "h100": 3350, "h200": 4800}
DEFAULT_BANDWIDTH_GBS = 1000
STEP_OVERHEAD_S = 0.015
GENERATION_TASKS = ("ifeval", "gsm8k", "triviaqa", "nq_open", "humaneval", "mbpp", "drop", "bbh")
HARNESS_GEN_TOKENS, HARNESS_BATCH = 256, 8
LOGLIKELIHOOD_REQUEST_S, CHOICES = 0.02, 4
LOAD_GBS = 2.0


def bandwidth(hardware: str) -> tuple[float, bool]:
    """(GB/s, known) for a hardware name."""
    name = hardware.lower()
    for prefix, gbs in BANDWIDTH_GBS.items():
        if prefix in name.replace("nvidia ", "").split("-")[0].replace(" ", ""):
            return gbs, True
    return DEFAULT_BANDWIDTH_GBS, False


def report_seconds(spec: JobSpec, weight_bytes: float, hardware: str, on_gpu: bool,
                   held_out_rows: int) -> tuple[Optional[float], str]:
    """(seconds or None, how it was reckoned) of the automatic report of `spec`."""
    s = spec.evaluation
    if not s.auto:
        return 0.0, "evaluation.auto is off: no report after training"
    if not on_gpu:
        return None, f"not estimated on a CPU; the report stops at its budget, evaluation.time_budget = " \
                     f"{s.time_budget} s"
    gbs, known = bandwidth(hardware)
    per_token = weight_bytes / (gbs * 1e9 * 0.6) + STEP_OVERHEAD_S
    rows = min(s.max_examples, held_out_rows)
    kind = trainer_info(spec.training.trainer).rows
    if kind == "prompts":
        held = rows * 2 * 4 * spec.grpo.max_completion_length * per_token
    elif kind in ("pairs", "feedback", "pair_ids"):
        held = rows * 2 * 3 * LOGLIKELIHOOD_REQUEST_S
    else:
        held = rows * EVALUATION.max_new_tokens * per_token  # base and fine-tuned answer in one batch
    general = 0.0
    for task in s.general_tasks:
        if any(task.startswith(g) for g in GENERATION_TASKS):
            general += s.task_limit * 2 * HARNESS_GEN_TOKENS * per_token / HARNESS_BATCH
        else:
            general += s.task_limit * 2 * CHOICES * LOGLIKELIHOOD_REQUEST_S
    judge = s.judge_prompts * 2 * 0.1 if s.judge else 0.0
    loads = (3 if s.judge else 2) * weight_bytes / (LOAD_GBS * 1e9)
    total = held + general + judge + loads
    how = (f"held-out {held:.0f} s ({rows} rows) + general tasks {general:.0f} s ({len(s.general_tasks)} x "
           f"{s.task_limit} examples) + {'judge ' + format(judge, '.0f') + ' s + ' if s.judge else ''}loading "
           f"{loads:.0f} s at {gbs:g} GB/s{'' if known else ' (bandwidth assumed)'}")
    if total > s.time_budget:
        return float(s.time_budget), f"{how} = {total:.0f} s, cut to the budget evaluation.time_budget " \
                                     f"({s.time_budget} s)"
    return round(total, 1), how
