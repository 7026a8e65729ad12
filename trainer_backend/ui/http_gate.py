"""Gradio's own HTTP routes for files, closed on a Space to everyone but members.

Why: ui/gate.py guards every event function, but Gradio also answers plain HTTP routes that never reach an
event. `POST /gradio_api/upload` stores whatever anyone sends on the Space's disk (no sign-in, no quota, no
clean-up) and `GET /gradio_api/file=<path>` serves it back to anyone who has the path. This ASGI middleware sits
inside Gradio's OAuth SessionMiddleware (FastAPI's `middleware=` list is innermost; Gradio's add_middleware
calls wrap it), so it sees the browser's session, and identifies the caller like the gate (access.py: the OAuth
session, else an `x-hf-authorization` / `authorization: Bearer` token). On a Space:

- Uploads (`/gradio_api/upload`, its `upload_progress`, `process_recording`): members only (403; a token the
  Hub rejects: 401). A member's upload must state its Content-Length (411 otherwise) and fit their quota and the
  Space's total cap (413) before one byte of the body is read; the paths Gradio answers are recorded as theirs.
- Files (`/gradio_api/file=...`): members only, except the files the app's public page shows (those its config
  names, e.g. the sign-in button's logo). An uploaded file is served to the member(s) who uploaded it and to
  nobody else; files Gradio made itself (outputs) are served to members.
- Uploads older than the age limit are deleted and forgotten. Nothing a user made is lost: the app copies an
  uploaded dataset into its data dir when it is used (uploads.store_upload).

Locally (no SPACE_ID) the middleware is not installed and nothing changes.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Iterator, MutableMapping, Optional

from ..access import AccessDenied, Identity, identify_request, is_member, member_only_message, on_space
from ..settings import parse_size, settings  # noqa: F401 - parse_size is re-exported
from ..uploads import forget_gradio_upload, gradio_uploaders, record_gradio_upload

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The settings (settings.py has their defaults; sizes as Gradio writes them: 512kb, 2gb; 1024-based).
QUOTA_ENV = "LORA_STUDIO_UPLOAD_QUOTA"  # per member, uploads not yet expired
TOTAL_ENV = "LORA_STUDIO_UPLOAD_TOTAL"  # all members together
MAX_AGE_ENV = "LORA_STUDIO_UPLOAD_MAX_AGE_HOURS"  # then deleted

_UPLOAD_ROUTES = ("/gradio_api/upload", "/gradio_api/upload_progress", "/gradio_api/process_recording")
_FILE_ROUTE = re.compile(r"/gradio_api/file(?:=|/)(.*)$", re.S)
_MISSING_GRACE_S = 60.0  # a just-uploaded file may still be being moved into place by Gradio


@dataclass(frozen=True)
class UploadLimits:
    per_user: int
    total: int
    max_age_s: float

    @classmethod
    def from_env(cls) -> "UploadLimits":
        s = settings()
        return cls(s.upload_quota, s.upload_total, s.upload_max_age_hours * 3600)


@dataclass
class _Upload:
    size: int
    at: float  # last time anyone uploaded it (time.time())


def _mib(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


class UploadLedger:
    """Who uploaded which stored file, how much each member holds, and the age-based clean-up. Thread-safe."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self._files: dict[str, _Upload] = {}
        self._pending: dict[str, int] = {}  # bytes of uploads in flight, reserved from their Content-Length
        self._lock = threading.Lock()

    def usage(self, user: str) -> int:
        with self._lock:
            return self._usage(user.lower())

    def _usage(self, user: str) -> int:
        # who uploaded what has one home, uploads.py (the service's path rule reads it too)
        return self._pending.get(user, 0) + sum(u.size for path, u in self._files.items()
                                                 if user in gradio_uploaders(path))

    def _total(self) -> int:
        return sum(self._pending.values()) + sum(u.size for u in self._files.values())

    def admit(self, user: str, length: int, now: Optional[float] = None) -> Optional[str]:
        """Reserve `length` bytes for `user`'s upload, or say why not (quota or total cap)."""
        self.sweep(now)
        user = user.lower()
        with self._lock:
            used, total = self._usage(user), self._total()
            if used + length > self.limits.per_user:
                return (f"upload refused: {user} holds {_mib(used)} of uploads and this one is {_mib(length)}; "
                        f"each member may hold {_mib(self.limits.per_user)} ({QUOTA_ENV}). Uploads are deleted "
                        f"{self.limits.max_age_s / 3600:g} h after they were sent ({MAX_AGE_ENV}).")
            if total + length > self.limits.total:
                return (f"upload refused: this Space holds {_mib(total)} of uploads and this one is "
                        f"{_mib(length)}; the limit is {_mib(self.limits.total)} ({TOTAL_ENV}). Try again later.")
            self._pending[user] = self._pending.get(user, 0) + length
            return None

    def release(self, user: str, length: int) -> None:
        with self._lock:
            user = user.lower()
            left = self._pending.get(user, 0) - length
            if left > 0:
                self._pending[user] = left
            else:
                self._pending.pop(user, None)

    def record(self, user: str, paths: list[str], length: int, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            for path in paths:
                real = os.path.realpath(path)
                try:
                    size = os.stat(real).st_size
                except OSError:  # still being moved into place: count its share of the request
                    size = length // max(1, len(paths))
                entry = self._files.setdefault(real, _Upload(size, now))
                entry.size, entry.at = size, now
                record_gradio_upload(real, user)

    def uploaders(self, path: str) -> Optional[set[str]]:
        """Who uploaded this file (None: not an upload this app recorded)."""
        real = os.path.realpath(path)
        with self._lock:
            return gradio_uploaders(real) if real in self._files else None

    def sweep(self, now: Optional[float] = None) -> list[str]:
        """Delete uploads older than the age limit; forget files that are gone. Returns the deleted paths."""
        now = time.time() if now is None else now
        deleted = []
        with self._lock:
            for path, entry in list(self._files.items()):
                if now - entry.at > self.limits.max_age_s:
                    try:
                        os.remove(path)
                        deleted.append(path)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:  # keep the record (and its bytes counted); try again next sweep
                        print(f"could not delete the old upload {path}: {exc}", flush=True)
                        continue
                    try:
                        os.rmdir(os.path.dirname(path))  # Gradio's <hash>/ folder, if nothing else is in it
                    except OSError:
                        pass
                    del self._files[path]
                    forget_gradio_upload(path)
                elif now - entry.at > _MISSING_GRACE_S and not os.path.exists(path):
                    del self._files[path]
                    forget_gradio_upload(path)
        return deleted


def _paths_in(config: Any) -> Iterator[str]:
    if isinstance(config, dict):
        if isinstance(config.get("path"), str) and config.get("url"):
            yield config["path"]
        for value in config.values():
            yield from _paths_in(value)
    elif isinstance(config, list):
        for value in config:
            yield from _paths_in(value)


class HttpGate:
    """The ASGI middleware (see the module docstring). Install with `launch(app_kwargs={"middleware": ...})`."""

    def __init__(self, app: ASGIApp, limits: Optional[UploadLimits] = None):
        self.app = app
        self.ledger = UploadLedger(limits or UploadLimits.from_env())
        self._public: tuple[int, set[str]] = (0, set())
        interval = max(1.0, min(self.ledger.limits.max_age_s / 10, 600.0))
        threading.Thread(target=self._sweep_forever, args=(interval,), name="upload-sweep", daemon=True).start()

    def _sweep_forever(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            try:
                self.ledger.sweep()
            except Exception as exc:  # noqa: BLE001 - the sweep must outlive a bad file
                print(f"upload clean-up failed: {type(exc).__name__}: {exc}", flush=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope["path"]) if scope["type"] == "http" else ""  # ASGI: every http scope has a path
        file_match = _FILE_ROUTE.search(path)
        upload = path.rstrip("/").endswith(_UPLOAD_ROUTES)
        if not (file_match or upload):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if file_match and self._is_public(scope, file_match.group(1)):
            return await self.app(scope, receive, send)
        try:
            ident = await _caller(scope, headers)
        except AccessDenied as exc:  # a token the Hub rejects is refused, never taken for anonymous
            return await _answer(send, 401, str(exc), close=upload)
        if not is_member(ident):
            return await _answer(send, 403, member_only_message(ident), close=upload)
        user = (ident.username or "").lower()
        if file_match:
            uploaders = self.ledger.uploaders(file_match.group(1))
            if uploaders is not None and user not in uploaders:
                return await _answer(send, 403, "this file was uploaded by another user; only they may download "
                                                "it")
            return await self.app(scope, receive, send)
        if not path.rstrip("/").endswith("/gradio_api/upload") or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        length_text = headers.get("content-length", "")
        if not re.fullmatch(r"[0-9]{1,20}", length_text):
            return await _answer(send, 411, "upload refused: send the file with a Content-Length header (the "
                                            "Space checks the size before it stores anything)", close=True)
        length = int(length_text)
        refusal = self.ledger.admit(user, length)
        if refusal:
            return await _answer(send, 413, refusal, close=True)
        try:
            await self.app(scope, receive, self._recording_send(send, user, length))
        finally:
            self.ledger.release(user, length)

    def _recording_send(self, send: Send, user: str, length: int) -> Send:
        """Forward the response; before its last byte, record the stored paths (Gradio answers a JSON list)."""
        status, body = [0], bytearray()

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and status[0] == 200:
                body.extend(message.get("body", b"")[: 1 << 20])
                if not message.get("more_body", False):
                    try:
                        paths = json.loads(bytes(body))
                    except ValueError:
                        paths = None
                    if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
                        self.ledger.record(user, paths, length)
            await send(message)
        return recording

    def _is_public(self, scope: Scope, requested: str) -> bool:
        """Files the app's page shows to everyone (its config, which anyone may GET, names them)."""
        try:
            config = scope["app"].get_blocks().config
        except Exception:  # noqa: BLE001 - no Gradio app behind us: nothing is public
            return False
        if self._public[0] != id(config):
            self._public = (id(config), {os.path.realpath(p) for p in _paths_in(config)})
        return os.path.realpath(requested) in self._public[1]


async def _caller(scope: Scope, headers: dict[str, str]) -> Identity:
    import anyio.to_thread

    request = SimpleNamespace(session=scope.get("session"), headers=headers)
    return await anyio.to_thread.run_sync(identify_request, request)  # whoami may ask the Hub: not on the loop


async def _answer(send: Send, status: int, message: str, close: bool = False) -> None:
    """Refuse without reading the request's body (`close`: the unread body ends the connection)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def middleware() -> list:
    """For `launch(app_kwargs={"middleware": middleware()})`: the gate on a Space, nothing locally."""
    from starlette.middleware import Middleware

    return [Middleware(HttpGate)] if on_space() else []
