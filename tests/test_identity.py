"""The one model identity (builders.inference.identity): what changes it, what does not, and its stat-keyed digest cache."""
from __future__ import annotations

import json
import os
import time

import pytest


def model_folder(root, weights: bytes = b"weights v1"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_policy_identity_and_run_record_name_the_model_by_the_same_digest(tmp_path):
    from builders.inference.backends import policy_identity
    from training.lineage import model_fingerprint

    folder = model_folder(tmp_path / "m")
    record = model_fingerprint(str(folder))
    assert record["local"] is True and len(record["fingerprint"]) == 64
    assert policy_identity(str(folder)) == f"local:m:sha256:{record['fingerprint'][:12]}"


def test_the_digest_reads_every_weight_byte_and_nothing_beside_the_model(tmp_path):
    from builders.inference.identity import model_digest

    folder = model_folder(tmp_path / "m")
    first = model_digest(folder)
    (folder / "run.json").write_text('{"created": "now"}')  # the record of the model, written after it
    (folder / ".lock").write_text("x")
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "model.safetensors").write_bytes(b"other")
    assert model_digest(folder) == first
    (folder / "model.safetensors").write_bytes(b"weights v2")  # same size and name: retrained in place
    assert model_digest(folder) != first
    (folder / "model.safetensors").write_bytes(b"weights v1")
    (folder / "tokenizer.json").write_text("{}")  # any file a loader may read counts
    assert model_digest(folder) != first


def test_a_lora_folder_is_named_with_its_base(tmp_path):
    from builders.inference.identity import model_digest

    base = model_folder(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"lora")
    first = model_digest(adapter)
    (base / "model.safetensors").write_bytes(b"weights v2")
    assert model_digest(adapter) != first


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """The digest cache on for every file, kept under tmp_path; counts the files really hashed."""
    from builders.inference import identity

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(identity, "CACHE_MIN_BYTES", 1)
    hashed, real = [], identity._hash_bytes
    monkeypatch.setattr(identity, "_hash_bytes", lambda p: hashed.append(p.name) or real(p))
    return hashed


def settle(path, seconds_ago: float = 3600):
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


def test_a_big_unchanged_file_is_hashed_once(tmp_path, cached):
    from builders.inference.identity import cache_file, file_digest

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights v1")
    settle(f)
    first = file_digest(f)
    assert file_digest(f) == first and cached == ["model.safetensors"]
    assert json.loads(cache_file().read_text())[str(f.resolve())]["sha256"] == first


def test_a_rewrite_with_the_same_size_and_mtime_is_hashed_again(tmp_path, cached):
    from builders.inference.identity import file_digest

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights v1")
    settle(f)
    first = file_digest(f)
    mtime = f.stat().st_mtime_ns
    f.write_bytes(b"weights v2")
    os.utime(f, ns=(mtime, mtime))  # mtime set back; ctime cannot be
    assert f.stat().st_mtime_ns == mtime
    assert file_digest(f) != first and len(cached) == 2


def test_a_file_written_just_now_is_not_remembered(tmp_path, cached):
    from builders.inference.identity import cache_file, file_digest

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights v1")  # its timestamp may not yet tell a same-size rewrite apart
    file_digest(f)
    file_digest(f)
    assert len(cached) == 2 and not cache_file().exists()


def test_an_unwritable_cache_still_gives_the_digest(tmp_path, cached, monkeypatch):
    import hashlib

    from builders.inference.identity import file_digest

    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-dir"))
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights v1")
    settle(f)
    assert file_digest(f) == hashlib.sha256(b"weights v1").hexdigest()
