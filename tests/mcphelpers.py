"""Driving a started app as an MCP client, with the official `mcp` SDK over loopback (Streamable HTTP at /mcp).

Tests are synchronous: `McpCaller` runs each call in a fresh client connection (the server is stateless, so this
is what any client sees) under `anyio.run`. A tool's refusal (isError) raises `McpRefused`, a ValueError, so the
Space suite's `refusal_of` reads its message like any other refusal.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import anyio
import httpx


class McpRefused(ValueError):
    pass


def _client(url: str, token: Optional[str], headers: Optional[dict[str, str]], mode: str) -> Any:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    sent = dict(headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    http = httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(30, read=300))
    return Client(streamable_http_client(url, http_client=http), mode=mode)


class McpCaller:
    """One caller (a token, or none) of the app's MCP endpoint."""

    def __init__(self, app_url: str, token: Optional[str] = None, headers: Optional[dict[str, str]] = None,
                 mode: str = "auto", query: str = ""):
        self.url = app_url.rstrip("/") + "/mcp" + (f"?{query}" if query else "")
        self.token, self.headers, self.mode = token, headers, mode

    def _run(self, work: Any) -> Any:
        async def go() -> Any:
            async with _client(self.url, self.token, self.headers, self.mode) as client:
                return await work(client)
        return anyio.run(go)

    def tools(self) -> list[Any]:
        async def work(client: Any) -> Any:
            return (await client.list_tools()).tools
        return self._run(work)  # type: ignore[no-any-return]

    def call_result(self, name: str, arguments: Optional[dict[str, Any]] = None,
                    progress: Optional[list] = None) -> Any:
        """The CallToolResult itself; `progress` collects the (progress, message) notifications."""
        async def on_progress(value: float, total: Optional[float], message: Optional[str]) -> None:
            if progress is not None:
                progress.append((value, message))

        async def work(client: Any) -> Any:
            return await client.call_tool(name, arguments or {}, progress_callback=on_progress)
        return self._run(work)

    def call(self, name: str, arguments: Optional[dict[str, Any]] = None, progress: Optional[list] = None) -> Any:
        """The tool's answer (its structured content, else its text, JSON decoded when it is JSON); McpRefused
        when the tool answered with an error."""
        result = self.call_result(name, arguments, progress)
        text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        if result.is_error:
            raise McpRefused(text)
        if result.structured_content is not None:
            return result.structured_content
        try:
            return json.loads(result.content[0].text)
        except ValueError:
            return text

    def read(self, uri: str) -> str:
        """A resource's text; McpRefused with the server's message when it refuses."""
        from mcp.shared.exceptions import MCPError

        async def work(client: Any) -> Any:
            try:
                return await client.read_resource(uri)
            except MCPError as exc:  # returned, not raised: leaving the session would wrap it in a task group's
                return exc
        result = self._run(work)
        if isinstance(result, MCPError):
            raise McpRefused(result.message)
        return result.contents[0].text  # type: ignore[no-any-return]


def raw_post(app_url: str, body: bytes, headers: Optional[dict[str, str]] = None) -> httpx.Response:
    """One JSON-RPC POST to /mcp as bytes (what the SDK would never send: oversized, forged Host, ...)."""
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream",
            **(headers or {})}
    return httpx.post(app_url.rstrip("/") + "/mcp", content=body, headers=sent, timeout=30)


def http_refusal(response: httpx.Response) -> None:
    """Raise a refused raw request as the ValueError refusal_of reads; return when it was answered."""
    if response.status_code >= 400:
        raise ValueError(f"HTTP {response.status_code}: {response.text[:300]}")
