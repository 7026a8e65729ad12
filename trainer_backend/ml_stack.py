"""Thread-safe first import of the ML stack.

transformers' package initialisation is not thread-safe: when two threads import it for the first time at once,
one of them can get "cannot import name 'LlamaConfig' from 'transformers'" (reproduced with two threads,
2 runs in 3). Anything that will use transformers from several threads (the app's request handlers, the
benchmark runner's background benchmarks) calls `import_ml_stack()` in its main thread first. Once the top-level
package is initialised, later imports of its submodules from any thread are safe (Python's per-module locks).
"""
from __future__ import annotations

import threading

_lock = threading.Lock()


def import_ml_stack() -> None:
    with _lock:
        import transformers  # noqa: F401  (the import itself is the point)
