"""A fake Hugging Face Hub over local HTTP, for testing publish and load offline.

It implements only the endpoints huggingface_hub 2.x and datasets 5.x call, with
the Hub's answers as they parse them:
- publishing (`HfApi`): create_repo (and the repo_info it falls back on after a
  403), list_repo_refs, upload_folder (validate-yaml, tree listing, preupload,
  LFS batch + basic PUT upload, NDJSON commit) and create_tag;
- loading (`datasets.load_dataset(repo, revision=tag)` with HF_ENDPOINT set to
  `hub.url`): revision info (`/api/datasets/R/revision/REV`), the tree listing
  (`/api/datasets/R/tree/REV/PATH`, `recursive`), paths-info, and
  `/datasets/R/resolve/REV/FILE` (HEAD and GET, Range too). As on the Hub, a
  regular file answers 200 with ETag (its git blob id), X-Repo-Commit and
  Content-Length; an LFS file answers 302 with Location on another origin (the
  "CDN", a second loopback server that takes no token), X-Linked-Etag (its
  sha256) and X-Linked-Size; a missing file or revision answers 404 with
  X-Error-Code EntryNotFound / RevisionNotFound (and X-Repo-Commit for a file).
State is in memory: repos -> commits (a full tree of path -> bytes each),
branches and tags, plus every request seen (`requests`, `cdn_requests`,
`unrouted`), so tests can assert what was sent and asked for.

Upload modes follow the Hub's defaults: Parquet and PNG go through LFS
(bytes PUT separately, the commit names them by sha256), small text files are
inlined in the commit. Xet is not spoken: tests disable it on the client
(`constants.HF_HUB_DISABLE_XET`), which then uses the LFS protocol; downloads
carry no X-Xet-Hash header, so clients with hf-xet fetch over plain HTTP.

    hub = FakeHub(token="hf_x"); url = hub.start(); ...; hub.stop()
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

REPO = r"(?P<repo>[^/]+/[^/]+)"
REV = r"(?P<rev>[^/]+)"  # clients quote the revision with safe="" (a branch "a/b" is "a%2Fb")
LFS_SUFFIXES = (".parquet", ".png", ".arrow")
GITATTRIBUTES = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % s.encode() for s in LFS_SUFFIXES)
CREATED = "2026-01-01T00:00:00.000Z"


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def git_oid(data: bytes) -> str:
    """The git blob id, as the Hub reports it in `oid` and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The pointer file git stores for an LFS object."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        hashlib.sha256(data).hexdigest().encode(), len(data))


def file_entry(path: str, data: bytes) -> dict:
    """A file as the tree and paths-info endpoints list it."""
    if not is_lfs(path):
        return {"type": "file", "oid": git_oid(data), "size": len(data), "path": path}
    pointer = lfs_pointer(data)
    return {"type": "file", "oid": git_oid(pointer), "size": len(data), "path": path,
            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}}


@dataclass
class Reply:
    """A non-JSON answer (resolve, CDN): status, headers, body (not sent for HEAD)."""
    status: int
    headers: dict[str, str]
    body: bytes = b""


