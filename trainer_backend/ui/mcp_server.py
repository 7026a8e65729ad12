"""LoRA Studio as an MCP server: the named API's tools (ui/mcp_tools.py) and a job's state as resources, served
at /mcp (and /gradio_api/mcp, where Spaces' "Use via MCP" looks) on the app's own port, over Streamable HTTP.

Who the caller is: their Hugging Face token in `Authorization: Bearer hf_...` (or `X-HF-Authorization`, which
the Spaces proxy leaves alone). A browser's session cookie is ignored here, so a web page cannot act through a
visitor's signed-in session. Every tool call and resource read runs the gated endpoint, so on a Space only members
act (each with their own token), a visitor gets the public demo's chat / compare within its caps or the sign-in
message, and a local app is open as it is to gradio_client. Stateless: every request stands alone, so a Space's
restart or a second replica drops nothing. On a loopback-bound app the transport also refuses requests whose Host
or Origin is not loopback (DNS rebinding: a web page must not drive the local app's tools).

Resources (read through the same gate; `job_updates` follows a running job with a cursor):
  lora-studio://jobs                       the /list_jobs rows
  lora-studio://jobs/{job_id}              /job_status (no series)
  lora-studio://jobs/{job_id}/updates      /job_updates from the job's start (events, log, progress, cursor)
  lora-studio://jobs/{job_id}/log          /job_logs' last 500 lines
  lora-studio://jobs/{job_id}/evaluation   /evaluation_report;  .../export: /export_status;  .../sweep: /sweep_status
  lora-studio://schema/job-spec            the job spec's JSON schema, with every field's description
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any, AsyncIterator, Optional

import anyio
import anyio.from_thread
import anyio.to_thread

from .. import __version__
from .api_errors import to_client_error
from .mcp_tools import STREAM_WAIT_S, McpTool, ToolError, call_tool, checked_arguments, mcp_tools

log = logging.getLogger("trainer_backend.mcp")

MCP_PATHS = ("/mcp", "/gradio_api/mcp")
MAX_REQUEST_BYTES = 1 << 20  # a spec, a chat history or tool schemas: far less; larger bodies are refused (413)
# Tool calls running at once; more wait for a place. Their own worker threads: a call waiting on a job (up to 30 s)
# never takes a thread from Gradio's events.
MAX_CALLS_AT_ONCE = 16
URI_ROOT = "lora-studio://"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
INSTRUCTIONS = (
    "LoRA Studio fine-tunes language models with LoRA / QLoRA. A typical session: validate_dataset (every row is "
    "checked; fix what it names) -> plan_job (memory, time, cost) -> start_training (returns the job id at once) -> "
    "job_updates with wait=30, passing back its cursor, until done -> evaluate (base vs fine-tuned on held-out "
    "rows) or evaluate_job (the full report) -> chat / compare -> push_job. A spec is an object of the JobSpec "
    "schema or its YAML text; lora-studio://schema/job-spec documents every field.")
_RESOURCE = re.compile(re.escape(URI_ROOT) +
                       r"jobs/(?P<job>[A-Za-z0-9._-]{1,128})(?:/(?P<part>[a-z]+))?(?:\?(?P<query>.*))?")
# A job's resources: the part of its URI after the job id -> (the endpoint that reads it, fixed arguments, what it is)
_PARTS: dict[Optional[str], tuple[str, dict[str, Any], str]] = {
    None: ("job_status", {"series": False}, "A job now: status, progress, metrics, error (as /job_status)."),
    "updates": ("job_updates", {}, "Everything a job recorded: events, log lines, progress, and the cursor to follow "
                                   "it with job_updates."),
    "log": ("job_logs", {"tail": 500}, "The last 500 lines of a job's log."),
    "evaluation": ("evaluation_report", {}, "A job's evaluation report."),
    "export": ("export_status", {}, "A job's export and its round-trip check."),
    "sweep": ("sweep_status", {}, "A sweep's trials and best.")}


class _Caller:
    """The request as the gate reads it: the headers (no cookie: no browser session) and the client address."""

    def __init__(self, request: Any):
        self.headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "cookie"}
        self.client = request.client
        self.session = None
        self.query_params: dict[str, str] = {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


TOKEN_HINT = (" (An MCP client acts with the Hugging Face token it sends: add the header `Authorization: Bearer "
              "hf_...` to its configuration for this server.)")


def _refusal(exc: BaseException, name: str, request: Any) -> str:
    """What a refused or failed call answers: the message a gradio_client caller gets, and for a caller that sent
    no token while the gate asked for one, how to send it (an agent has no sign-in button)."""
    message = str(getattr(to_client_error(exc, name), "message", exc))
    headers = {k.lower() for k in (request.headers.keys() if request is not None else [])}
    if "Sign in with Hugging Face" in message and not headers & {"authorization", "x-hf-authorization"}:
        message += TOKEN_HINT
    return message


def _progress_message(item: Any) -> Optional[str]:
    if isinstance(item, dict):
        message = item.get("message") or item.get("state") or item.get("status")
        return str(message)[:200] if message else None
    return None


class StudioMcp:
    """The MCP server of one built app (build_app), mounted by launch()."""

    def __init__(self, demo: Any):
        from mcp.server.lowlevel import Server

        self.tools: dict[str, McpTool] = mcp_tools(demo)
        self._limiter: Optional[anyio.CapacityLimiter] = None
        self.server = Server("LoRA Studio", version=__version__, instructions=INSTRUCTIONS,
                             on_list_tools=self._list_tools, on_call_tool=self._call_tool,
                             on_list_resources=self._list_resources,
                             on_list_resource_templates=self._list_resource_templates,
                             on_read_resource=self._read_resource)

    # ---- tools -------------------------------------------------------------------------------------------------
    def tool_list(self, only: Optional[str] = None) -> list[Any]:
        """The tools as MCP lists them; `only` (the endpoint's `?tools=a,b` query) narrows the list."""
        import mcp_types as types

        wanted = {t.strip() for t in only.split(",")} if only else None
        return [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                           annotations=types.ToolAnnotations(read_only_hint=t.read_only,
                                                             destructive_hint=False if t.read_only else None,
                                                             open_world_hint=False))
                for t in self.tools.values() if wanted is None or t.name in wanted]

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types

        request = ctx.request
        only = request.query_params.get("tools") if request is not None else None
        return types.ListToolsResult(tools=self.tool_list(only))

    async def _run(self, ctx: Any, name: str, arguments: Optional[dict[str, Any]]) -> tuple[Any, bool]:
        """Run tool `name` as the caller of this request, in a worker thread; progress goes to the client."""
        tool = self.tools.get(name)
        if tool is None:
            raise ToolError(f"no tool {name!r}; tools/list lists them")
        kwargs = checked_arguments(tool, arguments)
        caller = _Caller(ctx.request)

        def report(index: int, item: Any) -> None:
            with contextlib.suppress(Exception):  # progress is a courtesy: a client that left must not fail the call
                anyio.from_thread.run(ctx.session.report_progress, index + 1, None, _progress_message(item))

        if self._limiter is None:  # made on the server's event loop, at the first call
            self._limiter = anyio.CapacityLimiter(MAX_CALLS_AT_ONCE)
        return await anyio.to_thread.run_sync(lambda: call_tool(tool, kwargs, caller, report), limiter=self._limiter)

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types

        try:
            result, ended = await self._run(ctx, params.name, params.arguments)
        except ToolError as exc:
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)
        except Exception as exc:  # the endpoint's refusal or failure: the message a gradio_client caller gets
            message = _refusal(exc, params.name, ctx.request)
            return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)
        content = [types.TextContent(text=_text(result))]
        if not ended:
            content.append(types.TextContent(text=(
                f"{params.name} is still running after {int(STREAM_WAIT_S)} s; this is its latest state. Follow it "
                "with job_updates (a job), export_status or evaluation_report (an export, a report).")))
        return types.CallToolResult(content=content,
                                    structured_content=result if isinstance(result, dict) else None)

    # ---- resources ---------------------------------------------------------------------------------------------
    async def _list_resources(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types

        return types.ListResourcesResult(resources=[
            types.Resource(uri=f"{URI_ROOT}jobs", name="jobs", mime_type="application/json",
                           description="The jobs, newest first (as /list_jobs)."),
            types.Resource(uri=f"{URI_ROOT}schema/job-spec", name="job-spec schema", mime_type="application/json",
                           description="The job spec's JSON schema: every section and field, with what it does.")])

    async def _list_resource_templates(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types

        return types.ListResourceTemplatesResult(resource_templates=[
            types.ResourceTemplate(uri_template=f"{URI_ROOT}jobs/{{job_id}}" + (f"/{part}" if part else ""),
                                   name=f"job {part or 'status'}", description=text,
                                   mime_type="text/plain" if part == "log" else "application/json")
            for part, (_, _, text) in _PARTS.items()])

    async def _read_resource(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types
        from mcp.shared.exceptions import MCPError
        from mcp_types.jsonrpc import INVALID_PARAMS

        uri = str(params.uri)
        if uri == f"{URI_ROOT}schema/job-spec":
            from ..spec import JobSpec

            result: Any = JobSpec.model_json_schema()
        else:
            name, arguments = self._resource_call(uri)
            try:
                result, _ = await self._run(ctx, name, arguments)
            except ToolError as exc:
                raise MCPError(INVALID_PARAMS, str(exc)) from None
            except Exception as exc:
                raise MCPError(INVALID_PARAMS, _refusal(exc, name, ctx.request)) from None
        mime = "text/plain" if isinstance(result, str) else "application/json"
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime,
                                                                              text=_text(result))])

    @staticmethod
    def _resource_call(uri: str) -> tuple[str, dict[str, Any]]:
        from urllib.parse import parse_qs

        from mcp.shared.exceptions import MCPError
        from mcp_types.jsonrpc import INVALID_PARAMS

        if uri == f"{URI_ROOT}jobs":
            return "list_jobs", {"limit": 100}
        match = _RESOURCE.fullmatch(uri)
        if match is None or match.group("part") not in _PARTS:
            raise MCPError(INVALID_PARAMS, f"no resource {uri[:200]!r}; resources/list and resources/templates/list "
                                           "say which there are")
        name, extra, _ = _PARTS[match.group("part")]
        arguments: dict[str, Any] = {"job_id": match.group("job"), **extra}
        if name == "job_updates":
            arguments["cursor"] = (parse_qs(match.group("query") or "").get("cursor") or [""])[0]
        return name, arguments

    # ---- transport ---------------------------------------------------------------------------------------------
    def mount(self, host: str) -> tuple[list[Any], Any]:
        """(routes, lifespan) for the app's FastAPI constructor (launch(app_kwargs=...))."""
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings
        from starlette.routing import Route

        security = None
        if host in LOOPBACK_HOSTS:
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True, allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        manager = StreamableHTTPSessionManager(app=self.server, stateless=True, security_settings=security,
                                               max_request_body_size=MAX_REQUEST_BYTES)
        endpoint = _FrontDoor(StreamableHTTPASGIApp(manager))
        routes = [Route(path + slash, endpoint=endpoint, methods=["GET", "POST", "DELETE"])
                  for path in MCP_PATHS for slash in ("", "/")]

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            async with manager.run():
                yield

        return routes, lifespan


LANDING = ("<!doctype html><meta charset=utf-8><title>LoRA Studio MCP</title><p>This is LoRA Studio's MCP endpoint "
           "(Streamable HTTP). Point an MCP client at this URL; on a Space, send your Hugging Face token as "
           "<code>Authorization: Bearer hf_...</code>. The README's <em>Agents (MCP)</em> section shows the client "
           "configuration.</p>")


class _FrontDoor:
    """GET gets no standing event stream (every request stands alone, nothing is ever pushed): 405 for clients, a
    short page for a person who opened the link in a browser. Everything else goes to the transport. (A class, not
    a function: Starlette's Route calls a function as a request handler, an object as an ASGI app.)"""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import HTMLResponse, Response

        if scope.get("method") == "GET":
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            response = HTMLResponse(LANDING) if b"text/html" in accept else \
                Response(status_code=405, headers={"Allow": "POST"})
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def build_mcp(demo: Any) -> Optional[StudioMcp]:
    """The app's MCP server, or None (with a log line) when the `mcp` package is missing."""
    try:
        return StudioMcp(demo)
    except ImportError as exc:
        log.warning("no MCP server: %s (pip install -r requirements.txt)", exc)
        return None
