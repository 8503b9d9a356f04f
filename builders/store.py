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
"""
from __future__ import annotations

import contextlib
import datetime as dt
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

from builders.images import sha256_file
from schemas import rows
from schemas.errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DATA, REJECTS, CARD, MANIFEST = "data.arrow", "rejects.arrow", "README.md", "manifest.json"
CORE_KEYS = ("name", "id", "kind", "created", "code_version", "inputs", "config", "counts", "files", "schema")


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<__version__>+<hash of the package sources>`: any code change gives new ids.

    `training` is hashed too: rl-pool's local backend and eval's scoring run there. The one
    code version of the project (training.lineage records it in run.json). The packages are
    read as files beside this one, not imported: builders never imports training or the CLI."""
    root = Path(__file__).resolve().parents[1]
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


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:  # zero-copy: buffers point into the mapping
        return pa.ipc.open_stream(source).read_all()


def _write_ipc(table: pa.Table, path: Path) -> None:
    with open(path, "wb") as f:
        with pa.ipc.new_stream(f, table.schema) as writer:
            writer.write_table(table, max_chunksize=10_000)
        f.flush()
        os.fsync(f.fileno())


class Version:
    """A committed, frozen dataset version."""

    def __init__(self, path: Path, manifest: dict | None = None):
        self.path, self._manifest = Path(path), manifest
        self.name, self.id = self.path.parent.name, self.path.name

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            try:
                self._manifest = json.loads((self.path / MANIFEST).read_text())
            except (OSError, ValueError):
                raise UserError(f"{self.ref}: manifest.json is unreadable (see `polyground data verify`)") from None
        return self._manifest

    kind = property(lambda self: self.manifest["kind"])
    ref = property(lambda self: f"{self.name}@{self.id}")
    is_bench = property(lambda self: self.kind == "bench")

    @property
    def created(self) -> str:
        try:
            return self.manifest.get("created", "")
        except UserError:  # a damaged version still lists; verify names the damage
            return ""

    def table(self) -> pa.Table:
        return _read_ipc(self.path / DATA)

    def rejects(self) -> pa.Table:
        return _read_ipc(self.path / REJECTS)

    def dataset(self):
        import datasets

        return datasets.Dataset.from_file(str(self.path / DATA))

    @cached_property
    def image_hashes(self) -> set[str]:
        """Every image hash the rows reference (empty for kinds without images)."""
        from builders.contamination import table_image_hashes

        return table_image_hashes(self.table())


class Store:
    """A store folder; directories are created lazily on first write."""

    # One fsync per image costs ~6 ms (most of ingest time); new images are
    # instead flushed by one os.sync() before the next commit in this process.
    images_unsynced = False

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def image_path(self, h: str) -> Path:
        return self.root / "images" / h[:2] / h

    def put_image(self, data: bytes) -> str:
        """Store bytes once under their sha256; atomic (temp + rename) and idempotent."""
        h = hashlib.sha256(data).hexdigest()
        path = self.image_path(h)
        if path.exists():
            return h
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic against a kill; durability waits for the commit's sync
        Store.images_unsynced = True
        return h

    def versions(self, name: str | None = None) -> list[Version]:
        """Committed versions (a folder with a manifest), oldest first."""
        if name and not NAME_RE.match(name):
            return []  # never a folder outside the store
        base = self.root / "datasets"
        folders = [base / name] if name else sorted(base.iterdir()) if base.is_dir() else []
        found = [Version(d) for f in folders if f.is_dir() for d in f.iterdir()
                 if not d.name.startswith(".") and (d / MANIFEST).is_file()]
        return sorted(found, key=lambda v: (v.created, v.ref))

    def tags(self, name: str) -> dict[str, str]:
        folder = self.root / "refs" / name
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        return {p.name: p.read_text().strip() for p in files if not p.name.startswith(".")}

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
        matches = [v for v in known if v.id == tag_id] or [v for v in known if v.id.startswith(sel.lower())]
        if len(matches) != 1:
            why = "is ambiguous" if matches else "is neither a version id nor a tag"
            raise UserError(f"{ref}: {sel!r} {why} of {name} (see `polyground data ls {name}`)")
        return matches[0]

    def tag(self, ref: str | Version, tag: str) -> Version:
        version = self.resolve(ref)
        if not NAME_RE.match(tag):
            raise UserError(f"tag {tag!r}: use letters, digits, '.', '_' or '-'")
        folder = self.root / "refs" / version.name
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock():
            (tmp := folder / f".tmp-{uuid.uuid4().hex}").write_text(version.id + "\n")
            os.replace(tmp, folder / tag)
        return version

    def check_trainable(self, version: Version) -> None:
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
        """Recompute every hash the version rests on; each problem names its file."""
        name, _, sel = str(getattr(version, "ref", version)).partition("@")
        if all(map(NAME_RE.match, (name, sel))) and (self.root / "datasets" / name / sel).is_dir() \
                and not (self.root / "datasets" / name / sel / MANIFEST).exists():
            return [f"{MANIFEST}: missing (the version folder has no manifest)"]
        version = self.resolve(version)
        if problems := _check_manifest(version):
            return problems
        problems = [p for f, h in version.manifest["files"].items() if (p := _hash_problem(f, version.path / f, h))]
        if any(p.startswith(DATA) for p in problems):
            return problems  # the image list itself cannot be trusted
        paths = {h: self.image_path(h) for h in sorted(version.image_hashes)}
        return problems + [p for h, path in paths.items()
                           if (p := _hash_problem(f"image {path.relative_to(self.root)}", path, h))]


