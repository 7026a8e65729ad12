"""Did it learn? Loss/perplexity and generation metrics for base vs fine-tuned on held-out data.

Held-out data is the job's own validation split (re-derived from its spec, so exactly the rows training held
out) or a file the user gives. Generation metrics need prompt -> reference rows (qa, alpaca, chat); a tool-calling
job's rows (with tool schemas) are scored by function-call accuracy instead (tools.py).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

from . import tools as tools_eval
from ..job_files import ADAPTER_DIR, SPEC_FILE
from ..generation import EVALUATION, GenerationSettings
from ..inference import Ask, gpu_call, load_chat
from ..rewards import normalise_text
from .metrics import EvalReport, exact_match, failure_kind, rouge_l
from .record import save_held_out
from .stats import MIN_N


def _load_eval_split(adapter_path: Path, data_path: Optional[str]) -> Any:
    """PreparedData whose 'valid' split (or the given file as a whole) is what we evaluate on."""
    from ..data import prepare_data
    from ..spec import load_job_spec
    from ..training.model_loading import load_tokenizer

    job_dir = adapter_path.parent
    if not (job_dir / SPEC_FILE).is_file():
        raise FileNotFoundError("this adapter was not trained here (no spec.yaml beside it), so its held-out "
                                "rows are unknown: give a data file to evaluate on")
    spec, _ = load_job_spec(job_dir / SPEC_FILE)
    if data_path:
        data = spec.data.model_copy(update={"path": data_path, "valid_split": None, "max_rows": None})
        spec = spec.model_copy(update={"data": data})
    tokenizer = load_tokenizer(spec.model)
    prepared = prepare_data(spec, tokenizer)
    split = prepared.train if data_path else prepared.valid
    if split is None or not split.stats.rows_valid:
        raise ValueError("the job kept no validation split to evaluate on: give a data file (the Data file box in "
                         "the Chat / Evaluate tab, or `python -m trainer_backend evaluate JOB --data FILE`), or "
                         "train again with a validation split (data.valid_split: auto)")
    return split, tokenizer


def held_out_prompts(job_dir: Path, limit: int) -> list[list[dict]]:
    """Up to `limit` conversations (up to the last answer) from the job's validation split; raises
    FileNotFoundError / ValueError like evaluate when there is none."""
    split, _ = _load_eval_split(job_dir / ADAPTER_DIR, None)
    out = []
    for k in range(min(limit, len(split))):
        pair = _prompt_and_reference(split.example(k))
        if pair and pair[0]:
            out.append(pair[0])
    return out


def _prompt_and_reference(example: dict) -> Optional[tuple[list[dict], str]]:
    """The conversation up to the answer, and the answer (for a preference row: the chosen one)."""
    if "messages" in example:
        msgs = example["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return msgs[:last], msgs[last]["content"]
    answer = example.get("completion", example.get("chosen"))
    if answer is None or "prompt" not in example:
        return None
    if isinstance(answer, list):  # conversational preference rows: the answer is a list of messages
        answer = next((m.get("content") for m in reversed(answer) if m.get("role") == "assistant"), None)
    prompt = example["prompt"]
    if isinstance(prompt, list):
        return [m for m in prompt if isinstance(m, dict)], str(answer or "")
    msgs = ([{"role": "system", "content": example["system"]}] if example.get("system") else [])
    return msgs + [{"role": "user", "content": str(prompt)}], str(answer or "")


def _mean_loss(model: Any, ids: list[int], labels: list[int]) -> tuple[float, int]:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model.device),
                    labels=torch.tensor([labels], device=model.device))
    n = sum(1 for l in labels[1:] if l != -100)
    return out.loss.item() * n, n


@gpu_call
def evaluate(ref: str, data_path: Optional[str] = None, max_examples: int = 50,
             settings: Optional[GenerationSettings] = None,
             progress: Optional[Callable[[float, str], None]] = None, token: Any = None,
             deadline: Optional[float] = None, save: bool = True) -> EvalReport:
    """Evaluate base vs fine-tuned; saves its part of evaluation.json in the job folder when there is one (`save`).
    `token`: the caller's Hub token (access.hub_token) for a Hub adapter and its base. `deadline` (time.time()):
    stop after the row that passes it (at least MIN_ROWS rows are scored) and report on the rows done."""
    from contextlib import nullcontext

    from .preference import evaluate_feedback, evaluate_pairs

    if progress:
        progress(0.0, "loading the model")
    chat, adapter = load_chat(ref, token)
    if progress:
        progress(0.0, "preparing the held-out data")
    split, _ = _load_eval_split(adapter.path, data_path)
    special = evaluate_rewards if "references" in split.columns else \
        evaluate_pairs if "chosen" in split.columns else evaluate_feedback if "label" in split.columns else None
    if "chosen_ids" in split.columns:
        raise ValueError("a reward model scores answers, it does not write them: its held-out accuracy (chosen "
                         "scored above rejected) is the eval_accuracy its training log shows")
    if special:  # GRPO prompts scored by the job's rewards; DPO/ORPO pairs; KTO thumbs-up/down rows
        report = special(chat, adapter, split, max_examples, deadline=deadline, progress=progress)
        report.source = Path(data_path).name if data_path else None
        if save:
            _save(adapter.path.parent, report)
        return report
    settings = settings or EVALUATION
    n = min(max_examples, len(split))
    report = EvalReport(rows=n, source=Path(data_path).name if data_path else None)
    totals = {"base": [0.0, 0, 0, 0.0, 0], "fine_tuned": [0.0, 0, 0, 0.0, 0]}  # loss, tokens, em, rouge, contains
    per_row: dict[str, dict[str, list[float]]] = {"base": {}, "fine_tuned": {}}  # for the intervals
    examples = [split.example(k) for k in range(n)]
    tally = tools_eval.ToolTally() if tools_eval.is_tool_job(examples) else None
    for k in range(n):
        if deadline and k >= MIN_ROWS and time.time() > deadline:
            n = report.rows = k
            report.stopped_early = True
            break
        example, encoded = examples[k], split.row(k)
        row: dict[str, Any] = {}
        pair = None if tally else _prompt_and_reference(example)
        target = tools_eval.tool_target(example) if tally else None
        for side, use_adapter in (("base", False), ("fine_tuned", True)):
            with chat.lock:
                chat.activate(adapter)
                with nullcontext() if use_adapter else chat.model.disable_adapter():
                    loss, counted = _mean_loss(chat.model, encoded["input_ids"], encoded["labels"])
            t = totals[side]
            t[0], t[1] = t[0] + loss, t[1] + counted
            if counted:
                per_row[side].setdefault("eval_loss", []).append(loss / counted)
        if tally and target:  # a tool-calling row: function-call accuracy of each side's answer
            answers = _both_answers(chat, adapter, target.prompt, None, settings, target.tools)
            report.examples.append(tally.add(target, answers))
        elif pair:
            rendered = example["prompt"] if adapter.meta.prompt_template else None
            answers = _both_answers(chat, adapter, pair[0], rendered, settings)
            for side, answer in zip(("base", "fine_tuned"), answers):
                t = totals[side]
                em = exact_match(answer, pair[1])
                t[2] += em
                has_reference = normalise_text(pair[1]) in normalise_text(answer)
                t[4] += has_reference
                row_rouge = rouge_l(answer, pair[1])
                t[3] += row_rouge
                for name, value in (("exact_match", em), ("rouge_l", row_rouge), ("contains_reference", has_reference)):
                    per_row[side].setdefault(name, []).append(float(value))
                row[side] = answer
                row[f"{side}_correct"] = em
                row[f"{side}_failure"] = None if em else failure_kind(answer, pair[1])
            row.update(prompt=pair[0][-1]["content"], reference=pair[1])
            report.examples.append(row)
        if progress:
            progress((k + 1) / n, f"evaluated {k + 1}/{n}")
    for side, (loss, tokens, matched, rouge, contains) in totals.items():
        metrics: dict[str, Optional[float]] = {"eval_loss": loss / max(tokens, 1),
                                               "perplexity": math.exp(min(loss / max(tokens, 1), 50))}
        counts = {"eval_loss": n, "perplexity": n}
        if tally:
            tool_metrics, tool_counts = tally.metrics(side)
            metrics.update(tool_metrics)
            counts.update(tool_counts)
        elif report.examples:
            m = len(report.examples)
            metrics.update(exact_match=matched / m, rouge_l=rouge / m, contains_reference=contains / m)
            counts.update(exact_match=m, rouge_l=m, contains_reference=m)
        setattr(report, side, metrics)
        report.counts[side] = counts
    if len(per_row["base"].get("eval_loss", [])) != len(per_row["fine_tuned"].get("eval_loss", [])):
        per_row = {side: {k: v for k, v in m.items() if k != "eval_loss"} for side, m in per_row.items()}
    paired: dict[str, tuple[list[float], list[float]]] = {}
    if tally:  # function-call metrics, over the rows each applies to (a change: where it applies to both sides)
        for e in report.examples:
            scores = {side: e.get(f"{side}_scores") or {} for side in ("base", "fine_tuned")}
            for side in scores:
                for name, value in scores[side].items():
                    if value is not None:
                        per_row[side].setdefault(name, []).append(float(value))
            for name, value in scores["fine_tuned"].items():
                if value is not None and scores["base"].get(name) is not None:
                    both = paired.setdefault(name, ([], []))
                    both[0].append(float(scores["base"][name]))
                    both[1].append(float(value))
    report.add_intervals(per_row, paired)
    if save:
        _save(adapter.path.parent, report)
    return report


def _both_answers(chat: Any, adapter: Any, messages: list[dict], rendered: Optional[str],
                  settings: GenerationSettings, tools: Optional[list[dict]] = None) -> list[str]:
    """(base answer, fine-tuned answer) to one prompt: one batch when the adapter allows it (the rows are the same
    prompt, so no padding changes either answer), else one after the other. `tools`: the schemas it may call."""
    asks = [Ask(messages, use_adapter=False, prompt_text=rendered, tools=tools),
            Ask(messages, prompt_text=rendered, tools=tools)]
    if chat.can_mix(adapter):
        return chat.generate_many(adapter, asks, settings)
    return [chat.generate_many(adapter, [a], settings)[0] for a in asks]


def _save(job_dir: Path, report: EvalReport) -> None:
    """Into the job's evaluation.json, beside what the report already holds (general tasks, judge)."""
    if (job_dir / SPEC_FILE).is_file():
        save_held_out(job_dir, report)


