"""Who may see and do what. The access model, written down once:

- Locally (no SPACE_ID) the app binds to 127.0.0.1 and whoever can reach it may do everything.
- On a Space, *members* — the Space owner, members of the owning org, users in LORA_STUDIO_ALLOWED_USERS — may do
  everything. Everyone else is a *visitor*: they see a welcome view (what the app does, sign in, duplicate the
  Space) and nothing that reads or computes on the owner's jobs, uploads, adapters or hardware. The one
  exception is the optional public demo (public_demo.py): adapters the owner listed, within fixed caps.
- Browser users sign in with Hugging Face OAuth; API clients send their token (`gradio_client.Client(url,
  token=...)`), which the Hub's whoami checks. A token the Hub rejects is refused, never trusted. Tokens are
  never returned, logged or stored.

The rule is enforced in one place for every event of the app (ui/gate.py): a function is members-only unless
it is marked public there.
"""
from __future__ import annotations

import contextvars
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import http_status
from .settings import settings


class AccessDenied(PermissionError):
    pass


class HubUnreachable(AccessDenied):
    """The Hub could not be asked who owns a token (an outage, a timeout, a proxy's error page): the call is
    refused, as for a bad token, but the message says what happened and that trying again will do."""


@dataclass(frozen=True)
class Identity:
    username: Optional[str] = None
    orgs: tuple[str, ...] = ()
    token: Optional[str] = field(default=None, repr=False)  # the user's own token, for pushing to their account

    @property
    def anonymous(self) -> bool:
        return self.username is None


# The caller of the event being served, set by the gate (ui/gate.py) so that layers without Gradio (the service,
# upload placement) know whose request this is. Anonymous outside an event (CLI, tests, the job supervisor).
_CALLER: contextvars.ContextVar[Optional["Identity"]] = contextvars.ContextVar("lora_studio_caller", default=None)


def current_caller() -> "Identity":
    return _CALLER.get() or Identity()


def set_caller(ident: "Identity") -> contextvars.Token:
    return _CALLER.set(ident)


def reset_caller(token: contextvars.Token) -> None:
    _CALLER.reset(token)


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def space_owner() -> Optional[str]:
    owner = os.environ.get("SPACE_AUTHOR_NAME")
    if not owner and os.environ.get("SPACE_ID", "").count("/") == 1:
        owner = os.environ["SPACE_ID"].split("/")[0]
    return owner


def allowed_users() -> set[str]:
    return set(settings().allowed_users)


_WHOAMI_CACHE: dict[str, tuple[float, Identity]] = {}
_WHOAMI_LOCK = threading.Lock()
_WHOAMI_TTL = 300.0


def identity_from_token(token: str) -> Identity:
    """Ask the Hub (HF_ENDPOINT) who owns this token; cached for a few minutes, keyed by the token itself."""
    now = time.monotonic()
    with _WHOAMI_LOCK:
        hit = _WHOAMI_CACHE.get(token)
        if hit and now - hit[0] < _WHOAMI_TTL:
            return hit[1]
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT")).whoami(token=token)
    except Exception as exc:  # `from None`: the request in the exception's chain carries the token
        status = http_status(exc)
        if status in (400, 401, 403):
            raise AccessDenied("the Hugging Face token was rejected; log in again or send a valid token") from None
        where = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        what = f"answered HTTP {status}" if status else f"could not be reached ({type(exc).__name__})"
        raise HubUnreachable(f"could not check your Hugging Face token: the Hub at {where} {what}; your token "
                             "was not rejected, try again in a moment") from None
    ident = Identity(info.get("name"), tuple(o.get("name") for o in info.get("orgs", []) if o.get("name")), token)
    with _WHOAMI_LOCK:
        _WHOAMI_CACHE[token] = (now, ident)
    return ident


def identify_request(request: Any) -> Identity:
    """The caller of the current event, from the request alone: the browser's OAuth session, else a token."""
    info = None
    try:
        session = request.session if request is not None else None
        info = session.get("oauth_info") if session is not None else None
    except Exception:  # no session middleware (OAuth not configured): API tokens only
        info = None
    if info and (info.get("expires_at") is None or info["expires_at"] > time.time()) and info.get("access_token"):
        return identity_from_token(info["access_token"])
    return identify(request)


