"""A public Space attacked by its visitors: every endpoint, as an anonymous caller, a signed-in stranger, with
forged headers, path tricks, oversized uploads and absurd inputs. Each attack is a real call (gradio_client or raw
HTTP) against the app started as a Space on loopback; each asserts the refusal message AND that nothing changed
(job rows, files in the data dir, training processes) AND that the Hub saw nothing but identity checks.
The module ends by printing "N attacks refused of N".
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402
from spacehelpers import (FORGED_TOKEN, MEMBER, OWNER, SECRETS, STRANGER, TOKEN_OF, TOKENS,  # noqa: E402
                          client_as, refusal_of, start_space, store_state, train_owner_jobs)

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

SIGN_IN = "duplicate this Space"          # every members-only refusal says how to get access
REJECTED = "token was rejected"
RESULTS: dict[str, bool] = {}
MESSAGES: list[str] = []
# whoami checks a token; agent-harnesses is huggingface_hub's own user-agent registry (fetched once a day)
HUB_PATHS_ALLOWED = ("/api/whoami", "/api/agent-harnesses")
QUICK = ("model: {base_model: tiny-demo}\ndata: {chat_template: chatml, max_rows: 8}\nlengths: {block_size: 64}\n"
         "training: {max_steps: 1, batch_size: 1, save_strategy: 'no', eval_strategy: 'no'}\n")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, real_data: Path):
    work = tmp_path_factory.mktemp("space")
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
    print(f"\n{refused} attacks refused of {len(RESULTS)}")


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


# ---- every endpoint, as an anonymous visitor and as a signed-in stranger ------------------------------------
def endpoint_calls(space: dict) -> dict[str, Callable[[Any], Any]]:
    from gradio_client import handle_file

    job = space["private"]
    data = str(space["work"] / "secret-rows.jsonl")
    spec_on_owner_events = QUICK.replace("chatml,", f"chatml, path: {space['data'] / 'jobs' / job / 'events.jsonl'},")
    return {
        "list_jobs": lambda c: c.predict(10, api_name="/list_jobs"),
        "job_status": lambda c: c.predict(job, True, api_name="/job_status"),
        "job_events": lambda c: _stream(c.submit(job, 0.5, api_name="/job_events")),
        "job_logs": lambda c: c.predict(job, 50, api_name="/job_logs"),
        "stop_job": lambda c: c.predict(job, api_name="/stop_job"),
        "resume_job": lambda c: c.predict(job, api_name="/resume_job"),
        "continue_job": lambda c: c.predict(space["public"], 1.0, api_name="/continue_job"),
        "push_job": lambda c: c.predict(space["public"], "x/y", False, api_name="/push_job"),
        "evaluate": lambda c: c.predict(space["public"], 5, 8, api_name="/evaluate"),
        "chat_private_adapter": lambda c: _stream(c.submit(job, "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")),
        "compare_private_adapter": lambda c: c.predict(job, "hi", "", 0.0, 4, api_name="/compare"),
        "validate_upload": lambda c: c.predict(QUICK, handle_file(data), api_name="/validate_dataset"),
        "report_on_owner_events": lambda c: c.predict(spec_on_owner_events, None, api_name="/dataset_report"),
        "start_training": lambda c: c.predict(QUICK, handle_file(data), api_name="/start_training"),
    }


ENDPOINTS = ["list_jobs", "job_status", "job_events", "job_logs", "stop_job", "resume_job", "continue_job",
             "push_job", "evaluate", "chat_private_adapter", "compare_private_adapter", "validate_upload",
             "report_on_owner_events", "start_training"]


@pytest.mark.parametrize("who", ["anonymous", "stranger"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_visitors_are_refused_everywhere(space: dict, who: str, endpoint: str) -> None:
    call = endpoint_calls(space)[endpoint]
    expect = "not part of the Space's public demo" if endpoint.endswith("private_adapter") else SIGN_IN
    attack(space, f"{who}: {endpoint}", lambda: call(space[who]), expect)


# ---- forged and malformed credentials ------------------------------------------------------------------------
@pytest.mark.parametrize("name, headers, expect", [
    ("forged x-hf-authorization", {"x-hf-authorization": f"Bearer {FORGED_TOKEN}"}, REJECTED),
    ("forged authorization", {"authorization": f"Bearer {FORGED_TOKEN}"}, REJECTED),
    ("owner's name as token", {"x-hf-authorization": f"Bearer {OWNER}"}, REJECTED),
    ("token without Bearer", {"x-hf-authorization": TOKEN_OF[OWNER]}, SIGN_IN),
    ("bearer without a token", {"x-hf-authorization": "Bearer"}, SIGN_IN),
])
def test_forged_headers_are_refused(space: dict, name: str, headers: dict, expect: str) -> None:
    client = client_as(space["app"].url, headers=headers)
    attack(space, name, lambda: client.predict(space["private"], 50, api_name="/job_logs"), expect)


# ---- paths: a member may not reach other people's files, nobody reaches the store over HTTP ------------------
def _spec_with(**data: str) -> str:
    extra = ", ".join(f"{k}: '{v}'" for k, v in data.items())
    return QUICK.replace("chatml,", f"chatml, {extra},")


def test_member_cannot_name_files_outside_their_uploads(space: dict) -> None:
    member, data = space["member"], space["data"]
    events = data / "jobs" / space["private"] / "events.jsonl"
    link_dir = data / "uploads" / MEMBER / "feedfacefeedface"
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "innocent.jsonl").symlink_to(space["owner_upload"])
    cases = {
        "member: relative ../ into a job": _spec_with(path="../jobs/" + space["private"] + "/events.jsonl"),
        "member: absolute path to a job file": _spec_with(path=str(events)),
        "member: another user's upload": _spec_with(path=str(space["owner_upload"])),
        "member: symlink in own uploads to the owner's upload": _spec_with(path=str(link_dir / "innocent.jsonl")),
        "member: /etc/passwd": _spec_with(path="/etc/passwd"),
        "member: valid_split outside": _spec_with(path="examples/capitals.jsonl", valid_split=str(events)),
    }
    for name, spec in cases.items():
        attack(space, name, lambda s=spec: _unwrap(member.predict(s, None, api_name="/dataset_report")),
               "outside")
    encoded = _spec_with(path=str(data / "uploads" / MEMBER / "%2e%2e" / "%2e%2e" / "jobs.db"))
    attack(space, "member: URL-encoded ../ (taken literally)",  # no decoding: a name, and no such file
           lambda: _unwrap(member.predict(encoded, None, api_name="/dataset_report")), "not found")
    owner_adapter = data / "jobs" / space["public"] / "adapter"
    examples = _spec_with(path="examples/capitals.jsonl")
    spec = examples.replace("{base_model: tiny-demo}", "{base_model: '" + str(owner_adapter) + "'}")
    attack(space, "member: base model from another job's folder",
           lambda: _unwrap(member.predict(spec, None, api_name="/dataset_report")), "outside")
    spec = examples.replace("training: {", "training: {accelerate_config: /etc/passwd, ")
    attack(space, "member: accelerate_config=/etc/passwd",
           lambda: _unwrap(member.predict(spec, None, api_name="/start_training")), "outside")
    for target in ("/etc/passwd", "app.py", str(Path(__file__).resolve())):  # code that would run on the server
        spec = examples.replace("training: {", "training: {trainer: grpo, gradient_accumulation: 2, ") + \
            "grpo: {num_generations: 2, max_completion_length: 8, rewards: [{type: python, file: '" + target + "'}]}\n"
        attack(space, f"member: python reward file={target}",
               lambda s=spec: _unwrap(member.predict(s, None, api_name="/start_training")), "outside")


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


@pytest.mark.parametrize("target", ["events", "jobs.db", "adapter", "upload", "etc-passwd", "dotdot"])
def test_gradio_file_route_serves_nothing_of_the_store(space: dict, target: str) -> None:
    data = space["data"]
    path = {"events": data / "jobs" / space["private"] / "events.jsonl", "jobs.db": data / "jobs.db",
            "adapter": data / "jobs" / space["public"] / "adapter" / "adapter_config.json",
            "upload": space["owner_upload"], "etc-passwd": Path("/etc/passwd"),
            "dotdot": f"{data}/../../../etc/passwd"}[target]
    url = space["app"].url + "gradio_api/file=" + urllib.parse.quote(str(path))
    attack(space, f"file route: {target}", lambda: _http_get(url), "HTTP 4")


def _rest_get(url: str, token: Optional[str] = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code}: {json.loads(exc.read()).get('error')}") from None


@pytest.mark.parametrize("who, token, expect", [
    ("anonymous", None, "HTTP 403: Sign in with Hugging Face"), ("stranger", TOKEN_OF[STRANGER], "HTTP 403"),
    ("forged", FORGED_TOKEN, f"HTTP 401: the Hugging Face {REJECTED}")])
@pytest.mark.parametrize("route", ["jobs", "job"])
def test_plain_get_routes_refuse_visitors(space: dict, who: str, token: Optional[str], expect: str,
                                          route: str) -> None:
    """The pollers' GET routes (ui/rest.py) follow the same access rule as the Gradio endpoints."""
    url = space["app"].url + ("api/v1/jobs" if route == "jobs" else f"api/v1/jobs/{space['private']}?series=1")
    message = attack(space, f"{who}: GET {route}", lambda: _rest_get(url, token), expect)
    assert who == "forged" or SIGN_IN.lower() in message.lower()