def ranged(data: bytes, range_header: str | None, headers: dict[str, str]) -> Reply:
    """200 with the bytes, or 206 with the slice a `Range: bytes=a-b` header asks for."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header or "")
    if not m or not data:
        return Reply(200, {**headers, "Accept-Ranges": "bytes"}, data)
    start, end = m.groups()
    if start == "":  # a suffix range: the last `end` bytes
        start, end = max(len(data) - int(end), 0), len(data) - 1
    start, end = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
    if start > end:
        return Reply(416, {"Content-Range": f"bytes */{len(data)}"})
    return Reply(206, {**headers, "Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{len(data)}"},
                 data[start:end + 1])


@dataclass
class Commit:
    oid: str
    message: str
    tree: dict[str, bytes]
    date: str = CREATED


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
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.extra, self.headers = status, code, extra or {}, headers or {}


class FakeHub:
    """In-memory Hub state plus the HTTP servers that serve it (the Hub, and a CDN for LFS bytes)."""

    def __init__(self, token: str | None = None, read_only_namespaces: tuple[str, ...] = ()):
        self.token = token
        self.read_only = set(read_only_namespaces)  # the token may not create repos there (403)
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str]] = []  # (method, path) on the Hub
        self.auth_headers: list[str] = []
        self.cdn_requests: list[tuple[str, str, str]] = []  # (method, path, Authorization) on the CDN
        self.unrouted: list[tuple[str, str]] = []  # what a client asked for that this fake does not serve
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None

    # lifecycle ---------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            state = hub

        class CdnHandler(_CdnHandler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), CdnHandler)
        for server in (self._server, self._cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def cdn_url(self) -> str:  # another port is another origin: clients drop the token there
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def stop(self) -> None:
        for server in (self._server, self._cdn):
            if server:
                server.shutdown()
                server.server_close()

    # state helpers -----------------------------------------------------------
    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        return self.repos[repo_id]

    def at(self, repo_id: str, rev: str) -> Commit:
        commit = self.repo(repo_id).commit(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        return commit

    def _new_commit(self, repo: Repo, tree: dict[str, bytes], message: str) -> Commit:
        seed = f"{len(repo.commits)}:{message}:{sorted(tree)}".encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), message, tree,
                        datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        repo.commits.append(commit)
        repo.branches["main"] = commit.oid
        return commit

    # endpoints: publishing -----------------------------------------------------
    def create_repo(self, body: dict) -> dict:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.url}/datasets/{repo_id}"
        if body.get("organization") in self.read_only:
            raise HubError(403, f"You don't have the rights to create a dataset under the namespace {body['organization']}")
        if repo_id in self.repos:  # the real Hub also names the existing repo's url
            raise HubError(409, "You already created this dataset repo", extra={"url": url})
        repo = Repo(body.get("type") or "model", body.get("visibility") == "private")
        self.repos[repo_id] = repo
        self._new_commit(repo, {".gitattributes": GITATTRIBUTES}, "initial")
        return {"url": url, "name": repo_id}

    def info(self, repo_id: str, rev: str = "main") -> dict:
        """Repo info at a revision (`/api/datasets/R` is main): `sha` is the commit the revision names."""
        repo, commit = self.repo(repo_id), self.at(repo_id, rev)
        return {"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                "author": repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
                "createdAt": CREATED, "private": repo.private, "gated": False, "disabled": False,
                "tags": [], "siblings": [{"rfilename": p} for p in sorted(commit.tree)]}

    def refs(self, repo_id: str) -> dict:
        repo = self.repo(repo_id)

        def info(kind, name, oid):
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

        return {"branches": [info("heads", n, o) for n, o in repo.branches.items()], "converts": [],
                "tags": [info("tags", n, o) for n, o in repo.tags.items()]}

    def preupload(self, repo_id: str, body: dict) -> dict:
        self.repo(repo_id)
        files = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                  "uploadMode": "lfs" if is_lfs(f["path"]) else "regular"} for f in body["files"]]
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
        repo, parent = self.repo(repo_id), self.at(repo_id, rev)
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
        repo, commit = self.repo(repo_id), self.at(repo_id, rev)
        if body["tag"] in repo.tags:
            raise HubError(409, f"Tag {body['tag']} already exists")
        repo.tags[body["tag"]] = commit.oid
        return {}

    # endpoints: reading --------------------------------------------------------
    def _entries(self, commit: Commit) -> dict[str, dict]:
        """Every file and folder of a commit, by path, as the tree endpoint lists them."""
        entries = {p: file_entry(p, b) for p, b in commit.tree.items()}
        folders = sorted({"/".join(p.split("/")[:i]) for p in commit.tree for i in range(1, p.count("/") + 1)})
        for folder in folders:
            inside = sorted(e["oid"] for p, e in entries.items() if p.startswith(folder + "/"))
            entries[folder] = {"type": "directory", "oid": hashlib.sha1(" ".join(inside).encode()).hexdigest(),
                               "size": 0, "path": folder}
        return entries

    def tree(self, repo_id: str, rev: str, path: str = "", recursive: bool = False) -> list[dict]:
        """The folder's children (all descendants with `recursive`), folders before files as on the Hub."""
        commit = self.at(repo_id, rev)
        entries, path = self._entries(commit), path.strip("/")
        if path and entries.get(path, {}).get("type") != "directory":
            raise HubError(404, f"File not found in repository {repo_id}: {path}", code="EntryNotFound")
        prefix = path + "/" if path else ""
        found = [e for p, e in entries.items() if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])]
        return sorted(found, key=lambda e: (e["type"] != "directory", e["path"]))

    def paths_info(self, repo_id: str, rev: str, form: dict[str, list[str]]) -> list[dict]:
        """The entries of the asked paths that exist (a missing path is left out, as on the Hub)."""
        entries = self._entries(self.at(repo_id, rev))
        return [entries[p.strip("/")] for p in form.get("paths", []) if p.strip("/") in entries]

    def resolve(self, repo_id: str, rev: str, path: str, range_header: str | None) -> Reply:
        commit = self.at(repo_id, rev)
        if path not in commit.tree:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound",
                           headers={"X-Repo-Commit": commit.oid})
        data, entry = commit.tree[path], file_entry(path, commit.tree[path])
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry["oid"]}"'}
        if "lfs" not in entry:
            return ranged(data, range_header, {**headers, "Content-Type": "application/octet-stream"})
        sha = entry["lfs"]["oid"]
        self.blobs.setdefault(sha, data)  # a file planted straight into a tree is served too
        return Reply(302, {**headers, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                           "Location": f"{self.cdn_url}/lfs/{sha}", "Content-Length": "0"})

    def cdn_get(self, sha: str, range_header: str | None) -> Reply:
        if sha not in self.blobs:
            return Reply(404, {}, b"NoSuchKey")
        return ranged(self.blobs[sha], range_header, {"ETag": f'"{sha}"', "Content-Type": "application/octet-stream"})


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode())


