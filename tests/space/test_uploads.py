"""A public Space attacked through Gradio's own HTTP routes (uploads, the file route, monitoring) and the public
demo's caps on what is rendered (attacks.py: the Space, `attack`)."""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from .attacks import (QUICK, REJECTED, SIGN_IN, _stream, attack, browser_session)
from spacehelpers import (FORGED_TOKEN, MEMBER, OWNER, STRANGER, TOKEN_OF, client_as)

pytestmark = pytest.mark.slow  # starts the app as a Space (make test runs it)


# ---- Gradio's own HTTP routes: uploads, the file route, monitoring (issue 25; ui/http_gate.py) ----------------
# Gradio answers these without any event function, so the gate (ui/gate.py) never sees them: on a Space the
# HTTP gate lets only members upload (within a quota, Content-Length first) and download, each member only their
# own uploads; monitoring is off for everyone.
def _gradio_files(space: dict) -> set[str]:
    from spacehelpers import gradio_temp_dir

    root = gradio_temp_dir(space["data"])
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _auth(token: Optional[str]) -> dict[str, str]:
    return {"x-hf-authorization": f"Bearer {token}"} if token else {}


def _raw_upload(space: dict, name: str, content: bytes, token: Optional[str] = None,
                chunked: bool = False) -> list[str]:
    """POST /gradio_api/upload as a browser or gradio_client would; `chunked`: no Content-Length."""
    import httpx

    url = space["app"].url + "gradio_api/upload"
    if chunked:
        boundary = "lorastudioboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        resp = httpx.post(url, content=iter([body]), timeout=30, headers={
            **_auth(token), "content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in resp.request.headers and resp.request.headers["transfer-encoding"] == "chunked"
    else:
        resp = httpx.post(url, files=[("files", (name, content))], headers=_auth(token), timeout=30)
    if resp.status_code != 200:
        raise ValueError(f"HTTP {resp.status_code}: {resp.text}")
    return resp.json()


def _raw_get(space: dict, route: str, token: Optional[str] = None) -> bytes:
    import httpx

    resp = httpx.get(space["app"].url + route, headers=_auth(token), timeout=30, follow_redirects=False)
    if resp.status_code != 200:
        raise ValueError(f"HTTP {resp.status_code}: {resp.text}")
    return resp.content


def _file_route(path: str) -> str:
    return "gradio_api/file=" + urllib.parse.quote(path)


@pytest.mark.parametrize("who, token, expect", [
    ("anonymous", None, "Sign in with Hugging Face"), ("stranger", TOKEN_OF[STRANGER], "Signed in as mallory"),
    ("forged token", FORGED_TOKEN, f"the Hugging Face {REJECTED}")])
def test_visitors_cannot_upload(space: dict, who: str, token: Optional[str], expect: str) -> None:
    """Raw POST /gradio_api/upload: refused before the body is read, and nothing lands in GRADIO_TEMP_DIR."""
    before = _gradio_files(space)
    message = attack(space, f"{who}: raw upload", lambda: _raw_upload(space, "x.jsonl", b'{"a": 1}\n' * 500, token),
                     expect)
    assert message.startswith("HTTP 401" if token == FORGED_TOKEN else "HTTP 403"), message
    assert token == FORGED_TOKEN or SIGN_IN.lower() in message.lower()
    assert _gradio_files(space) == before, "a refused upload stored a file"


@pytest.mark.parametrize("route", ["gradio_api/upload_progress?upload_id=abc", "gradio_api/process_recording"])
def test_other_upload_routes_refuse_visitors(space: dict, route: str) -> None:
    import httpx

    def call() -> Any:
        if "progress" in route:
            return _raw_get(space, route)
        resp = httpx.post(space["app"].url + route, files=[("video", ("v.mp4", b"0" * 1000))], timeout=30)
        if resp.status_code != 200:
            raise ValueError(f"HTTP {resp.status_code}: {resp.text}")
        return resp.content
    message = attack(space, f"anonymous: {route.split('?')[0]}", call, "Sign in with Hugging Face")
    assert message.startswith("HTTP 403"), message


def test_an_upload_without_content_length_is_refused(space: dict) -> None:
    before = _gradio_files(space)
    attack(space, "member: upload without Content-Length (chunked)",
           lambda: _raw_upload(space, "x.jsonl", b'{"a": 1}\n', TOKEN_OF[MEMBER], chunked=True), "HTTP 411")
    assert _gradio_files(space) == before