def test_plain_get_routes_answer_members_like_job_status(space: dict) -> None:
    base, job = space["app"].url + "api/v1/jobs", space["public"]
    rows = _rest_get(base + "?limit=5", TOKEN_OF[MEMBER])
    assert {space["public"], space["private"]} <= {r["id"] for r in rows}
    status = _rest_get(f"{base}/{job}?series=1", TOKEN_OF[OWNER])
    assert status == space["owner"].predict(job, True, api_name="/job_status")
    assert status["status"] == "succeeded" and status["progress"]["loss_series"]
    assert TOKEN_OF[OWNER] not in json.dumps(status)
    with pytest.raises(ValueError, match="HTTP 404: no job 'nope'; GET /api/v1/jobs lists the job ids"):
        _rest_get(f"{base}/nope", TOKEN_OF[OWNER])


def test_a_raw_path_in_place_of_an_upload_is_refused(space: dict) -> None:
    """FileData naming a server file instead of an uploaded one (what gradio_client would never send)."""
    body = {"data": [QUICK, {"path": str(space["owner_upload"]), "meta": {"_type": "gradio.FileData"}}]}
    url = space["app"].url + "gradio_api/call/validate_dataset"

    def call() -> Any:
        req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json",
                                     "x-hf-authorization": f"Bearer {TOKEN_OF[MEMBER]}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            event = json.loads(resp.read())["event_id"]
        out = _http_get(f"{url}/{event}")
        if "event: error" in out and "owner secret" not in out:
            raise ValueError(out[-300:])
        return out
    attack(space, "member: FileData naming the owner's upload", call, "event: error")


