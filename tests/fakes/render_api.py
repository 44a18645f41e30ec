#!/usr/bin/env python3
"""A fake Render REST API (https://api.render.com/v1) for oc-deploy's tests (stdlib only).

    python3 render_api.py --state DIR

Binds 127.0.0.1:0, prints `PORT <n>` as its first stdout line, and serves until it is killed or
its stdin closes (start it with a pipe on stdin and keep the pipe open). Point the provider at
`http://127.0.0.1:<n>/v1` (RENDER_HOST); paths without the `/v1` prefix are served too.

What it follows (provider-cli-facts.md §4 "Render REST API"):
- `Authorization: Bearer <key>` is required on every request: 401 `{"message":"unauthorized"}`
  otherwise (and when control.json names an `api_key`, the key must match it).
- `GET /services/{id}/deploys?limit=N` answers `[{"deploy": {...}, "cursor": "..."}]`, newest first.
- `POST /services/{id}/deploys` answers 201 with a deploy object (`status: created`), or 202 with
  no body when control.json has `"queue_202": true`.
- Each GET of a deploy (alone or in the list) advances every unfinished deploy of the service by
  one step: created -> build_in_progress -> update_in_progress -> live. When a deploy becomes
  live, the previously live one becomes `deactivated` and live/<service_id>.json is rewritten.
- `POST /services/{id}/rollback {"deployId"}` answers 201 with a new deploy (trigger `rollback`,
  the old deploy's commit) that goes update_in_progress -> live.
- Env vars: GET returns values (as the real API does), PUT /env-vars/{key} `{"value"}`,
  DELETE /env-vars/{key} (204, or 404 when unset).
- `GET /users` -> `{"email", "name"}`; `GET/PATCH /services/{id}` (PATCH takes `autoDeploy`).
- Unknown services answer 404 `{"message": "service not found"}`.

State directory (DIR):
- services.json (written by the test; the fake updates it): {"srv-...": {"name": "shop-staging",
  "autoDeploy": "yes", "branch": "main", "url": "https://shop-staging.onrender.com",
  "envVars": {"KEY": "value"}}}
- control.json (optional, re-read on every request, so a test may change it at any time):
  {"api_key": "rnd_...",                       # the only key accepted (default: any non-empty)
   "outcome": {"srv-...": "pre_deploy_failed" | "build_failed" | "update_failed" | "stuck"},
   "rate_limit": {"count": 2, "reset": 1},     # the next `count` requests get 429
   "queue_202": true,                          # POST deploys answers 202 without a body
   "head_commit": "<sha>",                     # the commit of a deploy that names none
   "user": {"name": "...", "email": "..."}}
- deploys/<service_id>.json: the service's deploys, newest first (keys starting with `_` are the
  fake's own bookkeeping and are never served).
- requests.jsonl: one line per request: {"method", "path", "query", "body", "authorized"}; the
  body is recorded as sent, secret values included (tests check what reached the API).
- live/<service_id>.json: {"version": "<dep-...>", "commit": "<sha>"} of the live deploy.
"""

import argparse
import datetime
import json
import os
import random
import string
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TERMINAL = {"live", "deactivated", "build_failed", "update_failed", "pre_deploy_failed", "canceled"}
PLANS = {
    "live": ["build_in_progress", "update_in_progress", "live"],
    "pre_deploy_failed": ["build_in_progress", "pre_deploy_in_progress", "pre_deploy_failed"],
    "build_failed": ["build_in_progress", "build_failed"],
    "update_failed": ["build_in_progress", "update_in_progress", "update_failed"],
    "stuck": ["build_in_progress"],
}

LOCK = threading.Lock()
STATE = "."
_last_stamp = [0.0]


def now_iso():
    t = max(time.time(), _last_stamp[0] + 0.001)
    _last_stamp[0] = t
    dt = datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def new_id(prefix):
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(20))


