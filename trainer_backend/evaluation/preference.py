"""Did a preference job learn? Held-out pairs (dpo, orpo) and thumbs-up/down rows (kto), base vs fine-tuned.

What these trainers optimise is which answer the model finds more likely, so that is what is measured: for a pair,
log p(chosen | prompt) - log p(rejected | prompt) (the implicit reward margin DPO raises), and how often it is
positive (preference accuracy); for KTO, the per-token log-probability of the answers people liked and of the ones
they did not. The rows are the job's own held-out rows, rendered with its template as training saw them.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from .metrics import EvalReport
from .stats import MIN_N


def _answer_logprob(model: Any, tok: Any, prompt: str, answer: str) -> tuple[float, int]:
    """Sum of log p(answer tokens | prompt) and how many answer tokens there are."""
    import torch

    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tok(prompt + answer, add_special_tokens=False)["input_ids"][len(prompt_ids):]
    if not answer_ids:
        return 0.0, 0
    ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    picked = logprobs.gather(1, torch.tensor(answer_ids, device=logits.device)[:, None])
    return float(picked.sum()), len(answer_ids)


def _sides(chat: Any, adapter: Any, fn: Callable[[Any], Any]) -> dict[str, Any]:
    from contextlib import nullcontext

    out = {}
    with chat.lock:
        chat.activate(adapter)
        for side, on in (("base", False), ("fine_tuned", True)):
            with nullcontext() if on else chat.model.disable_adapter():
                out[side] = fn(chat.model)
    return out


def _score_rows(split: Any, max_examples: int, deadline: Optional[float],
                progress: Optional[Callable[[float, str], None]], unit: str,
                score: Callable[[dict], dict[str, dict[str, float]]]) -> EvalReport:
    """Held-out rows scored by `score(row) -> side -> metric -> value`, until `deadline` (at least MIN_N rows: no
    interval below it)."""
    per_row: dict[str, dict[str, list[float]]] = {"base": {}, "fine_tuned": {}}
    total = min(max_examples, len(split))
    done, stopped = 0, False
    for k in range(total):
        if deadline and done >= MIN_N and time.time() > deadline:
            stopped = True
            break
        for side, values in score(split.row(k)).items():
            for name, value in values.items():
                per_row[side].setdefault(name, []).append(value)
        done += 1
        if progress:
            progress(done / total, f"evaluated {done}/{total} {unit}")
    report = _report(per_row, done)
    report.stopped_early = stopped
    return report


def evaluate_pairs(chat: Any, adapter: Any, split: Any, max_examples: int, deadline: Optional[float] = None,
                   progress: Optional[Callable[[float, str], None]] = None) -> EvalReport:
    tok = chat.tokenizers[adapter.name]

    def score(row: dict) -> dict[str, dict[str, float]]:
        def margin(model: Any) -> dict[str, float]:
            chosen, n_chosen = _answer_logprob(model, tok, row["prompt"], row["chosen"])
            rejected, _ = _answer_logprob(model, tok, row["prompt"], row["rejected"])
            return {"preference_accuracy": float(chosen > rejected), "reward_margin": chosen - rejected,
                    "chosen_logp": chosen / max(n_chosen, 1)}

        return _sides(chat, adapter, margin)

    return _score_rows(split, max_examples, deadline, progress, "pairs", score)


def evaluate_feedback(chat: Any, adapter: Any, split: Any, max_examples: int, deadline: Optional[float] = None,
                      progress: Optional[Callable[[float, str], None]] = None) -> EvalReport:
    tok = chat.tokenizers[adapter.name]

    def score(row: dict) -> dict[str, dict[str, float]]:
        name = "desirable_logp" if row["label"] else "undesirable_logp"

        def per_token(model: Any) -> dict[str, float]:
            logp, n = _answer_logprob(model, tok, row["prompt"], row["completion"])
            return {name: logp / max(n, 1)}

        return _sides(chat, adapter, per_token)

    return _score_rows(split, max_examples, deadline, progress, "rows", score)


def _report(per_row: dict[str, dict[str, list[float]]], rows: int) -> EvalReport:
    report = EvalReport(rows=rows)
    for side, metrics in per_row.items():
        setattr(report, side, {k: sum(v) / len(v) for k, v in metrics.items() if v})
        report.counts[side] = {k: len(v) for k, v in metrics.items()}
    report.add_intervals(per_row)
    return report
