"""Thread-safe first import of the ML stack.

transformers' package initialisation is not thread-safe: when two threads import it for the first time at once,
one of them can get "cannot import name 'LlamaConfig' from 'transformers'" (reproduced with two threads,
2 runs in 3). Anything that will use transformers from several threads (the app's request handlers, the
benchmark runner's background benchmarks) calls `import_ml_stack()` in its main thread first. Once the top-level
package is initialised, later imports of its submodules from any thread are safe (Python's per-module locks).
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

_lock = threading.Lock()


def import_ml_stack() -> None:
    with _lock:
        import transformers  # noqa: F401  (the import itself is the point)


# peft imports bitsandbytes whenever it is installed, and bitsandbytes imports torch's compiler stack: ~2 CPU-s of
# every training start (a fifth of its imports) that a LoRA run without 4/8-bit loading or an 8-bit optimizer
# never uses.
def needs_bitsandbytes(quantization: str, optimizer: str, base_model: str) -> bool:
    """Does a run use bitsandbytes: int4/int8 loading, an 8-bit optimizer, or a base checkpoint saved quantized
    (its config.json has a quantization_config)? A base whose config is not on disk (a Hub id) counts as yes."""
    if quantization != "none" or "8bit" in optimizer:
        return True
    try:
        config = json.loads((Path(base_model).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(config, dict) or "quantization_config" in config


def leave_out_bitsandbytes() -> bool:
    """Make this process treat bitsandbytes as not installed (import raises ImportError, find_spec finds nothing,
    so transformers and peft skip it). Only before either is imported; returns whether it was done."""
    if any(name in sys.modules for name in ("bitsandbytes", "transformers", "peft")):
        return False
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]  # Python's "import of this name fails" marker
    return True
