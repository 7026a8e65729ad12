"""The Space's MCP endpoint attacked (issue 32): every tool and resource as an anonymous caller and as a signed-in
stranger, forged tokens, a browser session replayed by a web page, other people's files, oversized arguments; the
public demo within its caps; a member's own token works end to end (attacks.py: the Space, `attack`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from .attacks import QUICK, REJECTED, RESULTS, SIGN_IN, _unwrap, attack, browser_session, upload_as
from spacehelpers import FORGED_TOKEN, MEMBER, OWNER, STRANGER, TOKEN_OF

sys.path.insert(0, str(Path(__file__).parents[1]))
from mcphelpers import McpCaller, http_refusal, raw_post  # noqa: E402

pytestmark = pytest.mark.slow  # starts the app as a Space (make test runs it)
NOT_IN_DEMO = "not part of the Space's public demo"


def _as(space: dict, who: str, **kwargs: Any) -> McpCaller:
    token = None if who == "anonymous" else TOKEN_OF[{"stranger": STRANGER, "member": MEMBER, "owner": OWNER}[who]]
    return McpCaller(space["app"].url, token, **kwargs)


def tool_calls(space: dict) -> dict[str, Callable[[McpCaller], Any]]:
    private, public = space["private"], space["public"]
    spec = QUICK.replace("chatml,", "chatml, path: examples/capitals.jsonl,")
    return {
        "list_jobs": lambda c: c.call("list_jobs", {"limit": 10}),
        "job_status": lambda c: c.call("job_status", {"job_id": private}),
        "job_updates": lambda c: c.call("job_updates", {"job_id": private, "wait": 1}),
        "job_logs": lambda c: c.call("job_logs", {"job_id": private}),
        "job_events": lambda c: c.call("job_events", {"job_id": private}),
        "validate_dataset": lambda c: c.call("validate_dataset", {"spec": spec}),
        "plan_job": lambda c: c.call("plan_job", {"spec": spec}),
        "start_training": lambda c: c.call("start_training", {"spec": spec}),
        "start_sweep": lambda c: c.call("start_sweep", {"spec": spec + "sweep: {parameters: {lora.r: {choices: "
                                                                      "[4, 8]}}, trials: 2, pruner: none}\n"}),
        "stop_job": lambda c: c.call("stop_job", {"job_id": private}),
        "resume_job": lambda c: c.call("resume_job", {"job_id": private}),
        "continue_job": lambda c: c.call("continue_job", {"job_id": public, "epochs": 1}),
        "push_job": lambda c: c.call("push_job", {"job_id": public, "repo_id": "x/y"}),
        "export_job": lambda c: c.call("export_job", {"job_id": public, "formats": ["f16"]}),
        "evaluate_job": lambda c: c.call("evaluate_job", {"job_id": public, "tasks": []}),
        "evaluate": lambda c: c.call("evaluate", {"adapter": public, "max_examples": 2}),
        "chat_private_adapter": lambda c: c.call("chat", {"adapter": private, "message": "hi", "max_new_tokens": 4}),
        "compare_private_adapter": lambda c: c.call("compare", {"adapter": private, "message": "hi",
                                                                "max_new_tokens": 4}),
        "read the jobs resource": lambda c: c.read("lora-studio://jobs"),
        "read a job's log resource": lambda c: c.read(f"lora-studio://jobs/{private}/log"),
        "read a job's updates resource": lambda c: c.read(f"lora-studio://jobs/{public}/updates"),
    }


CALLS = ["list_jobs", "job_status", "job_updates", "job_logs", "job_events", "validate_dataset", "plan_job",
         "start_training", "start_sweep", "stop_job", "resume_job", "continue_job", "push_job", "export_job",
         "evaluate_job", "evaluate", "chat_private_adapter", "compare_private_adapter", "read the jobs resource", "read a job's log resource",
         "read a job's updates resource"]


@pytest.mark.parametrize("who", ["anonymous", "stranger"])
@pytest.mark.parametrize("call", CALLS)
def test_visitors_are_refused_every_tool_and_resource(space: dict, who: str, call: str) -> None:
    caller = _as(space, who)
    expect = NOT_IN_DEMO if call.endswith("private_adapter") else SIGN_IN
    message = attack(space, f"MCP {who}: {call}", lambda: tool_calls(space)[call](caller), expect)
    if expect == SIGN_IN:  # an agent has no sign-in button: the refusal says how to send its token, if it sent none
        assert ("Authorization: Bearer hf_" in message) == (who == "anonymous"), message


def test_every_tool_is_attacked(space: dict) -> None:
    """A tool added to the API is a tool visitors must be refused: this list has to grow with it."""
    listed = {t.name for t in _as(space, "anonymous").tools()}
    covered = {c.replace("_private_adapter", "") for c in CALLS} | {
        "dataset_report", "promote_sweep", "sweep_status", "export_status", "evaluation_report"}
    assert listed <= covered, f"tools no visitor attack calls: {sorted(listed - covered)}"
    for name in ("dataset_report", "sweep_status", "promote_sweep", "export_status", "evaluation_report"):
        args = {"spec": QUICK} if name == "dataset_report" else {"job_id": space["private"]}
        attack(space, f"MCP stranger: {name}", lambda n=name, a=args: _as(space, "stranger").call(n, a), SIGN_IN)


@pytest.mark.parametrize("name, headers, expect", [
    ("forged authorization", {"authorization": f"Bearer {FORGED_TOKEN}"}, REJECTED),
    ("forged x-hf-authorization", {"x-hf-authorization": f"Bearer {FORGED_TOKEN}"}, REJECTED),
    ("token without Bearer", {"authorization": TOKEN_OF[MEMBER]}, SIGN_IN),
])
def test_forged_tokens_are_refused(space: dict, name: str, headers: dict, expect: str) -> None:
    caller = McpCaller(space["app"].url, headers=headers)
    attack(space, f"MCP {name}", lambda: caller.call("job_logs", {"job_id": space["private"]}), expect)


def test_a_browser_session_is_not_an_mcp_identity(space: dict) -> None:
    """A web page can make the browser send its cookies to /mcp: a signed-in member's session must not act."""
    import time

    cookie = browser_session(TOKEN_OF[MEMBER], time.time() + 3600)
    caller = McpCaller(space["app"].url, headers=cookie)
    attack(space, "MCP member's browser session cookie: list_jobs", lambda: caller.call("list_jobs", {}), SIGN_IN)
    attack(space, "MCP member's browser session cookie: start_training",
           lambda: caller.call("start_training", {"spec": QUICK.replace("chatml,", "chatml, path: examples/"
                                                                                   "capitals.jsonl,")}), SIGN_IN)


