"""`python -m trainer_backend cache list|clear`: the prepared-data cache (data/prepared_cache.py) for a person."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .job_status import ExitCode

EXIT_OK = ExitCode.OK


def add_cache_command(subparsers: Any) -> None:
    cache = subparsers.add_parser("cache", help="the prepared-data cache (tokenised data reused by validate, train, "
                                                "resume)")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    listing = cache_sub.add_parser("list", help="entries, most recently used first")
    listing.add_argument("--verify", action="store_true", help="check every file's checksum (reads everything)")
    listing.add_argument("--json", action="store_true")
    clearing = cache_sub.add_parser("clear", help="remove entries (all of them unless keys are given)")
    clearing.add_argument("keys", nargs="*", help="key prefixes as `cache list` shows them")


def cmd_cache(args: argparse.Namespace) -> int:
    """`cache list`: the prepared-data cache's entries; `cache clear [KEY...]`: remove them (all by default)."""
    from datetime import datetime

    from .data import prepared_cache as cache

    root = cache.cache_root()
    if root is None:
        print(f"the prepared-data cache is off (${cache.CACHE_ENV}=off)")
        return EXIT_OK
    if args.cache_command == "clear":
        removed = cache.clear(root, args.keys or None)
        print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {root}")
        return EXIT_OK
    found = cache.entries(root, verify=args.verify)
    if args.json:
        print(json.dumps([{"key": e.key, "path": str(e.path), "bytes": e.size, "last_used": e.last_used,
                           "problem": e.problem, **e.meta.get("summary", {})} for e in found], indent=2))
        return EXIT_OK
    gb = 1024**3
    print(f"prepared-data cache {root}: {len(found)} entries, {sum(e.size for e in found) / gb:.2f} GB "
          f"(cap {cache.cap_bytes() / gb:.1f} GB, ${cache.CAP_ENV})")
    if found:
        print(f"{'key':<14}{'size':>10}  {'rows train/valid':<18}{'format':<11}{'last used':<18}source")
    for e in found:
        info = e.meta.get("summary", {})
        rows = "/".join(f"{n:,}" for n in info.get("rows", [])) or "?"
        print(f"{e.key[:12]:<14}{e.size / 1024**2:>8.1f}MB  {rows:<18}{info.get('format') or '?':<11}"
              f"{datetime.fromtimestamp(e.last_used):%Y-%m-%d %H:%M}  {info.get('source', '?')}"
              + (f"  PROBLEM: {e.problem}" if e.problem else ""))
    return EXIT_OK
