"""3. Data preparation at scale: 10k to 1M rows, from scratch and from the prepared-data cache.

The real samples in tests/data are replicated to N rows in a temp JSONL: `alpaca` (gpteacher roleplay +
self-instruct seeds, 2,624 rows) and `chat` (oasst + gsm8k conversations in messages form, 300 rows). For each
kind and size, two fresh child processes run one after the other on an empty cache folder:

  first    `prepare_data(spec, tokenizer)` (read, detect, normalise + validate, chat template, tokenise, loss masks,
           length limits, Arrow shards into the cache; worker processes = every core, the product default) +
           `trainer_datasets` (what training gets); then, timed apart, loading the model and building the SFT
           trainer, in that order as a training run does (with prepared rows TRL does no data work of its own).
  cached   the same in a new process (a re-run, a resumed job, Start after Check data): a cache hit.

Peak memory: the child's own peak RSS (`wait4`), the largest worker's, and the whole process tree's proportional
set size (PSS: shared pages counted once), sampled every 0.2 s; the 2 GB target is judged on the tree. CPU s: CPU
time of the preparing process and its workers (other tenants of a shared box barely move it, unlike wall time);
load: the 1-minute load average around the run.
At 50k alpaca rows a third run with `num_proc=1` shows what the workers add.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (ALPACA_FILES, CHAT_GSM8K, CHAT_MESSAGES, REPO, Result, child_env, model_dir,  # noqa: E402
                          python, run_child, verdict, write_json)

TARGET_50K_S, TARGET_CACHED_S, TARGET_LINEAR, TARGET_RSS_MB = 15.0, 1.0, 1.2, 2048.0


@dataclass
class Config:
    sizes: tuple = (10_000, 50_000, 200_000, 1_000_000)
    kinds: tuple = ("alpaca", "chat")
    model: str = "small"
    block_size: int = 1024     # the product default
    one_core_at: int = 50_000  # also run num_proc=1 for alpaca at this size (0: never)


QUICK = Config(sizes=(600,), kinds=("alpaca", "chat"), model="tiny", block_size=512, one_core_at=0)


def _base_rows(kind: str) -> list[dict]:
    rows = []
    for path in (ALPACA_FILES if kind == "alpaca" else [CHAT_MESSAGES, CHAT_GSM8K]):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                rows.append({"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                            if kind == "alpaca" else {"messages": r["messages"]})
    return rows


def make_rows_file(rows: int, out: Path, kind: str = "alpaca") -> Path:
    base = [json.dumps(r, ensure_ascii=False) + "\n" for r in _base_rows(kind)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(base[i % len(base)])
    return out


def _spec(data: Path, model: Path, block_size: int, work: Path) -> Any:
    from trainer_backend.spec import parse_spec

    return parse_spec({"project_name": "bench-data", "output_dir": str(work), "model": {"base_model": str(model)},
                       "data": {"path": str(data)},  # defaults: format auto, chat_template tokenizer
                       "lengths": {"block_size": block_size, "model_max_length": max(2048, block_size)},
                       "training": {"use_cpu": True, "eval_strategy": "no", "save_strategy": "no"}})[0]


def child(a: argparse.Namespace) -> None:
    """One preparation, timed, in this (child) process."""
    from trainer_backend.data import prepare_data
    from trainer_backend.training.common import TrainContext
    from trainer_backend.training.model_loading import load_base_model, load_tokenizer, lora_config
    from trainer_backend.training.train_data import trainer_datasets
    from trainer_backend.training.trainers import trainer_module

    spec = _spec(Path(a.data), Path(a.model), a.block_size, Path(a.work))
    tok = load_tokenizer(spec.model)
    load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
    prepared = prepare_data(spec, tok, num_proc=a.num_proc or None)
    train, valid, ready = trainer_datasets(prepared, spec)
    res: dict[str, Any] = {"prepare_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - cpu0, "cache": prepared.cache,
                           "rows_used": len(train), "report": prepared.report()["splits"]["train"],
                           "loadavg": [load0, os.getloadavg()[0]]}
    if a.build:  # then the model, as a training run does (training/run.py: data first, model after)
        t1 = time.perf_counter()
        base = load_base_model(spec, "causal", tok)
        trainer_module("sft").build(TrainContext(spec, base, tok, train, valid, lora_config(spec), data_ready=ready))
        res["build_s"] = time.perf_counter() - t1
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    write_json(Path(a.out), res)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the workers, once the pool has shut down)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class TreeMemory:
    """Peak PSS (and RSS) of a process and its descendants, sampled."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.last, self.pss, self.rss = interval, 0.0, 0.0, 0.0

    def __call__(self, pid: int) -> None:
        import psutil

        if time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        try:
            procs = [psutil.Process(pid)]
            procs += procs[0].children(recursive=True)
            pss = rss = 0
            for p in procs:
                info = p.memory_full_info()
                pss, rss = pss + getattr(info, "pss", info.rss), rss + info.rss
        except psutil.Error:  # a worker exited between the listing and the read
            return
        self.pss, self.rss = max(self.pss, pss / 2**20), max(self.rss, rss / 2**20)


