#!/usr/bin/env python3
"""On-demand performance bench: oc-deploy against a minimal rmcp echo server, side by side.

Run from anywhere (Python 3.11+, standard library only):

    python3 bench/run.py                      # build both release binaries, measure, print a table
    python3 bench/run.py --markdown           # the same table as Markdown on stdout
    python3 bench/run.py --markdown out.md    # plain table on stdout, Markdown written to out.md
    python3 bench/run.py --no-build --quick   # reuse the binaries, fewer samples (a smoke run)
    python3 bench/run.py --run-log-sizes 0,10,100,1000   # also: deploy_status as the run log grows

For each server it measures, discarding warm-up runs:
  * cold start: spawn -> initialize -> notifications/initialized -> tools/list response;
  * sequential tools/call latency over stdio and over streamable HTTP (p50, p95);
  * throughput of 32 concurrent HTTP clients (threads, one session and one keep-alive connection
    each) over a fixed window, with the server's CPU time per call;
  * peak RSS (VmHWM from /proc/<pid>/status) of each server process after its load.
oc-deploy answers `deploy_status` on a throwaway git project on the local platform; the baseline
(bench/echo-baseline) answers `echo`. Every figure comes with the ratio oc-deploy / baseline.

Everything is bounded: every loop has a count or a deadline, every read a timeout, every process
started here is killed on the way out (even on Ctrl-C), and all traffic stays on 127.0.0.1.
This is not part of the test suite: nothing here runs under `cargo test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BASELINE_DIR = BENCH_DIR / "echo-baseline"

# The protocol version the client asks for: the newest one that still has the initialize
# handshake. The client then sends whatever version the server answered.
PROTOCOL_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"

# Bounds on single operations, so that a wedged server fails the run instead of hanging it.
READ_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
BUILD_TIMEOUT_S = 1800.0


def log(msg: str) -> None:
    """Progress goes to stderr, so that stdout carries only the result table."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A measurement could not be taken; the message says which and why."""


# --------------------------------------------------------------------------------------------
# Processes: every child is registered here and stopped in `stop_all`, whatever happens.

_CHILDREN: list[subprocess.Popen] = []


def spawn(argv: list[str], *, cwd: Path, stderr_path: Path, stdio: bool) -> subprocess.Popen:
    """Starts a server; its stderr goes to a file (an unread pipe could fill up and stall it)."""
    err = open(stderr_path, "ab")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
        )
    finally:
        err.close()
    _CHILDREN.append(proc)
    return proc


def child_env() -> dict[str, str]:
    """The servers' environment: ours, minus log overrides that would make one of them chattier."""
    env = dict(os.environ)
    env.pop("OC_DEPLOY_LOG", None)
    env.pop("RUST_LOG", None)
    return env


def stop(proc: subprocess.Popen) -> None:
    """Closes stdin (a stdio server exits on EOF), then SIGTERM, then SIGKILL; never waits forever."""
    if proc.poll() is None and proc.stdin and not proc.stdin.closed:
        try:
            proc.stdin.close()
            proc.wait(timeout=STOP_TIMEOUT_S / 2)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    for stream in (proc.stdin, proc.stdout):
        if stream and not stream.closed:
            try:
                stream.close()
            except OSError:
                pass


