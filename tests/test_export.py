"""Export: Parquet shards with embedded images that `datasets` reads back row by row."""
from __future__ import annotations

import hashlib
import json

import pytest
from store_util import tasks_table, write_version

import builders.export as export_mod
from builders.export import export_version
from schemas.errors import UserError


def load(out_dir, split: str = "train"):
    import datasets

    files = sorted(str(p) for p in (out_dir / "data").glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def assert_equal_to_store(store, version, ds) -> None:
    import datasets

    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    stored = version.table().to_pylist()
    assert len(raw) == len(stored)
    for want, got in zip(stored, raw):
        images = got.pop("images")
        refs = got.pop("image_refs")
        assert refs == want.pop("images")
        assert [hashlib.sha256(i["bytes"]).hexdigest() for i in images] == [r["sha256"] for r in refs]
        assert got == want


def test_round_trip_through_datasets(store, tmp_path):
    v = write_version(store)
    files = export_version(store, v, tmp_path / "out")
    assert (tmp_path / "out" / "README.md").read_text() == (v.path / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["id"] == v.id
    assert [f.name for f in files if f.suffix == ".parquet"] == ["train-00000-of-00001.parquet"]
    ds = load(tmp_path / "out")
    assert_equal_to_store(store, v, ds)
    first = ds[0]["images"][0]  # decodes as a PIL image, as TRL's collators expect
    assert first.size == (32, 24)


def test_shards_split_by_image_bytes(store, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "SHARD_BYTES", 300)  # about one row of two tiny PNGs
    v = write_version(store, table=tasks_table(store, n=7))
    shards = [f for f in export_version(store, v, tmp_path / "out") if f.suffix == ".parquet"]
    assert len(shards) > 2 and shards[-1].name.endswith(f"-of-{len(shards):05d}.parquet")
    assert_equal_to_store(store, v, load(tmp_path / "out"))


def test_bench_exports_a_test_split(store, tmp_path):
    v = write_version(store, name="b", kind="bench")
    files = export_version(store, v, tmp_path / "out")
    assert files[0].name.startswith("test-")
    assert_equal_to_store(store, v, load(tmp_path / "out", "test"))


def test_re_export_replaces_shards_and_foreign_folders_are_refused(store, tmp_path, monkeypatch):
    v = write_version(store, table=tasks_table(store, n=6))
    monkeypatch.setattr(export_mod, "SHARD_BYTES", 300)
    export_version(store, v, tmp_path / "out")
    monkeypatch.setattr(export_mod, "SHARD_BYTES", 1 << 30)
    export_version(store, v, tmp_path / "out")
    assert len(list((tmp_path / "out" / "data").glob("*.parquet"))) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        export_version(store, v, tmp_path / "mine")


def test_a_missing_image_stops_the_export(store, tmp_path):
    v = write_version(store)
    store.image_path(sorted(v.image_hashes)[0]).unlink()
    with pytest.raises(UserError, match="missing"):
        export_version(store, v, tmp_path / "out")
