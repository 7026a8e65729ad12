"""6. Plan vs. reality: the job plan's peak memory and time (training/plan.py) against a measured run.

For each configuration: `python -m trainer_backend plan --json` (with a 3-step probe, and without one: the
hardware table) and then the same spec trained by `python -m trainer_backend train` as its own process.
Measured: the training process's peak RSS (ru_maxrss from wait4; on a GPU box the plan's peak is compared with
torch.cuda.max_memory_allocated reported by the bench GPU harness instead) and the training loop's wall time
(first to last `log` event, scaled to all steps). Printed: planned/measured ratios; target within 1.5x on CPU.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .common import CHAT_GSM8K, REPO, Result, child_env, model_dir, python, ratio, read_events, run_child, verdict

TARGET = 1.5


@dataclass
class Config:
    models: tuple[str, ...] = ("tiny", "small")
    rows: int = 64
    block_size: int = 512
    steps: int = 16


QUICK = Config(models=("tiny",), rows=16, block_size=128, steps=4)


def _spec(model: Path, work: Path, cfg: Config) -> Path:
    spec = {"project_name": "bench-plan", "output_dir": str(work / "job"),
            "model": {"base_model": str(model)},
            "data": {"path": str(CHAT_GSM8K), "chat_template": "chatml", "max_rows": cfg.rows},
            "lengths": {"block_size": cfg.block_size, "model_max_length": max(2048, cfg.block_size)},
            "training": {"max_steps": cfg.steps, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                         "save_strategy": "no", "eval_strategy": "no"}}
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _one(name: str, cfg: Config, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    spec = _spec(model_dir(name), work, cfg)
    env = child_env(1)
    plans = {}
    for label, extra in (("probe", ["--probe-steps", "3"]), ("table", [])):
        out = work / f"plan-{label}.json"
        run_child([python(), "-m", "trainer_backend", "plan", str(spec), "--out", str(out), *extra],
                  work / f"plan-{label}.log",
                  env=env, cwd=REPO).check()
        plans[label] = json.loads(out.read_text())
    trained = run_child([python(), "-m", "trainer_backend", "train", str(spec)], work / "train.log", env=env,
                        cwd=REPO).check()
    logs = [e for e in read_events(work / "job") if e["event"] == "log"]
    per_step = (logs[-1]["elapsed_seconds"] - logs[0]["elapsed_seconds"]) / max(len(logs) - 1, 1)
    measured_time = per_step * cfg.steps
    planned_peak_mb = plans["probe"]["memory_gib"]["peak"]["value"] * 1024
    return {"model": name, "planned_peak_mb": round(planned_peak_mb), "measured_peak_rss_mb": round(trained.peak_rss_mb),
            "memory_ratio": round(ratio(planned_peak_mb, trained.peak_rss_mb), 2),
            "planned_time_probe_s": plans["probe"]["time_seconds"]["value"],
            "planned_time_table_s": plans["table"]["time_seconds"]["value"], "measured_time_s": round(measured_time, 2),
            "time_ratio_probe": round(ratio(plans["probe"]["time_seconds"]["value"], measured_time), 2),
            "time_ratio_table": round(ratio(plans["table"]["time_seconds"]["value"] or 0, measured_time), 2)}


def within(r: float) -> bool:
    return 1 / TARGET <= r <= TARGET


def run(work: Path, quick: bool = False, cfg: Config | None = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    rows = [_one(name, cfg, work / name) for name in cfg.models]
    ok = None if quick else all(within(r["memory_ratio"]) and within(r["time_ratio_probe"]) for r in rows)
    parts = [f"{r['model']}: peak memory planned/measured {r['memory_ratio']:.2f} ({r['planned_peak_mb']} vs "
             f"{r['measured_peak_rss_mb']} MB RSS), time planned(probe)/measured {r['time_ratio_probe']:.2f} "
             f"({r['planned_time_probe_s']} vs {r['measured_time_s']} s; hardware-table estimate "
             f"{r['time_ratio_table']:.2f}x)" for r in rows]
    line = f"plan: {'; '.join(parts)}; target within {TARGET}x on CPU{verdict(ok)}"
    return Result("plan", line, {"rows": rows}, ok=ok)