def duplicate_url() -> Optional[str]:
    space = os.environ.get("SPACE_ID")
    return f"https://huggingface.co/spaces/{space}?duplicate=true" if space else None


def member_only_message(ident: Identity) -> str:
    owner = space_owner() or "its owner"
    who = "Sign in with Hugging Face" if ident.anonymous else f"Signed in as {ident.username}, who is not a member"
    return (f"{who}: this Space belongs to {owner}, and only its owner and their organisation's members may use "
            f"its jobs, data and hardware. Sign in as a member, or duplicate this Space to run your own: "
            f"{duplicate_url()}")


def is_member(ident: Identity) -> bool:
    """May this caller read and use the owner's jobs, uploads, adapters and hardware?"""
    if not on_space():
        return True
    if ident.username is None:  # anonymous
        return False
    owner = (space_owner() or "").lower()
    user = ident.username.lower()
    return bool(owner) and (user == owner or owner in {o.lower() for o in ident.orgs} or user in allowed_users())


def require_member(ident: Identity) -> None:
    if not is_member(ident):
        raise AccessDenied(member_only_message(ident))


def identify(request: Any = None, profile: Any = None, oauth_token: Any = None) -> Identity:
    """The caller: OAuth session (browser) first, else an `Authorization: Bearer` token (API clients)."""
    if oauth_token is not None and getattr(oauth_token, "token", None):
        ident = identity_from_token(oauth_token.token)
        if profile is not None and getattr(profile, "username", None) and ident.username != profile.username:
            return Identity(profile.username, ident.orgs, oauth_token.token)
        return ident
    if profile is not None and getattr(profile, "username", None):
        return Identity(profile.username)
    headers = getattr(request, "headers", None) or {}
    # gradio_client sends the token as x-hf-authorization (the Spaces proxy keeps `authorization` for itself)
    auth = headers.get("x-hf-authorization") or headers.get("authorization") or ""
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return identity_from_token(auth[7:].strip())
    return Identity()


def can_train(ident: Identity) -> tuple[bool, str]:
    """(allowed, reason shown to the user)."""
    if not on_space():
        return True, "local app: training allowed"
    if is_member(ident):
        return True, f"logged in as {ident.username}"
    if ident.anonymous:
        return False, "log in with Hugging Face to train (only the Space owner may); or duplicate this Space"
    return False, (f"{ident.username} is not the owner of this Space ({space_owner()}); duplicate the Space to "
                   "train on your own hardware")


def require_trainer(ident: Identity) -> None:
    allowed, reason = can_train(ident)
    if not allowed:
        raise AccessDenied(reason)
    if on_zero_gpu():
        raise AccessDenied("training is not available on ZeroGPU hardware (GPU time is granted per call, a few "
                           "minutes at most); duplicate the Space to a dedicated GPU to train. Chat works here.")


# ---- whose Hub identity a call acts with ----------------------------------------------------------------------
# On a Space the owner's HF_TOKEN is taken out of the environment when the app starts (withhold_space_token): no
# library default, no child process and no forgotten `token=None` can then act as the owner for someone else. Every
# Hub read or write of an event uses hub_token(): the caller's own token; the Space's only for the owner.
HF_TOKEN_ENV = "HF_TOKEN"
_LEGACY_TOKEN_ENV = "HUGGING_FACE_HUB_TOKEN"
_SPACE_TOKEN: Optional[str] = None


def withhold_space_token() -> Optional[str]:
    """On a Space: move HF_TOKEN out of this process's environment (and so out of every process it starts) and
    stop huggingface_hub from sending any implicit token. Returns the Space's token (None when unset)."""
    global _SPACE_TOKEN
    if not on_space():
        return None
    token = os.environ.pop(HF_TOKEN_ENV, "").strip()
    legacy = os.environ.pop(_LEGACY_TOKEN_ENV, "").strip()  # huggingface_hub still reads the old name
    _SPACE_TOKEN = token or legacy or _SPACE_TOKEN
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True  # this process only: training children get their job's token
    return _SPACE_TOKEN