def test_an_upload_over_the_members_quota_is_refused(space: dict) -> None:
    """LORA_STUDIO_UPLOAD_QUOTA=256kb (spacehelpers.space_env); 300 KB is under the 1 MB per-file limit."""
    from gradio_client import handle_file

    big = space["work"] / "over-quota.jsonl"
    big.write_text('{"text": "' + "y" * 300_000 + '"}\n')
    before = _gradio_files(space)
    message = attack(space, "member: upload over the per-user quota",
                     lambda: space["member"].predict(QUICK, handle_file(str(big)), api_name="/validate_dataset"),
                     "HTTP 413")
    assert "LORA_STUDIO_UPLOAD_QUOTA" in message and "256 KiB" in message, message
    assert _gradio_files(space) == before


def test_an_upload_is_served_to_its_uploader_only(space: dict) -> None:
    content = b'{"instruction": "carol private", "output": "carol answer"}\n'
    [path] = _raw_upload(space, "carol.jsonl", content, TOKEN_OF[MEMBER])
    route = _file_route(path)
    assert _raw_get(space, route, TOKEN_OF[MEMBER]) == content  # the uploader gets it back
    for who, token, expect in [("owner", TOKEN_OF[OWNER], "uploaded by another user"),
                               ("stranger", TOKEN_OF[STRANGER], "HTTP 403"), ("anonymous", None, "HTTP 403"),
                               ("forged token", FORGED_TOKEN, "HTTP 401")]:
        message = attack(space, f"{who}: GET another member's upload", lambda t=token: _raw_get(space, route, t),
                         expect)
        assert "carol" not in message, message
    # other spellings of the same file: Gradio's deprecated /file/ route, a path with a doubled slash
    for how, route in [("/file/", "gradio_api/file/" + urllib.parse.quote(path)),
                       ("a doubled slash", _file_route(path.replace("/gradio-tmp/", "/gradio-tmp//")))]:
        assert _raw_get(space, route, TOKEN_OF[MEMBER]) == content, how
        attack(space, f"owner: GET another member's upload via {how}", lambda r=route: _raw_get(space, r, TOKEN_OF[OWNER]),
               "uploaded by another user")


def test_a_members_upload_still_validates(space: dict) -> None:
    from gradio_client import handle_file

    result = space["member"].predict(QUICK, handle_file("examples/capitals.jsonl"), api_name="/validate_dataset")
    assert result["ok"], result


