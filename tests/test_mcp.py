"""An agent fine-tunes through LoRA Studio's MCP server (issue 32), driven with the official `mcp` SDK over
loopback against the started app (`shared_app`): the tools are the named API's endpoints (names, arguments,
descriptions and the JobSpec schema), a bad dataset is refused with its row and column before anything runs, a tiny
job is started, followed with job_updates' cursor to success, evaluated and chatted with; resources, progress
notifications, an older client's handshake, and what the transport refuses (a foreign Host or Origin, an oversized
body). The Space's side (who may call what): tests/space/test_mcp.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mcphelpers import McpCaller, McpRefused, raw_post  # noqa: E402

pytestmark = pytest.mark.slow  # drives a started app (make test runs it)
REPO = Path(__file__).resolve().parents[1]
SPEC = {"project_name": "mcp-agent-run", "model": {"base_model": "tiny-demo"},
        "data": {"chat_template": "chatml", "valid_split": "auto", "valid_fraction": 0.25},
        "lengths": {"block_size": 64},
        "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                     "save_strategy": "no", "eval_strategy": "no"}}


@pytest.fixture(scope="module")
def agent(shared_app) -> McpCaller:
    return McpCaller(shared_app.url)


def _upload(app_url: str, path: Path) -> str:
    """What the README tells an agent to do with a local file: POST it to Gradio's upload route."""
    with open(path, "rb") as fh:
        response = httpx.post(app_url.rstrip("/") + "/gradio_api/upload", files={"files": (path.name, fh)},
                              timeout=30)
    response.raise_for_status()
    return response.json()[0]  # type: ignore[no-any-return]


