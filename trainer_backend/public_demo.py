"""The optional public demo of a Space: adapters the owner chose that any visitor may chat with and compare.

The owner lists them in LORA_STUDIO_PUBLIC_ADAPTERS (job ids or Hub repo ids, comma-separated). A visitor gets
generation only — no logs, no evaluation rows, no paths — within caps the visitor cannot raise: new tokens,
prompt length, one generation at a time, requests per minute. Members are not capped.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .access import AccessDenied
from .generation import DEMO_MAX_NEW_TOKENS, demo_max_new_tokens

PUBLIC_ADAPTERS_ENV = "LORA_STUDIO_PUBLIC_ADAPTERS"


@dataclass(frozen=True)
class DemoCaps:
    max_new_tokens: int = DEMO_MAX_NEW_TOKENS  # within GenerationSettings' own range (generation.py)
    max_prompt_chars: int = 2000
    requests_per_minute: int = 10

    @classmethod
    def from_env(cls) -> "DemoCaps":
        def num(name: str, default: int) -> int:
            try:
                return max(1, int(os.environ.get(name, default)))
            except ValueError:
                return default
        return cls(demo_max_new_tokens(num("LORA_STUDIO_DEMO_MAX_NEW_TOKENS", cls.max_new_tokens)),
                   num("LORA_STUDIO_DEMO_MAX_PROMPT_CHARS", cls.max_prompt_chars),
                   num("LORA_STUDIO_DEMO_REQUESTS_PER_MINUTE", cls.requests_per_minute))


def public_adapters() -> set[str]:
    return {a.strip() for a in os.environ.get(PUBLIC_ADAPTERS_ENV, "").split(",") if a.strip()}


class DemoLimiter:
    """Per visitor: one generation at a time, and at most N requests in any 60 s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._recent: dict[str, deque[float]] = {}

    @contextmanager
    def turn(self, visitor: str, caps: DemoCaps) -> Iterator[None]:
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(visitor, deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if visitor in self._busy:
                raise AccessDenied("the public demo answers one message at a time per visitor; wait for the "
                                   "current answer to finish")
            if len(recent) >= caps.requests_per_minute:
                raise AccessDenied(f"the public demo allows {caps.requests_per_minute} messages a minute per "
                                   "visitor; try again in a minute, or duplicate the Space for your own")
            recent.append(now)
            self._busy.add(visitor)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(visitor)


def check_demo_request(adapter: str, job_id_of: str | None, message: str, caps: DemoCaps) -> None:
    """A visitor's request is refused unless it names a public adapter and stays within the prompt cap.
    `job_id_of` is the job id the adapter reference resolved to (or None for a Hub id)."""
    allowed = public_adapters()
    if not allowed or (adapter not in allowed and (job_id_of is None or job_id_of not in allowed)):
        raise AccessDenied("this adapter is not part of the Space's public demo")
    if len(message or "") > caps.max_prompt_chars:
        raise AccessDenied(f"the public demo takes prompts of at most {caps.max_prompt_chars} characters")