def _one(kind: str, rows: int, data: Path, model: Path, cfg: Config, work: Path, tag: str,
         num_proc: int = 0, cache: Optional[Path] = None, quick: bool = False) -> dict:
    out = work / f"{kind}-{rows}-{tag}.json"
    cmd = [python(), "-m", "bench.data_prep", "--child", "--data", str(data), "--model", str(model),
           "--block-size", str(cfg.block_size), "--work", str(work / "job"), "--out", str(out),
           "--num-proc", str(num_proc)] + ([] if tag == "cached" else ["--build"])
    env = child_env(None, LORA_STUDIO_PREPARED_CACHE=str(cache or work / "cache"))
    env.pop("TOKENIZERS_PARALLELISM", None)  # the product's default environment
    if quick:  # smoke: in this process (a child would spend longer importing than working)
        os.environ["LORA_STUDIO_PREPARED_CACHE"] = env["LORA_STUDIO_PREPARED_CACHE"]
        child(_parser().parse_args(cmd[3:]))
        return json.loads(out.read_text())
    memory = TreeMemory()
    run = run_child(cmd, work / f"{kind}-{rows}-{tag}.log", env=env, cwd=REPO, timeout=3600, poll=memory,
                    poll_interval=0.05).check()
    res = json.loads(out.read_text())
    res.update(wall_s=run.wall_s, process_peak_rss_mb=run.peak_rss_mb, tree_peak_pss_mb=memory.pss,
               tree_peak_rss_mb=memory.rss)
    return res


