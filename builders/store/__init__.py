"""The versioned store: images once by content hash, frozen dataset versions, tags.

Layout under the store root:

    images/<h[:2]>/<h>                  original image bytes, h = sha256 of the bytes
    datasets/<name>/<id>/               data.arrow, rejects.arrow, README.md, manifest.json
    datasets/<name>/.tmp-*/             a build in progress (never listed, cleaned when stale)
    refs/<name>/<tag>                   a file holding the version id
    .lock                               fcntl lock taken around commits and tags

A version is built in a temporary folder and renamed into place only after
`manifest.json` (written last) is on disk: a crash leaves no version or a whole
one. Its id hashes what made it (kind, input ids, config, code version) and what
it holds (data file hashes): same inputs, same id; committing it again is a no-op.

What is read is checked as it is read, so no command ships or builds on
changed bytes: the manifest's seal (and so its kind) when a version is opened,
each data file's hash before it is memory-mapped (once per store object), each
image's hash when it is read or referenced by a new version (once per store
object). `data verify` rechecks everything from scratch. A write that fails
for the environment (read-only store, full disk) is one line naming the store,
and leaves no temporary file behind.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import uuid
from functools import cached_property, lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from builders.sources.images import sha256_file
from schemas import rows
from schemas.errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ID_LIKE_RE = re.compile(r"^[0-9a-fA-F]+$")  # a tag of hex digits only would read as a version id (prefix)
DATA, REJECTS, CARD, MANIFEST = "data.arrow", "rejects.arrow", "README.md", "manifest.json"
CORE_KEYS = ("name", "id", "kind", "created", "code_version", "inputs", "config", "counts", "files", "schema")


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<__version__>+<hash of the package sources>`: any code change gives new ids.

    `training` is hashed too: rl-pool's local backend and eval's scoring run there. The one
    code version of the project (training.lineage records it in run.json). The packages are
    read as files (the folders two levels above this one), not imported: builders never imports training or the CLI."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in ("schemas", "builders", "training", "polyground"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    version = (root / "polyground" / "__init__.py").read_text()
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", version)
    return f"{m.group(1) if m else '0'}+{h.hexdigest()[:12]}"


def version_id(kind: str, input_ids: list[str], config: dict, code: str, file_hashes: dict) -> str:
    blob = json.dumps([kind, input_ids, config, code, file_hashes], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def manifest_text(body: dict) -> str:
    """Canonical manifest text, sealed with the hash of the rest of the manifest.

    The manifest cannot list its own hash, so `verify` re-serialises it: any
    edited byte breaks the JSON, the seal or the canonical form."""
    body = {k: v for k, v in body.items() if k != "seal"}
    seal = hashlib.sha256(json.dumps(body, sort_keys=True, indent=2).encode()).hexdigest()
    return json.dumps({**body, "seal": seal}, sort_keys=True, indent=2) + "\n"


def _read_ipc(path: Path, ref: str = "") -> pa.Table:
    try:
        with pa.memory_map(str(path)) as source:  # zero-copy: buffers point into the mapping
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as e:  # ArrowInvalid, a truncated stream (OSError), a folder
        where = f"{ref}: " if ref else ""
        raise UserError(f"{where}{path.name} is unreadable ({str(e).splitlines()[0][:200]}); "
                        f"see `polyground data verify {ref or path.parent}`") from None


# Field types a manifest must have before anything reads it (after its seal).
MANIFEST_TYPES = {"name": str, "id": str, "kind": str, "created": str, "code_version": str, "inputs": list,
                  "config": dict, "counts": dict, "files": dict}


def read_manifest(folder: Path) -> tuple[dict | None, str | None]:
    """(manifest, None) when the folder's manifest is intact, else (None, the problem, naming the file).

    Intact: valid JSON, sealed (any edited value, the kind included, breaks the
    seal), fields of the expected types, and an id that recomputes from what it
    records and names the folder."""
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
        m = json.loads(text)
    except FileNotFoundError:
        return None, f"{MANIFEST}: missing"
    except IsADirectoryError:
        return None, f"{MANIFEST}: is a folder, not a file"
    except OSError as e:
        return None, f"{MANIFEST}: unreadable ({e.strerror})"
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return None, f"{MANIFEST}: not valid JSON ({str(e)[:200]})"
    if not isinstance(m, dict) or manifest_text(m) != text:
        return None, f"{MANIFEST}: content changed (its seal does not match)"
    bad = [k for k, t in MANIFEST_TYPES.items() if not isinstance(m.get(k), t)]
    files = m.get("files") or {}
    if bad or m["kind"] not in rows.SCHEMAS or not all(isinstance(files.get(f), str) for f in (DATA, REJECTS)) \
            or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in m["inputs"]) \
            or not isinstance(m["counts"].get("rows"), int):
        return None, f"{MANIFEST}: malformed ({', '.join(bad) or 'kind, files, inputs or counts'} not as written)"
    expected = version_id(m["kind"], [i["id"] for i in m["inputs"]], m["config"], m["code_version"],
                          {k: v for k, v in files.items() if k in (DATA, REJECTS)})
    if not expected == m["id"] == folder.name:
        return None, f"{MANIFEST}: id {m['id']} does not match what the version holds"
    return m, None


def _write_ipc(table: pa.Table, path: Path) -> None:
    with open(path, "wb") as f:
        with pa.ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table, max_chunksize=10_000)
        f.flush()
        os.fsync(f.fileno())


class Version:
    """A committed, frozen dataset version; what it reads is checked (module docstring)."""

    def __init__(self, path: Path, manifest: dict | None = None, store: "Store | None" = None):
        self.path, self._manifest = Path(path), manifest
        self.name, self.id = self.path.parent.name, self.path.name
        self.store = store

    @property
    def manifest(self) -> dict:
        """The sealed manifest; a UserError naming the problem when it is not intact."""
        if self._manifest is None:
            m, problem = read_manifest(self.path)
            if problem:
                raise UserError(f"{self.ref}: {problem}; it is damaged (see `polyground data verify {self.ref}`)")
            self._manifest = m
        return self._manifest

    kind = property(lambda self: self.manifest["kind"])
    ref = property(lambda self: f"{self.name}@{self.id}")

    @property
    def is_bench(self) -> bool:
        """A bench split? For a damaged manifest, the kind its id was made from: editing
        `kind` breaks the seal, and must not turn a benchmark into training data."""
        try:
            return self.kind == "bench"
        except UserError:
            return self.sealed_kind() == "bench"

    def sealed_kind(self) -> str | None:
        """The kind the folder's id hashes, recovered from a possibly edited manifest."""
        try:
            m = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            files = {k: v for k, v in m["files"].items() if k in (DATA, REJECTS)}
            ids = [i["id"] for i in m["inputs"]]
            found = [k for k in rows.SCHEMAS if version_id(k, ids, m["config"], m["code_version"], files) == self.id]
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        return found[0] if found else None

    @property
    def created(self) -> str:
        try:
            return self.manifest.get("created", "")
        except UserError:  # a damaged version still lists; verify names the damage
            return ""

    def checked_file(self, name: str) -> Path:
        """The path of data file `name` once its hash matches the manifest (else a UserError naming it)."""
        path, expected = self.path / name, self.manifest["files"].get(name)
        hashes = self.store._file_hashes if self.store is not None else {}
        key = _stat_key(path)
        if key is None or hashes.get(key) != expected:
            problem = _hash_problem(name, path, expected)
            if problem:
                raise UserError(f"{self.ref}: {problem}; it is damaged (see `polyground data verify {self.ref}`)")
            hashes[key] = expected
        return path

    def table(self) -> pa.Table:
        return _read_ipc(self.checked_file(DATA), self.ref)

    def rejects(self) -> pa.Table:
        return _read_ipc(self.checked_file(REJECTS), self.ref)

    def dataset(self):
        import datasets

        return datasets.Dataset.from_file(str(self.checked_file(DATA)))

    @cached_property
    def image_hashes(self) -> set[str]:
        """Every image hash the rows reference (empty for kinds without images).

        A damaged manifest's rows are read unchecked (`guard_table`)."""
        from builders.store.contamination import table_image_hashes

        return table_image_hashes(self.guard_table())

    def guard_table(self) -> pa.Table:
        """The rows, for the contamination guard: checked as `table()` when the manifest is
        intact; read unchecked when it is not (it cannot vouch for the data file), so that
        an edited benchmark still guards."""
        try:
            return self.table()
        except UserError:
            if read_manifest(self.path)[1] is None:
                raise
            return _read_ipc(self.path / DATA, self.ref)


