#!/usr/bin/env python3
"""A fake Cloudflare API (client/v4) on 127.0.0.1 for driving the REAL wrangler CLI offline.

Usage: python3 cloudflare_api.py --state DIR
  Binds 127.0.0.1:0, prints `PORT <n>` as its first stdout line, and serves until killed or
  until its stdin closes (so a crashed test leaves nothing behind). Point wrangler at it with
  CLOUDFLARE_API_BASE_URL=http://127.0.0.1:<n>/client/v4 (the `/client/v4` prefix is optional).

Files in DIR:
  requests.jsonl     one JSON line per request: method, path, query, headers of interest, body
                     (JSON decoded; multipart parsed into parts; else text)
  live/<worker>.json {"version": <version id at the highest percentage>, "commit": <its workers/tag>}
  state.json         the whole fake account after each change (for debugging)

Routes are listed in docs/platforms/real-cli-testing.md. Any other route answers 404 with a
Cloudflare-shaped error (code 7003, as the real API does), and is still recorded.
Test-only control route: GET /__fake__/state returns state.json's content.
"""

import argparse
import datetime
import email.parser
import email.policy
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ACCOUNT_ID = "023e105f4ecef8ad9ca31a8372d0c353"
ACCOUNT_NAME = "Example Account"
EMAIL = "dev@example.com"
USER_ID = "7c5dae5552338874e5053f2534d2767a"
SUBDOMAIN = "example"

# Headers worth keeping in requests.jsonl (lower case).
RECORDED_HEADERS = ("authorization", "content-type", "accept", "user-agent", "range", "x-auth-email", "x-auth-key")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found_script(name):
    # The real API answers 10007 for a missing script; wrangler keys its "first deploy" path on it.
    return ApiError(404, 10007, "This Worker does not exist on your account.")


