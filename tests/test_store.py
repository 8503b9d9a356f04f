"""The versioned store: ids, resolve, tags, verify, atomic commits, SIGKILL, the lock."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import png_bytes
from store_util import tasks_table, write_version

from builders.store import Store, code_version
from schemas import rows
from schemas.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def visible(store: Store, name: str = "demo") -> list[str]:
    folder = store.root / "datasets" / name
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_put_image_is_content_addressed_and_idempotent(store):
    data = png_bytes()
    h = store.put_image(data)
    assert store.image_path(h) == store.root / "images" / h[:2] / h
    assert store.image_path(h).read_bytes() == data
    assert store.put_image(data) == h
    assert [p.name for p in store.image_path(h).parent.iterdir()] == [h]  # no temp file left


def test_same_inputs_give_the_same_id_and_no_second_folder(store):
    a = write_version(store)
    b = write_version(store)
    assert a.id == b.id and len(a.id) == 12
    assert visible(store) == [a.id]
    assert b.manifest["created"] == a.manifest["created"]  # the existing version, untouched


def test_any_change_gives_a_new_id(store):
    base = write_version(store)
    other_config = write_version(store, config={"k": 2})
    other_rows = write_version(store, table=tasks_table(store, n=5))
    other_kind = write_version(store, kind="bench")
    other_inputs = write_version(store, inputs=[base])
    ids = {base.id, other_config.id, other_rows.id, other_kind.id, other_inputs.id}
    assert len(ids) == 5


def test_manifest_records_lineage_counts_and_files(store):
    base = write_version(store, name="base")
    rejects = rows.to_table([{"id": "x", "reason": "missing_image", "detail": "", "record": "{}"}] * 2, "rejects")
    with store.writer("child", "tasks", inputs=[base.ref], config={"c": 1}) as w:
        w.write(tasks_table(store, n=3), rejects, {"usage": {"tokens": 7}, "counts": {"kept_by_gate": 3}})
    m = w.version.manifest
    assert m["inputs"] == [{"ref": base.ref, "id": base.id, "kind": "tasks"}]
    assert m["counts"] == {"rows": 3, "by_task_type": {"common_object": 1, "diff": 2},
                           "dropped_by_reason": {"missing_image": 2}, "kept_by_gate": 3}
    assert m["usage"] == {"tokens": 7} and m["code_version"] == code_version()
    assert {"data.arrow", "rejects.arrow", "README.md"} <= set(m["files"])
    assert w.version.rejects().num_rows == 2 and w.version.table().num_rows == 3


def test_tables_memory_map_and_open_with_datasets(store):
    v = write_version(store)
    assert v.table().schema == rows.TASKS
    ds = v.dataset()
    assert len(ds) == 4 and ds[0]["id"] == "t0"


def test_resolve_by_name_id_prefix_and_tag(store):
    a = write_version(store)
    time.sleep(0.01)
    b = write_version(store, config={"k": 2})
    assert store.resolve("demo").id == b.id  # newest
    assert store.resolve(f"demo@{a.id}").id == a.id
    assert store.resolve(f"demo@{a.id[:6]}").id == a.id
    store.tag(a.ref, "best")
    assert store.resolve("demo@best").id == a.id
    assert (store.root / "refs" / "demo" / "best").read_text().strip() == a.id
    assert [v.id for v in store.versions()] == [a.id, b.id]


@pytest.mark.parametrize("ref", ["nothere", "demo@nothere", "../demo", "demo@", "@", "..", "demo@../demo"])
def test_resolve_unknown_is_a_user_error(store, ref):
    write_version(store)
    if ref == "demo@":
        assert store.resolve(ref).name == "demo"
        return
    with pytest.raises(UserError):
        store.resolve(ref)


def test_bad_names_and_tags_are_refused(store):
    with pytest.raises(UserError):
        store.writer("../escape", "tasks")
    v = write_version(store)
    with pytest.raises(UserError):
        store.tag(v, "a/b")


def test_bench_is_not_trainable(store):
    bench = write_version(store, name="b", kind="bench")
    with pytest.raises(UserError, match="benchmark"):
        store.check_trainable(bench)
    store.check_trainable(write_version(store, name="t"))


def test_a_table_off_the_contract_is_refused(store):
    bad = tasks_table(store).drop_columns(["question"])
    with pytest.raises(ValueError, match="question"):
        with store.writer("demo", "tasks") as w:
            w.write(bad)
    assert visible(store) == [] and not list((store.root / "datasets" / "demo").iterdir())


def test_an_error_inside_the_block_commits_nothing(store):
    with pytest.raises(RuntimeError):
        with store.writer("demo", "tasks") as w:
            w.write(tasks_table(store))
            raise RuntimeError("builder failed")
    assert visible(store) == [] and not list((store.root / "datasets" / "demo").iterdir())


def test_verify_passes_on_a_fresh_version(store):
    assert store.verify(write_version(store)) == []


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["data.arrow", "rejects.arrow", "manifest.json", "README.md", "image"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_verify_names_a_changed_byte(store, target, where):
    v = write_version(store)
    path = store.image_path(sorted(v.image_hashes)[0]) if target == "image" else v.path / target
    _flip_byte(path, int(path.stat().st_size * where))
    problems = store.verify(Store(store.root).resolve(v.ref))
    assert problems, f"a changed byte in {target} went unnoticed"
    assert (path.name if target == "image" else target) in problems[0]


def test_verify_catches_an_edited_manifest_value(store):
    v = write_version(store)
    m = json.loads((v.path / "manifest.json").read_text())
    m["counts"]["rows"] = 999
    (v.path / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=2) + "\n")
    assert "manifest.json" in store.verify(Store(store.root).resolve(v.ref))[0]


@pytest.mark.parametrize("target", ["image", "data.arrow", "manifest.json"])
def test_verify_names_a_deleted_file(store, target):
    v = write_version(store)
    h = sorted(v.image_hashes)[1]
    (store.image_path(h) if target == "image" else v.path / target).unlink()
    problems = Store(store.root).verify(f"demo@{v.id}")
    assert len(problems) == 1 and "missing" in problems[0]
    assert (h if target == "image" else target) in problems[0]


def test_stale_temp_folders_are_cleaned_and_live_ones_kept(store):
    folder = store.root / "datasets" / "demo"
    (folder / ".tmp-dead").mkdir(parents=True)
    (folder / ".tmp-dead" / ".owner").touch()
    (folder / ".tmp-dead" / "data.arrow").write_bytes(b"half")
    (folder / ".tmp-noowner").mkdir()
    (folder / ".tmp-live").mkdir()
    with open(folder / ".tmp-live" / ".owner", "a+") as owner:
        fcntl.flock(owner, fcntl.LOCK_EX)  # a build in progress elsewhere
        write_version(store)
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".tmp-live"]


CHILD = r"""
import os, sys, time
sys.path.insert(0, "tests")
import builders.store as bs
from store_util import tasks_table
mode, root = sys.argv[1], sys.argv[2]

