"""7. CLI start: CPU seconds of the command line's data commands, each a fresh process as a person runs it.

Every command is `python -m trainer_backend ...` in its own child process; its CPU time (user + system, from
wait4) is far less sensitive to other jobs on a shared machine than its wall time. Measured, in rounds that rotate
the order (a slow drift in machine load hits every command alike), median of the rounds:
  bare       `python -c "import trainer_backend"`: the interpreter and the package, the baseline of this run
  validate   `validate spec.yaml` on 30 chat rows with the tiny local model (the prepared-data cache warm: one
             unmeasured run fills it first, its CPU time is kept as validate_cold_cpu_s)
  doctor     `doctor spec.yaml`: the same preparation, the report without the OK line
  jobs list  `jobs list` on an empty job store
  schema     `schema`: the job spec's JSON schema
  tokenizer  `AutoTokenizer.from_pretrained(model)` alone: the floor under validate (transformers imports torch
             and its config machinery for it), so validate / tokenizer is what LoRA Studio adds on top
Printed: each command's CPU seconds and what it costs above the bare start. Targets: validate <= 3 CPU-s, jobs list
and schema <= 1 CPU-s. In quick mode (the smoke run) only bare, jobs list and schema run, once each: validate
costs several CPU-s, and tests/test_cli_start.py guards what it imports.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import CHAT_MESSAGES, REPO, Result, child_env, median, model_dir, python, run_child, verdict

VALIDATE_TARGET_CPU_S = 3.0
LIGHT_TARGET_CPU_S = 1.0
LIGHT = ("jobs list", "schema")
TOKENIZER = "from transformers import AutoTokenizer; import sys; AutoTokenizer.from_pretrained(sys.argv[1])"


@dataclass
class Config:
    commands: tuple[str, ...] = ("bare", "validate", "doctor", "jobs list", "schema", "tokenizer")
    repeats: int = 3
    rows: int = 30
    model: str = "tiny"
    timeout: float = 300


QUICK = Config(commands=("bare", "jobs list", "schema"), repeats=1, timeout=120)


def _argv(name: str, work: Path, model: Path | None) -> list[str]:
    cli = [python(), "-m", "trainer_backend"]
    return {"bare": [python(), "-c", "import trainer_backend"],
            "validate": cli + ["validate", str(work / "spec.yaml")],
            "doctor": cli + ["doctor", str(work / "spec.yaml")],
            "jobs list": cli + ["jobs", "list", "--data-dir", str(work / "data")],
            "schema": cli + ["schema"],
            "tokenizer": [python(), "-c", TOKENIZER, str(model)]}[name]


def _write_inputs(work: Path, model: Path, rows: int) -> None:
    """The first `rows` chat rows of the oasst sample and a spec that names only the model and the data."""
    lines = [l for l in CHAT_MESSAGES.read_text(encoding="utf-8").splitlines() if l.strip()][:rows]
    (work / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "spec.yaml").write_text(f"model:\n  base_model: {model}\ndata:\n  path: d.jsonl\n", encoding="utf-8")


def _cpu(name: str, work: Path, model: Path | None, env: dict, cfg: Config, tag: str) -> dict[str, float]:
    child = run_child(_argv(name, work, model), work / f"{name.replace(' ', '-')}-{tag}.log", env=env, cwd=work,
                      timeout=cfg.timeout).check()
    return {"cpu_s": child.cpu_s, "wall_s": child.wall_s, "rss_mb": child.peak_rss_mb}


def run(work: Path, quick: bool = False, cfg: Config | None = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    work.mkdir(parents=True, exist_ok=True)
    # The job store and the prepared-data cache of this run, never the person's
    env = child_env(1, LORA_STUDIO_DATA_DIR=str(work / "data"))
    env.pop("LORA_STUDIO_PREPARED_CACHE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)  # cwd is `work`
    model = None
    fig: dict[str, Any] = {"config": {k: str(v) for k, v in vars(cfg).items()}}
    if {"validate", "doctor", "tokenizer"} & set(cfg.commands):
        model = model_dir(cfg.model)
        _write_inputs(work, model, cfg.rows)
    if "validate" in cfg.commands:  # fills the cache: the measured runs read it, as a person's second run does
        fig["validate_cold_cpu_s"] = _cpu("validate", work, model, env, cfg, "cold")["cpu_s"]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cfg.commands}
    for i in range(cfg.repeats):
        shift = i % len(cfg.commands)
        for name in cfg.commands[shift:] + cfg.commands[:shift]:
            runs[name].append(_cpu(name, work, model, env, cfg, str(i)))
    cpu = {name: round(median(r["cpu_s"] for r in rs), 3) for name, rs in runs.items()}
    fig.update(runs=runs, cpu_s=cpu, over_bare_cpu_s={n: round(c - cpu["bare"], 3) for n, c in cpu.items()})
    ok = None
    if not quick:
        ok = cpu.get("validate", 0) <= VALIDATE_TARGET_CPU_S and all(cpu.get(n, 0) <= LIGHT_TARGET_CPU_S for n in LIGHT)
    shown = ", ".join(f"{n} {cpu[n]:.2f} (+{cpu[n] - cpu['bare']:.2f})" for n in cfg.commands
                      if n not in ("bare", "tokenizer"))
    n = f"median of {cfg.repeats} rounds" if cfg.repeats > 1 else "1 run each"
    if "validate" not in cpu:
        n += " (validate and doctor: full run only)"
    line = f"cli_start: CPU-s per command (+ above the bare start): {shown}; bare `import trainer_backend` " \
           f"{cpu['bare']:.2f}"
    if "tokenizer" in cpu:
        line += (f"; AutoTokenizer load alone {cpu['tokenizer']:.2f}, validate / that = "
                 f"{cpu['validate'] / cpu['tokenizer']:.2f}x")
    line += (f"; {n}; target validate <= {VALIDATE_TARGET_CPU_S:g}, {' and '.join(LIGHT)} <= "
             f"{LIGHT_TARGET_CPU_S:g} CPU-s{verdict(ok)}")
    return Result("cli_start", line, fig, ok)
