"""The one place where the access model (access.py) is enforced, and errors are made readable, for every event.

Every function Gradio can run — named API endpoints and the UI's own events alike (a hostile client can call a
UI event by its fn_index) — is wrapped after the app is built. On a Space a wrapped function runs only for
members; a visitor gets the sign-in / duplicate message (API endpoints) or no update at all (UI events, so the
welcome page shows no error toasts). Functions marked `@public` run for everyone and check what they need
themselves (the welcome view, the public demo's chat and compare). Locally nothing changes.

Errors: an expected failure (unknown job, wrong state, invalid spec or data, missing file, Hub error) reaches a
gradio_client caller as its own message, which says what to do; anything else is logged here with its traceback
and an id, and the caller gets that id instead of Gradio's "has not enabled verbose error reporting" (the
messages: ui/api_errors.py).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Optional

import gradio as gr

from ..access import AccessDenied, Identity, identify_request, is_member, member_only_message, on_space, \
    reset_caller, set_caller
from .api_errors import to_client_error

_PUBLIC = "__lora_studio_public__"
_GATED = "__lora_studio_gated__"

# Keyword arguments of a UI-only event (`btn.click(fn, inputs, outputs, **PRIVATE)`): no named API endpoint, and
# install_gate treats it as a UI event. dict[str, Any], so that Gradio's typed keyword parameters accept it.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def public(fn: Callable) -> Callable:
    """Mark an event function as open to visitors on a Space (it must protect what it touches itself)."""
    setattr(fn, _PUBLIC, True)
    return fn


# The request of a call that did not come through Gradio (an MCP tool call, ui/mcp_tools.py): the gate and the
# endpoints read it where they would read Gradio's own.
_OUTSIDE_REQUEST: ContextVar[Any] = ContextVar("lora_studio_outside_request", default=None)


@contextlib.contextmanager
def outside_request(request: Any) -> Iterator[None]:
    """Run event functions for a caller that reached them outside Gradio, identified by `request` (its headers;
    no browser session)."""
    token = _OUTSIDE_REQUEST.set(request)
    try:
        yield
    finally:
        _OUTSIDE_REQUEST.reset(token)


def current_request() -> Any:
    """The request of the event running now: an outside caller's, else Gradio's."""
    outside = _OUTSIDE_REQUEST.get()
    if outside is not None:
        return outside
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


def caller_of_current_event() -> Identity:
    return identify_request(current_request())


def _decide(members_only: bool) -> tuple[Identity, Optional[str]]:
    """(caller, None) when the call may go on; (caller, message) when it is refused."""
    try:
        ident = caller_of_current_event()
    except AccessDenied as exc:  # a token the Hub rejected: refused, never taken for anonymous
        return Identity(), str(exc)
    if members_only and on_space() and not is_member(ident):
        return ident, member_only_message(ident)
    return ident, None


def _refuse(message: str, api: bool) -> Any:
    if api:
        raise gr.Error(message, print_exception=False)
    return gr.skip()  # a UI event: no update, no error toast on the visitor's welcome page


def _steps(stream: Iterator[Any], ident: Identity, name: str) -> Iterator[Any]:
    """Run a streaming event step by step with the caller set (each step may run in another worker thread)."""
    while True:
        token = set_caller(ident)
        try:
            item = next(stream)
        except StopIteration:
            return
        except Exception as exc:
            raise to_client_error(exc, name) from None
        finally:
            reset_caller(token)
        yield item


def _wrap(fn: Callable, members_only: bool, api: bool) -> Callable:
    """Decide before the call, then run it with the caller known to the layers below (access.current_caller)."""
    if inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn):  # none today; refuse to guess
        raise TypeError(f"{fn.__name__}: async event functions need an async gate")
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gated_stream(*args: Any, **kwargs: Any) -> Any:
            ident, refusal = _decide(members_only)
            if refusal:
                yield _refuse(refusal, api or not members_only)
                return
            yield from _steps(fn(*args, **kwargs), ident, fn.__name__)
        wrapper: Callable = gated_stream
    else:
        @functools.wraps(fn)
        def gated(*args: Any, **kwargs: Any) -> Any:
            ident, refusal = _decide(members_only)
            if refusal:
                return _refuse(refusal, api or not members_only)
            token = set_caller(ident)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                raise to_client_error(exc, fn.__name__) from None
            finally:
                reset_caller(token)
        wrapper = gated
    setattr(wrapper, _GATED, True)
    return wrapper


def _is_public(fn: Callable) -> bool:
    # The sign-in button's own status check (a method of gr.LoginButton) must work for visitors: it is how
    # they become members.
    return getattr(fn, _PUBLIC, False) or isinstance(getattr(fn, "__self__", None), gr.LoginButton)


def install_gate(demo: gr.Blocks) -> int:
    """Wrap every event function of `demo`; those not marked public become members-only. Returns how many."""
    members_only = 0
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or getattr(fn, _GATED, False):
            continue
        restricted = not _is_public(fn)
        block_fn.fn = _wrap(fn, members_only=restricted, api=block_fn.api_visibility != "private")
        members_only += restricted
    return members_only
