"""The optional public demo of a Space: adapters the owner chose that any visitor may chat with and compare.

The owner lists them in LORA_STUDIO_PUBLIC_ADAPTERS (job ids or Hub repo ids, comma-separated). A visitor gets
generation only — no logs, no evaluation rows, no paths — within caps the visitor cannot raise: new tokens,
messages per request, prompt size (raw, then as the model sees it, chat template included), one generation at a
time, requests per minute, and a few demo generations at once for all visitors together. A visitor is the
signed-in user, else the client address as the Space's proxy reports it (client_address). Members are not capped.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from .access import AccessDenied, current_caller, hub_token, is_member, on_space, space_token
from .generation import DEMO_MAX_NEW_TOKENS, demo_max_new_tokens
from .settings import DEFAULTS, settings

ROLES = ("system", "user", "assistant")
DUPLICATE = "or duplicate the Space for your own"


@dataclass(frozen=True)
class DemoCaps:
    max_new_tokens: int = DEMO_MAX_NEW_TOKENS  # within GenerationSettings' own range (generation.py)
    # raw: every message's content and role, and the system prompt (cheap, first)
    max_prompt_chars: int = DEFAULTS.demo_max_prompt_chars
    requests_per_minute: int = DEFAULTS.demo_requests_per_minute  # per visitor
    # the whole prompt as the model receives it: chat template rendered, tokenized
    max_prompt_tokens: int = DEFAULTS.demo_max_prompt_tokens
    max_messages: int = DEFAULTS.demo_max_messages  # per request: history, the new message and the system prompt
    max_concurrent: int = DEFAULTS.demo_max_concurrent  # demo generations at once, all visitors together

    @classmethod
    def from_env(cls) -> "DemoCaps":
        """The caps LORA_STUDIO_DEMO_* set (settings.py: a bad value keeps the default, with a warning)."""
        s = settings()
        return cls(max_new_tokens=demo_max_new_tokens(s.demo_max_new_tokens),
                   max_prompt_chars=s.demo_max_prompt_chars, requests_per_minute=s.demo_requests_per_minute,
                   max_prompt_tokens=s.demo_max_prompt_tokens, max_messages=s.demo_max_messages,
                   max_concurrent=s.demo_max_concurrent)


def public_adapters() -> set[str]:
    return set(settings().public_adapters)


def demo_hub_token(ref: str) -> Any:
    """What reads adapter `ref` (and its base) from the Hub for the current caller: a member's own token; for a
    visitor, the Space's token only for an adapter its owner listed in the demo (the owner chose to show it: a
    private repo of theirs works), else none at all."""
    caller = current_caller()
    if is_member(caller):
        return hub_token()
    return (space_token() or False) if ref in public_adapters() else False


# ---- who a visitor is -----------------------------------------------------------------------------------------
def trusted_proxy_hops() -> int:
    """LORA_STUDIO_TRUSTED_PROXY_HOPS, else 1 on a Space (its proxy) and 0 elsewhere."""
    hops = settings().trusted_proxy_hops
    return hops if hops is not None else 1 if on_space() else 0


def client_address(request: Any, hops: Optional[int] = None) -> str:
    """The address of the client that sent `request`, as far as the proxies in front of the app can vouch for it.

    Every proxy appends the address it received the request from to X-Forwarded-For, so with N trusted proxy hops
    the client is the entry N from the right: the Spaces proxy appends the visitor's address last (N = 1, the
    default on a Space), your own reverse proxy in front of a Docker container adds a hop (set
    LORA_STUDIO_TRUSTED_PROXY_HOPS). Entries a client wrote itself stand further left and are ignored. With N = 0
    (the default off a Space) no header is believed: the client is the socket peer. uvicorn has already replaced
    the peer (request.client.host) with an X-Forwarded-For entry when the real peer is one it trusts (loopback by
    default, FORWARDED_ALLOW_IPS), so with N = 0 a peer that appears among the entries may be the client's own
    choice: all such requests share one address, "forwarded". A request with fewer entries than N did not come
    through the proxies (a loopback test, a direct connection): the peer. IPv6 clients are one address per /64,
    the block a single host usually holds.
    """
    hops = trusted_proxy_hops() if hops is None else hops
    peer = str(getattr(getattr(request, "client", None), "host", None) or "unknown")
    headers = getattr(request, "headers", None)
    if headers is None:
        values: list[str] = []
    elif hasattr(headers, "getlist"):  # starlette: every X-Forwarded-For line, in order
        values = list(headers.getlist("x-forwarded-for"))
    else:  # a plain dict (a request that was pickled)
        values = [headers.get("x-forwarded-for") or headers.get("X-Forwarded-For") or ""]
    entries = [e.strip() for v in values for e in str(v).split(",") if e.strip()]
    if hops == 0:
        return "forwarded" if _host(peer) in {_host(e) for e in entries} else _normalized(peer)
    if len(entries) < hops:
        return _normalized(peer)
    return _normalized(entries[-hops])


def _host(value: str) -> str:
    """'1.2.3.4:80' / '[::1]:80' / '::1' -> the host part."""
    if value.startswith("[") and "]" in value:
        return value[1:value.index("]")]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _normalized(value: str) -> str:
    try:
        ip = ipaddress.ip_address(_host(value))
    except ValueError:
        return value[:100]  # not an address (a proxy's obfuscated name): itself, bounded
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def visitor_key(username: Optional[str], request: Any) -> str:
    """What the rate limit and the one-answer-at-a-time rule count by: the signed-in user, else the address."""
    return f"user:{username.lower()}" if username else f"address:{client_address(request)}"


# ---- what a visitor may send ----------------------------------------------------------------------------------
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def demo_messages(history: Any, message: Any, system: Any, caps: DemoCaps) -> list[dict]:
    """The messages a visitor's request sends to the model, checked cheaply before anything is rendered: how
    many, their roles (system, user, assistant), text contents, the raw size. Only role and content go on."""
    if history is None:
        history = []
    if not isinstance(history, list):
        raise AccessDenied("the public demo takes the history as a list of {role, content} messages")
    if not isinstance(message, str) or not isinstance(system, str):
        raise AccessDenied("the public demo takes the message and the system prompt as text")
    count = len(history) + 1 + (1 if system else 0)
    if count > caps.max_messages:
        raise AccessDenied(f"the public demo takes at most {caps.max_messages} messages per request (history, the "
                           f"new message and the system prompt together); this one has {count}")
    messages = []
    for number, item in enumerate(history, 1):
        role = item.get("role") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(role, str) or role not in ROLES or not isinstance(content, str):
            what = (f"role {_short(role)}" if not isinstance(role, str) or role not in ROLES else
                    f"content {_short(content)}") if isinstance(item, dict) else _short(item)
            raise AccessDenied("the public demo takes messages with role system, user or assistant and text "
                               f"content; history message {number} has {what}")
        messages.append({"role": role, "content": content})
    messages.append({"role": "user", "content": message})
    size = len(system) + sum(len(m["role"]) + len(m["content"]) for m in messages)
    if size > caps.max_prompt_chars:
        raise AccessDenied(f"the public demo takes prompts of at most {caps.max_prompt_chars} characters (messages, "
                           f"roles and system prompt together); this one has {size}")
    return messages


def check_demo_request(adapter: str, job_id_of: str | None, caps: DemoCaps, history: Any, message: Any,
                       system: Any = "") -> list[dict]:
    """A visitor's request is refused unless it names a public adapter and its messages are within the cheap caps
    (demo_messages, whose checked messages it returns). `job_id_of` is the job id the adapter reference resolved
    to (or None for a Hub id)."""
    allowed = public_adapters()
    if not allowed or (adapter not in allowed and (job_id_of is None or job_id_of not in allowed)):
        raise AccessDenied("this adapter is not part of the Space's public demo")
    return demo_messages(history, message, system, caps)


def check_rendered_prompt(adapter_path: str, messages: list[dict], system: Optional[str], caps: DemoCaps,
                          token: Any = None) -> None:
    """The whole prompt as the model will receive it (inference.prompt_tokens) stays within the token cap.
    `token`: what reads a Hub adapter (demo_hub_token)."""
    from .inference import prompt_tokens

    tokens = prompt_tokens(adapter_path, messages, system or None, token)
    if tokens > caps.max_prompt_tokens:
        raise AccessDenied(f"the public demo takes prompts of at most {caps.max_prompt_tokens} tokens as the model "
                           f"sees them (chat template included); this one has {tokens}")


# ---- how much at once -----------------------------------------------------------------------------------------
class DemoLimiter:
    """Per visitor: one generation at a time, at most N requests in any 60 s; all visitors: M generations at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._recent: dict[str, deque[float]] = {}

    @contextmanager
    def turn(self, visitor: str, caps: DemoCaps) -> Iterator[None]:
        now = time.monotonic()
        with self._lock:
            if len(self._recent) > 4096:  # forget visitors idle for a minute: the table stays bounded
                self._recent = {k: d for k, d in self._recent.items() if d and now - d[-1] <= 60}
            recent = self._recent.setdefault(visitor, deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if visitor in self._busy:
                raise AccessDenied("the public demo answers one message at a time per visitor; wait for the "
                                   "current answer to finish")
            if len(self._busy) >= caps.max_concurrent:
                raise AccessDenied(f"the public demo is busy (at most {caps.max_concurrent} answers at once, for all "
                                   f"visitors together); try again in a moment, {DUPLICATE}")
            if len(recent) >= caps.requests_per_minute:
                raise AccessDenied(f"the public demo allows {caps.requests_per_minute} messages a minute per "
                                   f"visitor; try again in a minute, {DUPLICATE}")
            recent.append(now)
            self._busy.add(visitor)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(visitor)


@contextmanager
def demo_turn(limiter: DemoLimiter, visitor: str, caps: DemoCaps, adapter_path: Callable[[], str],
              messages: list[dict], system: Optional[str], token: Any = None) -> Iterator[None]:
    """A visitor's generation: the limiter's turn, then the rendered prompt's cap, before anything is generated
    (rendering counts against the visitor's requests: it runs on the owner's hardware too)."""
    with limiter.turn(visitor, caps):
        check_rendered_prompt(adapter_path(), messages, system, caps, token)
        yield
