"""1. Overhead: LoRA SFT through `python -m trainer_backend train` vs. a hand-written TRL script.

Same model, data (a real chat file in `messages` form), ChatML template, block/max length, LoRA and optimizer
hyperparameters, one full epoch over the same rows, seed and BLAS thread count (run.py --threads, default 1);
one training process each; alternating runs (ABBAAB...); median of N each. Each side is its own subprocess.

What is counted, identically on both sides (both are transformers.Trainer underneath):
  tokens/s      = Trainer.state.num_input_tokens_seen (include_num_input_tokens_seen="non_padding": non-padding
                  input tokens of every micro-batch fed to the model) / Trainer's train_runtime (the training loop
                  only; not imports, model load, data preparation or adapter save).
                  LoRA Studio: both from the `finished` event in events.jsonl; TRL: from trainer.train().
  steady tok/s  = the same, from the first to the last `log` line (drops the warm-up first step).
  tok/CPU-s     = tokens over the child's CPU seconds between those lines (sampled from /proc by this process):
                  far less sensitive to other jobs on a shared machine than wall time.
  peak RSS      = the child's ru_maxrss from wait4 (whole process: imports, model, data, training).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .common import (CHAT_GSM8K, REPO, ProgressWatcher, Result, alternate, child_env, median, model_dir, python,
                     ratio, read_events, run_child, verdict)

TARGET = 0.97


@dataclass
class Config:
    model: str = "small"
    data: Path = CHAT_GSM8K
    max_rows: int | None = 96     # one full epoch over the same rows on both sides (no sampling luck)
    block_size: int = 512
    batch_size: int = 2
    grad_accum: int = 2
    epochs: float = 1.0
    logging_steps: int = 1
    repeats: int = 4              # ABBA BAAB: balanced against drift in machine load
    threads: int | None = None    # None: inherit OMP_NUM_THREADS from run.py (--threads)
    timeout: float = 420


QUICK = Config(model="tiny", max_rows=8, block_size=256, batch_size=2, grad_accum=1, logging_steps=1, repeats=1,
               timeout=150)


def _ours(cfg: Config, model: Path, work: Path, i: int) -> dict[str, Any]:
    job = work / f"ours-{i}"
    spec = {
        "project_name": f"bench-overhead-{i}", "output_dir": str(job),
        "model": {"base_model": str(model)},
        "data": {"path": str(cfg.data), "chat_template": "chatml",
                 **({"max_rows": cfg.max_rows} if cfg.max_rows else {})},
        "lengths": {"block_size": cfg.block_size, "model_max_length": max(2048, cfg.block_size)},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                     "gradient_accumulation": cfg.grad_accum, "learning_rate": 2e-4, "warmup_ratio": 0.03,
                     "scheduler": "cosine", "seed": 42, "logging_steps": cfg.logging_steps,
                     "save_strategy": "no", "eval_strategy": "no"},  # packing, grad checkpointing: defaults (on)
    }
    spec_path = work / f"ours-{i}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    watch = ProgressWatcher(job / "events.jsonl")
    child = run_child([python(), "-m", "trainer_backend", "train", str(spec_path)], work / f"ours-{i}.log",
                      env=child_env(cfg.threads), cwd=REPO, timeout=cfg.timeout, poll=watch).check()
    fin = next((e for e in reversed(read_events(job)) if e["event"] == "finished"), None)
    if fin is None:
        raise RuntimeError(f"no `finished` event in {job}/events.jsonl\n{child.tail()}")
    m = fin["metrics"]
    return {"tokens": m["num_input_tokens_seen"], "runtime": m["train_runtime"],
            "tps": m["num_input_tokens_seen"] / m["train_runtime"], "rss_mb": child.peak_rss_mb,
            "wall_s": child.wall_s, "steps": fin["step"], **_steady(watch)}


def _trl(cfg: Config, model: Path, work: Path, i: int) -> dict[str, Any]:
    out, progress = work / f"trl-{i}.json", work / f"trl-{i}.progress.jsonl"
    cmd = [python(), str(REPO / "bench" / "baseline_trl_sft.py"), "--model", str(model), "--data", str(cfg.data),
           "--out", str(out), "--progress", str(progress), "--output-dir", str(work / f"trl-{i}"),
           "--max-length", str(cfg.block_size), "--batch-size", str(cfg.batch_size),
           "--grad-accum", str(cfg.grad_accum), "--epochs", str(cfg.epochs), "--lr", "2e-4",
           "--warmup-ratio", "0.03", "--scheduler", "cosine", "--seed", "42", "--lora-r", "16",
           "--lora-alpha", "32", "--lora-dropout", "0.05", "--logging-steps", str(cfg.logging_steps)]
    if cfg.max_rows:
        cmd += ["--max-rows", str(cfg.max_rows)]
    watch = ProgressWatcher(progress)
    child = run_child(cmd, work / f"trl-{i}.log", env=child_env(cfg.threads), cwd=REPO, timeout=cfg.timeout,
                      poll=watch).check()
    import json

    r = json.loads(out.read_text())
    return {"tokens": r["num_input_tokens_seen"], "runtime": r["train_runtime"],
            "tps": r["num_input_tokens_seen"] / r["train_runtime"], "rss_mb": child.peak_rss_mb,
            "wall_s": child.wall_s, "steps": r["global_step"], **_steady(watch)}


def _steady(watch: ProgressWatcher) -> dict[str, Any]:
    s = watch.steady()
    return {"steady_tps": s["tokens_per_s"], "tokens_per_cpu_s": s["tokens_per_cpu_s"]}


def run(work: Path, quick: bool = False, cfg: Config | None = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    model = model_dir(cfg.model)
    work.mkdir(parents=True, exist_ok=True)
    ours, trl = alternate(lambda i: _ours(cfg, model, work, i), lambda i: _trl(cfg, model, work, i), cfg.repeats)

    def med(side: list[dict], key: str) -> float:
        return median(r[key] for r in side)

    fig = {
        "config": {k: str(v) for k, v in vars(cfg).items()}, "ours": ours, "trl": trl,
        "tps_ratio": ratio(med(ours, "tps"), med(trl, "tps")),
        "steady_tps_ratio": ratio(med(ours, "steady_tps"), med(trl, "steady_tps")),
        "cpu_tps_ratio": ratio(med(ours, "tokens_per_cpu_s"), med(trl, "tokens_per_cpu_s")),
        "rss_ratio": ratio(med(ours, "rss_mb"), med(trl, "rss_mb")),
        "tokens_ratio": ratio(med(ours, "tokens"), med(trl, "tokens")),
        # each round's two runs are adjacent in time: their ratio cancels slow drifts in machine load
        "tps_ratio_per_round": [ratio(o["tps"], t["tps"]) for o, t in zip(ours, trl)],
    }
    fig["tps_ratio_median_of_rounds"] = median(fig["tps_ratio_per_round"])
    ok = None if quick else fig["tps_ratio"] >= TARGET
    n = f"median of {cfg.repeats} each, alternating" if cfg.repeats > 1 else "1 run each"
    line = (f"overhead: tokens/s ours/TRL = {fig['tps_ratio']:.3f} ({med(ours, 'tps'):.0f} vs {med(trl, 'tps'):.0f}; "
            f"median of per-round ratios {fig['tps_ratio_median_of_rounds']:.3f}, steady {fig['steady_tps_ratio']:.3f}, "
            f"per CPU-s {fig['cpu_tps_ratio']:.3f}); peak RSS ours/TRL = "
            f"{fig['rss_ratio']:.3f} ({med(ours, 'rss_mb'):.0f} vs {med(trl, 'rss_mb'):.0f} MB); "
            f"tokens fed ours/TRL = {fig['tokens_ratio']:.3f}; {cfg.model} model, 1 epoch of {cfg.max_rows} chat rows, "
            f"{n}; target >= {TARGET}"
            f"{verdict(ok)}")
    return Result("overhead", line, fig, ok)