def test_oversized_upload_is_refused(space: dict) -> None:
    from gradio_client import handle_file

    big = space["work"] / "big.jsonl"
    big.write_text('{"text": "' + "x" * (2 * 1024 * 1024) + '"}\n')
    attack(space, "owner: upload over the size limit",
           lambda: space["owner"].predict(QUICK, handle_file(str(big)), api_name="/validate_dataset"), "exceeds the maximum file size")


# ---- absurd input, even from members ------------------------------------------------------------------------
def test_absurd_input_is_refused(space: dict) -> None:
    owner, job = space["owner"], space["public"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    attack(space, "owner: YAML alias bomb", lambda: _unwrap(owner.predict(bomb, None, api_name="/dataset_report")),
           "aliases")
    huge = QUICK + "# " + "x" * 300_000 + "\n"
    attack(space, "owner: 300 KB spec", lambda: _unwrap(owner.predict(huge, None, api_name="/dataset_report")),
           "at most")
    attack(space, "owner: max_new_tokens=10**9",
           lambda: _stream(owner.submit(job, "hi", [], "", 0.0, 0.9, 10**9, 1.0, api_name="/chat")), "max_new_tokens")
    attack(space, "owner: tail=10**9", lambda: owner.predict(job, 10**9, api_name="/job_logs"), "tail")
    attack(space, "owner: limit=-5", lambda: owner.predict(-5, api_name="/list_jobs"), "limit")
    attack(space, "owner: interval=0", lambda: _stream(owner.submit(job, 0, api_name="/job_events")), "interval")
    attack(space, "owner: negative block size", lambda: _unwrap(owner.predict(
        QUICK.replace("block_size: 64", "block_size: -64"), None, api_name="/dataset_report")), "block_size")


# ---- the public demo: a visitor may chat with what the owner shared, within caps, and nothing else ----------
def test_public_demo_within_caps(space: dict) -> None:
    visitor, public = space["anonymous"], space["public"]
    answer = ""
    for answer in visitor.submit(public, "Hello", [], "", 0.0, 0.9, 8, 1.0, api_name="/chat"):
        pass
    assert isinstance(answer, str)
    both = visitor.predict(public, "Hello", "", 0.0, 8, api_name="/compare")
    assert set(both) == {"base", "fine_tuned"} and "/" not in json.dumps(list(both))
    attack(space, "visitor: demo over max_new_tokens",
           lambda: visitor.predict(public, "Hello", "", 0.0, 9, api_name="/compare"), "max_new_tokens")
    attack(space, "visitor: demo prompt over the length cap",
           lambda: visitor.predict(public, "x" * 5000, "", 0.0, 8, api_name="/compare"), "characters")
    attack(space, "visitor: evaluate the demo adapter",
           lambda: visitor.predict(public, 5, 8, api_name="/evaluate"), SIGN_IN)
    attack(space, "visitor: logs of the demo job", lambda: visitor.predict(public, 50, api_name="/job_logs"), SIGN_IN)
    # 2 calls above succeeded, 2 were refused before counting: the cap (4 a minute) is reached within 3 more
    refusals = []
    for _ in range(3):
        try:
            visitor.predict(public, "Hi", "", 0.0, 4, api_name="/compare")
        except Exception as exc:  # noqa: BLE001
            refusals.append(str(exc))
    assert refusals and "a minute" in refusals[-1], refusals
    RESULTS["visitor: demo over its rate limit"] = True


def test_a_ui_event_called_by_index_returns_nothing_to_a_visitor(space: dict) -> None:
    """UI events are callable by fn_index over raw HTTP; for a visitor they return no update."""
    config = json.loads(_http_get(space["app"].url + "config"))
    assert space["private"] not in json.dumps(config) and "owner-private" not in json.dumps(config)
    refresh = next(d for d in config["dependencies"] if d.get("api_visibility") == "private"
                   and d["targets"] and d["targets"][0][1] == "load" and len(d["outputs"]) > 3)

    def call() -> Any:
        url = space["app"].url + "gradio_api/queue/join"
        body = {"data": [None] * len(refresh["inputs"]), "fn_index": refresh["id"], "session_hash": "visitor1",
                "event_data": None, "trigger_id": None}
        req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        stream = _http_get(space["app"].url + "gradio_api/queue/data?session_hash=visitor1")
        if space["private"] in stream or "owner-public" in stream:
            return stream
        raise ValueError("no data: " + stream[-200:])
    attack(space, "anonymous: UI jobs-table refresh by fn_index", call, "no data")


def test_the_owner_still_has_everything(space: dict) -> None:
    owner = space["owner"]
    jobs = owner.predict(10, api_name="/list_jobs")
    assert {space["public"], space["private"]} <= {j["id"] for j in jobs}
    assert "finished at step 2" in owner.predict(space["public"], 50, api_name="/job_logs")
    assert TOKEN_OF[OWNER] not in json.dumps(owner.predict(space["public"], True, api_name="/job_status"))


def test_a_visitor_in_the_browser_sees_the_welcome_page_only(space: dict) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is missing: apt-get install chromium (make test does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(space["app"].url)
        page.wait_for_selector("#welcome", state="visible", timeout=30_000)
        page.wait_for_timeout(2_000)  # the load events have run (a refused one would show an error toast)
        text = page.inner_text("body")
        browser.close()
    assert "Sign in with Hugging Face" in text and "Duplicate this Space" in text
    assert "Error" not in text, "a refused event showed an error toast on the welcome page"
    for secret in (space["public"], space["private"], "owner-public", "owner-private"):
        if secret != space["public"]:  # the public demo's id is listed on purpose
            assert secret not in text
    assert "Train" not in [t.strip() for t in text.splitlines()], "the owner's workspace tabs are visible"


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
            0.0, 0.9, 4, 1.0]
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
    compare = ["∑" * 1000, "∑" * 900, 0.0, 4]  # 1904 characters: within the raw cap, ~3000 tokens
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


def _browser_session(token: str, expires_at: float) -> dict[str, str]:
    """The session cookie Gradio's OAuth callback sets (signed with the Space's OAUTH_CLIENT_SECRET)."""
    import base64
    import hashlib

    import itsdangerous

    secret = hashlib.sha256((SECRETS["OAUTH_CLIENT_SECRET"] + "-v4").encode()).hexdigest()  # attach_oauth's key
    info = {"oauth_info": {"access_token": token, "expires_at": int(expires_at), "userinfo": {}}}
    signed = itsdangerous.TimestampSigner(secret).sign(base64.b64encode(json.dumps(info).encode()))
    return {"cookie": "session=" + signed.decode()}


def test_a_member_signed_in_in_the_browser_uploads_and_downloads(space: dict) -> None:
    """The HTTP gate runs inside Gradio's SessionMiddleware: the browser's OAuth session identifies the caller."""
    import time

    import httpx

    url, content = space["app"].url, b'{"instruction": "from the browser", "output": "ok"}\n'
    cookie = _browser_session(TOKEN_OF[MEMBER], time.time() + 3600)
    resp = httpx.post(url + "gradio_api/upload", files=[("files", ("browser.jsonl", content))], headers=cookie)
    assert resp.status_code == 200, resp.text
    route = _file_route(resp.json()[0])
    assert httpx.get(url + route, headers=cookie).content == content
    attack(space, "owner: GET a browser member's upload", lambda: _raw_get(space, route, TOKEN_OF[OWNER]),
           "uploaded by another user")
    expired = _browser_session(TOKEN_OF[MEMBER], time.time() - 60)

    def upload_with_expired_session() -> Any:
        resp = httpx.post(url + "gradio_api/upload", files=[("files", ("late.jsonl", content))], headers=expired)
        if resp.status_code != 200:
            raise ValueError(f"HTTP {resp.status_code}: {resp.text}")
        return resp.json()
    before = _gradio_files(space)
    attack(space, "expired browser session: upload", upload_with_expired_session, "HTTP 403: {\"error\": \"Sign in")
    assert _gradio_files(space) == before


# ---- issue 25: a member is not the owner — no server secret, no owner's Hub identity, nobody else's file --------
# The Space runs with the owner's HF_TOKEN, a distinctive OAuth client secret and an API key set (spacehelpers
# SECRETS). Every attack here is a member's (signed in, allowed to train), unless its name says otherwise.
@pytest.fixture(scope="module")
def hub_repos(space: dict, tiny_model_dir: Path) -> dict:
    """Private repos on the loopback Hub: the owner's base model and adapter, and the member's own base model."""
    from huggingface_hub import HfApi, constants

    owner = HfApi(endpoint=space["hub"].url, token=TOKEN_OF[OWNER])
    member = HfApi(endpoint=space["hub"].url, token=TOKEN_OF[MEMBER])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)  # this test process is offline (conftest); the loopback Hub
        for api, repo, folder in ((owner, f"{OWNER}/private-base", tiny_model_dir),
                                  (member, f"{MEMBER}/own-base", tiny_model_dir),
                                  (owner, f"{OWNER}/private-adapter",
                                   space["data"] / "jobs" / space["public"] / "adapter")):
            api.create_repo(repo, private=True, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=str(folder), ignore_patterns=["README.md"])  # a local base
    return {"owner_base": f"{OWNER}/private-base", "member_base": f"{MEMBER}/own-base",
            "owner_adapter": f"{OWNER}/private-adapter"}