def hang(*_args, **_kw):
    print("HANG", flush=True)
    time.sleep(600)

if mode == "data":  # die halfway through writing data.arrow
    def half_write(table, path):
        with open(path, "wb") as f:
            f.write(b"\xff" * 4096)
            f.flush()
        hang()
    bs._write_ipc = half_write
elif mode == "commit":  # die after manifest.json is written, before the rename
    bs.os.rename = hang
elif mode == "image":  # die between an image's temp write and its rename
    bs.os.replace = hang
store = bs.Store(root)
table = tasks_table(store, n=4)
with store.writer("demo", "tasks", config={"mode": mode}) as w:
    w.write(table)
print("DONE", flush=True)
"""


def _run_and_kill(root: Path, mode: str) -> str:
    """The child's first line ("HANG": it is waiting at the planted point), after killing it there."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(root)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # alive until the kill: it landed at that point
    return line.strip()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["data", "commit", "image"])
def test_sigkill_mid_write_leaves_no_version_and_the_next_build_succeeds(tmp_path, mode):
    root = tmp_path / "store"
    assert _run_and_kill(root, mode) == "HANG"
    store = Store(root)
    assert store.versions() == [] and visible(store) == []
    leftovers = list((root / "datasets" / "demo").glob(".tmp-*"))
    assert mode == "image" or leftovers  # the killed build's temp folder is there, invisible
    assert all(p.name.startswith(".tmp-") for p in root.glob("images/*/*")) or mode != "image"
    v = write_version(store)
    assert store.verify(v) == [] and visible(store) == [v.id]
    assert not list((root / "datasets" / "demo").glob(".tmp-*"))


@pytest.mark.slow
def test_two_processes_committing_at_once_both_land(tmp_path):
    root = tmp_path / "store"
    script = ("import sys; sys.path.insert(0, 'tests'); import builders.store as bs; from store_util import "
              "tasks_table\ns = bs.Store(sys.argv[1])\nfor i in range(4):\n"
              "    with s.writer('demo', 'tasks', config={'who': sys.argv[2], 'i': i}) as w:\n"
              "        w.write(tasks_table(s))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), who], cwd=REPO) for who in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    store = Store(root)
    assert len(store.versions("demo")) == 8
    assert all(store.verify(v) == [] for v in store.versions())
    assert not list((root / "datasets" / "demo").glob(".tmp-*"))
    assert os.listdir(root / "images")  # shared image folder intact


def test_a_failing_card_renderer_does_not_lose_the_build(store, monkeypatch, capsys):
    import builders.publish.cards

    def broken(*_args):
        raise RuntimeError("template bug")

    monkeypatch.setattr(builders.publish.cards, "render_card", broken)
    v = write_version(store)
    assert "template bug" in capsys.readouterr().err
    assert v.ref in (v.path / "README.md").read_text() and store.verify(v) == []


def test_the_code_version_hashes_every_module_of_the_four_packages(tmp_path):
    # code_version reads the package folders relative to its own file: after a move into a
    # sub-package a wrong depth would hash nothing and never change. A copy of the sources,
    # loaded from its own path, must change its code version for an edit in any sub-package.
    import importlib.util
    import shutil

    for pkg in ("schemas", "builders", "training", "polyground"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("store_copy", tmp_path / "builders" / "store" / "__init__.py")
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    seen = {copy.code_version()}
    assert seen == {code_version()}  # the copy holds the same sources
    for edited in ("schemas/boxes.py", "builders/inference/backends.py", "training/evaluation/score.py",
                   "polyground/cli.py", "builders/sources/jsonl.py"):
        with open(tmp_path / edited, "a") as f:
            f.write("\n# edited\n")
        copy.code_version.cache_clear()
        seen.add(copy.code_version())
    assert len(seen) == 6