class Account:
    """Everything the fake knows; every method runs under `lock`."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.lock = threading.Lock()
        self.scripts = {}  # name -> script dict
        self.d1 = {}  # uuid -> {"uuid", "name", "created_at", "version"}
        os.makedirs(os.path.join(state_dir, "live"), exist_ok=True)
        os.makedirs(os.path.join(state_dir, "d1"), exist_ok=True)

    # ---- persistence -------------------------------------------------------------------------
    def save(self):
        path = os.path.join(self.dir, "state.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"scripts": self.scripts, "d1": self.d1}, f, indent=2)
        os.replace(tmp, path)

    def write_live(self, name):
        script = self.scripts[name]
        current = self.current_deployment(script)
        if not current:
            return
        top = max(current["versions"], key=lambda v: v["percentage"])
        live = {"version": top["version_id"], "commit": script["commits"].get(top["version_id"])}
        path = os.path.join(self.dir, "live", f"{name}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(live, f)
        os.replace(tmp, path)

    # ---- scripts, versions, deployments -------------------------------------------------------
    def script(self, name):
        if name not in self.scripts:
            raise not_found_script(name)
        return self.scripts[name]

    @staticmethod
    def current_deployment(script):
        return script["deployments"][-1] if script["deployments"] else None

    @staticmethod
    def find_version(script, version_id):
        for v in script["versions"]:
            if v["id"] == version_id:
                return v
        return None

    def new_version(self, name, metadata, parts, triggered_by, source="wrangler"):
        """Creates a version from an upload's metadata part; creates the script when new."""
        created = now()
        script = self.scripts.get(name)
        if script is None:
            script = {
                "id": name,
                "tag": uuid.uuid4().hex,
                "created_on": created,
                "modified_on": created,
                "versions": [],
                "deployments": [],
                "secrets": {},
                "settings": {"logpush": False, "tail_consumers": None, "observability": {"enabled": False}, "tags": []},
                "subdomain": {"enabled": False, "previews_enabled": False},
                "routes": [],
                "commits": {},  # version id -> commit (the upload's workers/tag); not part of the API
            }
            self.scripts[name] = script
        script["modified_on"] = created
        annotations = {"workers/triggered_by": triggered_by}
        for k, v in (metadata.get("annotations") or {}).items():
            annotations[k] = v
        bindings = [b for b in (metadata.get("bindings") or []) if b.get("type") != "inherit"]
        bindings += [{"name": n, "type": s["type"]} for n, s in sorted(script["secrets"].items())]
        content = b"".join(p["raw"] for p in parts if p.get("filename"))
        version = {
            "id": str(uuid.uuid4()),
            "number": len(script["versions"]) + 1,
            "metadata": {
                "created_on": created,
                "modified_on": created,
                "source": source,
                "author_id": USER_ID,
                "author_email": EMAIL,
                "hasPreview": False,
            },
            "annotations": annotations,
            "resources": {
                "bindings": bindings,
                "script": {
                    "etag": hashlib.sha256(content).hexdigest(),
                    "handlers": ["fetch"],
                    "last_deployed_from": source,
                },
                "script_runtime": {
                    "compatibility_date": metadata.get("compatibility_date") or "2024-09-01",
                    "compatibility_flags": metadata.get("compatibility_flags") or [],
                    "usage_model": "standard",
                    "limits": {"cpu_ms": 30000},
                },
            },
        }
        script["versions"].append(version)
        script["commits"][version["id"]] = annotations.get("workers/tag")
        return script, version

    def deploy(self, name, versions, message, triggered_by=None, force=False):
        script = self.script(name)
        if not versions:
            raise ApiError(400, 10021, "A deployment needs at least one version")
        total = 0
        for v in versions:
            if self.find_version(script, v.get("version_id")) is None:
                raise ApiError(404, 10007, "This Worker version does not exist")
            total += int(v.get("percentage", 0))
        if total != 100:
            raise ApiError(400, 10221, f"Sum of the deployment's percentages must be 100, got {total}")
        if triggered_by is None:
            deployed_before = {tv["version_id"] for d in script["deployments"] for tv in d["versions"]}
            if len(versions) == 1 and versions[0]["version_id"] in deployed_before:
                triggered_by = "rollback"
            elif all(v["version_id"] in deployed_before for v in versions):
                triggered_by = "promotion"
            else:
                triggered_by = "upload"
        if triggered_by == "rollback" and not force:
            # The real API refuses a rollback across a secret change (10220) unless ?force=true.
            target = self.find_version(script, versions[0]["version_id"])
            changed = sorted(
                n for n, s in script["secrets"].items() if s["modified_on"] > target["metadata"]["created_on"]
            ) + sorted(
                b["name"] for b in target["resources"]["bindings"] if b["type"] == "secret_text" and b["name"] not in script["secrets"]
            )
            if changed:
                raise ApiError(
                    400,
                    10220,
                    "A rollback cannot be performed because secrets have changed since this version was deployed. "
                    f"The following secrets have changed: {', '.join(changed)}",
                )
        annotations = {"workers/triggered_by": triggered_by}
        if message:
            annotations["workers/message"] = message
        deployment = {
            "id": str(uuid.uuid4()),
            "source": "wrangler" if triggered_by != "secret" else "api",
            "strategy": "percentage",
            "author_email": EMAIL,
            "created_on": now(),
            "annotations": annotations,
            "versions": [{"version_id": v["version_id"], "percentage": int(v["percentage"])} for v in versions],
        }
        script["deployments"].append(deployment)
        self.write_live(name)
        return deployment

    def secret_changed(self, name):
        """Real Workers: changing a secret creates a new version from the live one and deploys it."""
        script = self.script(name)
        current = self.current_deployment(script)
        if current is None:
            return
        latest = script["versions"][-1]
        deployed = {v["version_id"] for v in current["versions"]}
        if latest["id"] not in deployed:
            raise ApiError(
                400,
                10215,
                "Secret edit failed. You attempted to modify a secret, but the latest version of your Worker isn't currently deployed.",
            )
        base = self.find_version(script, max(current["versions"], key=lambda v: v["percentage"])["version_id"])
        metadata = {
            "bindings": [b for b in base["resources"]["bindings"] if b["type"] != "secret_text"],
            "compatibility_date": base["resources"]["script_runtime"]["compatibility_date"],
            "annotations": {},
        }
        _, version = self.new_version(name, metadata, [], "secret", source="api")
        # The copy serves the base's code: live/ keeps reporting the base's commit (the API
        # itself shows no tag on a secret-triggered version, as Cloudflare's does not).
        script["commits"][version["id"]] = script["commits"].get(base["id"])
        version["resources"]["script"]["etag"] = base["resources"]["script"]["etag"]
        self.deploy(name, [{"version_id": version["id"], "percentage": 100}], None, triggered_by="secret")

    # ---- D1 ----------------------------------------------------------------------------------
    def d1_by_name(self, name):
        for db in self.d1.values():
            if db["name"] == name:
                return db
        return None

    def d1_get(self, db_id):
        # The fake creates a database the first time it is named (tests configure any uuid).
        if db_id not in self.d1:
            self.d1[db_id] = {"uuid": db_id, "name": f"db-{db_id[:8]}", "created_at": now(), "version": "production"}
        return self.d1[db_id]

    def d1_query(self, db_id, sql, params):
        db = self.d1_get(db_id)
        # One request is one transaction, as in D1: a failing statement undoes the whole batch.
        conn = sqlite3.connect(os.path.join(self.dir, "d1", f"{db['uuid']}.sqlite"), isolation_level=None)
        conn.execute("BEGIN")
        results = []
        try:
            for statement in split_sql(sql):
                cur = conn.execute(statement, params or [])
                rows = cur.fetchall()
                cols = [c[0] for c in cur.description] if cur.description else []
                results.append(
                    {
                        "results": [dict(zip(cols, r)) for r in rows],
                        "success": True,
                        "meta": {
                            "served_by": "fake-d1",
                            "duration": 0.2,
                            "changes": max(cur.rowcount, 0),
                            "last_row_id": cur.lastrowid or 0,
                            "changed_db": cur.rowcount > 0,
                            "size_after": 8192,
                            "rows_read": len(rows),
                            "rows_written": max(cur.rowcount, 0),
                        },
                    }
                )
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise ApiError(400, 7500, f"{e}: SQLITE_ERROR")
        finally:
            conn.close()
        return results