def space_token() -> Optional[str]:
    """The Space's own token as withheld at start (for the owner's jobs and the Space's own housekeeping)."""
    return _SPACE_TOKEN


def is_owner(ident: Identity) -> bool:
    owner = space_owner()
    return bool(owner and ident.username and ident.username.lower() == owner.lower())


def hub_token_for(ident: Identity) -> "str | bool | None":
    """The token a Hub call made for `ident` uses. A str: that token. False: none at all (public repos only).
    None: the library's default (HF_TOKEN or `hf auth login`): only off a Space, where one person owns the machine.
    On a Space: the caller's own token (OAuth sign-in or the client's), else the Space's HF_TOKEN for its owner."""
    if ident.token:
        return ident.token
    if not on_space():
        return None
    if is_owner(ident) and _SPACE_TOKEN:
        return _SPACE_TOKEN
    return False


def hub_token() -> "str | bool | None":
    """The token for a Hub call made now. Inside an app event: the caller's (hub_token_for). Elsewhere (the CLI, a
    training process, the supervisor): None, the process environment's, which on a Space is the job's identity
    set by the supervisor, and in the app process itself is no token at all once withheld."""
    caller = _CALLER.get()
    return hub_token_for(caller) if caller is not None else None


NO_HUB_TOKEN = "no Hub token (public repos only)"


def hub_identity_label(ident: Identity) -> str:
    """Whose Hub identity a job started by `ident` acts with, in words (recorded on the job, shown in Jobs)."""
    token = hub_token_for(ident)
    if token is None:
        return "this machine's Hugging Face login (HF_TOKEN or hf auth login)"
    if token is False:
        return NO_HUB_TOKEN
    if ident.token:
        return f"{ident.username} (own token)" if ident.username else "the client's own token"
    return f"{ident.username} (the Space's HF_TOKEN)"


_READ_OK_SECONDS = 60.0
_READ_OK: dict[tuple[str, str, str, Optional[str]], float] = {}  # (token digest, type, repo, revision) -> checked at


def check_hub_read(repo_id: str, repo_type: str = "model", revision: Optional[str] = None,
                   token: "str | bool | None" = None) -> None:
    """On a Space, ask the Hub whether `token` may read `repo_id` before anything of it is used. Needed because
    the Hub caches on disk are shared by every caller, and huggingface_hub (snapshot_download) and datasets fall
    back to a cached copy when the Hub answers 401/404: without this, a private repo someone once downloaded would
    be served to anyone who names it. Fails closed: a Hub that cannot be asked refuses. Answers kept a minute."""
    if not on_space():
        return
    import hashlib

    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    key = (hashlib.sha256(repr(token).encode()).hexdigest(), repo_type, repo_id, revision)
    now = time.monotonic()
    if now - _READ_OK.get(key, -_READ_OK_SECONDS) < _READ_OK_SECONDS:
        return
    try:
        HfApi(endpoint=os.environ.get("HF_ENDPOINT")).repo_info(repo_id, repo_type=repo_type, revision=revision,
                                                                 token=token)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise AccessDenied(f"{repo_type} repo '{repo_id}' was not found or is private to your Hugging Face "
                           f"account ({type(exc).__name__}): check the id, or sign in as someone who may read it"
                           ) from None
    except HfHubHTTPError as exc:
        status = http_status(exc)
        if status is not None and (status >= 500 or status == 429):  # an outage: not the caller's access
            raise HubUnreachable(f"cannot check your access to {repo_type} repo '{repo_id}': the Hub answered "
                                 f"HTTP {status}; try again in a moment") from None
        raise AccessDenied(f"{repo_type} repo '{repo_id}' cannot be read with your Hugging Face account "
                           f"(HTTP {status})") from None
    except Exception as exc:  # noqa: BLE001 - unreachable Hub: never fall back to someone else's cached copy
        raise AccessDenied(f"cannot check your access to {repo_type} repo '{repo_id}': the Hub did not answer "
                           f"({type(exc).__name__}); try again") from None
    if len(_READ_OK) > 4096:
        _READ_OK.clear()
    _READ_OK[key] = now
