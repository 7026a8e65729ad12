"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests that must not reach the real Hub.

It speaks just enough of the Hub API for `HfApi.whoami/create_repo/upload_folder/repo_info/list_repo_files`,
`hf_hub_download`, `snapshot_download` and peft/transformers `from_pretrained(repo_id)`:

  GET  /api/whoami-v2
  POST /api/repos/create
  POST /api/validate-yaml
  POST /api/models/{ns}/{name}/preupload/{rev}     -> every file "regular": contents come inline in the commit
  POST /api/models/{ns}/{name}/commit/{rev}        (NDJSON: header, file (base64), deletedFile, deletedFolder)
  GET  /api/models/{ns}/{name}/tree/{rev}[/{path}]
  GET  /api/models/{ns}/{name}[/revision/{rev}]
  HEAD/GET /{ns}/{name}/resolve/{rev}/{path}       (X-Repo-Commit, ETag, Content-Length, Range)
  GET  /api/models?author=&search=                 -> list_models
  the same routes under /api/datasets/... and /datasets/... for dataset repos
  /api/jobs/...                                    -> HF Jobs that really run (tests/hub_jobs.py)

Auth follows the Hub: `Authorization: Bearer <token>` maps to a user; an unknown token is a 401 on every route;
a private repo is invisible (404 RepoNotFound) to anyone but its owner; writing to another user's repo is 403.
Errors carry `X-Error-Code` / `X-Error-Message` headers and a JSON body, as the real Hub's do.

Failure injection for retry tests: `fail_next(n, status)` answers the next n matching requests with an error,
`drop_next(n)` closes the connection without an answer; `stop()` / `start()` take the server down and bring it
back on the same port. `requests` records (method, path, status) of everything served.

Run it by hand: `python tests/hub_server.py --token hf_dev=alice` prints its URL and serves until Ctrl-C.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from hub_jobs import LoopbackJobs  # noqa: E402
from hub_state import REPO_NAME_RE, Commit, HubError, HubState, Repo, _Fault, _now, git_blob_oid, metadata_errors  # noqa: E402,F401