def _member_report(space: dict, spec: str) -> Callable[[], Any]:
    return lambda: _unwrap(space["member"].predict(spec, None, api_name="/dataset_report"))


def _hub_users_since(space: dict, mark: int) -> set[Optional[str]]:
    """Whose token the Hub requests since `mark` carried (None: anonymous); huggingface_hub's own anonymous
    fetch of its user-agent registry is not a request of ours."""
    return {user for _, path, user in space["hub"].state.acting_users[mark:]
            if not path.startswith("/api/agent-harnesses")}


def _on_base(base: str) -> str:
    return _spec_with(path="examples/capitals.jsonl").replace("{base_model: tiny-demo}", "{base_model: '" + base + "'}")


@pytest.mark.parametrize("name, spec", [
    ("a system prompt", QUICK.replace("chatml,", "chatml, system_prompt: 'say ${HF_TOKEN}',")),
    ("the data path", QUICK.replace("chatml,", "chatml, path: '${OAUTH_CLIENT_SECRET}',")),
    ("the default form", QUICK.replace("chatml,", "chatml, system_prompt: '${HF_TOKEN:-none}',")),
    ("hub.token", QUICK + "hub: {token: '${HF_TOKEN}'}\n"),
    ("a JSON spec", json.dumps({"model": {"base_model": "tiny-demo"},
                                "data": {"path": "examples/capitals.jsonl", "system_prompt": "${LORA_STUDIO_API_KEY}"}})),
])
def test_member_cannot_expand_server_variables(space: dict, name: str, spec: str) -> None:
    """${VAR} in a spec sent to the app is refused, naming the key; no endpoint expands it or echoes a value."""
    for endpoint in ("/dataset_report", "/validate_dataset", "/plan_job", "/start_training"):
        extra = (0, "") if endpoint == "/plan_job" else ()  # probe steps, hardware
        message = attack(space, f"member: ${{VAR}} in {name} via {endpoint}",
                         lambda e=endpoint, x=extra: _unwrap(space["member"].predict(spec, None, *x, api_name=e)),
                         "refers to an environment variable")
        assert not any(value in message for value in SECRETS.values())


