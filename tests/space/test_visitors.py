"""A public Space attacked by its visitors: every endpoint as an anonymous caller and as a signed-in stranger,
forged credentials, path tricks, absurd input, and the public demo's limits (attacks.py: the Space, `attack`)."""
from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from .attacks import (QUICK, REJECTED, RESULTS, SIGN_IN, _http_get,
                     _spec_with, _stream, _unwrap, attack)
from apphelpers import QUICK as QUICK_TRAIN
from spacehelpers import (FORGED_TOKEN, MEMBER, OWNER, STRANGER, TOKEN_OF, client_as)

pytestmark = pytest.mark.slow  # starts the app as a Space (make test runs it)


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
        "job_updates": lambda c: c.predict(job, "", 1, api_name="/job_updates"),
        "stop_job": lambda c: c.predict(job, api_name="/stop_job"),
        "resume_job": lambda c: c.predict(job, api_name="/resume_job"),
        "continue_job": lambda c: c.predict(space["public"], 1.0, api_name="/continue_job"),
        "push_job": lambda c: c.predict(space["public"], "x/y", False, api_name="/push_job"),
        "export_job": lambda c: _stream(c.submit(space["public"], ["f16"], "auto", 2, 8, "", api_name="/export_job")),
        "export_status": lambda c: c.predict(space["public"], api_name="/export_status"),
        "evaluate": lambda c: c.predict(space["public"], 5, 8, api_name="/evaluate"),
        "chat_private_adapter": lambda c: _stream(c.submit(job, "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")),
        "compare_private_adapter": lambda c: c.predict(job, "hi", "", 0.0, 4, api_name="/compare"),
        "validate_upload": lambda c: c.predict(QUICK, handle_file(data), api_name="/validate_dataset"),
        "report_on_owner_events": lambda c: c.predict(spec_on_owner_events, None, api_name="/dataset_report"),
        "start_training": lambda c: c.predict(QUICK, handle_file(data), api_name="/start_training"),
        "start_sweep": lambda c: c.predict(QUICK + SWEEP, handle_file(data), api_name="/start_sweep"),
        "sweep_status": lambda c: c.predict(job, api_name="/sweep_status"),
        "promote_sweep": lambda c: c.predict(job, 0, api_name="/promote_sweep"),
    }


ENDPOINTS = ["list_jobs", "job_status", "job_events", "job_logs", "job_updates", "stop_job", "resume_job",
             "continue_job", "push_job", "export_job", "export_status", "evaluate", "chat_private_adapter",
             "compare_private_adapter", "validate_upload", "report_on_owner_events", "start_training", "start_sweep",
             "sweep_status", "promote_sweep"]
SWEEP = "sweep: {parameters: {lora.r: {choices: [4, 8]}}, trials: 2, pruner: none}\n"


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


# ---- who may train: last in the package, so the jobs it starts and stops are over before any other attack ----


@pytest.mark.parametrize("who, allowed", [("anonymous", False), ("stranger", False), ("owner", True),
                                          ("member", True)])
def test_on_a_space_only_the_owner_and_members_may_train(space: dict, who: str, allowed: bool) -> None:
    client = space[who]
    spec = QUICK_TRAIN.format(name="space-run", steps=1).replace("data: {", "data: {path: examples/capitals.jsonl, ")
    if allowed:
        result = client.predict(spec, None, api_name="/start_training")
        assert result["status"] == "queued" and TOKEN_OF[OWNER if who == "owner" else MEMBER] not in \
            json.dumps(result)
        client.predict(result["job_id"], api_name="/stop_job")
        deadline = time.monotonic() + 120  # the attacks compare training processes before and after
        while client.predict(result["job_id"], False, api_name="/job_status")["status"] not in \
                ("stopped", "succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
    else:
        with pytest.raises(Exception, match="Sign in|not a member"):
            client.predict(spec, None, api_name="/start_training")
        with pytest.raises(Exception, match="Sign in|not a member"):
            client.predict("nope", api_name="/stop_job")
        with pytest.raises(Exception, match="duplicate this Space"):  # visitors see nothing of the owner's
            client.predict(10, api_name="/list_jobs")
        return
    assert isinstance(client.predict(10, api_name="/list_jobs"), list), "members see the jobs"
