"""General-ability tasks through lm-evaluation-harness, base vs fine-tuned: what did the adapter cost elsewhere?

The harness itself runs every task (its task registry, prompts, metrics); nothing here re-implements one. The
model is loaded once through the harness's own PEFT support (`HFLM(pretrained=base, peft=adapter)`), and the base
side is the same weights with the adapter switched off, task by task, so a time budget can stop between tasks
with both sides of every finished task measured. A full fine-tune is compared with its base (two loads).

Tasks are harness names (`arc_easy`, `mmlu`, `ifeval`, ...), names of LoRA Studio's local tasks (tasks/, in the
harness's YAML format over data kept in the repository) or a folder of the user's own task YAML files. When the
Hub is out of reach, each default general task is replaced by its local stand-in, and the report says so.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..job_files import ADAPTER_CONFIG, ADAPTER_DIR
from .stats import independent_diff_ci, paired_diff_ci

LOCAL_TASKS = Path(__file__).resolve().parent / "tasks"
# default general task -> (its local stand-in, the Hub dataset it reads, what it measures)
STAND_INS: dict[str, tuple[str, str, str]] = {
    "arc_easy": ("lora_studio_reasoning", "allenai/ai2_arc", "reasoning"),
    "sciq": ("lora_studio_text", "allenai/sciq", "knowledge"),
    "ifeval": ("lora_studio_instructions", "google/IFEval", "instruction following"),
}
MAX_GEN_TOKENS = 256  # generation tasks (ifeval asks up to 1,280): the report stays cheap; both sides get the same
RATE_METRICS = {"word_perplexity", "byte_perplexity", "bits_per_byte"}  # per-document (log-likelihood, units)


class TaskError(ValueError):
    """A task that cannot be run as named (unknown name, a folder without tasks): said before any model loads."""


@dataclass
class TaskPlan:
    name: str                              # what the harness runs
    include: Optional[str] = None          # folder of task YAML files it comes from (None: the harness's own)
    stand_in_for: Optional[str] = None     # the Hub task this local one replaces (offline)
    measures: Optional[str] = None         # reasoning, knowledge, instruction following


@dataclass
class TaskScore:
    task: str
    metric: str                            # the task's first metric (its headline)
    higher_is_better: bool
    base: float
    fine_tuned: float
    n: int
    change: Optional[list[float]] = None   # [fine-tuned - base, low, high]: 95 %, paired per example when possible
    stand_in_for: Optional[str] = None
    measures: Optional[str] = None
    source: str = "harness"                # "harness", "lora-studio" (tasks/) or the user's folder name
    seconds: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # every metric: {"base":, "fine_tuned":}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TaskScore":
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def hub_dataset_reachable(repo_id: str, token: Any = None) -> Optional[str]:
    """None when the Hub answers for `repo_id`; else why not, in words."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        HfApi().dataset_info(repo_id, token=token if isinstance(token, str) else None, timeout=10)
    except Exception as exc:  # any failure to ask: the stand-in runs and the report says why
        return f"{repo_id} could not be read from the Hub ({type(exc).__name__})"
    return None


def plan_tasks(requested: list[str], token: Any = None) -> tuple[list[TaskPlan], list[str]]:
    """What to run for each requested task, and notes for the report (stand-ins used, and why)."""
    plans: list[TaskPlan] = []
    notes: list[str] = []
    local = {p.stem for p in LOCAL_TASKS.glob("*.yaml")}
    for name in requested:
        folder = Path(name).expanduser()
        if folder.is_dir():
            found = sorted(folder_tasks(folder))
            if not found:
                raise TaskError(f"{name}: no task YAML files (with a `task:` name) in this folder")
            plans += [TaskPlan(t, include=str(folder.resolve())) for t in found]
        elif name in local:
            plans.append(TaskPlan(name, include=str(LOCAL_TASKS)))
        elif name in STAND_INS:
            stand_in, dataset, measures = STAND_INS[name]
            why = hub_dataset_reachable(dataset, token)
            if why:
                plans.append(TaskPlan(stand_in, include=str(LOCAL_TASKS), stand_in_for=name, measures=measures))
                notes.append(f"{name} ({measures}) ran as its local stand-in {stand_in}: {why}")
            else:
                plans.append(TaskPlan(name, measures=measures))
        else:
            plans.append(TaskPlan(name))
    return plans, notes


