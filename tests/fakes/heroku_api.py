#!/usr/bin/env python3
"""A fake Heroku Platform API on 127.0.0.1 for driving the REAL heroku CLI offline.

Usage: python3 heroku_api.py --state DIR
  Binds 127.0.0.1:0, prints `PORT <n>` as its first stdout line, and serves until killed or
  until its stdin closes (so a crashed test leaves nothing behind). Point the heroku CLI at it
  with HEROKU_HOST=http://127.0.0.1:<n> and HEROKU_API_KEY=<any key not starting with "bad-">.

Files in DIR:
  requests.jsonl  one JSON line per request: method, path, query, headers of interest, body
  live/<app>.json {"version": "v<N>", "commit": <full commit sha of the current release's slug>}
  state.json      the whole fake account after each change (for debugging)

Routes are listed in docs/platforms/real-cli-testing.md; an unknown route answers 404
{"id":"not_found"} and is still recorded. Apps are created with the real route POST /apps
{"name": ...}; a deploy is POST /apps/{app}/builds {"source_blob": {"version": <sha>}} (what a
git push does server side), which releases at once as "Deploy <sha[:8]>" (a build whose version
starts with "fail" makes a release whose release phase failed: status "failed").
"""

import argparse
import datetime
import json
import os
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

EMAIL = "dev@example.com"
USER_ID = "0b4b5f4c-1f0e-4d4e-9d0b-3a1c2f5e6d7a"
RECORDED_HEADERS = ("authorization", "content-type", "accept", "range", "user-agent", "heroku-two-factor-code")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status, ident, message, resource=None):
        super().__init__(message)
        self.status = status
        self.ident = ident
        self.message = message
        self.resource = resource


def app_not_found():
    return ApiError(404, "not_found", "Couldn't find that app.", "app")