class Store:
    """A store folder; directories are created lazily on first write."""

    # One fsync per image costs ~6 ms (most of ingest time); new images are
    # instead flushed by one os.sync() before the next commit in this process.
    images_unsynced = False

    def __init__(self, root: Path | str):
        self.root = Path(root)
        # What this store object has checked (one command): each file is hashed once.
        self._file_hashes: dict[tuple, str] = {}
        self._good_images: set[str] = set()

    def image_path(self, h: str) -> Path:
        return self.root / "images" / h[:2] / h

    def put_image(self, data: bytes) -> str:
        """Store bytes once under their sha256; atomic (temp + rename) and idempotent.
        A stored copy whose bytes changed is replaced by these (they hash right)."""
        h = hashlib.sha256(data).hexdigest()
        path = self.image_path(h)
        if h in self._good_images or (path.is_file() and sha256_file(path) == h):
            self._good_images.add(h)
            return h
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        with self.writing():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # atomic against a kill; durability waits for the commit's sync
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()  # a full disk leaves no partial temp file
        Store.images_unsynced = True
        self._good_images.add(h)
        return h

    def image_problem(self, h: str) -> str | None:
        """None when image `h` is stored with the bytes its name hashes (checked once per store object)."""
        path = self.image_path(h)
        if h in self._good_images and path.is_file():  # hashed once; a deletion since is still seen
            return None
        problem = _hash_problem(f"image {path.relative_to(self.root)}", path, h)
        if problem is None:
            self._good_images.add(h)
        return problem

    def check_images(self, hashes, ref: str = "") -> None:
        """Raise a UserError naming the first missing or changed image of `hashes`."""
        problems = [p for h in sorted(set(hashes)) if (p := self.image_problem(h))]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            whose = f"{ref}: " if ref else ""
            raise UserError(f"{whose}{problems[0]}{more}; the store is damaged (see `polyground data verify`)")

    def read_image(self, h: str) -> bytes:
        """The bytes of image `h`, refused (UserError naming it) when missing or changed."""
        path = self.image_path(h)
        try:
            data = path.read_bytes()
        except OSError:
            data = None
        # hashed here unless this store object hashed it already (check_images before a long job)
        if data is None or (h not in self._good_images and hashlib.sha256(data).hexdigest() != h):
            self._good_images.discard(h)
            self.check_images([h])
        self._good_images.add(h)
        return data

    def checked_image_path(self, h: str) -> Path:
        """The path of image `h`, after checking its bytes (for readers that take paths)."""
        self.check_images([h])
        return self.image_path(h)

    @contextlib.contextmanager
    def writing(self):
        """An environment failure while writing the store (read-only, full, no permission) is one line."""
        try:
            yield
        except OSError as e:
            code = e.errno or next((c for c, m in _ENV_MESSAGES.items() if m in str(e)), None)
            if code not in _ENV_ERRNOS:
                raise
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise UserError(f"cannot write to store {self.root}: {os.strerror(code)}{where}") from None

    def versions(self, name: str | None = None) -> list[Version]:
        """Committed versions (a folder with a manifest), oldest first."""
        if name and not NAME_RE.match(name):
            return []  # never a folder outside the store
        base = self.root / "datasets"
        folders = [base / name] if name else sorted(base.iterdir()) if base.is_dir() else []
        found = [Version(d, store=self) for f in folders if f.is_dir() for d in f.iterdir()
                 if not d.name.startswith(".") and (d / MANIFEST).is_file()]
        return sorted(found, key=lambda v: (v.created, v.ref))

    def tags(self, name: str) -> dict[str, str]:
        """tag -> version id; a ref that is not a readable file (a folder, say) is no tag."""
        folder = self.root / "refs" / name
        files = sorted(folder.iterdir()) if NAME_RE.match(name) and folder.is_dir() else []
        out = {}
        for p in files:
            if p.name.startswith(".") or not p.is_file():
                continue
            with contextlib.suppress(OSError):
                out[p.name] = p.read_text(encoding="utf-8", errors="replace").strip()
        return out

    def resolve(self, ref: str | Version) -> Version:
        """`name@id` (or a unique id prefix), `name@tag`, or `name` (its newest version)."""
        if isinstance(ref, Version):
            return ref
        name, _, sel = str(ref).partition("@")
        known = self.versions(name) if name else []
        if not known:
            raise UserError(f"no dataset named {name!r} in store {self.root} (see `polyground data ls`)")
        if not sel:
            return known[-1]
        tag_id = self.tags(name).get(sel)
        # a whole id wins over a tag (a tag cannot shadow a version), a tag over an id prefix
        matches = [v for v in known if v.id == sel.lower()] or [v for v in known if v.id == tag_id] \
            or [v for v in known if v.id.startswith(sel.lower())]
        if len(matches) != 1:
            why = "is ambiguous" if matches else "is neither a version id nor a tag"
            raise UserError(f"{ref}: {sel!r} {why} of {name} (see `polyground data ls {name}`)")
        return matches[0]

    def tag(self, ref: str | Version, tag: str, force: bool = False) -> tuple[Version, str | None]:
        """Point `name@tag` at a version; returns (version, the id it moved from, or None).

        Moving a tag that marks another version needs `force`."""
        version = self.resolve(ref)
        if not NAME_RE.match(tag):
            raise UserError(f"tag {tag!r}: use letters, digits, '.', '_' or '-'")
        if ID_LIKE_RE.match(tag):
            raise UserError(f"tag {tag!r} looks like a version id (hex digits only) and would shadow one; "
                            f"add a letter beyond 'f' or a '-' (e.g. v{tag})")
        folder = self.root / "refs" / version.name
        with self.writing():
            folder.mkdir(parents=True, exist_ok=True)
            with self.lock():
                if (folder / tag).is_dir():
                    raise UserError(f"{folder / tag} is a folder, not a tag file; remove it first")
                previous = self.tags(version.name).get(tag)
                previous = None if previous == version.id else previous
                if previous and not force:
                    raise UserError(f"{version.name}@{tag} marks {version.name}@{previous}; "
                                    f"pass --force to move it to {version.id}")
                tmp = folder / f".tmp-{uuid.uuid4().hex}"
                try:
                    tmp.write_text(version.id + "\n")
                    os.replace(tmp, folder / tag)
                finally:
                    tmp.unlink(missing_ok=True)
        return version, previous

    def check_trainable(self, version: Version) -> None:
        _ = version.manifest  # a damaged manifest is refused first: its kind cannot be trusted
        if version.is_bench:
            raise UserError(f"{version.ref} is a benchmark split; it is never used for training or data building")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive store-wide lock: commits and tags from several processes serialise."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, even on an exception
            yield

    def writer(self, name: str, kind: str, inputs=(), config: dict | None = None) -> "Writer":
        return Writer(self, name, kind, list(inputs), config or {})

    def clean_stale(self, name: str) -> None:
        """Remove temp folders of killed builds (their owner's flock is gone).

        Call with the store lock held: writers create and commit temp folders
        under the same lock, so a folder is never half-made or mid-rename here."""
        folder = self.root / "datasets" / name
        for tmp in folder.glob(".tmp-*") if folder.is_dir() else []:
            try:
                with open(tmp / ".owner", "r") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live build holds it
            except OSError:
                pass  # no owner file: killed before it made one
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in (self.root / "images").glob("*/.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - tmp.stat().st_mtime > 3600:  # surely a killed writer's
                    tmp.unlink()

    def verify(self, version: Version | str) -> list[str]:
        """Recompute every hash the version rests on, from scratch; each problem names its file."""
        name, _, sel = str(getattr(version, "ref", version)).partition("@")
        if all(map(NAME_RE.match, (name, sel))) and (self.root / "datasets" / name / sel).is_dir() \
                and not (self.root / "datasets" / name / sel / MANIFEST).exists():
            return [f"{MANIFEST}: missing (the version folder has no manifest)"]
        version = self.resolve(version)
        m, problem = read_manifest(version.path)
        if problem:
            return [problem]
        version._manifest = m
        files = {f: h for f, h in m["files"].items() if isinstance(h, str)}
        problems = [p for f, h in files.items() if (p := _hash_problem(f, version.path / f, h))]
        if any(p.startswith(DATA) for p in problems):
            return problems  # the image list itself cannot be trusted
        self._file_hashes[_stat_key(version.path / DATA)] = files[DATA]  # hashed just now
        try:
            hashes = sorted(version.image_hashes)
        except UserError as e:  # the hash matched but Arrow cannot read it: never written by us
            return [f"{DATA}: unreadable ({e})"]
        paths = {h: self.image_path(h) for h in hashes}
        return problems + [p for h, path in paths.items()
                           if (p := _hash_problem(f"image {path.relative_to(self.root)}", path, h))]


_ENV_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# pyarrow's write errors carry the errno only in their text
_ENV_MESSAGES = {errno.ENOSPC: "No space left", errno.EROFS: "Read-only file system",
                 errno.EACCES: "Permission denied", errno.EDQUOT: "Disk quota exceeded"}


def _stat_key(path: Path) -> tuple | None:
    """What identifies one state of a file for the hash cache: a rewrite changes it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash_problem(label: str, path: Path, expected: str | None) -> str | None:
    try:
        if not path.is_file():
            return f"{label}: missing"
        got = sha256_file(path)
    except OSError as e:
        return f"{label}: unreadable ({e.strerror})"
    if expected is None:
        return f"{label}: not listed in the manifest"
    return f"{label}: content changed (its sha256 differs)" if got != expected else None


def _pause_for_tests() -> None:
    """With POLYGROUND_TEST_PAUSE_IN_WRITE=FILE, stop mid-write for good: write FILE (the pid), then
    answer a probe the test writes to FILE.probe by copying it to FILE.ack, and never return. The
    answer proves the process was waiting inside the write when the test asked; the test kills it
    there (tests/test_kills.py). A pause that did not wait could not answer."""
    if marker := os.environ.get("POLYGROUND_TEST_PAUSE_IN_WRITE"):
        marker = Path(marker)
        marker.write_text(f"{os.getpid()}\n")
        probe, ack = Path(f"{marker}.probe"), Path(f"{marker}.ack")
        while True:
            if probe.exists() and not ack.exists():
                Path(f"{ack}.part").write_text(probe.read_text())
                Path(f"{ack}.part").replace(ack)  # whole or absent, never half-written
            time.sleep(0.01)


class Writer:
    """Builds one version in a temp folder; committed on leaving the with-block."""

    def __init__(self, store: Store, name: str, kind: str, inputs: list, config: dict):
        if not NAME_RE.match(name):
            raise UserError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-'")
        if kind not in rows.SCHEMAS:
            raise ValueError(f"unknown dataset kind {kind!r}")
        self.store, self.name, self.kind, self.config = store, name, kind, config
        self.inputs = [store.resolve(i) for i in inputs]
        self.version: Version | None = None
        self._manifest: dict | None = None

    def __enter__(self) -> "Writer":
        folder = self.store.root / "datasets" / self.name
        self.tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            with self.store.writing():
                folder.mkdir(parents=True, exist_ok=True)
                with self.store.lock():
                    self.store.clean_stale(self.name)
                    self.tmp.mkdir()
                    self._owner = open(self.tmp / ".owner", "a+")
                    fcntl.flock(self._owner, fcntl.LOCK_EX)  # marks the folder live until we exit
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self

    def write(self, table: pa.Table, rejects: pa.Table | None = None, extra_manifest: dict | None = None) -> None:
        """Write the data files and prepare the manifest. `table` must match the kind's schema."""
        schema = rows.SCHEMAS[self.kind]
        if problem := rows.validate_table(table, self.kind):
            raise ValueError(f"{self.kind} table does not match schemas.rows: {problem}")
        table = table.select(schema.names).cast(schema)
        rejects = rows.REJECTS.empty_table() if rejects is None else rejects
        rejects = rejects.select(rows.REJECTS.names).cast(rows.REJECTS)
        with self.store.writing():
            _write_ipc(table, self.tmp / DATA)
            _pause_for_tests()
            _write_ipc(rejects, self.tmp / REJECTS)
        files = {f: sha256_file(self.tmp / f) for f in (DATA, REJECTS)}
        extra = dict(extra_manifest or {})
        if clash := [k for k in extra if k in CORE_KEYS and k != "counts"]:
            raise ValueError(f"extra manifest keys {clash} are reserved")
        code = code_version()
        vid = version_id(self.kind, [v.id for v in self.inputs], self.config, code, files)
        self._manifest = {
            "name": self.name, "id": vid, "kind": self.kind,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "code_version": code,
            "inputs": [{"ref": v.ref, "id": v.id, "kind": v.kind} for v in self.inputs],
            "config": json.loads(json.dumps(self.config, default=str)),
            "counts": {**_counts(table, rejects), **extra.pop("counts", {})},
            "files": files, "schema": str(schema), **extra,
        }
        self._table = table

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._manifest is None:
                    raise ValueError("store writer closed without write()")
                with self.store.writing():
                    self._commit()
        finally:
            self._owner.close()
            shutil.rmtree(self.tmp, ignore_errors=True)  # gone after a rename; else leftovers

    def _commit(self) -> None:
        final = self.tmp.parent / self._manifest["id"]
        if _intact(final):  # same inputs, same content: nothing new
            self.version = Version(final, store=self.store)
            return
        from builders.store.contamination import table_image_hashes

        # A version is never born failing verify: every image it references is there, unchanged.
        self.store.check_images(table_image_hashes(self._table), f"{self.name} (not written)")
        _write_card(self.tmp, self._manifest, self._table)
        for f in sorted(p for p in self.tmp.rglob("*") if p.is_file()):  # the card and its plots
            rel = f.relative_to(self.tmp).as_posix()
            if rel not in (MANIFEST, ".owner", DATA, REJECTS):
                self._manifest["files"][rel] = sha256_file(f)
        with open(self.tmp / MANIFEST, "w") as f:
            f.write(manifest_text(self._manifest))
            f.flush()
            os.fsync(f.fileno())
        if Store.images_unsynced:
            os.sync()
            Store.images_unsynced = False
        with self.store.lock():
            if _intact(final):  # same inputs, same content: nothing new
                self.version = Version(final, store=self.store)
                return
            shutil.rmtree(final, ignore_errors=True)  # a damaged copy of this very version is replaced
            (self.tmp / ".owner").unlink()
            os.rename(self.tmp, final)
            fd = os.open(final.parent, os.O_RDONLY)  # make the rename itself durable
            os.fsync(fd)
            os.close(fd)
        self.version = Version(final, store=self.store)


def _intact(folder: Path) -> bool:
    """A committed version whose manifest and data files hash right."""
    m, problem = read_manifest(folder)
    return problem is None and not any(_hash_problem(f, folder / f, m["files"][f]) for f in (DATA, REJECTS))


def _counts(table: pa.Table, rejects: pa.Table) -> dict:
    def by(t: pa.Table, col: str) -> dict:
        if col not in t.schema.names or not t.num_rows:
            return {}
        vc = pc.value_counts(t.column(col).combine_chunks()).to_pylist()
        return dict(sorted((d["values"], d["counts"]) for d in vc if d["values"] is not None))

    return {"rows": table.num_rows, "by_task_type": by(table, "task_type"),
            "dropped_by_reason": by(rejects, "reason")}


def _write_card(folder: Path, manifest: dict, table: pa.Table) -> None:
    """The data card: builders.publish.cards renders it when that module exists."""
    if importlib.util.find_spec("builders.publish.cards") is not None:
        from builders.publish import cards

        try:
            text = cards.render_card(folder, manifest, table)
            if isinstance(text, str) and not (folder / CARD).exists():
                (folder / CARD).write_text(text)
        except Exception as e:  # a card bug must not throw away a finished (maybe hours-long) build
            print(f"warning: data card failed ({type(e).__name__}: {e}); writing a plain one", file=sys.stderr)
            (folder / CARD).unlink(missing_ok=True)
    if not (folder / CARD).exists():
        c = manifest["counts"]
        (folder / CARD).write_text(f"# {manifest['name']}@{manifest['id']}\n\nkind: {manifest['kind']}, "
                                   f"rows: {c['rows']}, dropped: {json.dumps(c['dropped_by_reason'])}\n")