def run(work: Path, quick: bool = False, cfg: Optional[Config] = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    work.mkdir(parents=True, exist_ok=True)
    model = model_dir(cfg.model)
    table: dict[str, dict] = {}
    for kind in cfg.kinds:
        for rows in cfg.sizes:
            data = make_rows_file(rows, work / f"{kind}-{rows}.jsonl", kind)
            cache = work / f"cache-{kind}-{rows}"
            first = _one(kind, rows, data, model, cfg, work, "first", cache=cache, quick=quick)
            cached = _one(kind, rows, data, model, cfg, work, "cached", cache=cache, quick=quick)
            entry = {"first": first, "cached": cached, "rows_per_s": rows / first["prepare_s"],
                     "first_over_cached": first["prepare_s"] / max(cached["prepare_s"], 1e-9)}
            if kind == "alpaca" and rows == cfg.one_core_at:
                entry["one_core"] = _one(kind, rows, data, model, cfg, work, "1core", num_proc=1,
                                         cache=work / f"cache-{kind}-{rows}-1core", quick=quick)
            table[f"{kind}-{rows}"] = entry
            if not quick:  # the 1M-row files and caches are GBs: keep only the figures
                data.unlink()
                for folder in (cache, work / f"cache-{kind}-{rows}-1core"):
                    if folder.exists():
                        import shutil

                        shutil.rmtree(folder)
    lines = [f"{'kind':<7}{'rows':>9}{'first s':>9}{'CPU s':>8}{'rows/s':>9}{'cached s':>10}{'first/cached':>14}"
             f"{'peak PSS MB':>13}{'main RSS MB':>13}{'model+trainer s':>17}{'load':>7}"]
    for key, e in table.items():
        kind, rows = key.split("-")
        f, c = e["first"], e["cached"]
        lines.append(f"{kind:<7}{int(rows):>9,}{f['prepare_s']:>9.1f}{f.get('cpu_s', 0):>8.1f}{e['rows_per_s']:>9,.0f}"
                     f"{c['prepare_s']:>10.2f}{e['first_over_cached']:>13.0f}x{f.get('tree_peak_pss_mb', 0):>13,.0f}"
                     f"{f.get('process_peak_rss_mb', f['peak_rss_mb']):>13,.0f}{f.get('build_s', 0):>17.1f}"
                     f"{max(f.get('loadavg', [0])):>7.1f}")
    for key, e in table.items():
        if "one_core" in e:
            lines.append(f"{key} with num_proc=1: {e['one_core']['prepare_s']:.1f} s "
                         f"({e['one_core']['prepare_s'] / e['first']['prepare_s']:.2f}x the default)")
    out: dict[str, Any] = {"config": {k: str(v) for k, v in vars(cfg).items()}, "table": table, "lines": lines}
    ok, judged = None, []
    a50, a1m = table.get("alpaca-50000"), table.get("alpaca-1000000")
    if not quick and a50:
        judged += [a50["first"]["prepare_s"] <= TARGET_50K_S, a50["cached"]["prepare_s"] <= TARGET_CACHED_S]
        if a1m:
            linear = 20 * a50["first"]["prepare_s"]
            out["alpaca_1m_over_linear"] = a1m["first"]["prepare_s"] / linear
            judged += [out["alpaca_1m_over_linear"] <= TARGET_LINEAR, a1m["first"]["tree_peak_pss_mb"] <= TARGET_RSS_MB]
        ok = all(judged)
    head = "data_prep: " + (f"50k alpaca {a50['first']['prepare_s']:.1f} s from scratch (target <= {TARGET_50K_S:.0f}), "
                            f"{a50['cached']['prepare_s']:.2f} s cached (<= {TARGET_CACHED_S:.0f})" if a50 else
                            f"{len(table)} sizes")
    if a1m:
        head += (f"; 1M alpaca {a1m['first']['prepare_s']:.0f} s = {out['alpaca_1m_over_linear']:.2f}x linear from "
                 f"50k (<= {TARGET_LINEAR}), peak PSS {a1m['first']['tree_peak_pss_mb']:,.0f} MB (<= 2048)")
    write_json(work / "data_prep.json", out)
    return Result("data_prep", head + verdict(ok) + "\n    " + "\n    ".join(lines), out, ok)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--data")
    p.add_argument("--model")
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--work")
    p.add_argument("--out")
    p.add_argument("--num-proc", type=int, default=0)
    p.add_argument("--build", action="store_true", help="also build the SFT trainer (model loaded before timing)")
    p.add_argument("--sizes", help="alone: rows, comma-separated (default 10000,50000,200000,1000000)")
    p.add_argument("--kinds", help="alone: alpaca,chat")
    return p


if __name__ == "__main__":
    args = _parser().parse_args()
    if args.child:
        child(args)
    else:  # python bench/data_prep.py [--sizes 10000,50000] [--kinds alpaca]: this benchmark alone
        from bench.common import new_run_dir

        cfg = Config()
        if args.sizes:
            cfg.sizes = tuple(int(s) for s in args.sizes.split(","))
        if args.kinds:
            cfg.kinds = tuple(args.kinds.split(","))
        work = new_run_dir("data-prep")
        print(run(work, cfg=cfg).line, f"\n(figures: {work / 'data_prep.json'})")