def split_sql(sql):
    """Splits a script into complete statements (sqlite3.complete_statement decides)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            for piece in split_complete(buf):
                out.append(piece)
            buf = ""
    if buf.strip():
        out.append(buf)
    return [s for s in out if s.strip() and not all(l.strip().startswith("--") or not l.strip() for l in s.splitlines())]


def split_complete(buf):
    # Several statements on one line: split on ';' while each piece stays a complete statement.
    pieces, cur = [], ""
    for ch in buf:
        cur += ch
        if ch == ";" and sqlite3.complete_statement(cur):
            pieces.append(cur)
            cur = ""
    if cur.strip():
        pieces.append(cur)
    return pieces


def parse_multipart(content_type, body):
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    parts = []
    for part in msg.iter_parts():
        raw = part.get_payload(decode=True) or b""
        entry = {
            "name": part.get_param("name", header="content-disposition"),
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
            "raw": raw,
        }
        parts.append(entry)
    return parts


def recorded_parts(parts):
    out = []
    for p in parts:
        text = p["raw"].decode("utf-8", "replace")
        body = text
        if p["name"] == "metadata":
            try:
                body = json.loads(text)
            except ValueError:
                pass
        out.append({"name": p["name"], "filename": p["filename"], "content_type": p["content_type"], "body": body})
    return out


def service_metadata(script):
    return {
        "id": script["id"],
        "default_environment": {
            "environment": "production",
            "created_on": script["created_on"],
            "modified_on": script["modified_on"],
            "script": {
                "id": script["id"],
                "tag": script["tag"],
                "tags": script["settings"].get("tags") or [],
                "etag": script["versions"][-1]["resources"]["script"]["etag"] if script["versions"] else "",
                "handlers": ["fetch"],
                "modified_on": script["modified_on"],
                "created_on": script["created_on"],
                "usage_model": "standard",
                "compatibility_date": "2024-09-01",
                "last_deployed_from": "wrangler",
            },
        },
        "created_on": script["created_on"],
        "modified_on": script["modified_on"],
        "usage_model": "standard",
        "environments": [{"environment": "production", "created_on": script["created_on"], "modified_on": script["modified_on"]}],
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-cloudflare-api/1"
    protocol_version = "HTTP/1.1"
    account = None  # set in main
    log_lock = threading.Lock()

    def log_message(self, fmt, *args):  # quiet: requests.jsonl is the log
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
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        if path.startswith("/client/v4"):
            path = path[len("/client/v4") :] or "/"
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type") or ""
        parts = None
        decoded = None
        if ctype.startswith("multipart/form-data"):
            parts = parse_multipart(ctype, body)
            decoded = recorded_parts(parts)
        elif body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = body.decode("utf-8", "replace")
        record = {
            "method": method,
            "path": path,
            "query": query,
            "headers": {h: self.headers[h] for h in RECORDED_HEADERS if self.headers.get(h) is not None},
            "body": decoded,
        }
        with self.log_lock:
            with open(os.path.join(self.account.dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        try:
            if path.startswith("/npm/"):
                # wrangler's update check, sent here by HOME/.npmrc `registry=`; "0.0.0" is never newer.
                return self.send_json(200, {"name": path[5:], "dist-tags": {"latest": "0.0.0"}})
            if path == "/__fake__/state":
                with self.account.lock:
                    return self.send_json(200, {"scripts": self.account.scripts, "d1": self.account.d1})
            auth = self.headers.get("Authorization") or ""
            # Any bearer token is accepted except one starting with "bad-" (for auth-failure tests).
            if not auth.startswith("Bearer ") or auth == "Bearer " or auth.startswith("Bearer bad-"):
                raise ApiError(403, 10000, "Authentication error")
            with self.account.lock:
                result = self.route(method, path, query, decoded, parts)
                self.account.save()
            if isinstance(result, tuple):
                result, extra = result
            else:
                extra = {}
            envelope = {"success": True, "errors": [], "messages": [], "result": result}
            envelope.update(extra)
            self.send_json(200, envelope)
        except ApiError as e:
            self.send_json(e.status, {"success": False, "errors": [{"code": e.code, "message": e.message}], "messages": [], "result": None})
        except Exception as e:  # a fake bug: say so in the response, as a 500
            self.send_json(500, {"success": False, "errors": [{"code": 10013, "message": f"fake API error: {e!r}"}], "messages": [], "result": None})

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("cf-ray", uuid.uuid4().hex[:16] + "-FAKE")
        self.end_headers()
        self.wfile.write(data)

    # ---- routing ------------------------------------------------------------------------------
    def route(self, method, path, query, body, parts):
        acc = self.account
        seg = [s for s in path.split("/") if s]

        # Identity.
        if path == "/user/tokens/verify" and method == "GET":
            return {"id": "ed17574386854bf78a67040be0a770b0", "status": "active"}
        if path == "/user" and method == "GET":
            return {"id": USER_ID, "email": EMAIL, "first_name": "Dev", "last_name": "Example", "username": "dev", "suspended": False}
        if path == "/memberships" and method == "GET":
            return [
                {
                    "id": "4536bcfad5faccb111b47003c79917fa",
                    "account": {"id": ACCOUNT_ID, "name": ACCOUNT_NAME},
                    "status": "accepted",
                    "roles": ["Administrator"],
                }
            ], {"result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1}}
        if path == "/accounts" and method == "GET":
            return [{"id": ACCOUNT_ID, "name": ACCOUNT_NAME, "type": "standard", "settings": {}}], {
                "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1}
            }

        if len(seg) < 2 or seg[0] != "accounts":
            raise ApiError(404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
        if seg[1] != ACCOUNT_ID and not re.fullmatch(r"[0-9a-f]{32}", seg[1]):
            raise ApiError(404, 7003, "Could not route to /accounts, perhaps your object identifier is invalid?")
        rest = seg[2:]

        # Account-level workers settings.
        if rest == ["workers", "subdomain"] and method == "GET":
            return {"subdomain": SUBDOMAIN}
        if rest == ["workers", "account-settings"] and method == "GET":
            return {"default_usage_model": "standard", "green_compute": False}

        # /workers/services/<name>: wrangler's "does the worker exist" probe before deploy.
        if rest[:2] == ["workers", "services"] and len(rest) == 3 and method == "GET":
            if rest[2] not in acc.scripts:
                raise ApiError(404, 10090, "workers.api.error.service_not_found")
            return service_metadata(acc.scripts[rest[2]])

        if rest[:2] == ["workers", "scripts"] and len(rest) >= 3:
            return self.route_script(method, rest[2], rest[3:], query, body, parts)

        # D1.
        if rest[:2] == ["d1", "database"]:
            return self.route_d1(method, rest[2:], query, body)

        raise ApiError(404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")

    def route_script(self, method, name, rest, query, body, parts):
        acc = self.account
        if rest == [] and method == "PUT":
            # First deploy (or a draft worker for `secret put`): upload + deploy in one call.
            meta = next((p for p in parts or [] if p["name"] == "metadata"), None)
            metadata = json.loads(meta["raw"]) if meta else {}
            script, version = acc.new_version(name, metadata, parts or [], "upload")
            message = version["annotations"].get("workers/message")
            acc.deploy(name, [{"version_id": version["id"], "percentage": 100}], message, triggered_by="upload")
            return {
                "id": name,
                "tag": script["tag"],
                "etag": version["resources"]["script"]["etag"],
                "handlers": ["fetch"],
                "created_on": script["created_on"],
                "modified_on": script["modified_on"],
                "usage_model": "standard",
                "compatibility_date": version["resources"]["script_runtime"]["compatibility_date"],
                "last_deployed_from": "wrangler",
                "has_modules": True,
                "deployment_id": version["id"],
                "startup_time_ms": 12,
            }
        if rest == [] and method == "DELETE":
            acc.script(name)
            del acc.scripts[name]
            return None

        if rest == ["versions"] and method == "POST":
            acc.script(name)  # uploading a version needs the script
            meta = next((p for p in parts or [] if p["name"] == "metadata"), None)
            metadata = json.loads(meta["raw"]) if meta else {}
            _, version = acc.new_version(name, metadata, parts or [], "upload")
            return {**version, "startup_time_ms": 12}
        if rest == ["versions"] and method == "GET":
            script = acc.script(name)
            items = list(reversed(script["versions"]))[:10]  # newest first, as the API does
            return {"items": items}, {"result_info": {"page": 1, "per_page": 10, "count": len(items), "total_count": len(script["versions"])}}
        if len(rest) == 2 and rest[0] == "versions" and method == "GET":
            version = acc.find_version(acc.script(name), rest[1])
            if version is None:
                raise ApiError(404, 10007, "This Worker version does not exist")
            return version

        if rest == ["deployments"] and method == "POST":
            acc.script(name)
            force = query.get("force") == "true"
            message = ((body or {}).get("annotations") or {}).get("workers/message")
            return acc.deploy(name, (body or {}).get("versions") or [], message, force=force)
        if rest == ["deployments"] and method == "GET":
            script = acc.script(name)
            return {"deployments": list(reversed(script["deployments"]))[:10]}  # newest first
        if len(rest) == 2 and rest[0] == "deployments" and method == "GET":
            for d in acc.script(name)["deployments"]:
                if d["id"] == rest[1]:
                    return d
            raise ApiError(404, 10007, "deployment not found")

        if rest == ["script-settings"] and method in ("GET", "PATCH"):
            script = acc.script(name)
            if method == "PATCH":
                for k, v in (body or {}).items():
                    script["settings"][k] = v
            return script["settings"]
        if rest == ["settings"] and method in ("GET", "PATCH"):
            script = acc.script(name)
            return {"bindings": [], "compatibility_date": "2024-09-01", **script["settings"]}

        if rest == ["subdomain"] and method in ("GET", "POST"):
            script = acc.script(name)
            if method == "POST":
                script["subdomain"] = {
                    "enabled": bool((body or {}).get("enabled")),
                    "previews_enabled": bool((body or {}).get("previews_enabled", (body or {}).get("enabled"))),
                }
            return script["subdomain"]
        if rest == ["routes"] and method in ("GET", "PUT"):
            script = acc.script(name)
            if method == "PUT":
                script["routes"] = body or []
            return script["routes"]
        if rest == ["schedules"] and method in ("GET", "PUT"):
            return {"schedules": []}

        if rest == ["secrets"] and method == "PUT":
            script = acc.script(name)
            secret = body or {}
            if not secret.get("name"):
                raise ApiError(400, 10021, "secret name is required")
            previous = script["secrets"].get(secret["name"])
            script["secrets"][secret["name"]] = {"type": secret.get("type", "secret_text"), "text": secret.get("text", ""), "modified_on": now()}
            try:
                acc.secret_changed(name)
            except ApiError:
                if previous is None:
                    del script["secrets"][secret["name"]]
                else:
                    script["secrets"][secret["name"]] = previous
                raise
            return {"name": secret["name"], "type": secret.get("type", "secret_text")}
        if rest == ["secrets"] and method == "GET":
            script = acc.script(name)
            return [{"name": n, "type": s["type"]} for n, s in sorted(script["secrets"].items())]
        if len(rest) == 2 and rest[0] == "secrets" and method == "DELETE":
            script = acc.script(name)
            key = rest[1]
            if key not in script["secrets"]:
                raise ApiError(404, 10056, f"secret not found: {key}")
            previous = script["secrets"].pop(key)
            try:
                acc.secret_changed(name)
            except ApiError:
                script["secrets"][key] = previous
                raise
            return None
        if len(rest) == 2 and rest[0] == "secrets" and method == "GET":
            script = acc.script(name)
            if rest[1] not in script["secrets"]:
                raise ApiError(404, 10056, f"secret not found: {rest[1]}")
            return {"name": rest[1], "type": script["secrets"][rest[1]]["type"]}

        raise ApiError(404, 7003, f"Could not route to /workers/scripts/{name}/{'/'.join(rest)}, perhaps your object identifier is invalid?")

    def route_d1(self, method, rest, query, body):
        acc = self.account
        if rest == [] and method == "GET":
            name = query.get("name")
            dbs = list(acc.d1.values())
            if name:
                if acc.d1_by_name(name) is None:
                    # Named for the first time: create it (tests configure any name).
                    db_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-d1:" + name))
                    acc.d1[db_id] = {"uuid": db_id, "name": name, "created_at": now(), "version": "production"}
                dbs = [acc.d1_by_name(name)]
            return dbs, {"result_info": {"page": 1, "per_page": 1000, "count": len(dbs), "total_count": len(dbs)}}
        if len(rest) == 1 and method == "GET":
            db = acc.d1_get(rest[0])
            return {**db, "num_tables": 0, "file_size": 8192, "running_in_region": "WEUR"}
        if len(rest) == 2 and rest[1] in ("query", "raw") and method == "POST":
            body = body or {}
            results = acc.d1_query(rest[0], body.get("sql", ""), body.get("params"))
            if rest[1] == "raw":
                return [
                    {
                        "results": {
                            "columns": list(r["results"][0].keys()) if r["results"] else [],
                            "rows": [list(x.values()) for x in r["results"]],
                        },
                        "success": True,
                        "meta": r["meta"],
                    }
                    for r in results
                ]
            return results
        raise ApiError(404, 7003, "Could not route to /d1/database, perhaps your object identifier is invalid?")


def watch_stdin():
    # The test holds our stdin open; when it exits (or crashes) the pipe closes and so do we.
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
    Handler.account = Account(os.path.abspath(args.state))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
