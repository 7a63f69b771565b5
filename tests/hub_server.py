"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests without network.

It implements the routes the real ``huggingface_hub`` client calls to create a repo, upload
files (preupload, then a commit whose files travel inline as base64: every file is answered
"regular", so the LFS and Xet transfer protocols are never needed), create a branch, read the
model info of a revision, list its tree and resolve (HEAD / GET) a file. Repos live in memory,
each with a commit history; branches point at commits, and a commit id is also a revision.
Private repos answer "not found" to a request without an ``Authorization`` header, as the
Hub does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]


def git_blob_id(content: bytes) -> str:
    """The git object id of a file, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    files: dict[str, bytes]
    message: str
    parent: str | None


@dataclass
class Repo:
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit id a branch name or commit id points at (``None``: no such revision)."""
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class _Error(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubServer:
    """The server; `start` it on a port, `stop` it, `start` it again (repos survive a restart).

    Attributes:
        repos: ``repo_id -> Repo``, to inspect in tests.
        requests: ``(method, path)`` of every request served, in order.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -------------------------------------------------------------------------- repo logic
    def create_repo(self, repo_id: str, private: bool) -> bool:
        """Create ``repo_id`` with one commit holding ``.gitattributes``; ``False`` if it exists."""
        with self._lock:
            if repo_id in self.repos:
                return False
            repo = Repo(private=private)
            self._add_commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit", None)
            self.repos[repo_id] = repo
            return True

    @staticmethod
    def _add_commit(repo: Repo, branch: str, files: dict[str, bytes], message: str, parent: str | None) -> str:
        digest = hashlib.sha1(f"{parent}\n{message}\n{len(repo.commits)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_id(files[path]).encode())
        oid = digest.hexdigest()
        repo.commits[oid] = Commit(files, message, parent)
        repo.branches[branch] = oid
        return oid

    def commit(self, repo_id: str, branch: str, lines: list[dict[str, Any]]) -> str:
        repo = self.repos[repo_id]
        with self._lock:
            parent = repo.branches.get(branch)
            if parent is None:
                raise _Error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            files = dict(repo.commits[parent].files)
            message = "commit"
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    message = value.get("summary") or message
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                else:
                    raise _Error(400, None, f"this test server does not support {key!r} commit lines")
            return self._add_commit(repo, branch, files, message, parent)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # --------------------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        # One request a connection: a pooled keep-alive connection would otherwise outlive
        # `stop` and keep answering, so "the server is down" would not be true.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self.headers.get("Authorization")):
            raise _Error(404 if repo is None else 401, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit(self, repo_id: str, revision: str) -> tuple[str, Commit]:
        repo = self._repo(repo_id)
        oid = repo.resolve(revision)
        if oid is None:
            raise _Error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return oid, repo.commits[oid]

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        self.hub.requests.append((self.command, parts.path))
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = parse_qs(parts.query)
        try:
            self._route(segments, query)
        except _Error as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json(error.status, {"error": error.message}, headers)

    do_GET = do_HEAD = do_POST = _dispatch

    # ----------------------------------------------------------------------------- routes
    def _route(self, seg: list[str], query: dict[str, list[str]]) -> None:
        method = self.command
        if method == "POST" and seg == ["api", "validate-yaml"]:
            self._body()
            return self._json(200, {"errors": [], "warnings": []})
        if method == "POST" and seg == ["api", "repos", "create"]:
            payload = json.loads(self._body() or b"{}")
            if payload.get("type", "model") != "model":
                raise _Error(400, None, "this test server only hosts model repos")
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            private = bool(payload.get("private")) or payload.get("visibility") == "private"
            url = {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id}
            if not self.hub.create_repo(repo_id, private):
                # As the Hub does: the existing repo's URL comes with the conflict.
                return self._json(409, {"error": "You already created this model repo", **url})
            return self._json(200, url)
        if len(seg) >= 4 and seg[:2] == ["api", "models"]:
            repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
            return self._api(method, repo_id, rest, query)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise _Error(404, None, f"no route {method} {self.path}")

    def _api(self, method: str, repo_id: str, rest: list[str], query: dict[str, list[str]]) -> None:
        if method == "GET" and (not rest or rest[0] == "revision"):
            oid, commit = self._commit(repo_id, rest[1] if len(rest) > 1 else "main")
            repo = self._repo(repo_id)
            return self._json(
                200,
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": oid,
                    "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                },
            )
        if method == "GET" and rest and rest[0] == "tree":
            oid, commit = self._commit(repo_id, rest[1])
            prefix = "/".join(rest[2:])
            prefix = prefix + "/" if prefix else ""
            entries = [
                {"type": "file", "oid": git_blob_id(c), "size": len(c), "path": p}
                for p, c in sorted(commit.files.items())
                if p.startswith(prefix)
            ]
            return self._json(200, entries)
        if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
            _, commit = self._commit(repo_id, rest[1])
            files = json.loads(self._body())["files"]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(commit.files[f["path"]]) if f["path"] in commit.files else None,
                }
                for f in files
            ]
            return self._json(200, {"files": answer, "commitOid": None})
        if method == "POST" and len(rest) == 2 and rest[0] == "commit":
            self._repo(repo_id)
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            oid = self.hub.commit(repo_id, rest[1], lines)
            return self._json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})
        if method == "POST" and len(rest) == 2 and rest[0] == "branch":
            repo = self._repo(repo_id)
            payload = json.loads(self._body() or b"{}")
            if rest[1] in repo.branches:
                raise _Error(409, None, f"Reference already exists: refs/heads/{rest[1]}")
            start = repo.resolve(payload.get("startingPoint") or "main")
            if start is None:
                raise _Error(404, "RevisionNotFound", f"Invalid rev id: {payload.get('startingPoint')}")
            with self.hub._lock:
                repo.branches[rest[1]] = start
            return self._json(200, {})
        raise _Error(404, None, f"no route {method} {self.path}")

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        oid, commit = self._commit(repo_id, revision)
        if path not in commit.files:
            raise _Error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        content = commit.files[path]
        headers = {"ETag": f'"{git_blob_id(content)}"', "X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        self._send(200, content, headers, content_type="application/octet-stream")