def folder_tasks(folder: Path) -> list[str]:
    """Task names the YAML files of `folder` define (read as text: their !function tags need no import here)."""
    names = []
    for path in sorted(folder.rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("task:"):
                names.append(line.split(":", 1)[1].strip().strip("'\""))
                break
    return names


def _quiet_harness() -> None:
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _model_args(job_dir: Path) -> tuple[dict[str, Any], Optional[str]]:
    """HFLM arguments for the base as training loaded it, and the adapter folder (None: a full fine-tune)."""
    import torch

    from ..training.adapter_meta import read_adapter_meta

    adapter = job_dir / ADAPTER_DIR
    meta = read_adapter_meta(adapter)
    if meta is None:
        raise TaskError("the job holds no trained model to evaluate")
    load = meta.load_settings()
    cuda = torch.cuda.is_available()
    args: dict[str, Any] = {"pretrained": load.base_model, "revision": load.revision or "main",
                            "trust_remote_code": load.trust_remote_code,
                            "dtype": load.dtype if cuda else "float32", "device": "cuda" if cuda else "cpu",
                            "batch_size": "auto" if cuda else 4}
    if cuda and load.quantization_config:  # QLoRA: the base as it trained (bitsandbytes needs CUDA)
        from transformers import BitsAndBytesConfig

        args["quantization_config"] = BitsAndBytesConfig.from_dict(load.quantization_config)
    if (adapter / "tokenizer_config.json").is_file():  # the tokenizer that trained (template, added tokens)
        args["tokenizer"] = str(adapter)
    return args, str(adapter) if (adapter / ADAPTER_CONFIG).is_file() else None


class SideBySide:
    """Runs harness tasks on the base and the fine-tuned model of a job."""

    def __init__(self, job_dir: str | Path, limit: int, max_gen_tokens: int = MAX_GEN_TOKENS) -> None:
        self.job_dir = Path(job_dir)
        self.limit, self.max_gen_tokens = limit, max_gen_tokens
        self.args, self.adapter = _model_args(self.job_dir)
        self._lm: Any = None
        self._base_lm: Any = None

    def _load(self, with_adapter: bool) -> Any:
        from lm_eval.models.huggingface import HFLM

        _quiet_harness()
        args = dict(self.args)
        if with_adapter and self.adapter:
            args["peft"] = self.adapter  # the harness's PEFT support loads base + adapter
        elif with_adapter:
            args["pretrained"] = str(self.job_dir / ADAPTER_DIR)  # a full fine-tune: the trained weights
        return HFLM(**args)

    @contextlib.contextmanager
    def _side(self, fine_tuned: bool) -> Iterator[Any]:
        if self.adapter:
            if self._lm is None:
                self._lm = self._load(True)
            with contextlib.nullcontext() if fine_tuned else self._lm.model.disable_adapter():
                yield self._lm
            return
        # a full fine-tune: two models, one at a time in memory
        if fine_tuned:
            if self._base_lm is not None:
                self._base_lm = None
                _free()
            if self._lm is None:
                self._lm = self._load(True)
            yield self._lm
        else:
            if self._base_lm is None:
                self._base_lm = self._load(False)
            yield self._base_lm

    def run(self, plan: TaskPlan) -> TaskScore:
        started = time.time()
        sides = {}
        for side, fine_tuned in (("base", False), ("fine_tuned", True)):
            with self._side(fine_tuned) as lm:
                sides[side] = _evaluate(lm, plan, self.limit, self.max_gen_tokens)
        return _score(plan, sides["base"], sides["fine_tuned"], time.time() - started)

    def close(self) -> None:
        self._lm = self._base_lm = None
        _free()


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class _Side:
    metrics: dict[str, float]              # aggregated, as the harness reports them
    stderr: dict[str, Optional[float]]
    higher_is_better: dict[str, bool]
    per_doc: dict[str, dict[int, float]]   # metric -> doc id -> value (for the paired interval)
    n: int


_MANAGERS: dict[Optional[str], Any] = {}


def task_manager(include: Optional[str]) -> Any:
    """The harness's task registry: only the given folder's tasks (no index of the harness's thousands), or the
    harness's own."""
    if include not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _quiet_harness()
        _MANAGERS[include] = TaskManager(include_path=include, include_defaults=False) if include else TaskManager()
    return _MANAGERS[include]


def check_plans(plans: list[TaskPlan]) -> None:
    """Refuse an unknown task name before any model loads."""
    for plan in plans:
        if plan.name not in task_manager(plan.include).all_tasks:
            raise TaskError(f"'{plan.name}' is not an lm-evaluation-harness task: give a harness task name (arc_easy, "
                            "hellaswag, mmlu, gsm8k, ifeval, ...; `lm-eval ls tasks` lists them) or a folder of task "
                            "YAML files in the harness's format")


def _evaluate(lm: Any, plan: TaskPlan, limit: int, max_gen_tokens: int) -> _Side:
    import lm_eval

    manager = task_manager(plan.include)
    out = lm_eval.simple_evaluate(model=lm, tasks=[plan.name], limit=limit, task_manager=manager, log_samples=True,
                                  bootstrap_iters=0, gen_kwargs={"max_gen_toks": max_gen_tokens})
    if out is None:
        raise RuntimeError(f"{plan.name}: the harness returned no results")
    task = plan.name if plan.name in out["results"] else next(iter(out["results"]))
    raw = out["results"][task]
    metrics, stderr = {}, {}
    for key, value in raw.items():
        if "," not in key or not isinstance(value, (int, float)) or key.split(",")[0].endswith("_stderr"):
            continue
        name = key.split(",")[0]
        metrics[name] = float(value)
        se = raw.get(key.replace(name, f"{name}_stderr", 1))
        stderr[name] = float(se) if isinstance(se, (int, float)) else None
    per_doc: dict[str, dict[int, float]] = {}
    for sample in (out.get("samples") or {}).get(task, []):
        for name in metrics:
            value = _doc_value(name, sample.get(name))
            if value is not None:
                per_doc.setdefault(name, {})[int(sample["doc_id"])] = value
    hib = {k: bool(v) for k, v in (out.get("higher_is_better") or {}).get(task, {}).items()}
    n = int(((out.get("n-samples") or {}).get(task) or {}).get("effective") or 0)
    # the task's own order of metrics (its first is its headline), not the order the harness aggregated them in
    listed = [m.get("metric") for m in ((out.get("configs") or {}).get(task) or {}).get("metric_list") or []
              if isinstance(m, dict)]
    order = {name: i for i, name in enumerate(listed)}
    metrics = dict(sorted(metrics.items(), key=lambda kv: order.get(kv[0], len(order))))
    return _Side(metrics, stderr, hib, per_doc, n)


def _doc_value(metric: str, value: Any) -> Optional[float]:
    """One document's value of `metric`: a number, or for a rate metric its log-rate (nats per word or byte:
    log-perplexity), which can be averaged and paired."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if metric in RATE_METRICS and isinstance(value, (list, tuple)) and len(value) == 2 and value[1]:
        return -float(value[0]) / float(value[1])
    return None


def _score(plan: TaskPlan, base: _Side, tuned: _Side, seconds: float) -> TaskScore:
    names = [m for m in base.metrics if m in tuned.metrics]
    if not names:
        raise RuntimeError(f"{plan.name}: the harness reported no metric for both sides")
    headline = names[0]
    higher = base.higher_is_better.get(headline, headline not in RATE_METRICS)
    b, t = base.metrics[headline], tuned.metrics[headline]
    change: Optional[list[float]] = None
    docs = sorted(set(base.per_doc.get(headline, {})) & set(tuned.per_doc.get(headline, {})))
    if headline in RATE_METRICS and docs:
        # the paired change of log-rates, shown as the change of the rate itself
        ci = paired_diff_ci([base.per_doc[headline][d] for d in docs], [tuned.per_doc[headline][d] for d in docs])
        if ci and all(math.isfinite(x) for x in ci):
            low, high = sorted(_rate_change(b, headline, x) for x in ci)
            change = [t - b, low, high]
    elif docs:
        ci = paired_diff_ci([base.per_doc[headline][d] for d in docs], [tuned.per_doc[headline][d] for d in docs])
        if ci:
            change = [t - b, ci[0], ci[1]]
    if change is None:
        ci = independent_diff_ci(b, base.stderr.get(headline), t, tuned.stderr.get(headline))
        change = [t - b, ci[0], ci[1]] if ci else None
    if change and headline not in RATE_METRICS and 0 <= min(b, t) and max(b, t) <= 1:
        change = [change[0], max(change[1], -1.0), min(change[2], 1.0)]  # a share cannot move by more than 100 %
    return TaskScore(task=plan.name, metric=headline, higher_is_better=higher, base=b, fine_tuned=t,
                     n=min(base.n, tuned.n), change=[round(x, 6) for x in change] if change else None,
                     stand_in_for=plan.stand_in_for, measures=plan.measures,
                     source="lora-studio" if plan.include == str(LOCAL_TASKS) else
                     (Path(plan.include).name if plan.include else "harness"),
                     seconds=round(seconds, 2),
                     metrics={m: {"base": base.metrics[m], "fine_tuned": tuned.metrics[m]} for m in names})


def _rate_change(base_value: float, metric: str, log_change: float) -> float:
    """A change of mean log-rate (nats per unit) as a change of the aggregated rate metric."""
    if metric == "bits_per_byte":
        return log_change / math.log(2)
    return base_value * (math.exp(log_change) - 1)  # perplexities scale by exp(change)


def run_tasks(job_dir: str | Path, requested: list[str], limit: int, *, token: Any = None,
              deadline: Optional[float] = None, progress: Optional[Callable[[float, str], None]] = None,
              max_gen_tokens: int = MAX_GEN_TOKENS,
              on_score: Optional[Callable[[TaskScore], None]] = None) -> tuple[list[TaskScore], list[str]]:
    """Every requested task on base and fine-tuned, in order, until `deadline` (time.time()); returns the scores
    and notes (stand-ins, tasks left out by the budget, tasks that failed, each with why)."""
    plans, notes = plan_tasks(requested, token)
    check_plans(plans)
    runner = SideBySide(job_dir, limit, max_gen_tokens)
    scores: list[TaskScore] = []
    try:
        for i, plan in enumerate(plans):
            if deadline is not None and time.time() >= deadline:
                left = ", ".join(p.stand_in_for or p.name for p in plans[i:])
                notes.append(f"left out by the time budget: {left} (run them with Evaluate)")
                break
            if progress:
                progress(i / len(plans), f"general task {plan.name} ({i + 1}/{len(plans)})")
            try:
                scores.append(runner.run(plan))
                if on_score:
                    on_score(scores[-1])
            except TaskError:
                raise
            except Exception as exc:  # one task failing (a download, a dependency) leaves the others measured
                notes.append(f"{plan.stand_in_for or plan.name} failed: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        runner.close()
    return scores, notes
