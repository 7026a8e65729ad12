"""8. What pruning saves a sweep: the same trials with and without early stopping.

Two sweeps of the same spec through the job store (the app's own path: a sweep job, trials as child jobs), with the
random sampler and one seed, so both try the very same settings in the same order: one with successive-halving
pruning at each evaluation, one that runs every trial to its end. Printed: the wall-time ratio (pruned / all to
completion), the trials pruned, and the best eval loss of each (pruning must not lose the best trial).

--quick does not train (each trial is a training process): it builds and checks both sweep specs and their trial
specs only, so the benchmark cannot rot; `python bench/run.py --only sweep` measures.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import ALPACA_FILES, Result, child_env, model_dir, ratio


@dataclass
class Config:
    model: str = "small"
    trials: int = 8
    steps: int = 80
    eval_every: int = 10
    rows: int = 160


def _spec(model: Path, data: Path, cfg: Config, pruner: str) -> dict[str, Any]:
    return {"project_name": f"bench-sweep-{pruner}", "model": {"base_model": str(model)},
            "data": {"path": str(data), "valid_split": "auto", "valid_fraction": 0.2, "max_rows": cfg.rows},
            "lengths": {"block_size": 256, "model_max_length": 512},
            "training": {"max_steps": cfg.steps, "batch_size": 4, "gradient_accumulation": 1, "logging_steps": 5,
                         "eval_strategy": "steps", "eval_steps": cfg.eval_every, "save_strategy": "steps",
                         "save_steps": cfg.eval_every, "use_cpu": True},
            "evaluation": {"auto": False},
            "sweep": {"parameters": {"training.learning_rate": {"low": 1e-6, "high": 1e-2, "log": True},
                                     "lora.r": {"choices": [4, 8, 16]}},
                      "trials": cfg.trials, "sampler": "random", "seed": 0, "pruner": pruner,
                      "include_base": False}}


def _sweep(work: Path, raw: dict[str, Any]) -> dict[str, Any]:
    import os

    from trainer_backend.jobs.manager import JobManager
    from trainer_backend.spec import parse_spec
    from trainer_backend.sweep import actions

    os.environ.update(child_env(LORA_STUDIO_AUTO_EVALUATION="0"))
    manager = JobManager(work / raw["sweep"]["pruner"])
    spec, _ = parse_spec(raw)
    t0 = time.perf_counter()
    job = actions.start(manager, spec)
    done = manager.wait(job.id, timeout=3600)
    seconds = time.perf_counter() - t0
    status = actions.status(manager, job.id)
    best = next((t["value"] for t in status["trials"] if t["number"] == status["best"]), None)
    return {"status": done.status, "seconds": round(seconds, 1), "best": best,
            "pruned": sum(t["state"] == "pruned" for t in status["trials"]),
            "settings": [t["params"] for t in status["trials"]]}


def run(work: Path, quick: bool = False, cfg: Config = Config()) -> Result:
    work.mkdir(parents=True, exist_ok=True)
    data = ALPACA_FILES[1]
    if quick:
        from trainer_backend.spec import parse_spec
        from trainer_backend.sweep.objective import resolve
        from trainer_backend.sweep.space import trial_spec

        for pruner in ("successive_halving", "none"):
            spec, _ = parse_spec(_spec(Path("/not/built"), data, cfg, pruner))
            assert spec.sweep is not None
            parse_spec(trial_spec(spec, {"lora.r": 8}, 0, resolve(spec.sweep)))
        return Result("sweep", "sweep: specs OK (--quick trains nothing; `bench/run.py --only sweep` measures)")
    model = model_dir(cfg.model)
    pruned = _sweep(work, _spec(model, data, cfg, "successive_halving"))
    full = _sweep(work, _spec(model, data, cfg, "none"))
    same = pruned["settings"] == full["settings"]
    share = ratio(pruned["seconds"], full["seconds"])
    kept_best = pruned["best"] is not None and full["best"] is not None and pruned["best"] <= full["best"] + 1e-9
    line = (f"sweep: {cfg.trials} trials of {cfg.steps} steps ({cfg.model} model): with pruning {pruned['seconds']:.0f} s "
            f"({pruned['pruned']} pruned) vs {full['seconds']:.0f} s all to completion = {share:.2f}x the time "
            f"({(1 - share) * 100:.0f} % saved); best eval loss {pruned['best']:.4f} vs {full['best']:.4f} "
            f"({'same best kept' if kept_best else 'PRUNING LOST THE BEST'}; same settings tried: {same})")
    return Result("sweep", line, figures={"pruned_seconds": pruned["seconds"], "full_seconds": full["seconds"],
                                          "ratio": share, "pruned_trials": pruned["pruned"],
                                          "best_pruned": pruned["best"], "best_full": full["best"]},
                  ok=kept_best and same)