def test_the_tools_are_the_named_api(agent: McpCaller, shared_app) -> None:
    from gradio_client import Client

    from trainer_backend.spec import JobSpec

    api = Client(shared_app.url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    tools = {t.name: t for t in agent.tools()}
    assert set(tools) == {name.lstrip("/") for name in api}
    assert {"validate_dataset", "plan_job", "start_training", "job_updates", "stop_job", "evaluate", "chat",
            "push_job", "export_job", "start_sweep"} <= set(tools)
    for name, tool in tools.items():
        endpoint = api[f"/{name}"]
        schema = tool.input_schema
        assert tool.description == endpoint["description"], name
        assert list(schema["properties"]) == [p["parameter_name"] for p in endpoint["parameters"]], name
        required = {p["parameter_name"] for p in endpoint["parameters"] if not p["parameter_has_default"]}
        assert set(schema.get("required", [])) == required - {"dataset"}, name  # a dataset may come from the spec
        for param in endpoint["parameters"]:
            declared, ours = param["type"].get("type"), schema["properties"][param["parameter_name"]]
            if param["parameter_name"] not in ("spec", "dataset") and isinstance(declared, str):
                assert declared == ours.get("type") or declared in (ours.get("type") or []), (name, param)
        assert tool.annotations.read_only_hint == (name in ("validate_dataset", "dataset_report", "plan_job",
                                                            "list_jobs", "job_status", "job_events", "job_updates",
                                                            "job_logs", "sweep_status", "export_status",
                                                            "evaluation_report", "chat", "compare", "evaluate"))
        if "spec" in schema["properties"]:  # the job spec's own schema, every section of it
            assert schema["properties"]["spec"]["anyOf"][0] == {"$ref": "#/$defs/JobSpec"}
            assert set(schema["$defs"]["JobSpec"]["properties"]) == set(JobSpec.model_fields), name
            assert "ui" not in json.dumps(schema["$defs"]["JobSpec"]["properties"]["data"]), "form hints left in"
    narrowed = McpCaller(shared_app.url, query="tools=start_training,job_updates")  # a client that wants fewer
    assert {t.name for t in narrowed.tools()} == {"start_training", "job_updates"}


def test_bad_data_is_refused_before_anything_runs(agent: McpCaller, shared_app, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl"
    rows = (REPO / "examples/capitals.jsonl").read_text().splitlines()[:6]
    rows[3] = json.dumps({"messages": [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant"}]})
    bad.write_text("\n".join(rows) + "\n")
    result = agent.call("validate_dataset", {"spec": SPEC, "dataset": _upload(shared_app.url, bad)})
    assert result["ok"] is False
    problem = " ".join(result["errors"])
    assert "broken.jsonl" in problem and "row 4" in problem and "content" in problem, problem
    with pytest.raises(McpRefused, match="spec: int '42' fits none of its types"):  # the arguments' own check
        agent.call("validate_dataset", {"spec": 42})
    with pytest.raises(McpRefused, match=r"owner: no such argument \(list_jobs takes limit\)"):
        agent.call("list_jobs", {"limit": 5, "owner": "someone"})
    wrong = {**SPEC, "data": {**SPEC["data"], "path": "examples/capitals.jsonl"}, "lora": {"r": -1}}
    refused = agent.call("validate_dataset", {"spec": wrong})  # the spec's own check, as the API words it
    assert refused["ok"] is False and "lora.r" in " ".join(refused["errors"]), refused


def test_an_agent_trains_follows_evaluates_and_chats(agent: McpCaller, shared_app) -> None:
    dataset = _upload(shared_app.url, REPO / "examples/capitals.jsonl")
    assert agent.call("validate_dataset", {"spec": SPEC, "dataset": dataset})["ok"]
    plan = agent.call("plan_job", {"spec": SPEC, "dataset": dataset})
    assert plan["ok"] and plan["plan"], plan
    started = agent.call("start_training", {"spec": SPEC, "dataset": dataset})
    assert started["status"] == "queued" and started["job_id"], started
    job_id = started["job_id"]

    cursor, events, calls = "", [], 0
    while True:  # one call per change: each answer carries only what is new since the cursor
        update = agent.call("job_updates", {"job_id": job_id, "cursor": cursor, "wait": 30})
        calls += 1
        assert update["cursor"] != cursor or update["done"] or not (update["events"] or update["log"])
        cursor, events = update["cursor"], events + update["events"]
        if update["done"]:
            break
        assert calls < 200, "job_updates did not reach the job's end"
    assert update["status"] == "succeeded", update
    kinds = [e["event"] for e in events]
    assert kinds.count("finished") == 1 and "log" in kinds, kinds
    lines = (shared_app.data_dir / "jobs" / job_id / "events.jsonl").read_text().splitlines()
    assert len(events) == len(lines), "every event arrives once, none twice"
    assert update["metrics"] and update["progress"]["step"] == 2
    again = agent.call("job_updates", {"job_id": job_id, "cursor": cursor})
    assert again["events"] == [] and again["done"] and again["cursor"] == cursor

    report = agent.call("evaluate", {"adapter": job_id, "max_examples": 4, "max_new_tokens": 8})
    assert report["rows"] >= 1 and report["base"]["eval_loss"] > 0 and report["fine_tuned"]["eval_loss"] > 0, report
    progress: list = []
    answer = agent.call("chat", {"adapter": job_id, "message": "What is the capital of France?",
                                 "max_new_tokens": 6, "temperature": 0}, progress=progress)
    assert isinstance(answer, str) and answer.strip()
    assert len(progress) >= 2, "a streamed answer reports its progress as it is written"
    compared = agent.call("compare", {"adapter": job_id, "message": "Capital of Spain?", "max_new_tokens": 6})
    assert set(compared) >= {"base", "fine_tuned"}

    status = json.loads(agent.read(f"lora-studio://jobs/{job_id}"))
    assert status["status"] == "succeeded" and status["id"] == job_id
    history = json.loads(agent.read(f"lora-studio://jobs/{job_id}/updates"))
    assert [e["event"] for e in history["events"]] == kinds
    assert "step" in agent.read(f"lora-studio://jobs/{job_id}/log").lower()
    assert any(row["id"] == job_id for row in json.loads(agent.read("lora-studio://jobs")))
    assert "properties" in json.loads(agent.read("lora-studio://schema/job-spec"))
    with pytest.raises(McpRefused, match="no job"):
        agent.read("lora-studio://jobs/00000000")
    with pytest.raises(McpRefused, match="cursor"):
        agent.call("job_updates", {"job_id": job_id, "cursor": "../../etc/passwd"})


def test_an_older_client_and_what_the_transport_refuses(shared_app) -> None:
    legacy = McpCaller(shared_app.url, mode="legacy")  # the 2025 initialize handshake (most clients today)
    assert any(t.name == "start_training" for t in legacy.tools())
    assert isinstance(legacy.call("list_jobs", {"limit": 3}), (list, dict))
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
    assert raw_post(shared_app.url, hello).status_code == 200
    # DNS rebinding: a web page whose name resolves to 127.0.0.1 must not drive the local app's tools
    assert raw_post(shared_app.url, hello, {"host": "attacker.example"}).status_code == 421
    assert raw_post(shared_app.url, hello, {"origin": "http://attacker.example"}).status_code == 403
    huge = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"adapter": "x", "message": "a" * (2 << 20)}}}).encode()
    assert raw_post(shared_app.url, huge).status_code == 413
    page = httpx.get(shared_app.url.rstrip("/") + "/mcp", headers={"accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "MCP" in page.text  # a person who opened the link learns what it is
    assert httpx.get(shared_app.url.rstrip("/") + "/mcp", timeout=10).status_code == 405
