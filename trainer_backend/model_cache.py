"""The loaded models chat, compare and evaluate share, bounded by count and by memory, least recently used out.

A Space that chats with many adapters (each possibly on a different base or quantization) would otherwise keep
every base it ever loaded until it dies of memory. Limits:

  LORA_STUDIO_CHAT_MODELS     how many bases stay loaded (default 2)
  LORA_STUDIO_CHAT_MEMORY_GB  how much their weights may take together (default: half of the GPU's memory,
                              or half of RAM without a GPU)

The model just asked for is never evicted, even alone over the memory cap (it is the one in use). An evicted
model still serving a request stays alive until that request ends (Python references), then is freed and the GPU's
cached blocks are handed back. Loads happen one at a time (two loads at once could need twice the memory), but a
request for a model already loaded never waits for another one's load.
"""
from __future__ import annotations

import gc
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

from .settings import settings

T = TypeVar("T")
MODELS_ENV, MEMORY_ENV = "LORA_STUDIO_CHAT_MODELS", "LORA_STUDIO_CHAT_MEMORY_GB"


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
    s = settings()
    return s.chat_models, int(s.chat_memory_gb * 1024 ** 3) if s.chat_memory_gb else default_memory_cap()


def empty_device_cache() -> None:
    """Hand the CUDA allocator's cached blocks back to the device (a no-op without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort: a broken CUDA state must not fail a chat request
        pass


def release_memory() -> None:
    """After eviction: collect the evicted models (reference cycles included), then free the device's cache."""
    gc.collect()
    empty_device_cache()


class ModelCache(Generic[T]):
    """key -> loaded model, LRU, at most `max_models` entries and `max_bytes` by `size_of` together.
    on_evict runs after models were dropped; on_freed when an evicted model is finally garbage (after the
    request still using it ends)."""

    def __init__(self, max_models: int, max_bytes: int, size_of: Callable[[T], int] = model_bytes,
                 on_evict: Callable[[], None] = release_memory, on_freed: Callable[[], None] = empty_device_cache):
        self.max_models, self.max_bytes = max_models, max_bytes
        self.size_of, self.on_evict, self.on_freed = size_of, on_evict, on_freed
        self._items: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()       # guards _items; never held during a load
        self._load_lock = threading.Lock()  # one load at a time: two requests never load the same base twice
        self.evictions = 0

    def _hit(self, key: Hashable) -> Optional[T]:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        cached = self._hit(key)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._hit(key)  # loaded by the request we waited for
            if cached is not None:
                return cached
            # Make room by count before loading, so the new model never sits beside one too many (the peak a
            # cap is there to prevent); its size is known only once loaded, so memory is checked after.
            with self._lock:
                room = self._evict_over(self.max_models - 1, self.max_bytes)
            self._release(room)
            value = load()
            size = self.size_of(value)
            with self._lock:
                self._items[key] = (value, size)
                evicted = self._evict_over(self.max_models, self.max_bytes, keep=key)
            self._release(evicted)
        return value

    def _evict_over(self, max_models: int, max_bytes: int, keep: Optional[Hashable] = None) -> list[T]:
        """Drop least recently used entries (never `keep`) until within the limits; the caller holds _lock."""
        evicted: list[T] = []
        while self._items and (len(self._items) > max_models or self._bytes() > max_bytes):
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            evicted.append(self._items.pop(oldest)[0])
        self.evictions += len(evicted)
        return evicted

    def _release(self, evicted: list[T]) -> None:
        if not evicted:
            return
        for model in evicted:  # one still serving a request frees its device memory when that request ends
            try:
                weakref.finalize(model, self.on_freed)
            except TypeError:  # a value that takes no weak references (plain data): nothing on a device
                pass
        evicted.clear()  # drop our references before collecting
        del model
        self.on_evict()

    def _bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes()

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
