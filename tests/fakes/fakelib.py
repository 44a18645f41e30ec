"""Shared helpers for the fake platform CLIs in tests/fakes/ (stdlib only).

Import it from a fake with:

    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import fakelib

(realpath here: the fake is usually a symlink T/bin/<cli> -> tests/fakes/<cli>, and fakelib.py
lives next to the real file.)

The state directory is decided by the symlink's location, NOT the real file's:
`os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "..", "state")`, i.e. T/state
for T/bin/<cli>. It is created when missing.

Stable API (other fakes rely on these; do not change signatures or meanings):

    state_dir() -> str
        The state directory (created when missing).

    state_path(*parts) -> str
        os.path.join(state_dir(), *parts); parent directories are created.

    read_stdin() -> str | None
        Everything on stdin, or None when stdin is a TTY or closed. Call it only for commands
        that read stdin (secret values); pass the result to log_call.

    log_call(argv, stdin=None, env_keys=()) -> None
        Appends one line to calls.jsonl:
        {"argv": argv, "stdin": stdin, "env_names": sorted(os.environ),
         "env": {k: os.environ[k] for k in env_keys if k in os.environ}, "cwd": os.getcwd()}

    check_fail(key) -> None
        Reads fail.json ({"<key>": {"exit": 1, "stdout": "...", "stderr": "...", "sleep": 0}}).
        When it has `key` (exact subcommand path, e.g. "deploy", "d1 migrations apply",
        "secret put") or "*", sleeps `sleep` seconds, writes `stdout`/`stderr` verbatim and exits
        with `exit` (default 1). Otherwise returns. Call it after log_call.

    load_json(name, default) -> value
        The JSON file state/<name> (name may contain "/"), or `default` when missing.

    save_json(name, data, indent=2) -> None
        Writes state/<name> atomically (temp file + rename).

    write_live(target, version, commit) -> None
        state/live/<target>.json = {"version": version, "commit": commit}. Every deploy and
        rollback of a fake must call it for the target (worker / app / service) it changed.

    read_live(target) -> dict | None
        The live file's content, or None.

    now_iso() -> str
        UTC now as "2025-01-02T10:00:05.123456Z" (strictly increasing within one state dir,
        so "sort by created_on" is stable even for calls in the same microsecond).

    new_uuid() -> str
        A random UUID4 string.

    die(message, code=1, stdout=None) -> NoReturn
        Writes `stdout` (if any) to stdout, `message` + "\n" to stderr and exits with `code`.
"""

import datetime
import json
import os
import sys
import tempfile
import time
import uuid


def state_dir():
    d = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "..", "state")
    d = os.path.normpath(d)
    os.makedirs(d, exist_ok=True)
    return d


def state_path(*parts):
    p = os.path.join(state_dir(), *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def read_stdin():
    try:
        if sys.stdin is None or sys.stdin.closed or sys.stdin.isatty():
            return None
        return sys.stdin.read()
    except (OSError, ValueError):
        return None


def log_call(argv, stdin=None, env_keys=()):
    entry = {
        "argv": list(argv),
        "stdin": stdin,
        "env_names": sorted(os.environ.keys()),
        "env": {k: os.environ[k] for k in env_keys if k in os.environ},
        "cwd": os.getcwd(),
    }
    with open(state_path("calls.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def check_fail(key):
    fails = load_json("fail.json", {})
    spec = None
    if isinstance(fails, dict):
        spec = fails.get(key)
        if spec is None:
            spec = fails.get("*")
    if spec is None:
        return
    sleep = spec.get("sleep") or 0
    if sleep:
        time.sleep(float(sleep))
    out = spec.get("stdout") or ""
    err = spec.get("stderr") or ""
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if err:
        sys.stderr.write(err)
        sys.stderr.flush()
    sys.exit(int(spec.get("exit", 1)))


def load_json(name, default):
    p = os.path.join(state_dir(), name)
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save_json(name, data, indent=2):
    p = state_path(name)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent)
        f.write("\n")
    os.replace(tmp, p)


def write_live(target, version, commit):
    save_json(os.path.join("live", target + ".json"), {"version": version, "commit": commit})


def read_live(target):
    return load_json(os.path.join("live", target + ".json"), None)


def now_iso():
    # Strictly increasing per state dir: remember the last stamp handed out.
    last = load_json(".clock.json", {"last": 0})
    t = max(time.time(), float(last.get("last", 0)) + 0.000001)
    save_json(".clock.json", {"last": t})
    dt = datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uuid():
    return str(uuid.uuid4())


def die(message, code=1, stdout=None):
    if stdout:
        sys.stdout.write(stdout)
        sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    sys.exit(code)
