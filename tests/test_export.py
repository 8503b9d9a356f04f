"""Export: Parquet shards with embedded images that `datasets` reads back row by row."""
from __future__ import annotations

import hashlib
import json

import pytest
from store_util import tasks_table, write_version

import builders.publish.export as export_mod
from builders.publish.export import export_version
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


def test_re_export_needs_overwrite_and_replaces_only_its_own_files(store, tmp_path, monkeypatch):
    v = write_version(store, table=tasks_table(store, n=6))
    monkeypatch.setattr(export_mod, "SHARD_BYTES", 300)
    first = export_version(store, v, tmp_path / "out")
    assert len(first) > 3 and (tmp_path / "out" / export_mod.MARKER).is_file()
    (tmp_path / "out" / "notes.txt").write_text("mine")  # a user's file beside the export
    with pytest.raises(UserError, match="--overwrite"):
        export_version(store, v, tmp_path / "out")
    monkeypatch.setattr(export_mod, "SHARD_BYTES", 1 << 30)
    export_version(store, v, tmp_path / "out", overwrite=True)
    assert len(list((tmp_path / "out" / "data").glob("*.parquet"))) == 1  # the old shards are gone
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # what it did not write stays
    assert_equal_to_store(store, v, load(tmp_path / "out"))


def test_a_folder_it_did_not_write_is_refused_and_untouched(store, tmp_path):
    """A user's folder holding a manifest.json, data/ and plots/ (the layout of an
    export, but not written by one): nothing in it is deleted or overwritten."""
    v = write_version(store)
    mine = tmp_path / "mine"
    for rel in ("manifest.json", "README.md", "data/train-00000-of-00001.parquet", "plots/task_mix.png"):
        (mine / rel).parent.mkdir(parents=True, exist_ok=True)
        (mine / rel).write_text(f"my {rel}")
    before = {p: p.read_text() for p in mine.rglob("*") if p.is_file()}
    for overwrite in (False, True):
        with pytest.raises(UserError, match="holds no earlier export"):
            export_version(store, v, mine, overwrite=overwrite)
    assert {p: p.read_text() for p in mine.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("where", ["version", "store", "images"])
def test_never_writes_inside_the_store(store, where):
    v = write_version(store)
    target = {"version": v.path, "store": store.root, "images": store.root / "images" / "out"}[where]
    with pytest.raises(UserError, match="inside the store"):
        export_version(store, v, target, overwrite=True)
    assert store.verify(v) == []


def test_overwrite_never_deletes_outside_the_folder(store, tmp_path):
    """A marker (written by hand) listing paths outside the folder removes nothing there."""
    v = write_version(store)
    (tmp_path / "precious.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / export_mod.MARKER).write_text(json.dumps({"files": ["../precious.txt", str(tmp_path / "precious.txt")]}))
    export_version(store, v, out, overwrite=True)
    assert (tmp_path / "precious.txt").read_text() == "keep"


def test_a_missing_image_stops_the_export(store, tmp_path):
    v = write_version(store)
    store.image_path(sorted(v.image_hashes)[0]).unlink()
    with pytest.raises(UserError, match="missing"):
        export_version(store, v, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything is written
