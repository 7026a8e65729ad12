"""The pieces of the MCP server without an app (fast): tools built from gated endpoints, their arguments' checks,
the caller a tool call runs as, a stream bounded by the call's deadline, and job_updates' cursor over events and log
files (the app end to end: tests/test_mcp.py and tests/space/test_mcp.py)."""

import json
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest


@pytest.fixture(scope="module")
def tools() -> dict:
    import gradio as gr

    from trainer_backend.access import current_caller
    from trainer_backend.ui.gate import install_gate
    from trainer_backend.ui.mcp_tools import mcp_tools

    with gr.Blocks() as demo:
        @gr.api(api_name="start_thing")
        def start_thing(spec: str, dataset: Any, request: gr.Request, profile: Optional[gr.OAuthProfile] = None,
                        limit: int = 5) -> dict:
            """Start a thing. Returns {who, spec}."""
            return {"who": current_caller().username, "spec": spec, "limit": limit, "request": request is not None}

        @gr.api(api_name="count")
        def count(up_to: int) -> Iterator[int]:
            """Counts."""
            yield from range(1, up_to + 1)

        @gr.api(api_name="_internal")
        def internal() -> str:
            return "gradio's own"

        with gr.Column(visible=False):
            hidden = gr.Button()
        hidden.click(lambda: None, None, None, api_visibility="private")
    install_gate(demo)
    return mcp_tools(demo)


class _Request:
    def __init__(self, headers: dict) -> None:
        self.headers, self.session, self.client = headers, None, None


def test_a_tool_is_its_endpoint(tools: dict) -> None:
    from trainer_backend.spec import JobSpec

    assert set(tools) == {"start_thing", "count"}  # not Gradio's own events, not UI events
    start = tools["start_thing"]
    schema = start.input_schema
    assert start.description == "Start a thing. Returns {who, spec}."
    assert list(schema["properties"]) == ["spec", "dataset", "limit"]  # Gradio's own parameters are not arguments
    assert schema["required"] == ["spec"] and schema["properties"]["limit"] == {"type": "integer", "default": 5}
    assert schema["properties"]["spec"]["anyOf"] == [{"$ref": "#/$defs/JobSpec"}, {"type": "string"}]
    assert set(schema["$defs"]["JobSpec"]["properties"]) == set(JobSpec.model_fields)
    assert "title" not in json.dumps(schema) and '"ui"' not in json.dumps(schema)  # JSON Schema keywords only
    assert not start.streams and tools["count"].streams and not start.read_only


def test_arguments_are_checked_with_the_fix(tools: dict) -> None:
    from trainer_backend.ui.mcp_tools import ToolError, checked_arguments

    start = tools["start_thing"]
    assert checked_arguments(start, {"spec": {"model": {"base_model": "x"}}}) == {
        "spec": '{"model": {"base_model": "x"}}', "dataset": None, "limit": 5}  # an object is sent as its JSON text
    for arguments, message in (({}, "spec: missing"), ({"spec": "x", "limits": 1}, "limits: no such argument "
                                                                                    "(start_thing takes spec, dataset, limit)"),
                               ({"spec": 3}, "spec: int '3' fits none of its types"),
                               ({"spec": "x", "limit": "many"}, "limit: Input should be a valid integer")):
        with pytest.raises(ToolError, match=message.replace("(", r"\(").replace(")", r"\)")):
            checked_arguments(start, arguments)


def test_a_call_runs_as_the_token_it_sent_and_a_stream_ends_by_the_deadline(tools: dict, monkeypatch) -> None:
    from trainer_backend import access
    from trainer_backend.ui.mcp_tools import call_tool, checked_arguments

    monkeypatch.setattr(access, "identity_from_token", lambda token: access.Identity(f"user-of-{token}"))
    start = tools["start_thing"]
    result, ended = call_tool(start, checked_arguments(start, {"spec": "x"}),
                              _Request({"authorization": "Bearer tok1"}))
    assert ended and result == {"who": "user-of-tok1", "spec": "x", "limit": 5, "request": True}
    seen: list = []
    last, ended = call_tool(tools["count"], {"up_to": 3}, _Request({}), on_item=lambda i, item: seen.append(item))
    assert (last, ended, seen) == (3, True, [1, 2, 3])


def test_a_follower_ends_by_the_callers_deadline() -> None:
    from trainer_backend.ui.streams import follow_changes, streams_end_by

    ticks = iter(range(10**6))
    started = time.monotonic()
    with streams_end_by(time.monotonic() + 0.3):
        items = list(follow_changes(lambda: {"state": "running", "n": next(ticks)}, lambda s: s["n"], 0.05, 3600))
    assert 0.25 < time.monotonic() - started < 2 and len(items) >= 3  # its own limit was an hour


def test_event_tail_reads_complete_records_in_capped_steps(tmp_path: Path) -> None:
    from trainer_backend.run_events import EventTail, Log, to_json

    path = tmp_path / "events.jsonl"
    lines = [to_json(Log(step=i, loss=1.0 / i)) for i in range(1, 41)]
    path.write_text("\n".join(lines) + "\n" + lines[0][:10])  # the last record is still being written
    tail, steps = EventTail(path), []
    while True:
        fresh = tail.new_events(max_bytes=300)
        if not fresh:
            break
        steps += [e.step for e in fresh]
    assert steps == list(range(1, 41)) and tail.pending  # every complete record once; the partial one waits
    path.write_text(lines[0] + "\n")  # replaced by a shorter file (an HF Jobs mirror): read again from its start
    assert [e.step for e in tail.new_events()] == [1]
    huge = to_json(Log(step=99, loss=0.5)).replace('"step"', '"pad": "' + "x" * 2000 + '", "step"')
    path.write_text(huge + "\n")
    assert [e.step for e in EventTail(path).new_events(max_bytes=100)] == [99]  # longer than the cap: whole


def test_cursor_round_trip_and_refusal() -> None:
    from trainer_backend.jobs.follow import Cursor

    assert Cursor.parse("") == Cursor() and Cursor.parse(str(Cursor(12, 345))) == Cursor(12, 345)
    for bad in ("e1", "e-1.l2", "../../etc", "e1.l2; rm"):
        with pytest.raises(ValueError, match="not one this app returned"):
            Cursor.parse(bad)
