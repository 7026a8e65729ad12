"""The loaded models chat, compare and evaluate share, bounded by count and by memory, least recently used out.

A Space that chats with many adapters (each possibly on a different base or quantization) would otherwise keep
every base it ever loaded until it dies of memory. Limits:

  LORA_STUDIO_CHAT_MODELS     how many bases stay loaded (default 2)
  LORA_STUDIO_CHAT_MEMORY_GB  how much their weights may take together (default: half of the GPU's memory,
                              or half of RAM without a GPU)

The model just asked for is never evicted, even alone over the memory cap (it is the one in use). An evicted
model still serving a request stays alive until that request ends (Python references), then is freed.
"""
from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

T = TypeVar("T")
MODELS_ENV, MEMORY_ENV = "LORA_STUDIO_CHAT_MODELS", "LORA_STUDIO_CHAT_MEMORY_GB"
DEFAULT_MODELS = 2


def model_bytes(model: object) -> int:
    """The memory a loaded torch model's weights and buffers take (quantized weights at their packed size)."""
    total = 0
    for getter in ("parameters", "buffers"):
        for tensor in getattr(model, getter, lambda: [])():
            total += tensor.numel() * tensor.element_size()
    return total


def default_memory_cap() -> int:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory // 2
    except Exception:  # noqa: BLE001 - no usable torch/CUDA: fall back to RAM
        pass
    import psutil

    return int(psutil.virtual_memory().total) // 2


def limits_from_env() -> tuple[int, int]:
    """(max models, max bytes) from the environment, with the defaults above; bad values fall back to them."""
    try:
        count = max(1, int(os.environ.get(MODELS_ENV, DEFAULT_MODELS)))
    except ValueError:
        count = DEFAULT_MODELS
    try:
        gb = float(os.environ.get(MEMORY_ENV, ""))
        memory = int(gb * 1024 ** 3) if gb > 0 else default_memory_cap()
    except ValueError:
        memory = default_memory_cap()
    return count, memory


def release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


class ModelCache(Generic[T]):
    """key -> loaded model, LRU, at most `max_models` entries and `max_bytes` by `size_of` together."""

    def __init__(self, max_models: int, max_bytes: int, size_of: Callable[[T], int] = model_bytes,
                 on_evict: Callable[[], None] = release_memory):
        self.max_models, self.max_bytes = max_models, max_bytes
        self.size_of, self.on_evict = size_of, on_evict
        self._items: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()  # loads are serialised too: two requests never load the same base twice
        self.evictions = 0

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            value = load()
            self._items[key] = (value, self.size_of(value))
            evicted = self._evict_beyond_limits(keep=key)
        if evicted:
            self.on_evict()
        return value

    def _evict_beyond_limits(self, keep: Hashable) -> int:
        evicted = 0
        while len(self._items) > 1 and (len(self._items) > self.max_models or self.total_bytes() > self.max_bytes):
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            del self._items[oldest]
            evicted += 1
        self.evictions += evicted
        return evicted

    def total_bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def keys(self) -> list[Hashable]:
        """Least recently used first."""
        with self._lock:
            return list(self._items)

    def peek(self, key: Hashable) -> Optional[T]:
        with self._lock:
            item = self._items.get(key)
        return item[0] if item else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
        self.on_evict()