def _dependency(space: dict, output_elem_id: str) -> dict:
    """The UI's own event that writes into the component with `output_elem_id` (the app's config)."""
    config = json.loads(_http_get(space["app"].url + "config"))
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == output_elem_id)
    return next(d for d in config["dependencies"] if d["outputs"] and d["outputs"][0] == target)


def _ui_event(space: dict, token: str, dependency: dict, data: list) -> str:
    """Run a UI event by fn_index as a signed-in client (what a hostile script can do); its SSE stream's text."""
    session = f"s{abs(hash((token, dependency['id'], json.dumps(data)))) % 10**9}"
    body = {"data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None,
            "trigger_id": None}
    auth = {"x-hf-authorization": f"Bearer {token}"}
    req = urllib.request.Request(space["app"].url + "gradio_api/queue/join", json.dumps(body).encode(),
                                 {"content-type": "application/json", **auth})
    urllib.request.urlopen(req, timeout=10).read()
    req = urllib.request.Request(space["app"].url + f"gradio_api/queue/data?session_hash={session}", headers=auth)
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read().decode(errors="replace")


def _refused_stream(stream: str) -> str:
    """A UI event's SSE stream: its error message is the refusal (raised); otherwise the stream is returned."""
    for line in stream.splitlines():
        if line.startswith("data: "):
            message = json.loads(line[6:])
            if message.get("msg") == "process_completed" and not message.get("success"):
                raise ValueError(str((message.get("output") or {}).get("error") or message)[:2000])
    return stream


