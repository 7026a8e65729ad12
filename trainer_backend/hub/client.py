"""Talking to the Hub safely: token resolution, secret redaction, error classification and retries.

Every Hub call in this package goes through `call_with_retries`, which turns library exceptions into the
`HubError` family below. Their messages are redacted (no token can appear in them) and name the repo and the fix;
`HubError.transient` tells a caller whether trying again later may help.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, Union

from pydantic import SecretStr

from ..errors import exception_chain, http_status
from ..redaction import REDACTED, TOKEN_PATTERN, redact  # noqa: F401  (re-exported to hub/)

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

Token = Union[str, SecretStr, bool, None]  # False: no token at all (access.hub_token for a caller without one)


class HubError(RuntimeError):
    """A Hub operation failed. `status` is the HTTP status when there was one; `transient` says a retry may help."""

    transient = False

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status
        self.pushed: Optional[Any] = None  # a PushResult when the adapter got pushed but the merged model did not


class HubAuthError(HubError):
    """No token, a rejected token (401), or a token without the needed rights / a gated repo (403)."""


class HubNotFoundError(HubError):
    """The repo, revision or file does not exist, or is private and this token cannot see it."""


class HubUnavailableError(HubError):
    """The Hub could not be reached or kept failing (connection errors, 5xx, 429) after every retry."""

    transient = True


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient failures: attempt n waits base_delay * 2**(n-1), capped at max_delay.

    It wraps each Hub step (whoami, repo lookups, create_repo, the whole upload_folder). huggingface_hub already
    retries the preupload and commit requests inside upload_folder (5 retries, 1-8 s), so the default here is
    modest: 4 attempts, waiting 2, 4, 8 s.
    """

    attempts: int = 4
    base_delay: float = 2.0
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


DEFAULT_RETRY = RetryPolicy()


def resolve_token(token: Token = None) -> str:
    """The explicit token (e.g. the signed-in user's OAuth token), else HF_TOKEN, else a `hf auth login` token.
    False (a Space caller without a token of their own) is refused: never a fallback to the environment."""
    if token is False or token is True:
        raise HubAuthError("no Hugging Face token of your own: sign in with the Hub button (the Space asks for "
                           "write access), or pass your token to the client (gradio_client.Client(url, token=...))")
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    if token and token.strip():
        return token.strip()
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env
    from huggingface_hub import get_token

    stored = get_token()
    if stored:
        return stored
    raise HubAuthError("no Hugging Face token: sign in with the Hub button, or set HF_TOKEN to a token with write "
                       "access (https://huggingface.co/settings/tokens)")


def classify(exc: BaseException, what: str, token: Optional[str] = None) -> HubError:
    """Turn any exception from a Hub call into a HubError with a redacted, actionable message."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, OfflineModeIsEnabled, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(exc, HubError):
        return exc
    chain = exception_chain(exc)
    # Redact before cutting to length: a cut could leave part of a token that no longer matches.
    detail = redact(" ".join(f"{type(exc).__name__}: {exc}".split()), token)[:400]
    status = http_status(exc)
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return HubError(f"{what}: HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to continue")
    if any(isinstance(e, GatedRepoError) for e in chain):
        return HubAuthError(f"{what}: the repo is gated; accept its terms on the Hub with this account, "
                            f"or use a token that has access ({detail})", status)
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return HubNotFoundError(f"{what}: revision not found ({detail})", status)
    if any(isinstance(e, RemoteEntryNotFoundError) for e in chain):
        return HubNotFoundError(f"{what}: file not found in the repo ({detail})", status)
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or status == 404:
        return HubNotFoundError(f"{what}: repo not found or private: check the id and your token ({detail})", status)
    if status == 401:
        return HubAuthError(f"{what}: the Hub rejected the token (401): it is invalid or expired; "
                            f"create a new one at https://huggingface.co/settings/tokens", status)
    if status == 403:
        return HubAuthError(f"{what}: the token is not allowed to do this (403): it needs write access "
                            f"to the repo's namespace ({detail})", status)
    if status in TRANSIENT_STATUS or any(isinstance(e, httpx2.TransportError) for e in chain) \
            or any(isinstance(e, json.JSONDecodeError) for e in chain):  # a proxy's HTML error page, not the Hub
        return HubUnavailableError(f"{what}: the Hub is unavailable ({detail})", status)
    return HubError(f"{what}: {detail}", status)


def call_with_retries(fn: Callable[[], T], what: str, token: Optional[str] = None,
                      retry: RetryPolicy = DEFAULT_RETRY, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `fn`, retrying transient failures with exponential backoff; anything else fails at once.

    Raises a HubError with neither __cause__ nor __context__: the library's exception holds the request, whose
    Authorization header carries the token, so it must not travel with our error.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            error = classify(exc, what, token)
        # Raised outside the except block, so Python does not chain the library's exception as __context__.
        if not error.transient:
            raise error
        if attempt == retry.attempts:
            raise HubUnavailableError(f"{error} — gave up after {retry.attempts} attempts; the files are still on "
                                      "disk, push again when the Hub is back", error.status)
        wait = retry.delay(attempt)
        log.warning("%s failed (attempt %d/%d), retrying in %.2fs: %s", what, attempt, retry.attempts, wait, error)
        sleep(wait)
    raise AssertionError("unreachable")
