"""The loopback Hub's state: users (by token), repos with their commits, and the fault plan for retry tests.
tests/hub_server.py serves it over HTTP."""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

# Hub naming rules for the name part of a repo id (the namespace follows the same alphabet).
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, bytes]  # full snapshot: path -> content
    date: str


@dataclass
class Repo:
    owner: str
    name: str
    private: bool
    created_at: str
    commits: list[Commit] = field(default_factory=list)
    kind: str = "model"  # or "dataset"

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.name}"

    def resolve(self, rev: str) -> Optional[Commit]:
        """'main' (or empty) -> the head commit; a full or abbreviated (>= 7 chars) oid -> that commit."""
        if rev in ("main", ""):
            return self.commits[-1]
        for commit in reversed(self.commits):
            if len(rev) >= 7 and commit.oid.startswith(rev):
                return commit
        return None


@dataclass
class _Fault:
    remaining: int
    status: Optional[int]  # None: drop the connection without an answer
    path_contains: Optional[str]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def git_blob_oid(content: bytes) -> str:
    """The git blob sha1 the Hub uses as the ETag of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class HubState:
    """Users, repos and the fault plan; every access holds `lock` (the server is threaded)."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)  # token -> user name
        self.repos: dict[str, Repo] = {}
        self.faults: list[_Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self.acting_users: list[tuple[str, str, Optional[str]]] = []  # (method, path, user or None: anonymous)
        self.lock = threading.RLock()

    def user_for(self, authorization: Optional[str]) -> Optional[str]:
        """None for an anonymous request; raises 401 for a token that is not known."""
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def visible_repo(self, repo_id: str, user: Optional[str]) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and repo.owner != user):
            # The Hub answers 401 to anonymous callers and 404 to others; both mean "not found or private".
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, repo_id: str, user: Optional[str]) -> Repo:
        if user is None:
            raise HubError(401, "You must be authenticated to write", None)
        repo = self.visible_repo(repo_id, user)
        if repo.owner != user:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def take_fault(self, path: str) -> Optional[_Fault]:
        for fault in self.faults:
            if fault.remaining > 0 and (fault.path_contains is None or fault.path_contains in path):
                fault.remaining -= 1
                return fault
        return None

    def all_stored_bytes(self) -> Iterator[tuple[str, bytes]]:
        """Every stored blob and commit title (for tests that grep the server side for secrets)."""
        with self.lock:
            for repo in self.repos.values():
                for commit in repo.commits:
                    yield f"{repo.repo_id}@{commit.oid[:8]} (title)", commit.title.encode()
                    for path, content in commit.files.items():
                        yield f"{repo.repo_id}@{commit.oid[:8]}:{path}", content


def metadata_errors(meta: dict[str, Any]) -> list[dict[str, str]]:
    """The checks the Hub's validator is strict about for model cards (types of well-known keys)."""
    errors = []
    for key in ("license", "library_name", "pipeline_tag"):
        if key in meta and not isinstance(meta[key], str):
            errors.append({"message": f'"{key}" must be a string'})
    for key in ("tags", "datasets", "base_model", "language"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) or
                                      (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            errors.append({"message": f'"{key}" must be a string or a list of strings'})
    for key in ("base_model", "datasets"):  # the Hub links these: they must be repo ids, not local paths
        values = meta.get(key) or []
        for value in [values] if isinstance(values, str) else values:
            if isinstance(value, str) and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", value):
                errors.append({"message": f'"{key}" must be a Hub repo id, got {value!r}'})
    return errors
