"""A fake Hugging Face Hub over local HTTP, for testing the publish path offline.

It implements only the endpoints `huggingface_hub.HfApi` calls for
create_repo (and the repo_info it falls back on after a 403), list_repo_refs, upload_folder (validate-yaml, tree listing,
preupload, LFS batch + basic PUT upload, NDJSON commit) and create_tag, with
the Hub's answers as huggingface_hub 2.x parses them. State is in memory:
repos -> commits (a full tree of path -> bytes each), branches and tags, plus
every request seen, so tests can assert what was sent.

Upload modes follow the Hub's defaults: Parquet and PNG go through LFS
(bytes PUT separately, the commit names them by sha256), small text files are
inlined in the commit. Xet is not spoken: tests disable it on the client
(`constants.HF_HUB_DISABLE_XET`), which then uses the LFS protocol.

    hub = FakeHub(token="hf_x"); url = hub.start(); ...; hub.stop()
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = r"(?P<repo>[^/]+/[^/]+)"
LFS_SUFFIXES = (".parquet", ".png", ".arrow")


@dataclass
class Commit:
    oid: str
    message: str
    tree: dict[str, bytes]


@dataclass
class Repo:
    repo_type: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def commit(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev) or self.tags.get(rev) or rev
        return next((c for c in self.commits if c.oid == oid), None)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra or {}


class FakeHub:
    """In-memory Hub state plus the HTTP server that serves it."""

    def __init__(self, token: str | None = None, read_only_namespaces: tuple[str, ...] = ()):
        self.token = token
        self.read_only = set(read_only_namespaces)  # the token may not create repos there (403)
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # lifecycle ---------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # state helpers -----------------------------------------------------------
    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        return self.repos[repo_id]

    def _new_commit(self, repo: Repo, tree: dict[str, bytes], message: str) -> Commit:
        seed = f"{len(repo.commits)}:{message}:{sorted(tree)}".encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), message, tree)
        repo.commits.append(commit)
        repo.branches["main"] = commit.oid
        return commit

    # endpoints ---------------------------------------------------------------
    def create_repo(self, body: dict) -> dict:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.url}/datasets/{repo_id}"
        if body.get("organization") in self.read_only:
            raise HubError(403, f"You don't have the rights to create a dataset under the namespace {body['organization']}")
        if repo_id in self.repos:  # the real Hub also names the existing repo's url
            raise HubError(409, "You already created this dataset repo", extra={"url": url})
        repo = Repo(body.get("type") or "model", body.get("visibility") == "private")
        self.repos[repo_id] = repo
        self._new_commit(repo, {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, "initial")
        return {"url": url, "name": repo_id}

    def info(self, repo_id: str) -> dict:
        repo = self.repo(repo_id)
        return {"id": repo_id, "sha": repo.branches["main"], "private": repo.private, "siblings": []}

    def refs(self, repo_id: str) -> dict:
        repo = self.repo(repo_id)

        def info(kind, name, oid):
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

        return {"branches": [info("heads", n, o) for n, o in repo.branches.items()], "converts": [],
                "tags": [info("tags", n, o) for n, o in repo.tags.items()]}

    def tree(self, repo_id: str, rev: str) -> list[dict]:
        commit = self.repo(repo_id).commit(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        return [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in sorted(commit.tree.items())]

    def preupload(self, repo_id: str, body: dict) -> dict:
        self.repo(repo_id)
        files = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                  "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular"} for f in body["files"]]
        return {"files": files}

    def lfs_batch(self, repo_id: str, body: dict) -> dict:
        self.repo(repo_id)
        objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                    "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}", "header": {}}}}
                   for o in body["objects"]]
        return {"transfer": "basic", "objects": objects}

    def lfs_put(self, oid: str, data: bytes) -> dict:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded bytes does not match the oid")
        self.blobs[oid] = data
        return {}

    def commit(self, repo_id: str, rev: str, ndjson: bytes) -> dict:
        repo = self.repo(repo_id)
        parent = repo.commit(rev)
        if parent is None:
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        tree, message = dict(parent.tree), ""
        for line in ndjson.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                tree[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.blobs:
                    raise HubError(400, f"LFS object {value['oid']} was never uploaded")
                tree[value["path"]] = self.blobs[value["oid"]]
            elif key == "deletedFile":
                tree.pop(value["path"], None)
            elif key == "deletedFolder":
                tree = {p: b for p, b in tree.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        commit = self._new_commit(repo, tree, message)
        return {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{commit.oid}", "commitOid": commit.oid,
                "pullRequestUrl": None}

    def tag(self, repo_id: str, rev: str, body: dict) -> dict:
        repo = self.repo(repo_id)
        commit = repo.commit(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        if body["tag"] in repo.tags:
            raise HubError(409, f"Tag {body['tag']} already exists")
        repo.tags[body["tag"]] = commit.oid
        return {}


ROUTES = [  # (method, path regex, handler(hub, match, body bytes) -> JSON-able)
    ("POST", r"/api/repos/create", lambda h, m, b: h.create_repo(json.loads(b))),
    ("POST", r"/api/validate-yaml", lambda h, m, b: {"errors": [], "warnings": []}),
    ("GET", rf"/api/datasets/{REPO}", lambda h, m, b: h.info(m["repo"])),
    ("GET", rf"/api/datasets/{REPO}/refs", lambda h, m, b: h.refs(m["repo"])),
    ("GET", rf"/api/datasets/{REPO}/tree/(?P<rev>[^/]+)", lambda h, m, b: h.tree(m["repo"], m["rev"])),
    ("POST", rf"/api/datasets/{REPO}/preupload/(?P<rev>[^/]+)", lambda h, m, b: h.preupload(m["repo"], json.loads(b))),
    ("POST", rf"/datasets/{REPO}\.git/info/lfs/objects/batch", lambda h, m, b: h.lfs_batch(m["repo"], json.loads(b))),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", lambda h, m, b: h.lfs_put(m["oid"], b)),
    ("POST", rf"/api/datasets/{REPO}/commit/(?P<rev>[^/]+)", lambda h, m, b: h.commit(m["repo"], m["rev"], b)),
    ("POST", rf"/api/datasets/{REPO}/tag/(?P<rev>[^/]+)", lambda h, m, b: h.tag(m["repo"], m["rev"], json.loads(b))),
]


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects

    def log_message(self, *args) -> None:  # quiet test output
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        hub = self.state
        path = self.path.split("?", 1)[0]
        body = self._body()
        with hub._lock:
            hub.requests.append((method, path))
            hub.auth_headers.append(self.headers.get("Authorization", ""))
        needs_auth = not path.startswith("/lfs-upload/")  # presigned-URL style, like S3
        if needs_auth and hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self._send(401, {"error": "Invalid credentials in Authorization header"})
        for verb, pattern, handler in ROUTES:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                try:
                    with hub._lock:
                        return self._send(200, handler(hub, m, body))
                except HubError as e:
                    return self._send(e.status, {"error": str(e), **e.extra},
                                      {"X-Error-Code": e.code} if e.code else None)
        self._send(404, {"error": f"fake hub: no route for {method} {path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")