def path(*parts):
    p = os.path.join(STATE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def load(name, default):
    try:
        with open(path(name), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save(name, data):
    p = path(name)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, p)


def public(deploy):
    return {k: v for k, v in deploy.items() if not k.startswith("_")}


def service_object(sid, svc):
    return {
        "id": sid,
        "autoDeploy": svc.get("autoDeploy", "yes"),
        "branch": svc.get("branch", "main"),
        "createdAt": svc.get("createdAt", "2025-01-01T00:00:00Z"),
        "dashboardUrl": "https://dashboard.render.com/web/" + sid,
        "name": svc.get("name", sid),
        "notifyOnFail": "default",
        "ownerId": "tea-fake0000000000000000",
        "repo": svc.get("repo", "https://github.com/example/app"),
        "rootDir": "",
        "serviceDetails": {"url": svc.get("url", "https://%s.onrender.com" % svc.get("name", sid))},
        "slug": svc.get("name", sid),
        "suspended": "not_suspended",
        "suspenders": [],
        "type": svc.get("type", "web_service"),
        "updatedAt": svc.get("updatedAt", "2025-01-01T00:00:00Z"),
    }


def advance(sid):
    """One poll's worth of progress for every unfinished deploy of the service."""
    deploys = load("deploys/%s.json" % sid, [])
    changed = False
    for d in deploys:
        if d.get("status") in TERMINAL:
            continue
        plan = d.get("_plan") or []
        if not plan:
            continue
        d["status"] = plan.pop(0)
        d["_plan"] = plan
        d["updatedAt"] = now_iso()
        changed = True
        if d["status"] in TERMINAL:
            d["finishedAt"] = d["updatedAt"]
        if d["status"] == "live":
            for other in deploys:
                if other is not d and other.get("status") == "live":
                    other["status"] = "deactivated"
                    other["updatedAt"] = d["updatedAt"]
            save("live/%s.json" % sid, {"version": d["id"], "commit": (d.get("commit") or {}).get("id")})
    if changed:
        save("deploys/%s.json" % sid, deploys)
    return deploys


def create_deploy(sid, commit_id, message, trigger, plan):
    deploys = load("deploys/%s.json" % sid, [])
    stamp = now_iso()
    d = {
        "commit": {"createdAt": stamp, "id": commit_id, "message": message},
        "createdAt": stamp,
        "id": new_id("dep-"),
        "startedAt": stamp,
        "status": "created",
        "trigger": trigger,
        "updatedAt": stamp,
        "_plan": list(plan),
    }
    deploys.insert(0, d)
    save("deploys/%s.json" % sid, deploys)
    return d


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read requests.jsonl instead
        pass

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def send_json(self, status, body, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        url = urllib.parse.urlsplit(self.path)
        route = url.path
        if route.startswith("/v1/") or route == "/v1":
            route = route[3:] or "/"
        query = dict(urllib.parse.parse_qsl(url.query))
        with LOCK:
            control = load("control.json", {})
            auth = self.headers.get("Authorization") or ""
            token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
            authorized = bool(token) and (not control.get("api_key") or token == control.get("api_key"))
            with open(path("requests.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({"method": method, "path": route, "query": query, "body": body, "authorized": authorized}) + "\n")
            if not authorized:
                return self.send_json(401, {"message": "unauthorized"})
            rl = control.get("rate_limit") or {}
            if int(rl.get("count") or 0) > 0:
                rl["count"] = int(rl["count"]) - 1
                control["rate_limit"] = rl
                save("control.json", control)
                reset = str(rl.get("reset", 1))
                return self.send_json(
                    429,
                    {"id": "rate-limited", "message": "rate limit exceeded"},
                    {"Ratelimit-Limit": "100", "Ratelimit-Remaining": "0", "Ratelimit-Reset": reset, "Retry-After": reset},
                )
            status, out = self.route(method, route, query, body, control)
            return self.send_json(status, out)

    def route(self, method, route, query, body, control):
        parts = [urllib.parse.unquote(p) for p in route.strip("/").split("/")]
        if parts == ["users"] and method == "GET":
            return 200, control.get("user") or {"email": "dev@example.com", "name": "Dev Example"}
        if not parts or parts[0] != "services" or len(parts) < 2:
            return 404, {"message": "not found"}
        sid = parts[1]
        services = load("services.json", {})
        if sid not in services:
            return 404, {"id": "not-found", "message": "service not found"}
        svc = services[sid]
        rest = parts[2:]
        if not rest:
            if method == "GET":
                return 200, service_object(sid, svc)
            if method == "PATCH":
                for k in ("autoDeploy", "branch", "name"):
                    if isinstance(body, dict) and k in body:
                        svc[k] = body[k]
                svc["updatedAt"] = now_iso()
                save("services.json", services)
                return 200, service_object(sid, svc)
        if rest == ["deploys"] and method == "GET":
            deploys = advance(sid)
            limit = int(query.get("limit") or 20)
            start = 0
            if query.get("cursor"):
                ids = [d["id"] for d in deploys]
                start = ids.index(query["cursor"]) + 1 if query["cursor"] in ids else len(ids)
            page = deploys[start:start + limit]
            return 200, [{"deploy": public(d), "cursor": d["id"]} for d in page]
        if rest == ["deploys"] and method == "POST":
            body = body if isinstance(body, dict) else {}
            if body.get("clearCache") not in (None, "clear", "do_not_clear"):
                return 400, {"message": "invalid clearCache"}
            commit_id = body.get("commitId") or control.get("head_commit") or "0" * 40
            outcome = (control.get("outcome") or {}).get(sid, "live")
            d = create_deploy(sid, commit_id, "deploy %s" % commit_id[:7], "api", PLANS.get(outcome, PLANS["live"]))
            if control.get("queue_202"):
                return 202, None
            return 201, public(d)
        if len(rest) >= 2 and rest[0] == "deploys":
            did = rest[1]
            deploys = advance(sid) if method == "GET" else load("deploys/%s.json" % sid, [])
            match = [d for d in deploys if d["id"] == did]
            if not match:
                return 404, {"id": "not-found", "message": "deploy not found"}
            d = match[0]
            if len(rest) == 2 and method == "GET":
                return 200, public(d)
            if rest[2:] == ["cancel"] and method == "POST":
                if d["status"] not in TERMINAL:
                    d["status"] = "canceled"
                    d["_plan"] = []
                    d["finishedAt"] = d["updatedAt"] = now_iso()
                    save("deploys/%s.json" % sid, deploys)
                return 200, public(d)
        if rest == ["rollback"] and method == "POST":
            did = body.get("deployId") if isinstance(body, dict) else None
            deploys = load("deploys/%s.json" % sid, [])
            match = [d for d in deploys if d["id"] == did]
            if not match:
                return 404, {"id": "not-found", "message": "deploy not found"}
            if match[0]["status"] not in ("live", "deactivated"):
                return 400, {"message": "cannot roll back to a deploy that never went live (status %s)" % match[0]["status"]}
            old = match[0].get("commit") or {}
            outcome = (control.get("outcome") or {}).get(sid, "live")
            plan = ["update_in_progress", "update_failed"] if outcome == "update_failed" else (
                ["update_in_progress"] if outcome == "stuck" else ["update_in_progress", "live"])
            d = create_deploy(sid, old.get("id"), old.get("message"), "rollback", plan)
            return 201, public(d)
        if rest == ["env-vars"] and method == "GET":
            env = svc.get("envVars") or {}
            return 200, [{"envVar": {"key": k, "value": v}, "cursor": k} for k, v in env.items()]
        if rest == ["env-vars"] and method == "PUT":
            env = {}
            for item in body if isinstance(body, list) else []:
                if "key" in item:
                    env[item["key"]] = item.get("value", "generated-" + new_id(""))
            svc["envVars"] = env
            save("services.json", services)
            return 200, [{"key": k, "value": v} for k, v in env.items()]
        if len(rest) == 2 and rest[0] == "env-vars":
            key = rest[1]
            env = svc.setdefault("envVars", {})
            if method == "PUT":
                if not isinstance(body, dict) or "value" not in body:
                    return 400, {"message": "value is required"}
                env[key] = body["value"]
                save("services.json", services)
                return 200, {"key": key, "value": body["value"]}
            if method == "DELETE":
                if key not in env:
                    return 404, {"id": "not-found", "message": "env var not found"}
                del env[key]
                save("services.json", services)
                return 204, None
            if method == "GET":
                if key not in env:
                    return 404, {"id": "not-found", "message": "env var not found"}
                return 200, {"key": key, "value": env[key]}
        return 404, {"message": "not found"}


def main():
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True)
    args = ap.parse_args()
    STATE = os.path.abspath(args.state)
    os.makedirs(STATE, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sys.stdout.write("PORT %d\n" % server.server_address[1])
    sys.stdout.flush()

    def watch_stdin():
        try:
            while sys.stdin.read(4096):
                pass
        except (OSError, ValueError):
            pass
        server.shutdown()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
