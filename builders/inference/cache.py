"""Response cache for generation clients: sqlite in WAL mode, one row per sample.

A sample's key is the sha256 of (cache version, model, the messages with every
inline image replaced by the sha256 of its bytes, the sampling parameters, the
sample index). Images are keyed by content, so the same task re-encoded, or
read from another store, hits the same rows; anything that changes what the
model would see or how it samples (model, prompt template, temperature,
max_tokens, seed) misses.

Each received response is committed as soon as it arrives (one transaction
per response, WAL + synchronous=NORMAL: a committed row survives a SIGKILL of
the process). Nothing secret is stored: no headers, no URL, no API key; only
the key hash, the model name, the sample's text and its usage.

    cache = ResponseCache(store_root / "cache" / "responses.sqlite")
    rk = request_key(model, messages, sampling)     # once per request
    cache.get(rk, [0, 1, 2]) -> {index: CachedSample}
    cache.put(rk, model, [CachedSample, ...])
"""
from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import UserError

# Bump when the key recipe or the meaning of a stored row changes.
CACHE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    key TEXT PRIMARY KEY,           -- sha256(request key, sample index)
    request_key TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    refusal TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass
class CachedSample:
    """One sample as stored: its text, why it stopped, and its share of the request's usage."""

    index: int
    text: str
    finish_reason: str | None
    refusal: str | None
    prompt_tokens: int
    completion_tokens: int


def _image_ref(url: str) -> str:
    """A data URL becomes `sha256:<hash of the decoded bytes>`; other URLs stay as they are."""
    if not url.startswith("data:"):
        return url
    payload = url.split(",", 1)[1] if "," in url else ""
    return "sha256:" + hashlib.sha256(base64.b64decode(payload)).hexdigest()


def _keyed_part(part: dict) -> dict:
    if part.get("type") == "image_url":
        return {"type": "image_url", "image": _image_ref(part["image_url"]["url"])}
    if part.get("type") == "image_ref":  # the client's lazy form: same key as its data URL
        size = part.get("size")  # sent resized: another image, another key
        return {"type": "image_url", "image": "sha256:" + part["sha256"] + (f"@{size[0]}x{size[1]}" if size else "")}
    return part


def keyed_messages(messages: list[dict]) -> list[dict]:
    """The messages with every image (data URL or `image_ref`) replaced by its content hash."""
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            content = [_keyed_part(p) for p in content]
        out.append({**msg, "content": content})
    return out


def request_key(model: str, messages: list[dict], sampling: dict) -> str:
    """sha256 over what decides a request's answers, except the sample index."""
    blob = json.dumps([CACHE_VERSION, model, keyed_messages(messages), sampling], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def sample_key(req_key: str, index: int) -> str:
    return hashlib.sha256(f"{req_key}#{index}".encode()).hexdigest()


class ResponseCache:
    """The sqlite cache file; safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: each put() is one explicit transaction
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill; fast
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.OperationalError) as e:  # a read-only store or a full disk: one line
            raise UserError(f"cannot open the response cache {self.path} ({e}); is the store writable?") from None

    def get(self, req_key: str, indices: list[int]) -> dict[int, CachedSample]:
        """The cached samples among `indices` for one request."""
        keys = {sample_key(req_key, i): i for i in indices}
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT sample_index, text, finish_reason, refusal, prompt_tokens, completion_tokens "
            f"FROM samples WHERE key IN ({marks})",
            list(keys),
        ).fetchall()
        return {r[0]: CachedSample(*r) for r in rows}

    def put(self, req_key: str, model: str, samples: list[CachedSample]) -> None:
        """Store one response's samples in one committed transaction (first write wins)."""
        now = time.time()
        rows = [
            (sample_key(req_key, s.index), req_key, s.index, model, s.text, s.finish_reason, s.refusal,
             s.prompt_tokens, s.completion_tokens, now)
            for s in samples
        ]
        with self._db:  # BEGIN ... COMMIT
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def close(self) -> None:
        self._db.close()
