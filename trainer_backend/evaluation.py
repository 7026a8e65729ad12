"""Did it learn? Loss/perplexity and generation metrics for base vs fine-tuned on held-out data.

Held-out data is the job's own validation split (re-derived from its spec, so exactly the rows training held
out) or a file the user gives. Generation metrics need prompt -> reference rows (qa, alpaca, chat); a tool-calling
job's rows (with tool schemas) are scored by function-call accuracy instead (evaluation_tools.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import evaluation_tools as tools_eval
from .job_files import ADAPTER_DIR, EVAL_FILE, SPEC_FILE
from .generation import EVALUATION, GenerationSettings
from .inference import Ask, gpu_call, load_chat
from .rewards import normalise_text


def exact_match(answer: str, reference: str) -> bool:
    """The answer is the reference, up to case, punctuation, articles and spacing: the very test the GRPO
    exact_match reward pays for (rewards.normalise_text), so training and Evaluate count the same answers."""
    return normalise_text(answer) == normalise_text(reference)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over whitespace tokens of the normalised strings."""
    p, r = normalise_text(prediction).split(), normalise_text(reference).split()
    if not p or not r:
        return float(p == r)
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def failure_kind(prediction: str, reference: str) -> Optional[str]:
    """Error-analysis category for a wrong answer: empty, too_long, repetitive, or None."""
    words = prediction.split()
    if not words:
        return "empty"
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) >= 6 and len(set(trigrams)) / len(trigrams) < 0.5:
        return "repetitive"
    if len(words) > 3 * max(len(reference.split()), 1) + 20:
        return "too_long"
    return None


