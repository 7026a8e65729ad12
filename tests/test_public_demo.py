"""The public demo's rules without an app: who a visitor is (client_address: which forwarding headers count), the
caps on what a visitor sends (messages, roles, raw size, the rendered prompt) and on how much runs at once."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from trainer_backend.access import AccessDenied
from trainer_backend.public_demo import (DemoCaps, DemoLimiter, check_demo_request, check_rendered_prompt,
                                         client_address, demo_messages, demo_turn, trusted_proxy_hops, visitor_key)

REAL = "203.0.113.7"      # the visitor's address, as the Spaces proxy saw it
SPACE_PROXY = "10.16.3.80"  # the peer an app on a Space sees: the proxy, on the Space's internal network


def request_as_served(peer: str, *forwarded_for: str) -> Any:
    """A gr.Request as the app gets it: the raw headers, after uvicorn's ProxyHeadersMiddleware (which trusts
    X-Forwarded-For from loopback by default) has had its say about request.client."""
    import gradio as gr
    from starlette.requests import Request
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    seen: dict = {}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "method": "POST", "path": "/", "client": (peer, 40000), "query_string": b"",
             "headers": [(b"x-forwarded-for", v.encode()) for v in forwarded_for]}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1,::1")(scope, None, None))  # type: ignore
    return gr.Request(Request(seen))


# ---- client_address: the entry N from the right ------------------------------------------------------------
def test_on_a_space_the_proxy_s_last_entry_is_the_visitor() -> None:
    assert client_address(request_as_served(SPACE_PROXY, REAL), hops=1) == REAL
    for fake in ("198.51.100.1", "1.1.1.1, 2.2.2.2", "unknown", "[::1]"):  # whatever the client wrote, on the left
        assert client_address(request_as_served(SPACE_PROXY, f"{fake}, {REAL}"), hops=1) == REAL


def test_in_the_loopback_test_uvicorn_rewrote_the_peer_but_the_rule_reads_the_header() -> None:
    served = request_as_served("127.0.0.1", f"198.51.100.9, {REAL}")
    assert served.client.host == REAL  # uvicorn trusts loopback: the peer is the header's last entry already
    assert client_address(served, hops=1) == REAL
    assert client_address(request_as_served("127.0.0.1"), hops=1) == "127.0.0.1"  # no header: the socket peer


def test_more_hops_and_header_lines() -> None:
    assert client_address(request_as_served("172.17.0.1", f"9.9.9.9, {REAL}, 192.0.2.1"), hops=2) == REAL
    # two X-Forwarded-For lines are one list, in order (what a proxy that adds a line instead of appending does)
    assert client_address(request_as_served(SPACE_PROXY, "9.9.9.9", REAL), hops=1) == REAL
    assert client_address(request_as_served("172.17.0.1", REAL), hops=3) == "172.17.0.1"  # fewer entries: the peer


def test_without_trusted_hops_no_header_is_believed() -> None:
    assert client_address(request_as_served("192.0.2.5", "198.51.100.1"), hops=0) == "192.0.2.5"
    # from loopback uvicorn took the header's address for the peer: every such request is one visitor
    rotating = {client_address(request_as_served("127.0.0.1", f"198.51.100.{i}"), hops=0) for i in range(5)}
    assert rotating == {"forwarded"}
    assert client_address(request_as_served("127.0.0.1"), hops=0) == "127.0.0.1"


def test_addresses_are_normalised() -> None:
    assert client_address(request_as_served(SPACE_PROXY, f"{REAL}:51234"), hops=1) == REAL
    v6 = {client_address(request_as_served(SPACE_PROXY, f"2001:db8:1:2::{i:x}"), hops=1) for i in range(1, 6)}
    assert v6 == {"2001:db8:1:2::/64"}, "one host's IPv6 block is one visitor"
    assert client_address(request_as_served(SPACE_PROXY, "[2001:db8::1]:443"), hops=1) == "2001:db8::/64"
    assert client_address(request_as_served(SPACE_PROXY, "::ffff:203.0.113.7"), hops=1) == REAL
    assert len(client_address(request_as_served(SPACE_PROXY, "x" * 5000), hops=1)) == 100
    assert client_address(None, hops=1) == "unknown"


def test_a_pickled_request_with_plain_dict_headers() -> None:
    from types import SimpleNamespace

    req = SimpleNamespace(headers={"x-forwarded-for": f"6.6.6.6, {REAL}"}, client=SimpleNamespace(host=SPACE_PROXY))
    assert client_address(req, hops=1) == REAL


def test_hops_default_by_place_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORA_STUDIO_TRUSTED_PROXY_HOPS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert trusted_proxy_hops() == 0
    monkeypatch.setenv("SPACE_ID", "owner/studio")
    assert trusted_proxy_hops() == 1
    for value, hops in (("2", 2), ("0", 0), ("-3", 0)):
        monkeypatch.setenv("LORA_STUDIO_TRUSTED_PROXY_HOPS", value)
        assert trusted_proxy_hops() == hops
    monkeypatch.setenv("LORA_STUDIO_TRUSTED_PROXY_HOPS", "lots")
    with pytest.warns(UserWarning, match="LORA_STUDIO_TRUSTED_PROXY_HOPS='lots'"):  # named, then the default
        assert trusted_proxy_hops() == 1
    monkeypatch.setenv("LORA_STUDIO_TRUSTED_PROXY_HOPS", "1")
    assert client_address(request_as_served(SPACE_PROXY, f"1.2.3.4, {REAL}")) == REAL  # hops from the env


def test_visitor_key_is_the_user_else_the_address() -> None:
    served = request_as_served(SPACE_PROXY, f"1.2.3.4, {REAL}")
    assert visitor_key("Mallory", served) == "user:mallory"
    assert visitor_key(None, served) == visitor_key(None, request_as_served(SPACE_PROXY, REAL)) != "user:mallory"


# ---- what a visitor may send --------------------------------------------------------------------------------
CAPS = DemoCaps(max_prompt_chars=200, max_messages=4, max_prompt_tokens=60)


def refusal(call: Any) -> str:
    with pytest.raises(AccessDenied) as info:
        call()
    return str(info.value)


def test_messages_are_counted_before_they_are_read() -> None:
    turn = {"role": "user", "content": "hi"}
    assert len(demo_messages([turn] * 3, "hi", "", CAPS)) == 4
    assert "at most 4 messages" in refusal(lambda: demo_messages([turn] * 3, "hi", "be brief", CAPS))
    assert "this one has 10001" in refusal(lambda: demo_messages([None] * 10_000, "hi", "", CAPS))


@pytest.mark.parametrize("item, shown", [
    ({"role": "tool", "content": "x"}, "role 'tool'"), ({"role": "function", "content": "x"}, "role 'function'"),
    ({"role": "r" * 100_000, "content": "x"}, "role 'rrrr"), ({"content": "x"}, "role None"),
    ({"role": ["user"], "content": "x"}, "role ['user']"), ({"role": "user", "content": ["x"]}, "content ['x']"),
    ({"role": "user", "content": {"type": "text"}}, "content {'type'"), ("user: hi", "'user: hi'"), (7, "7")])
def test_roles_and_contents(item: Any, shown: str) -> None:
    message = refusal(lambda: demo_messages([item], "hi", "", CAPS))
    assert "role system, user or assistant and text content; history message 1 has " + shown in message
    assert len(message) < 200, "a huge value is not echoed"


def test_other_shapes_are_refused_and_other_keys_dropped() -> None:
    assert "list of {role, content}" in refusal(lambda: demo_messages("hi", "hi", "", CAPS))
    assert "as text" in refusal(lambda: demo_messages([], ["hi"], "", CAPS))
    assert "as text" in refusal(lambda: demo_messages([], "hi", {"a": 1}, CAPS))
    kept = demo_messages([{"role": "assistant", "content": "a", "tool_calls": [{"x": "y" * 500}]}], "b", "", CAPS)
    assert kept == [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]


def test_raw_size_counts_roles_and_the_system_prompt() -> None:
    ok = demo_messages([], "x" * 196, "", CAPS)  # "user" + 196 = 200
    assert ok[-1]["content"] == "x" * 196
    assert "at most 200 characters" in refusal(lambda: demo_messages([], "x" * 197, "", CAPS))
    assert "this one has 201" in refusal(lambda: demo_messages([], "x" * 100, "s" * 97, CAPS))


def test_private_adapters_are_refused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_STUDIO_PUBLIC_ADAPTERS", "job-public")
    assert "not part of the Space's public demo" in refusal(
        lambda: check_demo_request("job-private", "job-private", CAPS, [{"role": "tool"}], "hi"))
    assert check_demo_request("x", "job-public", CAPS, [], "hi") == [{"role": "user", "content": "hi"}]


def test_caps_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"MAX_PROMPT_TOKENS": "300", "MAX_MESSAGES": "5", "MAX_CONCURRENT": "1",
                        "MAX_PROMPT_CHARS": "900", "REQUESTS_PER_MINUTE": "oops"}.items():
        monkeypatch.setenv(f"LORA_STUDIO_DEMO_{name}", value)
    with pytest.warns(UserWarning, match="LORA_STUDIO_DEMO_REQUESTS_PER_MINUTE='oops'"):
        caps = DemoCaps.from_env()
    assert (caps.max_prompt_tokens, caps.max_messages, caps.max_concurrent, caps.max_prompt_chars,
            caps.requests_per_minute) == (300, 5, 1, 900, DemoCaps.requests_per_minute)
    assert DemoCaps().max_messages == 16 and DemoCaps().max_concurrent == 2


# ---- the rendered prompt --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What prompt_tokens reads of an adapter: its config and tokenizer (the base's ChatML template)."""
    folder = tmp_path_factory.mktemp("adapter")
    for path in tiny_model_dir.iterdir():
        if "token" in path.name or "chat_template" in path.name:
            shutil.copy(path, folder / path.name)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    return folder


