"""What names a model folder: one digest of the files a loader reads.

`model_digest(folder)` is the one model identity of the project: the policy
identity that scopes rl-pool's and eval's response cache
(`builders.inference.backends.policy_identity`: `local:<folder name>:sha256:<first 12
hex>`) and the `fingerprint` a run.json records for the model it started from
(`training.lineage.model_fingerprint`) are both this digest.

It is sha256 over every top-level regular file's name and the sha256 of its
bytes, except dot-files and `run.json` (the record of how the model was made,
written after it, not part of what loads); sub-folders such as checkpoint-*
are not what `from_pretrained(folder)` loads. A LoRA folder adds its base
model's digest (or its Hub id), since the base is part of the policy.

All bytes, not names and sizes or the safetensors header: a model retrained
in place keeps its file names, its sizes and its header (tensor names, dtypes,
shapes, offsets) and changes only the tensor bytes, so a cheaper identity
would let a retrained policy reuse its predecessor's cached samples. Hashing
costs about 1 s per GB here (sha256 of a 1 GiB file: 0.9-1.2 s, page cache
warm), some 15 s for a 7B model in bf16, so the digest of a big file is
remembered in `$XDG_CACHE_HOME/polyground/file-digests.json` (default
~/.cache), keyed by its resolved path, size, mtime_ns, ctime_ns and inode. A
write changes mtime and ctime, and ctime cannot be set back (`touch -d` sets
mtime only), so a changed file is hashed again. Not remembered: files under
CACHE_MIN_BYTES (hashed in milliseconds), files modified in the last
RACY_SECONDS (a same-size rewrite may not move a coarse timestamp yet: git's
"racily clean" entries), and files that changed while being hashed. The cache
is an optimisation only: if it cannot be read or written, files are hashed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from builders.inference.models import RUN_FILE

CACHE_MIN_BYTES = 64 << 20  # ~60 ms of hashing: below it a cache entry saves nothing worth a file
RACY_SECONDS = 2.0
CACHE_NAME = "file-digests.json"


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyground" / CACHE_NAME


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_cache() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(path: str, key: list[int], digest: str) -> None:
    entries = {p: e for p, e in _read_cache().items() if os.path.exists(p)}  # models deleted since: forgotten
    entries[path] = {"stat": key, "sha256": digest}
    target = cache_file()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, sort_keys=True))
        os.replace(tmp, target)  # atomic: a concurrent rank loses at most its own entry
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _hash_bytes(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, from the stat-keyed cache when the file is big and unchanged since."""
    path = Path(path).resolve()
    before = path.stat()
    if before.st_size < CACHE_MIN_BYTES:
        return _hash_bytes(path)
    key = _stat_key(before)
    entry = _read_cache().get(str(path))
    if isinstance(entry, dict) and entry.get("stat") == key and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = _hash_bytes(path)
    settled = time.time() - before.st_mtime_ns / 1e9 > RACY_SECONDS
    if settled and _stat_key(path.stat()) == key:
        _remember(str(path), key, digest)
    return digest


def model_files(folder: Path) -> list[Path]:
    """The files that make the model in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != RUN_FILE)


def model_digest(folder: str | Path) -> str:
    """The model identity of a local folder (64 hex), as the module docstring says."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in model_files(folder):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\n")
    adapter = folder / "adapter_config.json"
    if adapter.is_file():  # a LoRA folder: the base model is part of the policy too
        base = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        h.update(b"base\0" + (model_digest(base) if base and Path(base).is_dir() else base).encode())
    return h.hexdigest()