def _hash_problem(label: str, path: Path, expected: str) -> str | None:
    if not path.is_file():
        return f"{label}: missing"
    return f"{label}: content changed (its sha256 differs)" if sha256_file(path) != expected else None


def _check_manifest(version: Version) -> list[str]:
    path = version.path / MANIFEST
    try:
        text = path.read_text()
        m = json.loads(text)
    except FileNotFoundError:
        return [f"{MANIFEST}: missing"]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return [f"{MANIFEST}: not valid JSON ({e})"]
    if not isinstance(m, dict) or manifest_text(m) != text:
        return [f"{MANIFEST}: content changed (its seal does not match)"]
    expected = version_id(m["kind"], [i["id"] for i in m["inputs"]], m["config"], m["code_version"],
                          {k: v for k, v in m["files"].items() if k in (DATA, REJECTS)})
    if not expected == m["id"] == version.id:
        return [f"{MANIFEST}: id {m['id']} does not match what the version holds"]
    version._manifest = m
    return []


def _pause_for_tests() -> None:
    """With POLYGROUND_TEST_PAUSE_IN_WRITE=FILE, write FILE and wait mid-write: tests kill the process
    there and know the kill landed inside a write (tests/test_kills.py)."""
    if marker := os.environ.get("POLYGROUND_TEST_PAUSE_IN_WRITE"):
        Path(marker).write_text(f"{os.getpid()}\n")
        time.sleep(3600)


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
        folder.mkdir(parents=True, exist_ok=True)
        with self.store.lock():
            self.store.clean_stale(self.name)
            self.tmp = folder / f".tmp-{uuid.uuid4().hex}"
            self.tmp.mkdir()
            self._owner = open(self.tmp / ".owner", "a+")
            fcntl.flock(self._owner, fcntl.LOCK_EX)  # marks the folder live until we exit
        return self

    def write(self, table: pa.Table, rejects: pa.Table | None = None, extra_manifest: dict | None = None) -> None:
        """Write the data files and prepare the manifest. `table` must match the kind's schema."""
        schema = rows.SCHEMAS[self.kind]
        if problem := rows.validate_table(table, self.kind):
            raise ValueError(f"{self.kind} table does not match schemas.rows: {problem}")
        table = table.select(schema.names).cast(schema)
        rejects = rows.REJECTS.empty_table() if rejects is None else rejects
        rejects = rejects.select(rows.REJECTS.names).cast(rows.REJECTS)
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
                self._commit()
        finally:
            self._owner.close()
            shutil.rmtree(self.tmp, ignore_errors=True)  # gone after a rename; else leftovers

    def _commit(self) -> None:
        final = self.tmp.parent / self._manifest["id"]
        if (final / MANIFEST).is_file():  # same inputs, same content: nothing new
            self.version = Version(final)
            return
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
            if (final / MANIFEST).is_file():  # same inputs, same content: nothing new
                self.version = Version(final)
                return
            shutil.rmtree(final, ignore_errors=True)  # a half-copied folder cannot exist, but be safe
            (self.tmp / ".owner").unlink()
            os.rename(self.tmp, final)
            fd = os.open(final.parent, os.O_RDONLY)  # make the rename itself durable
            os.fsync(fd)
            os.close(fd)
        self.version = Version(final)


def _counts(table: pa.Table, rejects: pa.Table) -> dict:
    def by(t: pa.Table, col: str) -> dict:
        if col not in t.schema.names or not t.num_rows:
            return {}
        vc = pc.value_counts(t.column(col).combine_chunks()).to_pylist()
        return dict(sorted((d["values"], d["counts"]) for d in vc if d["values"] is not None))

    return {"rows": table.num_rows, "by_task_type": by(table, "task_type"),
            "dropped_by_reason": by(rejects, "reason")}


def _write_card(folder: Path, manifest: dict, table: pa.Table) -> None:
    """The data card: builders.cards renders it when that module exists."""
    if importlib.util.find_spec("builders.cards") is not None:
        from builders import cards

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