def test_the_rendered_prompt_is_what_the_model_gets(adapter_dir: Path) -> None:
    from transformers import AutoTokenizer

    from trainer_backend.inference import prompt_tokens

    tok = AutoTokenizer.from_pretrained(adapter_dir)
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "What is the capital of France?"}]
    rendered = tok.apply_chat_template([{"role": "system", "content": "Be brief."}] + messages,
                                       add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>system" in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert prompt_tokens(str(adapter_dir), messages, "Be brief.") == len(tok(rendered)["input_ids"])
    assert prompt_tokens(str(adapter_dir), messages) < prompt_tokens(str(adapter_dir), messages, "Be brief.")


def test_small_contents_can_still_render_over_the_token_cap(adapter_dir: Path) -> None:
    caps = DemoCaps(max_prompt_chars=2000, max_messages=16, max_prompt_tokens=200)
    history = [{"role": ("user", "assistant")[i % 2], "content": "§¶"} for i in range(14)]
    messages = demo_messages(history, "€", "", caps)  # 15 messages, ~100 characters: within the cheap caps
    message = refusal(lambda: check_rendered_prompt(str(adapter_dir), messages, "∑" * 40, caps))
    assert "at most 200 tokens as the model sees them (chat template included)" in message
    check_rendered_prompt(str(adapter_dir), messages[-1:], None, caps)  # a short one passes


# ---- how much at once -----------------------------------------------------------------------------------------
def test_limiter_per_visitor_global_and_per_minute() -> None:
    caps, limiter = DemoCaps(requests_per_minute=2, max_concurrent=2), DemoLimiter()
    with limiter.turn("address:a", caps):
        assert "one message at a time" in refusal(lambda: limiter.turn("address:a", caps).__enter__())
        with limiter.turn("address:b", caps):
            assert "at most 2 answers at once, for all visitors" in refusal(lambda: limiter.turn("address:c", caps).__enter__())
        with limiter.turn("address:c", caps):  # b's turn ended: room again
            pass
    with limiter.turn("address:a", caps):  # refusals above did not count: a has used 2 of 2
        pass
    assert "2 messages a minute" in refusal(lambda: limiter.turn("address:a", caps).__enter__())
    with limiter.turn("user:a", caps):  # a signed-in user is someone else than an address
        pass


def test_demo_turn_renders_within_the_turn(adapter_dir: Path) -> None:
    caps, limiter = DemoCaps(max_prompt_tokens=5, requests_per_minute=1), DemoLimiter()
    messages = [{"role": "user", "content": "Hello there"}]

    def over() -> None:
        with demo_turn(limiter, "address:v", caps, lambda: str(adapter_dir), messages, None):
            raise AssertionError("generated")
    assert "at most 5 tokens" in refusal(over)
    assert "1 messages a minute" in refusal(over), "rendering ran on the owner's hardware: it counts"