class _Handler(BaseHTTPRequestHandler):
    server_version = "LoopbackHub/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: stop() really cuts clients off
    state: HubState  # set on the subclass made per server
    jobs: LoopbackJobs
    base_url: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet; `state.requests` is the log
        pass

    # ---- plumbing ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        status = 0
        try:
            body = self._read_body()  # before any fault: answering mid-upload would look like a broken pipe
            with self.state.lock:
                fault = self.state.take_fault(path)
            if fault is not None:
                if fault.status is None:
                    self._drop()
                    status = -1  # recorded as -1: no answer was sent
                    return
                raise HubError(fault.status, "injected failure (loopback hub)", None)
            with self.state.lock:
                user = self.state.user_for(self.headers.get("Authorization"))
                self.state.acting_users.append((method, path, user))  # whose token each served request carried
                status, headers, payload = self._route(method, path, query, body, user)
        except HubError as exc:
            status, headers = exc.status, {"X-Error-Message": exc.message}
            payload = {"error": exc.message, **exc.extra}
            if exc.code:
                headers["X-Error-Code"] = exc.code
        except Exception as exc:  # a malformed request: a 4xx, so clients do not retry it
            status, headers, payload = 400, {"X-Error-Message": "Bad request"}, {"error": f"bad request: {exc!r}"}
        finally:
            with self.state.lock:
                self.state.requests.append((method, path, status))
        self._send(method, status, headers, payload)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        # Reset the connection (SO_LINGER 0) so the client sees a broken connection, not an empty answer.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, method: str, status: int, headers: dict[str, str], payload: Any) -> None:
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        rng = self.headers.get("Range")
        if status == 200 and isinstance(payload, bytes) and rng and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng)):
            start, end = int(m.group(1)), int(m.group(2) or len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", ctype))
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    # ---- routes -----------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
               user: Optional[str]) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path == "/api/whoami-v2":
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return 200, {}, {"type": "user", "name": user, "fullname": user.title(), "orgs": [],
                             "auth": {"type": "access_token",
                                      "accessToken": {"displayName": "loopback", "role": "write"}}}
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body or b"{}"), user)
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}"))
        if (jobs := self.jobs.route(method, path, body, user)) is not None:
            return jobs
        if method == "GET" and path == "/api/models":  # list_models(author=..., search=...)
            author, search = query.get("author", [None])[0], query.get("search", [""])[0]
            return 200, {}, [{"id": r.repo_id, "modelId": r.repo_id, "author": r.owner, "private": r.private,
                              "createdAt": r.created_at, "lastModified": r.commits[-1].date}
                             for key, r in sorted(self.state.repos.items()) if r.kind == "model"
                             and (author is None or r.owner == author) and search in r.name
                             and (not r.private or r.owner == user)]
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+)/([^/]+)/preupload/([^/]+)", path):
            if method == "POST":
                self.state.writable_repo(_key(m[1], m[2], m[3]), user)
                files = json.loads(body)["files"]
                return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                            "oid": None} for f in files]}
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+)/([^/]+)/commit/([^/]+)", path):
            if method == "POST":
                return self._commit(self.state.writable_repo(_key(m[1], m[2], m[3]), user), m[4], body)
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+)/([^/]+)/tree/([^/]+)(?:/(.*))?", path):
            if method == "GET":
                repo = self.state.visible_repo(_key(m[1], m[2], m[3]), user)
                recursive = query.get("recursive", [""])[0].lower() in ("true", "1")
                return self._tree(repo, m[4], (m[5] or "").strip("/"), recursive)
        if m := re.fullmatch(r"/api/(models|datasets)/([^/]+)/([^/]+)(?:/revision/([^/]+))?", path):
            if method == "GET":
                return self._repo_info(self.state.visible_repo(_key(m[1], m[2], m[3]), user), m[4] or "main")
        if m := re.fullmatch(r"/(datasets/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path):
            if method in ("GET", "HEAD"):
                return self._resolve(self.state.visible_repo(_key(m[1] or "models", m[2], m[3]), user), m[4], m[5])
        raise HubError(404, f"no route for {method} {path} on the loopback hub")

    def _create_repo(self, payload: dict[str, Any], user: Optional[str]) -> tuple[int, dict[str, str], Any]:
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        kind = payload.get("type") or "model"
        if kind not in ("model", "dataset"):
            raise HubError(400, "the loopback hub hosts model and dataset repos")
        owner, name = payload.get("organization") or user, str(payload.get("name", ""))
        if owner != user:
            raise HubError(403, f"You don't have the rights to create a repo under {owner}")
        if not REPO_NAME_RE.match(name) or "--" in name or ".." in name or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name '{name}'")
        repo_id = f"{owner}/{name}"
        url = f"{self.base_url}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
        if _key(kind + "s", owner, name) in self.state.repos:
            raise HubError(409, f"You already created this {kind} repo", url=url)  # the client reads the url
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        repo = Repo(owner, name, private, _now(), kind=kind)
        first = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        repo.commits.append(Commit(hashlib.sha1(f"{repo_id}:{time.time_ns()}".encode()).hexdigest(),
                                   "initial commit", first, _now()))
        self.state.repos[_key(kind + "s", owner, name)] = repo
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _validate_yaml(self, payload: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        content = str(payload.get("content", ""))
        errors: list[dict[str, str]] = []
        m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if m:
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as exc:
                meta, errors = None, [{"message": f"YAML parse error: {exc}"}]
            if not errors and not isinstance(meta, (dict, type(None))):
                errors.append({"message": "metadata must be a YAML mapping"})
            elif isinstance(meta, dict):
                errors += metadata_errors(meta)
        if errors:
            return 400, {"X-Error-Message": "Invalid metadata"}, {"errors": errors, "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def _commit(self, repo: Repo, rev: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        if rev != "main":
            raise HubError(404, f"Revision {rev} not found (the loopback hub only writes to main)",
                           "RevisionNotFound")
        files = dict(repo.commits[-1].files)
        title = "commit"
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                parent = value.get("parentCommit")
                if parent and parent != repo.commits[-1].oid:
                    raise HubError(412, "parent commit is not the head of main")
                title = value.get("summary") or title
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "file contents must be base64")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            else:  # lfsFile etc.: preupload said "regular", so a client sending these is misbehaving
                raise HubError(400, f"unsupported commit operation '{key}' on the loopback hub")
        oid = hashlib.sha1(json.dumps(sorted((p, git_blob_oid(c)) for p, c in files.items())).encode()
                           + repo.commits[-1].oid.encode()).hexdigest()
        repo.commits.append(Commit(oid, title, files, _now()))
        return 200, {}, {"success": True, "commitOid": oid, "commitUrl": f"{self.base_url}/{repo.repo_id}/commit/{oid}",
                         "pullRequestUrl": None}

    def _commit_or_404(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _tree(self, repo: Repo, rev: str, folder: str, recursive: bool) -> tuple[int, dict[str, str], Any]:
        commit = self._commit_or_404(repo, rev)
        prefix = f"{folder}/" if folder else ""
        if folder and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{folder} does not exist on {rev}", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                if not recursive and depth > 1:
                    break
                sub = prefix + "/".join(rest[:depth])
                entries.setdefault(sub, {"type": "directory", "oid": git_blob_oid(sub.encode()), "size": 0,
                                         "path": sub})
            if recursive or len(rest) == 1:
                entries[path] = {"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path}
        return 200, {}, list(entries.values())

    def _repo_info(self, repo: Repo, rev: str) -> tuple[int, dict[str, str], Any]:
        commit = self._commit_or_404(repo, rev)
        return 200, {}, {"_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.owner,
                         "sha": commit.oid, "private": repo.private, "gated": False, "disabled": False,
                         "downloads": 0, "likes": 0, "tags": [], "createdAt": repo.created_at,
                         "lastModified": commit.date, "siblings": [{"rfilename": p} for p in sorted(commit.files)]}

    def _resolve(self, repo: Repo, rev: str, path: str) -> tuple[int, dict[str, str], Any]:
        commit = self._commit_or_404(repo, rev)
        headers = {"X-Repo-Commit": commit.oid}
        if path not in commit.files:
            return_headers = {**headers, "X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}
            return 404, return_headers, {"error": "Entry not found"}
        content = commit.files[path]
        headers["ETag"] = f'"{git_blob_oid(content)}"'
        return 200, headers, content


def _key(kind: str, owner: str, name: str) -> str:
    """Where a repo is kept in HubState.repos: model repos by their id, dataset repos as datasets/<id>."""
    return f"{owner}/{name}" if kind == "models" else f"datasets/{owner}/{name}"


class _ReusableServer(ThreadingHTTPServer):
    allow_reuse_address = True  # start() after stop() rebinds the same port at once
    daemon_threads = True


class HubServer:
    """The loopback Hub: `start()` serves on 127.0.0.1 in a daemon thread; `stop()` then `start()` keeps port
    and data, so a test can take the Hub down mid-job and bring it back."""

    def __init__(self, tokens: dict[str, str], port: int = 0):
        self.state = HubState(tokens)
        self.port = port
        self.jobs = LoopbackJobs("")  # its hub_url is set by start(), once the port is known
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> "HubServer":
        if self._httpd is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"state": self.state, "base_url": "", "jobs": self.jobs})
        httpd = _ReusableServer(("127.0.0.1", self.port), handler)
        self.port = httpd.server_address[1]
        handler.base_url = self.jobs.hub_url = self.url
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"loopback-hub:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving for good: every Job still running is killed too (`stop` alone leaves them running, as a
        Hub outage would)."""
        self.jobs.stop_all()
        self.stop()

    # ---- test controls ----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, path_contains: Optional[str] = None) -> None:
        """Answer the next n requests (whose path contains `path_contains`, if given) with `status`."""
        with self.state.lock:
            self.state.faults.append(_Fault(n, status, path_contains))

    def drop_next(self, n: int, path_contains: Optional[str] = None) -> None:
        """Close the connection of the next n matching requests without answering."""
        with self.state.lock:
            self.state.faults.append(_Fault(n, None, path_contains))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        with self.state.lock:
            return list(self.state.requests)

    def repo(self, repo_id: str) -> Optional[Repo]:
        with self.state.lock:
            return self.state.repos.get(repo_id)

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repo(repo_id)
        commit = repo.resolve(rev) if repo else None
        return dict(commit.files) if commit else {}


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a loopback Hugging Face Hub on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN=USER",
                        help="a token and the user it logs in as (repeatable)")
    args = parser.parse_args()
    tokens = dict(item.split("=", 1) for item in args.token) or {"hf_dev": "dev"}
    server = HubServer(tokens, args.port).start()
    print(f"HF_ENDPOINT={server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