MIN_ROWS = MIN_N  # a deadline never cuts the held-out part below this many rows (no interval below it)
REWARD_SAMPLES = 4  # completions per held-out prompt: the mean reward estimates what GRPO optimises


def evaluate_rewards(chat: Any, adapter: Any, split: Any, max_examples: int = 50, samples: int = REWARD_SAMPLES,
                     seed: int = 0, progress: Optional[Callable[[float, str], None]] = None,
                     deadline: Optional[float] = None) -> EvalReport:
    """Mean reward (total and per reward function) of base vs fine-tuned on held-out GRPO prompts: `samples`
    completions per prompt at the job's sampling settings, scored by the job's own rewards."""
    import torch

    from ..rewards import build_reward_functions
    from ..spec import load_job_spec

    spec, _ = load_job_spec(adapter.path.parent / SPEC_FILE)
    g = spec.grpo
    functions = build_reward_functions(g.rewards)
    weights = [r.weight for r in g.rewards]
    settings = GenerationSettings(temperature=g.temperature, top_p=g.top_p,
                                  max_new_tokens=min(g.max_completion_length, 4096))
    n = min(max_examples, len(split))
    report = EvalReport(rows=n)
    sums = {side: [0.0] * (len(functions) + 1) for side in ("base", "fine_tuned")}
    per_prompt: dict[str, dict[str, list[float]]] = {"base": {"reward": []}, "fine_tuned": {"reward": []}}
    torch.manual_seed(seed)
    for k in range(n):
        if deadline and k >= MIN_ROWS and time.time() > deadline:
            n = report.rows = k
            report.stopped_early = True
            break
        row, example = split.row(k), split.example(k)
        shown: dict[str, Any] = {"prompt": example["prompt"][-1]["content"], "references": row["references"]}
        for side, use_adapter in (("base", False), ("fine_tuned", True)):
            completions = [chat.generate(adapter, example["prompt"], settings, use_adapter=use_adapter,
                                         prompt_text=row["prompt"]) for _ in range(samples)]
            scores = [f(prompts=[row["prompt"]] * samples, completions=completions,
                        references=[row["references"]] * samples) for f in functions]
            totals = [sum(w * (s[i] or 0.0) for w, s in zip(weights, scores)) for i in range(samples)]
            for j, s in enumerate(scores):
                sums[side][j] += sum(x or 0.0 for x in s) / samples
            sums[side][-1] += sum(totals) / samples
            per_prompt[side]["reward"].append(sum(totals) / samples)
            shown[side], shown[f"{side}_reward"] = completions[0], round(totals[0], 4)
        report.examples.append(shown)
        if progress:
            progress((k + 1) / n, f"evaluated {k + 1}/{n}")
    for side, values in sums.items():
        metrics = {f"reward/{f.name}": v / max(n, 1) for f, v in zip(functions, values)}
        setattr(report, side, {"reward": values[-1] / max(n, 1), **metrics})
    report.add_intervals(per_prompt)
    return report