class Platform:
    """Every app the fake knows; every method runs under `lock`."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.lock = threading.Lock()
        self.apps = {}  # name -> {"app": {...}, "releases": [...oldest first], "config": {...}, "slugs": {id: commit}}
        os.makedirs(os.path.join(state_dir, "live"), exist_ok=True)

    def save(self):
        path = os.path.join(self.dir, "state.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.apps, f, indent=2)
        os.replace(path + ".tmp", path)

    def find(self, ident):
        for a in self.apps.values():
            if ident in (a["app"]["name"], a["app"]["id"]):
                return a
        raise app_not_found()

    def create_app(self, body):
        name = body.get("name") or f"fake-app-{uuid.uuid4().hex[:6]}"
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,29}", name):
            raise ApiError(422, "invalid_params", "Name must start with a letter, end with a letter or digit and can only contain lowercase letters, digits, and dashes.")
        if name in self.apps:
            raise ApiError(422, "invalid_params", "Name is already taken")
        created = now()
        app = {
            "acm": False,
            "archived_at": None,
            "buildpack_provided_description": None,
            "build_stack": {"id": "ee582d3c-717d-4a57-ba5f-8b3a39f3a817", "name": "heroku-24"},
            "created_at": created,
            "git_url": f"https://git.heroku.com/{name}.git",
            "id": str(uuid.uuid4()),
            "internal_routing": None,
            "maintenance": False,
            "name": name,
            "owner": {"email": EMAIL, "id": USER_ID},
            "organization": None,
            "team": None,
            "region": {"id": "59accabd-516d-4f0e-83e6-6e3757701145", "name": body.get("region") or "us"},
            "released_at": created,
            "repo_size": None,
            "slug_size": None,
            "space": None,
            "stack": {"id": "ee582d3c-717d-4a57-ba5f-8b3a39f3a817", "name": body.get("stack") or "heroku-24"},
            "updated_at": created,
            "web_url": f"https://{name}-0123456789ab.herokuapp.com/",
        }
        self.apps[name] = {"app": app, "releases": [], "config": {}, "slugs": {}}
        # Heroku makes v1 "Initial release" with the app.
        self.release(self.apps[name], "Initial release", slug_id=None)
        return app

    def release(self, a, description, slug_id, status="succeeded", config=None):
        """Appends a release; `config` (default: the app's current vars) is what it runs with."""
        created = now()
        version = len(a["releases"]) + 1
        rel = {
            "addon_plan_names": [],
            "artifacts": [{"type": "slug", "id": slug_id}] if slug_id else [],
            "app": {"name": a["app"]["name"], "id": a["app"]["id"]},
            "created_at": created,
            "description": description,
            "id": str(uuid.uuid4()),
            "updated_at": created,
            "slug": {"id": slug_id} if slug_id else None,
            "status": status,
            "user": {"id": USER_ID, "email": EMAIL},
            "version": version,
            "current": False,
            "output_stream_url": None,
            "eligible_for_rollback": status == "succeeded",
        }
        # The fake keeps each release's config vars so a rollback can restore them, as Heroku does.
        a.setdefault("release_config", {})[rel["id"]] = dict(a["config"] if config is None else config)
        a["releases"].append(rel)
        if status == "succeeded":
            for r in a["releases"]:
                r["current"] = r is rel
            a["app"]["released_at"] = created
            a["app"]["updated_at"] = created
        self.write_live(a)
        return rel

    def current(self, a):
        for r in reversed(a["releases"]):
            if r["current"]:
                return r
        return None

    def write_live(self, a):
        cur = self.current(a)
        if cur is None:
            return
        commit = a["slugs"].get(cur["slug"]["id"]) if cur["slug"] else None
        path = os.path.join(self.dir, "live", f"{a['app']['name']}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"version": f"v{cur['version']}", "commit": commit}, f)
        os.replace(path + ".tmp", path)

    def find_release(self, a, ident):
        ident = str(ident)
        for r in a["releases"]:
            if r["id"] == ident or str(r["version"]) == ident.lstrip("v"):
                return r
        raise ApiError(404, "not_found", "Couldn't find that release.", "release")


def parse_range(header):
    """`version ..; max=15, order=desc` -> (max, order)."""
    limit, order = 200, "asc"
    if header:
        m = re.search(r"max=(\d+)", header)
        if m:
            limit = int(m.group(1))
        m = re.search(r"order=(asc|desc)", header)
        if m:
            order = m.group(1)
    return limit, order


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-heroku-api/1"
    protocol_version = "HTTP/1.1"
    platform = None
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):
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

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        record = {
            "method": method,
            "path": path,
            "query": query,
            "headers": {h: self.headers[h] for h in RECORDED_HEADERS if self.headers.get(h) is not None},
            "body": body,
        }
        with self.log_lock:
            with open(os.path.join(self.platform.dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        try:
            if path == "/__fake__/state":
                with self.platform.lock:
                    return self.send_json(200, self.platform.apps)
            auth = self.headers.get("Authorization") or ""
            # Any bearer key is accepted except one starting with "bad-" (for auth-failure tests).
            if not auth.startswith("Bearer ") or auth == "Bearer " or auth.startswith("Bearer bad-"):
                raise ApiError(401, "unauthorized", "Invalid credentials provided.")
            with self.platform.lock:
                status, result, headers = self.route(method, path, body if isinstance(body, dict) else {})
                self.platform.save()
            self.send_json(status, result, headers)
        except ApiError as e:
            err = {"id": e.ident, "message": e.message}
            if e.resource:
                err["resource"] = e.resource
            self.send_json(e.status, err)
        except Exception as e:  # a fake bug: say so
            self.send_json(500, {"id": "internal_server_error", "message": f"fake API error: {e!r}"})

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("RateLimit-Remaining", "4500")
        self.send_header("Request-Id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def route(self, method, path, body):
        p = self.platform
        seg = [s for s in path.split("/") if s]

        if seg == ["account"] and method == "GET":
            return 200, {
                "allow_tracking": True,
                "beta": False,
                "created_at": "2020-01-01T00:00:00Z",
                "email": EMAIL,
                "federated": False,
                "id": USER_ID,
                "identity_provider": None,
                "last_login": now(),
                "name": "Dev Example",
                "sms_number": None,
                "suspended_at": None,
                "delinquent_at": None,
                "two_factor_authentication": False,
                "updated_at": now(),
                "verified": True,
                "default_organization": None,
                "default_team": None,
            }, {}

        if seg == ["apps"] and method == "GET":
            return 200, [a["app"] for a in p.apps.values()], {}
        if seg == ["apps"] and method == "POST":
            return 201, p.create_app(body), {}
        if not seg or seg[0] != "apps" or len(seg) < 2:
            raise ApiError(404, "not_found", f"The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header? ({method} {path})")

        a = p.find(seg[1])
        rest = seg[2:]
        if rest == [] and method == "GET":
            return 200, a["app"], {}
        if rest == [] and method == "DELETE":
            del p.apps[a["app"]["name"]]
            return 200, a["app"], {}

        if rest == ["releases"] and method == "GET":
            limit, order = parse_range(self.headers.get("Range"))
            rels = sorted(a["releases"], key=lambda r: r["version"], reverse=(order == "desc"))
            page = rels[:limit]
            headers = {}
            status = 200
            if len(rels) > limit:
                status = 206
                headers["Next-Range"] = f"version ]{page[-1]['version']}..; max={limit}, order={order}"
            return status, page, headers
        if len(rest) == 2 and rest[0] == "releases" and method == "GET":
            return 200, p.find_release(a, rest[1]), {}
        if rest == ["releases"] and method == "POST":
            # A rollback: a new release running the target's slug and config vars.
            target = p.find_release(a, body.get("release", ""))
            if not target["slug"]:
                raise ApiError(422, "invalid_params", f"Cannot rollback to v{target['version']}: it has no slug.")
            a["config"] = dict(a["release_config"][target["id"]])
            rel = p.release(a, body.get("description") or f"Rollback to v{target['version']}", target["slug"]["id"])
            return 201, rel, {}

        if rest == ["builds"] and method == "POST":
            blob = body.get("source_blob") or {}
            version = blob.get("version") or uuid.uuid4().hex
            slug_id = str(uuid.uuid4())
            a["slugs"][slug_id] = version
            status = "failed" if version.startswith("fail") else "succeeded"
            rel = p.release(a, f"Deploy {version[:8]}", slug_id, status=status)
            build = {
                "app": {"id": a["app"]["id"]},
                "buildpacks": None,
                "created_at": rel["created_at"],
                "id": str(uuid.uuid4()),
                "output_stream_url": None,
                "source_blob": {"checksum": None, "url": blob.get("url"), "version": version, "version_description": None},
                "release": {"id": rel["id"]},
                "slug": {"id": slug_id},
                "stack": "heroku-24",
                "status": "succeeded",
                "updated_at": rel["updated_at"],
                "user": {"id": USER_ID, "email": EMAIL},
            }
            return 201, build, {}

        if rest == ["config-vars"] and method == "GET":
            return 200, a["config"], {}
        if rest == ["config-vars"] and method == "PATCH":
            if not isinstance(body, dict):
                raise ApiError(422, "invalid_params", "Body must be a JSON object of config vars.")
            set_names = [k for k, v in body.items() if v is not None]
            unset_names = [k for k, v in body.items() if v is None]
            for k, v in body.items():
                if v is None:
                    a["config"].pop(k, None)
                else:
                    a["config"][k] = str(v)
            cur = p.current(a)
            slug = cur["slug"]["id"] if cur and cur["slug"] else None
            # Heroku makes a release for every config change (named as below).
            if set_names:
                p.release(a, f"Set {', '.join(set_names)} config vars", slug)
            if unset_names:
                p.release(a, f"Remove {', '.join(unset_names)} config vars", slug)
            return 200, a["config"], {}

        if rest == ["pipeline-couplings"] and method == "GET":
            raise ApiError(404, "not_found", "Couldn't find that pipeline coupling.", "pipeline_coupling")
        if rest in (["addons"], ["collaborators"], ["dynos"], ["domains"], ["features"], ["formation"], ["buildpack-installations"]) and method == "GET":
            return 200, [], {}

        raise ApiError(404, "not_found", f"The requested API endpoint was not found. ({method} {path})")


def watch_stdin():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="directory for requests.jsonl, live/, state.json")
    args = parser.parse_args()
    os.makedirs(args.state, exist_ok=True)
    Handler.platform = Platform(os.path.abspath(args.state))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