@dataclass
class EvalReport:
    rows: int
    base: dict[str, Optional[float]] = field(default_factory=dict)  # None: the metric applied to no row
    fine_tuned: dict[str, Optional[float]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # side -> metric -> n rows it was measured on
    source: Optional[str] = None  # None: the job's held-out (validation) split; else the given file's name

    def to_dict(self) -> dict[str, Any]:
        """The report, and its metrics table as people read it (what the API returns, evaluation.json keeps and
        the model card shows)."""
        return {**asdict(self), "table": metrics_table(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalReport":
        """A saved evaluation.json (older ones lack counts and source)."""
        known = {k: data[k] for k in ("rows", "base", "fine_tuned", "examples", "counts", "source") if k in data}
        return cls(**{"rows": 0, **known})

    def n(self, side: str, name: str) -> int:
        """Rows `name` was measured on for `side`."""
        if name in self.counts.get(side, {}):
            return self.counts[side][name]
        if name.startswith("reward") or name in ("eval_loss", "perplexity") or name not in METRICS:
            return self.rows
        return len(self.examples)  # a generation metric of a report saved before counts were kept


# What each metric means, in one line, and which way is better (the Chat / Evaluate tab's table).
METRICS: dict[str, tuple[str, bool, str]] = {  # name -> (label, higher is better, meaning)
    "eval_loss": ("Loss", False, "how surprised the model is by the reference answers (mean cross-entropy per "
                  "token)"),
    "perplexity": ("Perplexity", False, "exp(loss): about how many tokens the model hesitates between at each step"),
    "exact_match": ("Exact match", True, "answers equal to the reference, ignoring case, punctuation and articles"),
    "rouge_l": ("ROUGE-L", True, "how much of the reference's wording the answer has, in order (0 to 1)"),
    "contains_reference": ("Contains reference", True, "answers that contain the reference somewhere"),
    "reward": ("Reward", True, "mean total reward of sampled answers, scored by the job's own reward functions"),
}
SHARES = {"exact_match", "contains_reference"}  # shown as percentages (and every tool_* metric)


def _info(name: str) -> tuple[str, bool, str]:
    if name.startswith("reward/"):
        fn = name.split("/", 1)[1]
        return f"Reward: {fn}", True, f"mean reward from {fn} alone"
    if tools_eval.is_tool_metric(name):
        return tools_eval.metric_info(name)
    return METRICS.get(name, (name, True, ""))


def is_share(name: str) -> bool:
    return name in SHARES or tools_eval.is_tool_metric(name)


def _format(name: str, value: Optional[float]) -> str:
    if value is None or value != value:
        return "—"
    if is_share(name):
        return f"{100 * value:.1f} %"
    if name == "perplexity" and value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def metrics_table(report: EvalReport) -> list[dict[str, str]]:
    """The report's metrics as people read them: rounded, with n (what each was measured on), which side is
    better and by how much, and what the metric means."""
    rows = []
    for name, tuned in report.fine_tuned.items():
        base = report.base.get(name)
        label, higher, meaning = _info(name)
        shown_base, shown_tuned = _format(name, base), _format(name, tuned)
        if base is None or tuned is None or "—" in (shown_base, shown_tuned):
            better = "—"  # measured on one side only: nothing to compare
        elif shown_base == shown_tuned:
            better = "same"
        else:
            winner = "fine-tuned" if (tuned > base) == higher else "base"
            diff = abs(tuned - base)
            if is_share(name):
                by = f"{100 * diff:.1f} points"
            else:  # in the precision the values are shown in
                by = f"{diff:,.0f}" if name == "perplexity" and max(tuned, base) >= 100 else f"{diff:.3f}"
            better = f"{winner}, by {by}"
        n_base, n_tuned = report.n("base", name), report.n("fine_tuned", name)
        unit = "prompt" if name.startswith("reward") else "example"
        n = f"{n_tuned} {unit}{'s' if n_tuned != 1 else ''}" if n_base == n_tuned else \
            f"base {n_base}, fine-tuned {n_tuned} {unit}s"
        rows.append({"metric": label, "base": shown_base, "fine-tuned": shown_tuned, "better": better, "n": n,
                     "meaning": f"{'higher' if higher else 'lower'} is better: {meaning}"})
    return rows


def _load_eval_split(adapter_path: Path, data_path: Optional[str]) -> Any:
    """PreparedData whose 'valid' split (or the given file as a whole) is what we evaluate on."""
    from .data import prepare_data
    from .spec import load_job_spec
    from .training.model_loading import load_tokenizer

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
    if "messages" in example:
        msgs = example["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return msgs[:last], msgs[last]["content"]
    if "completion" in example:
        msgs = ([{"role": "system", "content": example["system"]}] if example.get("system") else [])
        return msgs + [{"role": "user", "content": example["prompt"]}], example["completion"]
    return None


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
             progress: Optional[Callable[[float, str], None]] = None, token: Any = None) -> EvalReport:
    """Evaluate base vs fine-tuned; saves evaluation.json in the job folder when there is one. `token`: the
    caller's Hub token (access.hub_token) for a Hub adapter and its base."""
    from contextlib import nullcontext

    if progress:
        progress(0.0, "loading the model")
    chat, adapter = load_chat(ref, token)
    if progress:
        progress(0.0, "preparing the held-out data")
    split, _ = _load_eval_split(adapter.path, data_path)
    if "references" in split.columns:  # a GRPO job: its held-out prompts, scored by its own rewards
        report = evaluate_rewards(chat, adapter, split, max_examples, progress=progress)
        report.source = Path(data_path).name if data_path else None
        _save(adapter.path.parent, report)
        return report
    settings = settings or EVALUATION
    n = min(max_examples, len(split))
    report = EvalReport(rows=n, source=Path(data_path).name if data_path else None)
    totals = {"base": [0.0, 0, 0, 0.0, 0], "fine_tuned": [0.0, 0, 0, 0.0, 0]}  # loss, tokens, em, rouge, contains
    examples = [split.example(k) for k in range(n)]
    tally = tools_eval.ToolTally() if tools_eval.is_tool_job(examples) else None
    for k in range(n):
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
                t[3] += rouge_l(answer, pair[1])
                t[4] += normalise_text(pair[1]) in normalise_text(answer)
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
    if (job_dir / SPEC_FILE).is_file():
        (job_dir / EVAL_FILE).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))


REWARD_SAMPLES = 4  # completions per held-out prompt: the mean reward estimates what GRPO optimises


def evaluate_rewards(chat: Any, adapter: Any, split: Any, max_examples: int = 50, samples: int = REWARD_SAMPLES,
                     seed: int = 0, progress: Optional[Callable[[float, str], None]] = None) -> EvalReport:
    """Mean reward (total and per reward function) of base vs fine-tuned on held-out GRPO prompts: `samples`
    completions per prompt at the job's sampling settings, scored by the job's own rewards."""
    import torch

    from .rewards import build_reward_functions
    from .spec import load_job_spec

    spec, _ = load_job_spec(adapter.path.parent / SPEC_FILE)
    g = spec.grpo
    functions = build_reward_functions(g.rewards)
    weights = [r.weight for r in g.rewards]
    settings = GenerationSettings(temperature=g.temperature, top_p=g.top_p,
                                  max_new_tokens=min(g.max_completion_length, 4096))
    n = min(max_examples, len(split))
    report = EvalReport(rows=n)
    sums = {side: [0.0] * (len(functions) + 1) for side in ("base", "fine_tuned")}
    torch.manual_seed(seed)
    for k in range(n):
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
            shown[side], shown[f"{side}_reward"] = completions[0], round(totals[0], 4)
        report.examples.append(shown)
        if progress:
            progress((k + 1) / n, f"evaluated {k + 1}/{n}")
    for side, values in sums.items():
        metrics = {f"reward/{f.name}": v / max(n, 1) for f, v in zip(functions, values)}
        setattr(report, side, {"reward": values[-1] / max(n, 1), **metrics})
    return report