def test_a_member_reaches_no_one_elses_files(space: dict) -> None:
    member = _as(space, "member")
    secret = space["work"] / "owner-mcp-rows.jsonl"
    secret.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    owners_upload = upload_as(space, TOKEN_OF[OWNER], secret)
    events = str(space["data"] / "jobs" / space["private"] / "events.jsonl")
    for label, path in {"the owner's Gradio upload": owners_upload, "the owner's stored upload":
                        str(space["owner_upload"]), "/etc/passwd": "/etc/passwd", "a job's events": events,
                        "traversal": "examples/../../../../../etc/passwd"}.items():
        attack(space, f"MCP member: validate_dataset with {label} as the dataset",
               lambda p=path: _unwrap(member.call("validate_dataset", {"spec": QUICK, "dataset": p})),
               "outside")
        attack(space, f"MCP member: start_training with a spec naming {label}",
               lambda p=path: _unwrap(member.call("start_training", {
                   "spec": {**_spec_object(), "data": {**_spec_object()["data"], "path": p}}})), "outside")
    attack(space, "MCP member: chat with an 'adapter' in the owner's upload folder",
           lambda: member.call("chat", {"adapter": str(space["owner_upload"].parent), "message": "hi"}), "outside")
    attack(space, "MCP member: a resource URI climbing out of the jobs",
           lambda: member.read("lora-studio://jobs/../../etc/passwd"), "no resource")


def _spec_object() -> dict:
    import yaml

    return yaml.safe_load(QUICK)  # type: ignore[no-any-return]


def test_oversized_arguments_are_refused(space: dict) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"adapter": space["public"], "message": "x" * (2 << 20)}}}).encode()
    attack(space, "MCP anonymous: a 2 MiB tool call", lambda: http_refusal(raw_post(space["app"].url, body)),
           "HTTP 413")
    member = _as(space, "member")
    attack(space, "MCP member: list_jobs limit=10**9", lambda: member.call("list_jobs", {"limit": 10**9}), "limit")
    attack(space, "MCP member: job_updates wait=3600",
           lambda: member.call("job_updates", {"job_id": space["public"], "wait": 3600}), "wait")
    attack(space, "MCP member: a 300 KB spec",
           lambda: _unwrap(member.call("dataset_report", {"spec": QUICK + "# " + "x" * 300_000 + "\n"})),
           "at most")
    visitor = _as(space, "anonymous", headers={"x-forwarded-for": "198.51.100.32"})
    attack(space, "MCP visitor: demo over max_new_tokens", lambda: visitor.call("compare", {
        "adapter": space["public"], "message": "Hello", "max_new_tokens": 9}), "max_new_tokens")
    attack(space, "MCP visitor: demo prompt over the length cap", lambda: visitor.call("compare", {
        "adapter": space["public"], "message": "x" * 5000, "max_new_tokens": 4}), "characters")


def test_the_public_demo_answers_visitors_within_its_caps(space: dict) -> None:
    visitor = _as(space, "anonymous", headers={"x-forwarded-for": "198.51.100.33"})
    assert isinstance(visitor.call("chat", {"adapter": space["public"], "message": "Hello", "max_new_tokens": 4}),
                      str)
    both = visitor.call("compare", {"adapter": space["public"], "message": "Hello", "max_new_tokens": 4})
    assert set(both) == {"base", "fine_tuned"}
    attack(space, "MCP visitor: demo with tools", lambda: visitor.call("chat", {
        "adapter": space["public"], "message": "Hi", "max_new_tokens": 4, "tools": [{"name": "f", "parameters": {}}]}),
           "no tools")


def test_a_members_own_token_works(space: dict) -> None:
    """Last in the module: the job it starts has ended before any later attack compares training processes."""
    member = _as(space, "member")
    spec = QUICK.replace("chatml,", "chatml, path: examples/capitals.jsonl,")
    assert member.call("validate_dataset", {"spec": spec})["ok"]
    assert any(row["id"] == space["public"] for row in member.call("list_jobs", {"limit": 50}))
    started = member.call("start_training", {"spec": spec})
    assert started["status"] == "queued" and TOKEN_OF[MEMBER] not in json.dumps(started), started
    member.call("stop_job", {"job_id": started["job_id"]})
    cursor, update = "", {"done": False}
    for _ in range(30):
        update = member.call("job_updates", {"job_id": started["job_id"], "cursor": cursor, "wait": 10})
        cursor = update["cursor"]
        if update["done"]:
            break
    assert update["done"] and update["status"] in ("stopped", "succeeded"), update
    status = json.loads(member.read(f"lora-studio://jobs/{started['job_id']}"))
    assert status["owner"] == MEMBER and TOKEN_OF[MEMBER] not in json.dumps(status)
    RESULTS["a member's own token works through MCP: validate, list, start, stop, follow"] = True