def test_the_welcome_page_files_are_served_to_visitors(space: dict) -> None:
    """The one file exception: what the public config names (the sign-in button's logo) loads for everyone."""
    def file_urls(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            for item in node:
                yield from file_urls(item)
        elif isinstance(node, str) and "/gradio_api/file=" in node:
            yield node[node.index("gradio_api/file="):]
    urls = sorted(set(file_urls(json.loads(_raw_get(space, "config")))))
    assert urls, "the config names no file (the sign-in button's logo is expected)"
    for url in urls:
        assert _raw_get(space, url), url


@pytest.mark.parametrize("who", ["anonymous", "owner"])
@pytest.mark.parametrize("route", ["monitoring/summary", "monitoring", "monitoring/not-the-key"])
def test_monitoring_is_off(space: dict, who: str, route: str) -> None:
    token = TOKEN_OF[OWNER] if who == "owner" else None
    attack(space, f"{who}: GET /{route}", lambda: _raw_get(space, route, token), "HTTP 403")


def test_upload_ledger_quota_total_and_age(tmp_path: Path) -> None:
    """The accounting behind the quota, in-process: per member, in flight, total cap, age-based clean-up."""
    from trainer_backend.ui.http_gate import UploadLedger, UploadLimits, parse_size

    assert parse_size("256kb") == 262144 and parse_size("2GB") == 2 * 1024**3 and parse_size("100") == 100
    ledger = UploadLedger(UploadLimits(per_user=1000, total=1500, max_age_s=3600))
    (tmp_path / "h1").mkdir()
    a = tmp_path / "h1" / "a.jsonl"
    a.write_bytes(b"x" * 600)
    assert ledger.admit("Carol", 700, now=0) is None       # reserved while in flight
    assert "each member may hold" in ledger.admit("carol", 400, now=0)
    ledger.record("carol", [str(a)], 700, now=0)
    ledger.release("carol", 700)
    assert ledger.usage("CAROL") == 600 and ledger.uploaders(str(a)) == {"carol"}
    assert ledger.admit("carol", 500, now=1) is not None   # 600 + 500 > 1000
    assert ledger.admit("owner", 800, now=1) is None       # another member's quota is their own...
    assert "this Space holds" in ledger.admit("bob", 200, now=1)  # ...but the total cap is shared
    ledger.release("owner", 800)
    assert ledger.sweep(now=3000) == [] and a.exists()
    assert ledger.sweep(now=3601) == [str(a.resolve())] and not a.exists() and not a.parent.exists()
    assert ledger.usage("carol") == 0 and ledger.uploaders(str(a)) is None
    assert ledger.admit("carol", 1000, now=3602) is None


# ---- the public demo's caps cover what is rendered, and a visitor cannot mint identities (issue 25) ----------
# Every call below comes as the Spaces proxy would hand it on: X-Forwarded-For ends with the address the proxy saw
# (a documentation address per test, so the tests do not spend each other's requests a minute); whatever the
# client wrote itself stands to its left.
def _demo_call(space: dict, endpoint: str, data: list, forwarded_for: str) -> Any:
    """A raw /gradio_api/call/<endpoint> with an X-Forwarded-For header; the output, or ValueError(the refusal)."""
    url = space["app"].url + f"gradio_api/call/{endpoint}"
    req = urllib.request.Request(url, json.dumps({"data": data}).encode(),
                                 {"content-type": "application/json", "x-forwarded-for": forwarded_for})
    with urllib.request.urlopen(req, timeout=30) as resp:
        event = json.loads(resp.read())["event_id"]
    with urllib.request.urlopen(f"{url}/{event}", timeout=300) as resp:
        stream = resp.read().decode()
    kind, payload = "", None
    for block in stream.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") in ("complete", "error"):
            kind, payload = lines["event"], json.loads(lines.get("data", "null"))
    if kind != "complete":
        raise ValueError(str(payload.get("error") if isinstance(payload, dict) else payload))
    return payload[0]


def _demo_chat(space: dict, client_at: str, history: Any = (), message: Any = "Hi", system: Any = "",
               claimed: str = "198.51.100.1") -> Any:
    """The public adapter's chat, 4 new tokens, from `client_at` (what the proxy appends) claiming `claimed`."""
    data = [space["public"], message, list(history) if isinstance(history, tuple) else history, system,
            0.0, 0.9, 4, 1.0, None]  # (raw HTTP sends every input: the last is tools, none for a visitor)
    return _demo_call(space, "chat", data, f"{claimed}, {client_at}")


def test_demo_history_is_capped_before_anything_is_rendered(space: dict) -> None:
    at = "203.0.113.40"
    chatter = [{"role": ("user", "assistant")[i % 2], "content": "hi"} for i in range(39)]
    attack(space, "visitor: 40 short messages (over the message cap)",
           lambda: _demo_chat(space, at, chatter), "at most 16 messages")
    via_client = client_as(space["app"].url, headers={"X-Forwarded-For": f"198.51.100.2, {at}"})
    attack(space, "visitor (gradio_client): 16 messages with a system prompt",
           lambda: _stream(via_client.submit(space["public"], "hi", chatter[:15], "be brief", 0.0, 0.9, 4, 1.0,
                                             api_name="/chat")), "this one has 17")
    message = attack(space, "visitor: a 200 000-character role name",
                     lambda: _demo_chat(space, at, [{"role": "user" + "x" * 200_000, "content": "hi"}]),
                     "role system, user or assistant")
    assert len(message) < 400, "the refusal does not echo the role back"
    for role in ("tool", "function", "ipython", "developer", "owner", "System"):
        attack(space, f"visitor: role {role!r}", lambda r=role: _demo_chat(space, at, [{"role": r, "content": "x"}]),
               f"history message 1 has role '{role}'")
    for name, history in {"content as parts": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                          "content missing": [{"role": "user"}], "a bare string": ["user: hi"],
                          "history as a string": "user: hi"}.items():
        attack(space, f"visitor: history with {name}", lambda h=history: _demo_chat(space, at, h),
               "the public demo takes")
    attack(space, "visitor: message as a list", lambda: _demo_chat(space, at, [], ["hi"] * 50), "as text")
    attack(space, "visitor: 2001 characters over roles and contents",
           lambda: _demo_chat(space, at, [{"role": "assistant", "content": "y" * 1000}], "x" * 988), "characters")
    assert _demo_chat(space, at, chatter[:14], "hi", "be brief")  # 16 within the caps: answered


def test_demo_rendered_prompt_is_capped_before_generation(space: dict) -> None:
    """Small contents (15 turns of 1-2 characters, a 600-character system prompt: ~720 characters, within every
    cheap cap) that render to ~2000 tokens: over the 1024-token default, refused before generating."""
    history = [{"role": ("user", "assistant")[i % 2], "content": "§¶"} for i in range(14)]
    attack(space, "visitor: small contents, rendered prompt over the token cap",
           lambda: _demo_chat(space, "203.0.113.41", history, "€", "∑" * 600), "tokens as the model sees them")
    compare = ["∑" * 1000, "∑" * 900, 0.0, 4, None]  # 1904 characters: within the raw cap, ~3000 tokens; no tools
    attack(space, "visitor: compare, rendered prompt over the token cap",
           lambda: _demo_call(space, "compare", [space["public"], *compare], "203.0.113.42"), "at most 1024 tokens")


def test_demo_rotating_forwarded_for_does_not_escape_the_rate_limit(space: dict) -> None:
    at = "203.0.113.50"
    for i in range(4):  # LORA_STUDIO_DEMO_REQUESTS_PER_MINUTE=4 (spacehelpers.space_env): each from a "new" client
        assert isinstance(_demo_chat(space, at, claimed=f"198.51.100.{10 + i}"), str)
    attack(space, "visitor: a fifth message claiming yet another X-Forwarded-For",
           lambda: _demo_chat(space, at, claimed="198.51.100.99"), "4 messages a minute")
    attack(space, "visitor: claiming a list of addresses", lambda: _demo_chat(
        space, at, claimed=", ".join(f"192.0.2.{i}" for i in range(50))), "a minute")
    # the claim is ignored, not taken for someone else: a client at .51 claiming .50's address has its own budget
    assert isinstance(_demo_chat(space, "203.0.113.51", claimed=at), str)


def test_demo_generations_at_once_are_capped_for_all_visitors(space: dict) -> None:
    """LORA_STUDIO_DEMO_MAX_CONCURRENT=1 (space_env). The owner's long answer holds the model; a visitor's chat
    takes the demo's one place and waits for it; a second visitor, from another address, is refused."""
    import time

    from gradio_client.utils import Status

    first = client_as(space["app"].url, headers={"X-Forwarded-For": "198.51.100.3, 203.0.113.60"})
    owner_job = space["owner"].submit(space["public"], "Hello", [], "", 0.0, 0.9, 500, 1.0, api_name="/chat")
    deadline = time.monotonic() + 60
    while not owner_job.outputs() and time.monotonic() < deadline:  # the owner's generation holds the model
        time.sleep(0.02)
    waiting = first.submit(space["public"], "Hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")
    while waiting.status().code != Status.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # past the cheap checks: the first visitor has its turn and waits for the model
    assert not owner_job.done(), "the owner's answer ended too soon to hold the model"
    attack(space, "visitor: a generation while the demo's one place is taken",
           lambda: _demo_chat(space, "203.0.113.61"), "at most 1 answers at once")
    owner_job.result()
    assert isinstance(waiting.result(), str), "the visitor holding the place was answered"
    assert isinstance(_demo_chat(space, "203.0.113.61"), str), "the place is free again"


def test_a_member_signed_in_in_the_browser_uploads_and_downloads(space: dict) -> None:
    """The HTTP gate runs inside Gradio's SessionMiddleware: the browser's OAuth session identifies the caller."""
    import time

    import httpx

    url, content = space["app"].url, b'{"instruction": "from the browser", "output": "ok"}\n'
    cookie = browser_session(TOKEN_OF[MEMBER], time.time() + 3600)
    resp = httpx.post(url + "gradio_api/upload", files=[("files", ("browser.jsonl", content))], headers=cookie)
    assert resp.status_code == 200, resp.text
    route = _file_route(resp.json()[0])
    assert httpx.get(url + route, headers=cookie).content == content
    attack(space, "owner: GET a browser member's upload", lambda: _raw_get(space, route, TOKEN_OF[OWNER]),
           "uploaded by another user")
    expired = browser_session(TOKEN_OF[MEMBER], time.time() - 60)

    def upload_with_expired_session() -> Any:
        resp = httpx.post(url + "gradio_api/upload", files=[("files", ("late.jsonl", content))], headers=expired)
        if resp.status_code != 200:
            raise ValueError(f"HTTP {resp.status_code}: {resp.text}")
        return resp.json()
    before = _gradio_files(space)
    attack(space, "expired browser session: upload", upload_with_expired_session, "HTTP 403: {\"error\": \"Sign in")
    assert _gradio_files(space) == before
