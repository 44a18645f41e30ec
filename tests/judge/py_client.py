"""An outside judge: the official MCP Python SDK client (PyPI `mcp`) drives a real pipeline
through oc-deploy over stdio or streamable HTTP: list tools, deploy to staging while recording
progress notifications, then promote to production and answer the server's confirmation as the
human (approve). Prints one JSON summary on stdout; the Rust tests assert on it.

Two ways of connecting, because the SDK offers both and the server must serve both:
  session  `ClientSession` + `initialize()`: the handshake era (2025-11-25); the server asks
           the human with a live `elicitation/create` request.
  client   `mcp.Client` in its default "auto" mode: `server/discover` first, so the server
           can pick 2026-07-28, where the confirmation comes back as an `InputRequiredResult`
           that the SDK answers through the same elicitation callback and retries.

Usage: python py_client.py <stdio|http> <session|client> <oc-deploy binary> <project dir>
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

# The whole run and each request are bounded, so a hung server fails the judge instead of CI.
RUN_TIMEOUT_S = 60
CALL_TIMEOUT_S = 30
NOTE = "approved by the Python SDK judge"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def http_server(binary: str, project: str) -> AsyncIterator[str]:
    """Runs `oc-deploy serve --http` on a free loopback port until the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--http", f"127.0.0.1:{port}", "--project-dir", project],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"oc-deploy serve --http exited early with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"oc-deploy serve --http did not listen on 127.0.0.1:{port}") from None
                await anyio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Judge:
    """What the client saw: progress per call and the confirmations it was asked for."""

    def __init__(self) -> None:
        self.elicitations: list[dict[str, Any]] = []

    async def elicit(self, _context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        schema = getattr(params, "requested_schema", None) or {}
        self.elicitations.append(
            {"message": params.message, "fields": sorted((schema.get("properties") or {}).keys())}
        )
        return types.ElicitResult(action="accept", content={"approve": True, "note": NOTE})

    async def pipeline(self, call_tool: Any, list_tools: Any) -> dict[str, Any]:
        tools = await list_tools()
        summary: dict[str, Any] = {"tools": [t.name for t in tools.tools]}
        for key, tool in (("staging", "deploy_staging"), ("prod", "deploy_prod")):
            progress: list[dict[str, Any]] = []

            async def on_progress(p: float, total: float | None, message: str | None, sink=progress) -> None:
                sink.append({"progress": p, "total": total, "message": message})

            result = await call_tool(tool, {}, progress_callback=on_progress)
            sc = result.structured_content or {}
            summary[key] = {
                "isError": bool(result.is_error),
                "status": sc.get("status"),
                "version": sc.get("version"),
                "confirmed_by": sc.get("confirmed_by"),
                "steps": [f"{s.get('name')}:{s.get('status')}" for s in sc.get("steps", [])],
                "text": "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text"),
                "progress": progress,
            }
        summary["elicitations"] = self.elicitations
        return summary


async def run_session(judge: Judge, read: Any, write: Any) -> dict[str, Any]:
    async with ClientSession(
        read, write, elicitation_callback=judge.elicit, read_timeout_seconds=CALL_TIMEOUT_S
    ) as session:
        init = await session.initialize()

        async def call_tool(name: str, args: dict[str, Any], progress_callback: Any) -> Any:
            return await session.call_tool(name, args, progress_callback=progress_callback)

        summary = await judge.pipeline(call_tool, session.list_tools)
        summary["protocolVersion"] = init.protocol_version
        summary["server"] = {"name": init.server_info.name, "version": init.server_info.version}
        return summary


async def run_client(judge: Judge, server: Any) -> dict[str, Any]:
    async with Client(server, elicitation_callback=judge.elicit, read_timeout_seconds=CALL_TIMEOUT_S) as client:

        async def call_tool(name: str, args: dict[str, Any], progress_callback: Any) -> Any:
            return await client.call_tool(name, args, progress_callback=progress_callback)

        summary = await judge.pipeline(call_tool, client.list_tools)
        summary["protocolVersion"] = client.protocol_version
        info = client.server_info
        summary["server"] = {"name": info.name, "version": info.version} if info else None
        return summary


async def main(transport: str, mode: str, binary: str, project: str) -> dict[str, Any]:
    judge = Judge()
    with anyio.fail_after(RUN_TIMEOUT_S):
        if transport == "stdio":
            params = StdioServerParameters(command=binary, args=["serve", "--project-dir", project])
            if mode == "client":
                return await run_client(judge, params)
            async with stdio_client(params) as (read, write):
                return await run_session(judge, read, write)
        async with http_server(binary, project) as url:
            if mode == "client":
                return await run_client(judge, url)
            async with streamable_http_client(url) as (read, write):
                return await run_session(judge, read, write)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("stdio", "http") or sys.argv[2] not in ("session", "client"):
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    transport, mode, binary, project = sys.argv[1:]
    out: dict[str, Any] = {"transport": transport, "mode": mode}
    code = 0
    try:
        out.update(anyio.run(main, transport, mode, binary, project))
    except BaseException:  # noqa: BLE001 - the judge reports every failure in its summary
        out["error"] = traceback.format_exc()
        code = 1
    print(json.dumps(out))
    sys.exit(code)
