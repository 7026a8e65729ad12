"""Run LoRA Studio's benchmarks and print one line per benchmark with its ratio / figure.

    python bench/run.py --quick              # smoke mode (CI): tiny models, a few steps, well under a minute
    python bench/run.py                      # full CPU run (~10 min on 2 cores): every ratio of docs/benchmarks.md
    python bench/run.py --only overhead      # one benchmark (repeatable: --only packing --only app)

Outputs (logs, job folders, results.json) go to a fresh folder under $TMPDIR/lora-studio-bench/, never into the
repo. Benchmarks are not part of the test suite's pass/fail; `tests/test_bench_smoke.py` only runs --quick.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` and `trainer_backend` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Result, machine_info, new_run_dir, set_threads, write_json  # noqa: E402

BENCHMARKS = ("overhead", "packing", "data_prep", "app", "gpu", "plan", "cli_start", "sweep")
# In --quick mode these only wait on child processes, so they run in threads beside the in-process ones.
BACKGROUND_IN_QUICK = ("overhead", "app", "plan", "cli_start")


def _run_one(name: str, work: Path, quick: bool, args: argparse.Namespace) -> Result:
    t0 = time.perf_counter()
    try:
        if name == "overhead":
            from bench import overhead as mod
        elif name == "packing":
            from bench import packing as mod
        elif name == "data_prep":
            from bench import data_prep as mod
        elif name == "app":
            from bench import app_start as mod
        elif name == "plan":
            from bench import plan as mod
        elif name == "cli_start":
            from bench import cli_start as mod
        elif name == "sweep":
            from bench import sweep as mod
        else:
            from bench import gpu as mod
        kwargs = {}
        if name == "overhead" and args.repeats and not quick:
            from bench.overhead import Config
            kwargs["cfg"] = Config(repeats=args.repeats)
        result = mod.run(work / name, quick=quick, **kwargs)
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        (work / f"{name}.error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        last = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = Result(name, f"{name}: ERROR {type(exc).__name__}: {last} (traceback: {work / name}.error.txt)",
                        ok=False)
    result.figures["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny models, few steps, figures not judged")
    p.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    p.add_argument("--repeats", type=int, default=None, help="overhead: runs per side (default 4)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS/OpenMP threads per training process, the same on every side (default 1: on a small "
                        "shared machine OpenMP spin-waiting otherwise dominates)")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")  # library deprecation chatter would bury the one-line results
    set_threads(args.threads)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    work = new_run_dir("quick" if args.quick else "full")
    mode = "quick (smoke: figures are not measurements)" if args.quick else "full"
    print(f"LoRA Studio benchmarks, {mode}; outputs in {work}", flush=True)
    t0 = time.perf_counter()
    load_start = os.getloadavg()

    results: dict[str, Result] = {}
    threads = []
    if args.quick:
        from trainer_backend.ml_stack import import_ml_stack

        import_ml_stack()  # transformers' first import is not thread-safe; finish it before the threads start  # overlap the subprocess-only benchmarks with the in-process ones
        for name in [n for n in names if n in BACKGROUND_IN_QUICK]:
            th = threading.Thread(target=lambda n=name: results.__setitem__(n, _run_one(n, work, True, args)),
                                  daemon=True)
            th.start()
            threads.append(th)
    for name in names:
        if args.quick and name in BACKGROUND_IN_QUICK:
            continue
        results[name] = _run_one(name, work, args.quick, args)
        print(results[name].line, flush=True)
    for th in threads:
        th.join()
    for name in names:
        if args.quick and name in BACKGROUND_IN_QUICK:
            print(results[name].line, flush=True)

    total = time.perf_counter() - t0
    summary = {"mode": "quick" if args.quick else "full", "seconds": round(total, 1), "machine": machine_info(),
               "loadavg_start": load_start,
               "threads": args.threads, "argv": sys.argv, "results": {n: r.to_dict() for n, r in results.items()}}
    path = write_json(work / "results.json", summary)
    print(f"done in {total:.0f} s (load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end on "
          f"{os.cpu_count()} CPUs); results: {path}", flush=True)
    errors = [n for n, r in results.items() if r.line.startswith(f"{n}: ERROR")]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