def _filedata_call(space: dict, token: str, endpoint: str, data: list) -> Any:
    """A named endpoint called over raw HTTP with a FileData that names a file instead of uploading it."""
    url = space["app"].url + f"gradio_api/call/{endpoint}"
    req = urllib.request.Request(url, json.dumps({"data": data}).encode(),
                                 {"content-type": "application/json", "x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        event = json.loads(resp.read())["event_id"]
    req = urllib.request.Request(f"{url}/{event}", headers={"x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        out = resp.read().decode(errors="replace")
    if "event: error" in out:
        raise ValueError(out[-2000:])
    result = json.loads(out.split("data: ", 1)[1].splitlines()[0])[0]
    return _unwrap(result) if isinstance(result, dict) else result


def _upload_file_as(space: dict, token: str, path: Path) -> str:
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(space["app"].url + "gradio_api/upload", body,
                                 {"content-type": f"multipart/form-data; boundary={boundary}",
                                  "x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())[0]


def test_member_cannot_name_other_files_through_any_event(space: dict) -> None:
    """The preview event (the Hub-id box), the dataset file of /validate_dataset, Load config, and adapters all go
    through one confinement rule: the caller's own uploads, examples/, job folders for adapters, or a Hub id."""
    data, member = space["data"], space["member"]
    events = data / "jobs" / space["private"] / "events.jsonl"
    secret_rows = space["work"] / "owner-upload-secret.jsonl"
    secret_rows.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    owners_gradio_upload = _upload_file_as(space, TOKEN_OF[OWNER], secret_rows)  # in Gradio's folder, the owner's
    config_file = space["work"] / "owner-config.yaml"
    config_file.write_text(QUICK)
    owners_config = _upload_file_as(space, TOKEN_OF[OWNER], config_file)
    link_dir = data / "uploads" / MEMBER / "0badc0de0badc0de"
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "link.jsonl").symlink_to(space["owner_upload"])
    preview = _dependency(space, "detected-format")
    for name, path in {"owner's stored upload": str(space["owner_upload"]), "/etc/passwd": "/etc/passwd",
                       "a job's events": str(events), "examples/../ traversal": "examples/../../../../etc/passwd",
                       "owner's Gradio upload": owners_gradio_upload, "symlink to the owner's upload":
                       str(link_dir / "link.jsonl"), "the job database": str(data / "jobs.db")}.items():
        attack(space, f"member: dataset preview of {name}",
               lambda p=path: _ui_refusal(_ui_event(space, TOKEN_OF[MEMBER], preview, [None, None, p, "auto",
                                                                                         False])), "outside")
    as_file = {"path": owners_gradio_upload, "meta": {"_type": "gradio.FileData"}}
    attack(space, "member: the owner's Gradio upload as /validate_dataset's file",
           lambda: _filedata_call(space, TOKEN_OF[MEMBER], "validate_dataset", [QUICK, as_file]), "outside")
    config = json.loads(_http_get(space["app"].url + "config"))
    loader = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "load-config")
    load_dep = next(d for d in config["dependencies"] if d["targets"] and d["targets"][0] == [loader, "upload"])
    filedata = {"path": owners_config, "meta": {"_type": "gradio.FileData"}, "orig_name": "owner-config.yaml"}
    attack(space, "member: Load config with the owner's uploaded config",
           lambda: _refused_stream(_ui_event(space, TOKEN_OF[MEMBER], load_dep, [filedata])), "outside")
    for name, ref in {"the owner's upload folder": str(space["owner_upload"].parent),
                      "the data dir": str(data), "/etc": "/etc"}.items():
        attack(space, f"member: chat with an 'adapter' in {name}",
               lambda r=ref: _stream(member.submit(r, "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")), "outside")
    attack(space, "member: evaluate an 'adapter' in the owner's upload folder",
           lambda: member.predict(str(space["owner_upload"].parent), 5, 8, api_name="/evaluate"), "outside")
    # the owner's own upload is theirs to use
    assert _filedata_call(space, TOKEN_OF[OWNER], "validate_dataset", [QUICK, as_file])["ok"]


def test_member_reads_the_hub_as_themselves(space: dict, hub_repos: dict) -> None:
    """Base models and adapters are read with the caller's own token: the owner reads the owner's private repos,
    the member only their own, and no request a member causes carries the owner's identity."""
    owner, member = space["owner"], space["member"]
    mark = len(space["hub"].state.acting_users)
    assert _unwrap(owner.predict(_on_base(hub_repos["owner_base"]), None, api_name="/dataset_report"))["ok"]
    answer = owner.predict(hub_repos["owner_adapter"], "Hello", "", 0.0, 4, api_name="/compare")
    assert set(answer) == {"base", "fine_tuned"}
    assert _hub_users_since(space, mark) <= {OWNER, None}  # (transformers asks for some optional files anonymously)
    for name, call in {
        "report on the owner's private base model": _member_report(space, _on_base(hub_repos["owner_base"])),
        "chat with the owner's private Hub adapter": lambda: _stream(member.submit(
            hub_repos["owner_adapter"], "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")),
        "compare with the owner's private Hub adapter": lambda: member.predict(
            hub_repos["owner_adapter"], "hi", "", 0.0, 4, api_name="/compare"),
    }.items():
        mark = len(space["hub"].state.acting_users)
        attack(space, f"member: {name}", call, "private", hub_reads=True)  # the Hub's answer to the member's token
        assert _hub_users_since(space, mark) - {MEMBER} <= {None}, "a member's call used the owner's identity"
        assert MEMBER in _hub_users_since(space, mark)
    mark = len(space["hub"].state.acting_users)
    assert _unwrap(member.predict(_on_base(hub_repos["member_base"]), None, api_name="/dataset_report"))["ok"]
    assert MEMBER in _hub_users_since(space, mark) and OWNER not in _hub_users_since(space, mark)
    assert _hub_users_since(space, mark) <= {MEMBER, None}
    attack(space, "owner: report on the member's private base model (the owner's token cannot see it)",
           lambda: _unwrap(owner.predict(_on_base(hub_repos["member_base"]), None, api_name="/dataset_report")),
           "private", hub_reads=True)


def _wait_for(client: Any, job_id: str, timeout: float = 240) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, False, api_name="/job_status")
        if status["status"] in ("succeeded", "failed", "stopped", "trained_not_pushed", "interrupted"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def test_member_pushes_to_their_own_namespace_with_their_own_token(space: dict) -> None:
    """A member's job pushes with the member's token (never kept in a job file, forgotten at the end); a push into
    the owner's namespace is the Hub's 403 for the member, and nothing is created there."""
    import time

    from trainer_backend.jobs import tokens

    member, hub = space["member"], space["hub"]
    spec = _spec_with(path="examples/capitals.jsonl") + f"hub: {{push_to_hub: true, repo_id: {MEMBER}/member-adapter}}\n"
    mark = len(hub.state.acting_users)
    started = member.predict(spec, None, api_name="/start_training")
    assert started["job_id"] and started["status"] == "queued", started
    job = _wait_for(member, started["job_id"])
    assert job["status"] == "succeeded", job
    assert job["hub_identity"] == f"{MEMBER} (own token)" and job["owner"] == MEMBER
    repo = hub.state.repos[f"{MEMBER}/member-adapter"]
    assert repo.owner == MEMBER and repo.private
    writes = [(m, p, u) for m, p, u in hub.state.acting_users[mark:] if m == "POST"]
    assert writes and {u for _, _, u in writes} == {MEMBER}, writes
    for _ in range(50):  # the supervisor forgets the token right after it records the end
        if started["job_id"] not in tokens.held(space["data"]):
            break
        time.sleep(0.1)
    assert started["job_id"] not in tokens.held(space["data"]), "the job ended: its token must be forgotten"
    job_dir = space["data"] / "jobs" / started["job_id"]
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert TOKEN_OF[MEMBER].encode() not in path.read_bytes(), f"the member's token is in {path}"
    # into the owner's namespace: the Hub refuses the member's token; nothing is created there
    mark = len(hub.state.acting_users)
    out = member.predict(started["job_id"], f"{OWNER}/stolen", False, api_name="/push_job")
    assert out["status"] == "trained_not_pushed" and "403" in out["error"], out
    assert f"{OWNER}/stolen" not in hub.state.repos
    assert _hub_users_since(space, mark) <= {MEMBER}
    RESULTS["member: push into the owner's namespace"] = True
    out = member.predict(started["job_id"], f"{MEMBER}/member-adapter-2", False, api_name="/push_job")
    assert out["status"] == "succeeded" and hub.state.repos[f"{MEMBER}/member-adapter-2"].owner == MEMBER


@pytest.mark.parametrize("name, text, expect", [
    ("4 KB of nested flow brackets", "a: " + "[" * 4000 + "]" * 4000, "levels deep"),
    ("nested JSON objects", '{"a": ' * 3000 + "1" + "}" * 3000, "levels deep"),
    ("indentation 600 levels deep", "".join(" " * i + f"k{i}:\n" for i in range(600)) + " " * 600 + "v\n",
     "indented"),
    ("7 levels of 9 aliases (4.8 million values)", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(6)),
     "aliases are expanded"),
    ("256 KiB of tiny nodes", "a:\n" + "  - [1, 2, {b: c}]\n" * 13_000, "YAML nodes"),
])
def test_untrusted_yaml_is_bounded_before_parsing(space: dict, name: str, text: str, expect: str) -> None:
    """Refused with a message, never an internal error, and quickly (the old parser held a core for 18 s on 4 KB
    and then failed with a RecursionError)."""
    import time

    t0 = time.monotonic()
    attack(space, f"member: spec with {name}", _member_report(space, text), expect)
    assert time.monotonic() - t0 < 5, f"{name}: {time.monotonic() - t0:.1f} s"


def test_no_server_secret_reaches_a_client(space: dict) -> None:
    """Everything the app produced for clients — every refusal recorded above, a member's successful reports,
    plans, job views and logs, every file of the data dir and Gradio's folder, the app's own log — holds none of
    the server's secret values (HF_TOKEN, OAUTH_CLIENT_SECRET, an API key) nor a member's token."""
    member = space["member"]
    outputs = list(MESSAGES)
    outputs.append(member.predict(_spec_with(path="examples/capitals.jsonl"), None, api_name="/dataset_report"))
    outputs.append(member.predict(_spec_with(path="examples/capitals.jsonl"), None, 0, "", api_name="/plan_job"))
    outputs.append(member.predict(100, api_name="/list_jobs"))
    for job in member.predict(100, api_name="/list_jobs"):
        outputs.append(member.predict(job["id"], True, api_name="/job_status"))
        outputs.append(member.predict(job["id"], 500, api_name="/job_logs"))
    text = json.dumps(outputs, default=str)
    for name, value in {**SECRETS, "the member's token": TOKEN_OF[MEMBER]}.items():
        assert value not in text, f"{name} reached a client"
    from spacehelpers import gradio_temp_dir

    roots = [space["data"], gradio_temp_dir(space["data"]),
             space["app"].data_dir.parent / f"app-{space['app'].port}.log"]
    for root in roots:
        for path in ([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                blob = path.read_bytes()
                for name, value in {**SECRETS, "the member's token": TOKEN_OF[MEMBER]}.items():
                    assert value.encode() not in blob, f"{name} is in {path}"


# Every event the app serves that names a file, a folder or a Hub id, by the inputs it takes (the app's config).
# Each is attacked below as a member, by fn_index or by name, with other users' files, files outside the data
# dir and traversal; show_yaml / on_save only write the names into YAML text and open nothing.
PATH_INPUT_TYPES = ("file", "uploadbutton")
PATH_INPUT_LABELS = ("hub dataset id", "base model", "adapter", "spec (yaml or json)", "spec.yaml")
OPENS_NOTHING = {"show_yaml", "on_save"}


def _takes_a_path(config: dict, dependency: dict) -> bool:
    components = {c["id"]: c for c in config["components"]}
    inputs = [components[i] for i in dependency["inputs"]]
    return any(c["type"] in PATH_INPUT_TYPES or (c["type"] in ("textbox", "dropdown", "code") and any(
        w in str(c.get("props", {}).get("label", "")).lower() for w in PATH_INPUT_LABELS)) for c in inputs) \
        or dependency.get("api_name") in ("chat", "compare", "evaluate")


def _event_data(config: dict, dependency: dict, **by_label: Any) -> list:
    """The event's inputs at their defaults, with the ones whose label starts with a key of `by_label` replaced."""
    components = {c["id"]: c for c in config["components"]}
    data = []
    for i in dependency["inputs"]:
        props = components[i].get("props", {})
        label = str(props.get("label", "")).lower()
        value = next((v for k, v in by_label.items() if label.startswith(k.replace("_", " "))), props.get("value"))
        data.append(value)
    return data


def _ui_refusal(stream: str) -> str:
    """A UI event either fails (its error) or shows its refusal in the page ('... outside the app's upload ...')."""
    _refused_stream(stream)
    if "outside the app" in stream or "not found or is private" in stream:
        raise ValueError(stream[-1500:])
    return stream


def test_every_event_that_takes_a_path_refuses_other_peoples_files(space: dict) -> None:
    data = space["data"]
    config = json.loads(_http_get(space["app"].url + "config"))
    by_name = {d.get("api_name"): d for d in config["dependencies"]}
    path_events = {d["api_name"].rstrip("_0123456789") for d in config["dependencies"] if _takes_a_path(config, d)}
    secret_rows = space["work"] / "owner-upload-2.jsonl"
    secret_rows.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    other = {"path": _upload_file_as(space, TOKEN_OF[OWNER], secret_rows), "meta": {"_type": "gradio.FileData"}}
    outside = {"another user's upload": str(space["owner_upload"]), "/etc/passwd": "/etc/passwd",
               "traversal": "examples/../../../../../etc/passwd", "a job's events":
               str(data / "jobs" / space["private"] / "events.jsonl")}
    member_token = TOKEN_OF[MEMBER]
    attacked: set[str] = set()

    def ui(name: str, label: str, **inputs: Any) -> None:
        dep = by_name[name]
        attack(space, f"member: UI event {name}: {label}",
               lambda: _ui_refusal(_ui_event(space, member_token, dep, _event_data(config, dep, **inputs))),
               "outside the app")
        attacked.add(name)

    for label, path in outside.items():
        ui("on_dataset", label, **{"...or a hub dataset id": path})
        ui("on_model", label, base_model=path)
        spec = _spec_with(path=path)
        for name in ("on_report", "on_start", "on_plan"):
            ui(name, f"spec naming {label}", **{"spec.yaml": spec})
        if label != "a job's events":  # job folders are the members' shared adapters (the Jobs tab lists them)
            ui("respond", f"adapter {label}", adapter=path, message="hi")
            ui("run_eval", f"adapter {label}", adapter=path)
    ui("run_eval", "another user's upload as the evaluation data", adapter=space["public"], data_file=other)
    for name in ("on_report", "on_start", "on_plan"):
        ui(name, "another user's Gradio upload as the dataset", **{"spec.yaml": QUICK, "...or upload": other})
    owner_yaml = space["work"] / "owner-config-2.yaml"
    owner_yaml.write_text(QUICK)
    ui("on_load", "another user's uploaded config", load_config={
        "path": _upload_file_as(space, TOKEN_OF[OWNER], owner_yaml), "meta": {"_type": "gradio.FileData"}})
    for endpoint in ("plan_job", "validate_dataset", "dataset_report", "start_training"):
        extra = [0, ""] if endpoint == "plan_job" else []
        attack(space, f"member: {endpoint} with another user's Gradio upload",
               lambda e=endpoint, x=extra: _filedata_call(space, member_token, e, [QUICK, other, *x]), "outside")
        attacked.add(endpoint)
    for endpoint in ("chat", "compare", "evaluate"):
        attacked.add(endpoint)  # test_member_cannot_name_other_files_through_any_event: adapters outside jobs
    missing = path_events - attacked - OPENS_NOTHING
    assert not missing, f"events that take a path but are not attacked here: {sorted(missing)}"
    RESULTS["every event that takes a path is attacked"] = True