def _true(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true")  # httpx sends a bool as "true"/"false"


ROUTES = [  # (methods, path regex, handler(hub, groups, body bytes, request headers) -> JSON-able or Reply)
    ("POST", r"/api/repos/create", lambda h, g, b, r: h.create_repo(json.loads(b))),
    ("POST", r"/api/validate-yaml", lambda h, g, b, r: {"errors": [], "warnings": []}),
    ("GET", rf"/api/datasets/{REPO}", lambda h, g, b, r: h.info(g["repo"])),
    ("GET", rf"/api/datasets/{REPO}/revision/{REV}", lambda h, g, b, r: h.info(g["repo"], g["rev"])),
    ("GET", rf"/api/datasets/{REPO}/refs", lambda h, g, b, r: h.refs(g["repo"])),
    ("GET", rf"/api/datasets/{REPO}/tree/{REV}(?:/(?P<path>.+))?",
     lambda h, g, b, r: h.tree(g["repo"], g["rev"], g["path"] or "", _true(r["query"], "recursive"))),
    ("POST", rf"/api/datasets/{REPO}/paths-info/{REV}", lambda h, g, b, r: h.paths_info(g["repo"], g["rev"], _form(b))),
    ("HEAD GET", rf"/datasets/{REPO}/resolve/{REV}/(?P<path>.+)",
     lambda h, g, b, r: h.resolve(g["repo"], g["rev"], g["path"], r["range"])),
    ("POST", rf"/api/datasets/{REPO}/preupload/{REV}", lambda h, g, b, r: h.preupload(g["repo"], json.loads(b))),
    ("POST", rf"/datasets/{REPO}\.git/info/lfs/objects/batch", lambda h, g, b, r: h.lfs_batch(g["repo"], json.loads(b))),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", lambda h, g, b, r: h.lfs_put(g["oid"], b)),
    ("POST", rf"/api/datasets/{REPO}/commit/{REV}", lambda h, g, b, r: h.commit(g["repo"], g["rev"], b)),
    ("POST", rf"/api/datasets/{REPO}/tag/{REV}", lambda h, g, b, r: h.tag(g["repo"], g["rev"], json.loads(b))),
]


class _BaseHandler(BaseHTTPRequestHandler):
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

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        headers = {"Content-Length": str(len(reply.body)), **reply.headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        self._reply(Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()))

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")


class _Handler(_BaseHandler):
    def _handle(self, method: str) -> None:
        hub = self.state
        path, _, query = self.path.partition("?")
        body = self._body()
        with hub._lock:
            hub.requests.append((method, path))
            hub.auth_headers.append(self.headers.get("Authorization", ""))
        needs_auth = not path.startswith("/lfs-upload/")  # presigned-URL style, like S3
        if needs_auth and hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self._send(401, {"error": "Invalid credentials in Authorization header"},
                              {"X-Error-Message": "Invalid credentials in Authorization header"})
        request = {"query": parse_qs(query), "range": self.headers.get("Range")}
        for verbs, pattern, handler in ROUTES:
            m = re.fullmatch(pattern, path)
            if method in verbs.split() and m:
                groups = {k: unquote(v) if v else v for k, v in m.groupdict().items()}
                try:
                    with hub._lock:
                        answer = handler(hub, groups, body, request)
                except HubError as e:
                    return self._send(e.status, {"error": str(e), **e.extra},
                                      {**({"X-Error-Code": e.code} if e.code else {}), "X-Error-Message": str(e),
                                       **e.headers})
                return self._reply(answer) if isinstance(answer, Reply) else self._send(200, answer)
        with hub._lock:
            hub.unrouted.append((method, path))
        self._send(404, {"error": f"fake hub: no route for {method} {path}"})


class _CdnHandler(_BaseHandler):
    """The storage LFS downloads are redirected to: signed-URL style, it needs no token."""

    def _handle(self, method: str) -> None:
        hub = self.state
        path = self.path.split("?", 1)[0]
        self._body()
        with hub._lock:
            hub.cdn_requests.append((method, path, self.headers.get("Authorization", "")))
        m = re.fullmatch(r"/lfs/(?P<sha>[0-9a-f]{64})", path)
        if method not in ("GET", "HEAD") or not m:
            return self._reply(Reply(404, {}, b"NoSuchKey"))
        with hub._lock:
            reply = hub.cdn_get(m["sha"], self.headers.get("Range"))
        self._reply(reply)
