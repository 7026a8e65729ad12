"""The app started as a public Space on loopback, with an owner's jobs in its store, and the means to attack it.

Shared by every module of this package through its fixture `space` (conftest.py, package scope): one Space for
them all, stopped after the last of them. `attack` runs
one attack: it must be refused with the expected message and change nothing (job rows, files in the data dir,
training processes), and the Hub must see nothing but identity checks. The run ends by printing
"N attacks refused of N".
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from hub_server import HubServer
from spacehelpers import (MEMBER, OWNER, SECRETS, STRANGER, TOKEN_OF, TOKENS, client_as, refusal_of, start_space, store_state,
                          train_owner_jobs)

SIGN_IN = "duplicate this Space"          # every members-only refusal says how to get access
REJECTED = "token was rejected"
RESULTS: dict[str, bool] = {}
MESSAGES: list[str] = []
# whoami checks a token; agent-harnesses is huggingface_hub's own user-agent registry (fetched once a day)
HUB_PATHS_ALLOWED = ("/api/whoami", "/api/agent-harnesses")
QUICK = ("model: {base_model: tiny-demo}\ndata: {chat_template: chatml, max_rows: 8}\nlengths: {block_size: 64}\n"
         "training: {max_steps: 1, batch_size: 1, save_strategy: 'no', eval_strategy: 'no'}\n")


def _spec_with(**data: str) -> str:
    extra = ", ".join(f"{k}: '{v}'" for k, v in data.items())
    return QUICK.replace("chatml,", f"chatml, {extra},")


def _stream(job: Any) -> list:
    """All outputs of a streaming call; a refusal surfaces from result() (iteration alone swallows it)."""
    outputs = list(job)
    job.result()
    return outputs


def _unwrap(result: dict) -> dict:
    """Validation and start report refusals in their result ({ok: false} / status rejected): raise them."""
    if result.get("ok") is False or result.get("status") == "rejected":
        raise ValueError(" ".join(result.get("errors") or [result.get("error") or ""]))
    return result


def _http_get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code}") from None


def browser_session(token: str, expires_at: float) -> dict[str, str]:
    """The session cookie Gradio's OAuth callback sets (signed with the Space's OAUTH_CLIENT_SECRET)."""
    import base64
    import hashlib

    import itsdangerous

    secret = hashlib.sha256((SECRETS["OAUTH_CLIENT_SECRET"] + "-v4").encode()).hexdigest()  # attach_oauth's key
    info = {"oauth_info": {"access_token": token, "expires_at": int(expires_at), "userinfo": {}}}
    signed = itsdangerous.TimestampSigner(secret).sign(base64.b64encode(json.dumps(info).encode()))
    return {"cookie": "session=" + signed.decode()}


def upload_as(space: dict, token: str, path: Path) -> str:
    """Upload `path` to the Space's Gradio upload route as `token`'s owner; the stored path."""
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(space["app"].url + "gradio_api/upload", body,
                                 {"content-type": f"multipart/form-data; boundary={boundary}",
                                  "x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())[0]


def started_space(work: Path, tiny_model_dir: Path, real_data: Path) -> Iterator[dict]:
    """The Space and its clients (anonymous, stranger, member, owner), the loopback Hub and the owner's two jobs."""
    hub = HubServer(TOKENS).start()
    data_dir = work / "data"
    public_id, private_id = train_owner_jobs(data_dir, tiny_model_dir,
                                             real_data / "alpaca/self_instruct_seed_tasks.jsonl", work)
    owner_upload = data_dir / "uploads" / OWNER / "0123456789abcdef" / "owner-private.jsonl"
    owner_upload.parent.mkdir(parents=True)
    owner_upload.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    app = start_space(data_dir, hub.url, public_id)
    state = {"app": app, "hub": hub, "data": data_dir, "public": public_id, "private": private_id,
             "owner_upload": owner_upload, "work": work,
             "anonymous": client_as(app.url), "stranger": client_as(app.url, TOKEN_OF[STRANGER]),
             "member": client_as(app.url, TOKEN_OF[MEMBER]), "owner": client_as(app.url, TOKEN_OF[OWNER])}
    # The owner's first check builds the offline demo model, so later attacks find the store settled.
    report = state["owner"].predict(_spec_with(path="examples/capitals.jsonl"), None, api_name="/dataset_report")
    assert report["ok"], report
    yield state
    app.stop()
    hub.stop()
    refused = sum(RESULTS.values())
    mcp = [name for name in RESULTS if name.startswith("MCP ")]
    print(f"\n{refused} attacks refused of {len(RESULTS)} ({sum(RESULTS[n] for n in mcp)} of {len(mcp)} through MCP)")
    # test_no_server_secret_reaches_a_client scans the refusals recorded before it ran; this covers the rest
    leaked = [name for name, value in {**SECRETS, "the member's token": TOKEN_OF[MEMBER]}.items()
              if any(value in message for message in MESSAGES)]
    assert not leaked, f"a refusal carried a server secret: {leaked}"


def attack(space: dict, name: str, call: Callable[[], Any], expect: str, hub_reads: bool = False) -> str:
    """Run one attack: it must be refused with `expect` in the message, and change nothing. `hub_reads`: the attack
    asks the Space to read a Hub repo (the Hub, asked with the caller's own token, is what refuses it)."""
    before = store_state(space["data"])
    hub_requests = len(space["hub"].state.requests)
    RESULTS[name] = False
    message = refusal_of(call)
    MESSAGES.append(message)  # every refusal is searched for the server's secrets (test_no_server_secret_...)
    assert expect.lower() in message.lower(), f"{name}: unexpected refusal: {message}"
    after = store_state(space["data"])
    assert after.jobs == before.jobs, f"{name}: the job store changed"
    assert after.files == before.files, f"{name}: files changed: {set(after.files) ^ set(before.files)}"
    assert after.trainers == before.trainers, f"{name}: a training process started"
    assert "owner secret" not in message and "instruction" not in message, f"{name}: data leaked: {message}"
    for method, path, _ in space["hub"].state.requests[hub_requests:]:  # identity checks only: no model, no data
        assert path.startswith(HUB_PATHS_ALLOWED) or (hub_reads and method in ("GET", "HEAD")), \
            f"{name}: the Space called the Hub: {method} {path}"
    RESULTS[name] = True
    return message