def stop_all() -> None:
    for proc in _CHILDREN:
        try:
            stop(proc)
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            log(f"could not stop pid {proc.pid}: {e}")
    _CHILDREN.clear()


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had (the kernel's high-water mark)."""
    value = proc_status(pid).get("VmHWM", "").strip()
    if not value.endswith(" kB"):
        raise BenchError(f"no VmHWM for pid {pid}: {value!r}")
    return int(value[:-3]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process so far."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        # The command name may contain spaces; the fields after its closing parenthesis do not.
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Building.


def cargo_build(cwd: Path, args: list[str], binary: str) -> Path:
    """Runs `cargo build` and returns the path of `binary` from cargo's own artefact messages."""
    cmd = ["cargo", "build", "--release", "--message-format=json-render-diagnostics", *args]
    log(f"building: (cd {cwd} && {' '.join(cmd)})")
    started = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT_S)
    if out.returncode != 0:
        raise BenchError(f"cargo build failed in {cwd} (exit {out.returncode}); see the messages above")
    exe = None
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == binary and msg.get("executable"):
            exe = Path(msg["executable"])
    if exe is None or not exe.exists():
        raise BenchError(f"cargo built no `{binary}` executable in {cwd}")
    exe = exe.resolve()
    log(f"built {exe} in {time.monotonic() - started:.0f} s")
    return exe


def existing_binary(path: Path) -> Path:
    if not path.exists():
        raise BenchError(f"{path} is missing: run without --no-build once")
    return path


# --------------------------------------------------------------------------------------------
# The throwaway project oc-deploy serves: a committed git repo with a valid local-platform config
# (the shape tests/support/lib.rs uses). Nothing runs in it; deploy_status only reads it.


def make_project(oc_deploy: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="ocd-bench-")).resolve()
    staging_port, prod_port = free_port(), free_port()
    config = {
        "project_name": "bench-shop",
        "platform": "local",
        "local": {"start": [str(oc_deploy), "sample-app"], "health_path": "/health", "ready_timeout_seconds": 20},
        "environments": {
            "staging": {"url": f"http://127.0.0.1:{staging_port}", "port": staging_port},
            "production": {"url": f"http://127.0.0.1:{prod_port}", "port": prod_port},
        },
        "smoke_tests": [
            {"name": "health", "url": "/health", "expect_status": 200, "expect_version": True},
            {"name": "home", "url": "/", "expect_contains": "<html"},
        ],
        "auto_rollback": {"enabled": True, "wait_seconds": 1},
        "rollback": {"strategy": "previous-release", "keep_versions": 3},
    }
    (root / ".oc-deploy-ops.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (root / "sample.json").write_text('{"fail_in": []}\n', encoding="utf-8")
    (root / "README.md").write_text("bench sample\n", encoding="utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "v1"]):
        subprocess.run([*git, *args], cwd=root, check=True, timeout=30, stdout=subprocess.DEVNULL)
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The servers under test.


@dataclass
class Server:
    """How to start one server and what to call on it."""

    label: str
    stdio_argv: list[str]
    http_argv: Callable[[int], list[str]]  # port -> argv
    tool: str
    arguments: dict
    cwd: Path
    logs: Path
    results: dict = field(default_factory=dict)

    def check_call_result(self, result: dict) -> None:
        """Fails the run when the measured call did not do its real work."""
        if result.get("isError"):
            raise BenchError(f"{self.label}: {self.tool} returned an error: {json.dumps(result)[:400]}")
        structured = result.get("structuredContent")
        if self.tool == "deploy_status":
            if not isinstance(structured, dict) or structured.get("config_error") or structured.get("platform") != "local":
                raise BenchError(f"{self.label}: deploy_status did not read the bench project: {json.dumps(result)[:400]}")
        elif result.get("content", [{}])[0].get("text") != self.arguments.get("text"):
            raise BenchError(f"{self.label}: echo did not echo: {json.dumps(result)[:400]}")


def initialize_request(req_id: int) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": req_id,
        "method": "initialize",
        "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "oc-deploy-bench", "version": "1"}},
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


# --------------------------------------------------------------------------------------------
# stdio client: newline-delimited JSON-RPC on the child's pipes, every read with a deadline.


class StdioClient:
    def __init__(self, proc: subprocess.Popen, label: str):
        self.proc = proc
        self.label = label
        self.buf = b""
        self.next_id = 1

    def send(self, msg: dict) -> None:
        self.send_raw(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def send_raw(self, line: bytes) -> None:
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise BenchError(f"{self.label} closed its stdin (exit {self.proc.poll()})") from e

    def read_response(self, req_id: int, timeout: float = READ_TIMEOUT_S) -> dict:
        """Reads lines until the response to `req_id`, skipping notifications."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            nl = self.buf.find(b"\n")
            while nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1 :]
                if line.strip():
                    msg = json.loads(line)
                    if msg.get("id") == req_id and ("result" in msg or "error" in msg):
                        if "error" in msg:
                            raise BenchError(f"{self.label}: request {req_id} failed: {msg['error']}")
                        return msg["result"]
                nl = self.buf.find(b"\n")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.label}: no response to request {req_id} within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(f"{self.label}: stdout closed (exit {self.proc.poll()})")
                self.buf += chunk

    def request(self, method: str, params: dict | None = None, timeout: float = READ_TIMEOUT_S) -> dict:
        req_id = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.read_response(req_id, timeout)

    def handshake(self) -> dict:
        req_id = self.next_id
        self.next_id += 1
        self.send(initialize_request(req_id))
        result = self.read_response(req_id, STARTUP_TIMEOUT_S)
        self.send(INITIALIZED)
        return result


# --------------------------------------------------------------------------------------------
# HTTP client: a minimal streamable-HTTP JSON-RPC client on one keep-alive connection per
# session, so that the client's own cost stays small next to the server's.


class HttpClient:
    def __init__(self, port: int, label: str):
        self.port = port
        self.label = label
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        self.headers = {"Content-Type": "application/json", "Accept": ACCEPT}
        self.next_id = 1

    def close(self) -> None:
        self.conn.close()

    def post(self, body: bytes, req_id: int | None) -> dict | None:
        """POSTs one message; returns the JSON-RPC result for `req_id` (None for a notification)."""
        self.conn.request("POST", "/mcp", body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()  # read to the end, so the connection can carry the next request
        if req_id is None:
            if resp.status not in (200, 202):
                raise BenchError(f"{self.label}: notification got HTTP {resp.status}: {data[:300]!r}")
            return None
        if resp.status != 200:
            raise BenchError(f"{self.label}: HTTP {resp.status}: {data[:300]!r}")
        if sid := resp.getheader("Mcp-Session-Id"):
            self.headers["Mcp-Session-Id"] = sid
        ctype = resp.getheader("Content-Type", "")
        messages = sse_messages(data) if ctype.startswith("text/event-stream") else [json.loads(data)]
        for msg in messages:
            if msg.get("id") == req_id:
                if "error" in msg:
                    raise BenchError(f"{self.label}: request {req_id} failed: {msg['error']}")
                return msg["result"]
        raise BenchError(f"{self.label}: no response to request {req_id} in {data[:300]!r}")

    def encode(self, method: str, params: dict | None) -> tuple[bytes, int]:
        req_id = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        return json.dumps(msg, separators=(",", ":")).encode(), req_id

    def request(self, method: str, params: dict | None = None) -> dict:
        body, req_id = self.encode(method, params)
        return self.post(body, req_id)

    def handshake(self) -> dict:
        body, req_id = self.encode("initialize", initialize_request(0)["params"])
        result = self.post(body, req_id)
        if "Mcp-Session-Id" not in self.headers:
            raise BenchError(f"{self.label}: initialize returned no Mcp-Session-Id (stateful sessions expected)")
        self.headers["MCP-Protocol-Version"] = result["protocolVersion"]
        self.post(json.dumps(INITIALIZED).encode(), None)
        return result


def sse_messages(data: bytes) -> list[dict]:
    """The JSON messages of an SSE body: `data:` lines joined per event; empty events skipped."""
    out = []
    for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(b"data:")]
        payload = b"\n".join(lines).strip()
        if payload:
            out.append(json.loads(payload))
    return out


def wait_listening(proc: subprocess.Popen, port: int, label: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{label} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"{label} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S} s")


# --------------------------------------------------------------------------------------------
# Statistics.


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


# --------------------------------------------------------------------------------------------
# The measurements. Where two servers can be measured alternately (cold start, sequential
# latency) they are, so that a burst of machine noise hits both rather than one.


def measure_cold_start(servers: list[Server], runs: int, warmup: int) -> None:
    samples: dict[str, list[float]] = {s.label: [] for s in servers}
    for i in range(warmup + runs):
        for s in servers:
            t0 = time.perf_counter()
            proc = spawn(s.stdio_argv, cwd=s.cwd, stderr_path=s.logs, stdio=True)
            try:
                client = StdioClient(proc, s.label)
                info = client.handshake()
                tools = client.request("tools/list", timeout=STARTUP_TIMEOUT_S)
                elapsed = time.perf_counter() - t0
                if not tools.get("tools"):
                    raise BenchError(f"{s.label}: tools/list is empty")
                s.results.setdefault("server_info", info.get("serverInfo", {}))
                s.results.setdefault("tool_count", len(tools["tools"]))
                s.results.setdefault("tools_list_bytes", len(json.dumps(tools, separators=(",", ":"))))
            finally:
                stop(proc)
                _CHILDREN.remove(proc)
            if i >= warmup:
                samples[s.label].append(elapsed * 1000)
    for s in servers:
        xs = samples[s.label]
        s.results["cold_median_ms"] = statistics.median(xs)
        s.results["cold_min_ms"] = min(xs)
        s.results["cold_max_ms"] = max(xs)


def measure_stdio_latency(servers: list[Server], calls: int, warmup: int) -> None:
    clients = {}
    for s in servers:
        proc = spawn(s.stdio_argv, cwd=s.cwd, stderr_path=s.logs, stdio=True)
        client = StdioClient(proc, s.label)
        client.handshake()
        clients[s.label] = client
    samples: dict[str, list[float]] = {s.label: [] for s in servers}
    for i in range(warmup + calls):
        for s in servers:
            client = clients[s.label]
            req_id = client.next_id
            client.next_id += 1
            line = json.dumps(
                {"jsonrpc": "2.0", "id": req_id, "method": "tools/call", "params": {"name": s.tool, "arguments": s.arguments}},
                separators=(",", ":"),
            ).encode() + b"\n"
            t0 = time.perf_counter()
            client.send_raw(line)
            result = client.read_response(req_id)
            elapsed = time.perf_counter() - t0
            if i == 0:
                s.check_call_result(result)
            if i >= warmup:
                samples[s.label].append(elapsed * 1000)
    for s in servers:
        xs = sorted(samples[s.label])
        s.results["stdio_p50_ms"] = percentile(xs, 50)
        s.results["stdio_p95_ms"] = percentile(xs, 95)
        s.results["stdio_rss_mib"] = peak_rss_mib(clients[s.label].proc.pid)
        stop(clients[s.label].proc)


def start_http(s: Server) -> tuple[subprocess.Popen, int]:
    # A port picked now may be taken before the server binds it; retry a few times.
    for _attempt in range(5):
        port = free_port()
        proc = spawn(s.http_argv(port), cwd=s.cwd, stderr_path=s.logs, stdio=False)
        try:
            wait_listening(proc, port, s.label)
            return proc, port
        except BenchError as e:
            stop(proc)
            last = e
    raise last


def measure_http_latency(servers: list[Server], ports: dict[str, int], calls: int, warmup: int) -> None:
    clients = {}
    for s in servers:
        c = HttpClient(ports[s.label], s.label)
        c.handshake()
        clients[s.label] = c
    samples: dict[str, list[float]] = {s.label: [] for s in servers}
    try:
        for i in range(warmup + calls):
            for s in servers:
                c = clients[s.label]
                body, req_id = c.encode("tools/call", {"name": s.tool, "arguments": s.arguments})
                t0 = time.perf_counter()
                result = c.post(body, req_id)
                elapsed = time.perf_counter() - t0
                if i == 0:
                    s.check_call_result(result)
                if i >= warmup:
                    samples[s.label].append(elapsed * 1000)
    finally:
        for c in clients.values():
            c.close()
    for s in servers:
        xs = sorted(samples[s.label])
        s.results["http_p50_ms"] = percentile(xs, 50)
        s.results["http_p95_ms"] = percentile(xs, 95)


def open_sessions(s: Server, port: int, clients: int) -> list[HttpClient]:
    """Opens `clients` sessions (each on its own connection) and times each one's handshake:
    a new session is where a server builds its per-session state."""
    sessions, times = [], []
    for _ in range(clients):
        c = HttpClient(port, s.label)
        t0 = time.perf_counter()
        c.handshake()
        times.append((time.perf_counter() - t0) * 1000)
        for _ in range(5):  # warm-up calls, not counted
            c.request("tools/call", {"name": s.tool, "arguments": s.arguments})
        sessions.append(c)
    s.results["session_median_ms"] = statistics.median(times)
    return sessions


def throughput_window(s: Server, proc: subprocess.Popen, sessions: list[HttpClient], duration: float) -> tuple[int, float, float]:
    """Every session calls in its own thread for `duration` seconds; returns (calls, server CPU s,
    bench CPU s). Only calls that complete inside the window count."""
    clients = len(sessions)
    counts = [0] * clients
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1, timeout=READ_TIMEOUT_S)
    window: dict[str, float] = {}
    # The request body with a fresh id per call (rmcp keeps answered ids of a session for a while,
    # so a repeated id could be served from that record instead of calling the tool again).
    params = json.dumps({"name": s.tool, "arguments": s.arguments}, separators=(",", ":"))
    template = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":' + params + "}"

    def worker(k: int) -> None:
        c = sessions[k]
        try:
            barrier.wait()
            end = window["end"]
            n = 0
            # Bounded by the window: each call has a READ_TIMEOUT_S socket timeout.
            while True:
                req_id = c.next_id
                c.next_id += 1
                c.post((template % req_id).encode(), req_id)
                if time.perf_counter() > end:
                    break
                n += 1
            counts[k] = n
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {k}: {e}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
    window["end"] = time.perf_counter() + duration
    barrier.wait()
    for t in threads:
        t.join(timeout=duration + READ_TIMEOUT_S + 5)
    cpu1, client_cpu1 = cpu_seconds(proc.pid), time.process_time()
    if any(t.is_alive() for t in threads):
        raise BenchError(f"{s.label}: a client thread did not finish")
    if errors:
        raise BenchError(f"{s.label}: {len(errors)} clients failed; first: {errors[0]}")
    if sum(counts) == 0:
        raise BenchError(f"{s.label}: no call completed in the throughput window")
    return sum(counts), cpu1 - cpu0, client_cpu1 - client_cpu0


def measure_throughput(
    servers: list[Server], procs: dict[str, subprocess.Popen], ports: dict[str, int], clients: int, duration: float, rounds: int
) -> None:
    """`clients` concurrent sessions per server; `rounds` windows per server, alternating between
    the servers so that a burst of machine noise does not land on one server only.

    Requests per second is the median over the rounds. The server's CPU time over the windows
    (from /proc) divided by its calls gives its CPU cost per call, a figure the Python client's
    own speed cannot distort; the bench's CPU share tells when the client, not the server, was
    the limit. Peak RSS is read after the last round.
    """
    sessions = {s.label: open_sessions(s, ports[s.label], clients) for s in servers}
    tallies: dict[str, list[tuple[int, float, float]]] = {s.label: [] for s in servers}
    try:
        for r in range(rounds):
            for s in servers:
                log(f"HTTP throughput: {s.label}, round {r + 1}/{rounds}: {clients} clients for {duration:g} s")
                tallies[s.label].append(throughput_window(s, procs[s.label], sessions[s.label], duration))
    finally:
        for cs in sessions.values():
            for c in cs:
                c.close()
    for s in servers:
        t = tallies[s.label]
        calls, server_cpu, client_cpu = (sum(x[i] for x in t) for i in range(3))
        s.results["rps"] = statistics.median(x[0] / duration for x in t)
        s.results["rps_rounds"] = [round(x[0] / duration) for x in t]
        s.results["server_cpu_us_per_call"] = server_cpu / calls * 1e6
        s.results["client_cpu_share"] = client_cpu / ((server_cpu + client_cpu) or 1)
        s.results["http_rss_mib"] = peak_rss_mib(procs[s.label].pid)


def measure_run_log_scaling(oc_bin: Path, sizes: list[int], calls: int, warmup: int, logs: Path) -> list[list[str]]:
    """deploy_status latency over stdio as the run log grows (optional, `--run-log-sizes`).

    One real staging deploy on the local platform gives a genuine run log (one line per step
    event); its lines are then repeated under fresh run ids to make logs of N runs.
    """
    project = make_project(oc_bin)
    try:
        log("run-log scaling: one real staging deploy to get a genuine run log")
        out = subprocess.run(
            [str(oc_bin), "staging", "--project-dir", str(project), "--json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, env=child_env(),
        )
        if out.returncode != 0:
            raise BenchError(f"the staging deploy failed (exit {out.returncode}): {out.stderr[-500:]}")
        run_id = json.loads(out.stdout)["run_id"]
    finally:
        # The deploy started the local supervisor and a release; this stops both.
        down = subprocess.run([str(oc_bin), "local", "down", "--project-dir", str(project)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=child_env())
        if down.returncode != 0:
            log(f"warning: `oc-deploy local down` failed: {down.stderr[-300:]}")
    run_log = project / ".checkpoints" / "oc-deploy-ops.runs.jsonl"
    one_run = run_log.read_text(encoding="utf-8")
    prefix = run_id.rsplit("-", 1)[0]
    rows = []
    try:
        for n in sizes:
            text = "".join(one_run.replace(run_id, f"{prefix}-{k:06x}") for k in range(n))
            run_log.write_text(text, encoding="utf-8")
            proc = spawn([str(oc_bin), "serve", "--project-dir", str(project)], cwd=project, stderr_path=logs, stdio=True)
            try:
                client = StdioClient(proc, "oc-deploy")
                client.handshake()
                xs = []
                for i in range(warmup + calls):
                    t0 = time.perf_counter()
                    result = client.request("tools/call", {"name": "deploy_status", "arguments": {}}, timeout=60)
                    if i >= warmup:
                        xs.append((time.perf_counter() - t0) * 1000)
                if result.get("isError") or len(result["structuredContent"]["recent"]) != min(n, 10):
                    raise BenchError(f"deploy_status did not list the {n} runs: {json.dumps(result)[:300]}")
                xs.sort()
                rows.append([f"{n:,}", f"{len(text.encode()) / 1e6:.2f} MB", f"{percentile(xs, 50):.2f} ms", f"{percentile(xs, 95):.2f} ms", f"{peak_rss_mib(proc.pid):.1f} MiB"])
            finally:
                stop(proc)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------------------------
# Reporting.

ROWS = [
    # key, label, unit, format, better ("lower" or "higher")
    ("cold_median_ms", "cold start, median (spawn → initialize → tools/list)", "ms", "{:.1f}", "lower"),
    ("cold_min_ms", "cold start, min", "ms", "{:.1f}", "lower"),
    ("cold_max_ms", "cold start, max", "ms", "{:.1f}", "lower"),
    ("stdio_p50_ms", "stdio tools/call p50", "ms", "{:.3f}", "lower"),
    ("stdio_p95_ms", "stdio tools/call p95", "ms", "{:.3f}", "lower"),
    ("http_p50_ms", "HTTP tools/call p50", "ms", "{:.3f}", "lower"),
    ("http_p95_ms", "HTTP tools/call p95", "ms", "{:.3f}", "lower"),
    ("session_median_ms", "HTTP new session (initialize + initialized), median", "ms", "{:.2f}", "lower"),
    ("rps", "HTTP throughput, {clients} clients (median of rounds)", "req/s", "{:,.0f}", "higher"),
    ("server_cpu_us_per_call", "server CPU per HTTP call under load", "µs", "{:,.0f}", "lower"),
    ("client_cpu_share", "bench client's share of CPU under load", "%", "{:.0%}", "info"),
    ("stdio_rss_mib", "peak RSS after the stdio calls", "MiB", "{:.1f}", "lower"),
    ("http_rss_mib", "peak RSS after the HTTP load", "MiB", "{:.1f}", "lower"),
    ("tools_list_bytes", "tools/list result size", "bytes", "{:,}", "info"),
]


def table_rows(oc: Server, base: Server, clients: int) -> list[list[str]]:
    rows = []
    for key, label, unit, fmt, _better in ROWS:
        a, b = oc.results.get(key), base.results.get(key)
        if a is None or b is None:
            continue
        ratio = f"{a / b:.2f}×" if b else "—"
        if unit == "%":
            cells = [fmt.format(a), fmt.format(b)]
            ratio = "—"
        else:
            cells = [f"{fmt.format(a)} {unit}", f"{fmt.format(b)} {unit}"]
        rows.append([label.format(clients=clients), *cells, ratio])
    return rows


def render_plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def machine_summary() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rustc = "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        commit = f"{head}{' (with uncommitted changes)' if dirty else ''}"
    except (OSError, subprocess.TimeoutExpired):
        commit = "unknown"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "model": model,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kernel": platform.release(),
        "rustc": rustc,
        "commit": commit,
    }


# --------------------------------------------------------------------------------------------


def raise_interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true", help="reuse target/release/oc-deploy and target/bench/release/echo-baseline")
    ap.add_argument("--cold-runs", type=int, default=20, help="cold starts per server (default 20)")
    ap.add_argument("--calls", type=int, default=500, help="sequential calls per server and transport (default 500)")
    ap.add_argument("--warmup", type=int, default=2, help="discarded cold starts before measuring (default 2)")
    ap.add_argument("--warmup-calls", type=int, default=50, help="discarded calls before measuring latency (default 50)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (default 32)")
    ap.add_argument("--duration", type=float, default=5.0, help="throughput window in seconds (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput windows per server, alternating (default 3)")
    ap.add_argument("--run-log-sizes", metavar="N,N,...", help="also time deploy_status with run logs of N runs (e.g. 0,10,100,1000); does one real local staging deploy")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5 cold starts, 100 calls, a 2 s window")
    ap.add_argument("--markdown", nargs="?", const="-", metavar="PATH", help="print the table as Markdown, or write it to PATH")
    ap.add_argument("--json", metavar="PATH", help="also write the raw figures as JSON to PATH")
    args = ap.parse_args()
    if args.quick:
        args.cold_runs, args.calls, args.warmup_calls, args.duration, args.rounds = 5, 100, 20, 2.0, 1
    for name in ("cold_runs", "calls", "clients", "rounds"):
        if not 1 <= getattr(args, name) <= 100_000:
            ap.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    run_log_sizes = []
    if args.run_log_sizes:
        try:
            run_log_sizes = [int(x) for x in args.run_log_sizes.split(",") if x.strip()]
        except ValueError:
            ap.error("--run-log-sizes takes comma-separated counts, e.g. 0,10,100,1000")
        if not all(0 <= n <= 5000 for n in run_log_sizes):
            ap.error("--run-log-sizes: each count must be between 0 and 5000")
    if not 0.5 <= args.duration <= 600:
        ap.error("--duration must be between 0.5 and 600 seconds")

    # SIGTERM (e.g. from `timeout`) unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, raise_interrupt)

    work = Path(tempfile.mkdtemp(prefix="ocd-bench-logs-"))
    project = None
    # The load before our own build, which would otherwise raise it.
    load_before_build = os.getloadavg()
    try:
        if args.no_build:
            oc_bin = existing_binary(REPO_ROOT / "target" / "release" / "oc-deploy")
            base_bin = existing_binary(REPO_ROOT / "target" / "bench" / "release" / "echo-baseline")
        else:
            oc_bin = cargo_build(REPO_ROOT, ["-p", "oc-deploy"], "oc-deploy")
            base_bin = cargo_build(BASELINE_DIR, [], "echo-baseline")
        machine = machine_summary()
        machine["load_before_build"] = load_before_build
        if load_before_build[0] > 0.5 * (os.cpu_count() or 1):
            log(f"warning: the machine was busy before this run (1-minute load {load_before_build[0]:.2f} on {os.cpu_count()} CPUs): expect noisy figures")
        project = make_project(oc_bin)
        oc = Server(
            label="oc-deploy",
            stdio_argv=[str(oc_bin), "serve", "--project-dir", str(project)],
            http_argv=lambda port: [str(oc_bin), "serve", "--http", f"127.0.0.1:{port}", "--project-dir", str(project)],
            tool="deploy_status",
            arguments={},
            cwd=project,
            logs=work / "oc-deploy.stderr.log",
        )
        base = Server(
            label="baseline",
            stdio_argv=[str(base_bin)],
            http_argv=lambda port: [str(base_bin), "--http", f"127.0.0.1:{port}"],
            tool="echo",
            arguments={"text": "hello from the bench"},
            cwd=project,
            logs=work / "baseline.stderr.log",
        )
        servers = [oc, base]

        log(f"cold start: {args.warmup} warm-up + {args.cold_runs} runs each, alternating")
        measure_cold_start(servers, args.cold_runs, args.warmup)
        log(f"stdio latency: {args.warmup_calls} warm-up + {args.calls} calls each, alternating")
        measure_stdio_latency(servers, args.calls, args.warmup_calls)

        http_procs = {}
        ports = {}
        for s in servers:
            http_procs[s.label], ports[s.label] = start_http(s)
        log(f"HTTP latency: {args.warmup_calls} warm-up + {args.calls} calls each, alternating")
        measure_http_latency(servers, ports, args.calls, args.warmup_calls)
        measure_throughput(servers, http_procs, ports, args.clients, args.duration, args.rounds)
        for proc in http_procs.values():
            stop(proc)

        header = ["figure", "oc-deploy", "baseline", "ratio oc-deploy / baseline"]
        rows = table_rows(oc, base, args.clients)
        notes = (
            f"{machine['date']} · {machine['cpus']} CPUs ({machine['model']}) · "
            f"load averages before the build {' '.join(f'{x:.2f}' for x in load_before_build)}, before measuring {machine['load']} · "
            f"{machine['rustc']} · oc-deploy {machine['commit']} · oc-deploy calls deploy_status, the baseline calls echo · "
            f"{args.cold_runs} cold starts, {args.calls} calls per transport, {args.clients} clients × {args.rounds} round(s) of {args.duration:g} s · "
            f"req/s per round: oc-deploy {oc.results['rps_rounds']}, baseline {base.results['rps_rounds']}"
        )
        if args.markdown == "-":
            print(render_markdown(header, rows))
            print(f"\n{notes}")
        else:
            print(render_plain(header, rows))
            print(f"\n{notes}")
            if args.markdown:
                Path(args.markdown).write_text(render_markdown(header, rows) + f"\n\n{notes}\n", encoding="utf-8")
        scaling = []
        if args.run_log_sizes:
            scaling = measure_run_log_scaling(oc_bin, run_log_sizes, min(args.calls, 50), 10, work / "oc-deploy.stderr.log")
            sheader = ["runs in the log", "log size", "deploy_status p50 (stdio)", "p95", "peak RSS"]
            print()
            print(render_markdown(sheader, scaling) if args.markdown == "-" else render_plain(sheader, scaling))
            if args.markdown and args.markdown != "-":
                with open(args.markdown, "a", encoding="utf-8") as f:
                    f.write("\n" + render_markdown(sheader, scaling) + "\n")
        if args.markdown and args.markdown != "-":
            log(f"wrote {args.markdown}")
        if args.json:
            raw = {"machine": machine, "args": vars(args), "oc-deploy": oc.results, "baseline": base.results, "run_log_scaling": scaling}
            Path(args.json).write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")
            log(f"wrote {args.json}")
        return 0
    except BenchError as e:
        log(f"error: {e}")
        for f in sorted(work.glob("*.log")):
            tail = f.read_text(errors="replace").splitlines()[-10:]
            if tail:
                log(f"last lines of {f.name}:\n  " + "\n  ".join(tail))
        return 1
    except subprocess.TimeoutExpired as e:
        log(f"error: `{' '.join(map(str, e.cmd))}` did not finish within {e.timeout:g} s")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop_all()
        if project is not None:
            shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
