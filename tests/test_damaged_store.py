"""Damaged stores: every command that reads a version refuses damage in one line naming the file.

The matrix: each kind of damage (an image byte flipped, an image deleted, a
manifest value edited, a manifest replaced by `{"kind": 5}` or a list, a
truncated data.arrow) x each command that reads a version (export, publish
--dry-run, build cot --mode annotations, data merge, data preview, data diff,
data show, eval, build rl-pool). Damaged: exit 2, one `error:` line naming the
file, nothing committed or exported and no request sent. Undamaged (the
control): the same command succeeds, so a refusal is the damage's doing.
Then the store-level cases: `data ls` of a store with damaged versions, a
ref that is a folder, tags that look like ids or move, a read-only store and
a full disk.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders.store import Store
from polyground.cli import main

DAMAGES = ["image_flipped", "image_deleted", "manifest_edited", "manifest_kind_5", "manifest_list", "data_truncated"]
IMAGE_DAMAGES = DAMAGES[:2]


def cli(root: Path, *argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(root), *map(str, argv)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Two synthetic tasks versions, built once: t (the one damaged) and u (a second input)."""
    root = tmp_path_factory.mktemp("template") / "store"
    refs = {}
    for name, seed in (("t", 1), ("u", 2)):
        code, out, err = cli(root, "build", "tasks", "--source", "synthetic", "--n", "4", "--seed", seed,
                             "--family", "mixed", "--name", name, "--quiet")
        assert code == 0, err
        refs[name] = out.strip().splitlines()[-1]
    return root, refs


@pytest.fixture
def built(template, tmp_path):
    """A fresh copy of the template store, and a policy server that knows its tasks."""
    root = tmp_path / "store"
    shutil.copytree(template[0], root, symlinks=True)
    store, refs = Store(root), dict(template[1])
    from openai_server import FakeOpenAIServer, GroundTruthPolicy

    tasks = store.resolve(refs["t"]).table().to_pylist()
    with FakeOpenAIServer(GroundTruthPolicy(tasks, success=0.5)) as server:
        yield store, refs, server, tmp_path


def damage(store: Store, ref: str, how: str) -> str:
    """Damage version `ref` as named; returns the text the refusal must name."""
    v = store.resolve(ref)
    image = store.image_path(sorted(v.image_hashes)[0])
    if how == "image_flipped":
        data = bytearray(image.read_bytes())
        data[len(data) // 2] ^= 0x01
        image.write_bytes(bytes(data))
        return image.name
    if how == "image_deleted":
        image.unlink()
        return image.name
    manifest = v.path / "manifest.json"
    if how == "manifest_edited":
        manifest.write_text(manifest.read_text().replace('"rows": 4', '"rows": 400'))
    elif how == "manifest_kind_5":
        manifest.write_text('{"kind": 5}')
    elif how == "manifest_list":
        manifest.write_text("[1, 2]")
    elif how == "data_truncated":
        data = v.path / "data.arrow"
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        return "data.arrow"
    return "manifest.json"


def predictions_file(tmp_path: Path, store: Store, ref: str) -> Path:
    path = tmp_path / "preds.jsonl"
    rows = store.resolve(ref).table().to_pylist()
    path.write_text("".join(json.dumps({"id": r["id"], "completion": "no box"}) + "\n" for r in rows))
    return path


# name -> (argv of a command reading version REF, the damages it must notice)
COMMANDS = {
    "export": (["data", "export", "REF", "OUT"], DAMAGES),
    "publish_dry_run": (["publish", "REF", "--repo", "me/toy", "--dry-run", "--out", "OUT"], DAMAGES),
    "cot_annotations": (["build", "cot", "--tasks", "REF", "--mode", "annotations", "--name", "c", "--quiet"],
                        DAMAGES),
    "merge": (["data", "merge", "REF", "U", "--name", "m"], DAMAGES),
    "preview": (["data", "preview", "REF", "--out", "OUT/page.html"], DAMAGES),
    "diff": (["data", "diff", "REF", "U"], DAMAGES[2:]),  # reads rows, not images
    "show": (["data", "show", "REF"], DAMAGES[2:5]),  # reads the manifest (its summary), not the rows
    "eval_predictions": (["eval", "--bench", "REF", "--predictions", "PREDS", "--profile", "qwen2_vl",
                          "--output", "OUT"], DAMAGES[2:]),
    "eval_endpoint": (["eval", "--bench", "REF", "--endpoint", "URL", "--endpoint-model", "fake", "--profile",
                       "norm1000", "--output", "OUT"], DAMAGES),
    "rl_pool": (["build", "rl-pool", "--tasks", "REF", "--policy", "URL", "--policy-model", "fake", "--k", "2",
                 "--profile", "norm1000", "--band", "0,1", "--name", "pool", "--quiet"], DAMAGES),
}
CASES = [(c, d) for c, (_, ds) in COMMANDS.items() for d in [None, *ds]]


def argv_for(command: str, built) -> list[str]:
    store, refs, server, tmp_path = built
    (tmp_path / "out").mkdir(exist_ok=True)
    values = {"REF": refs["t"], "U": refs["u"], "OUT": str(tmp_path / "out"), "URL": server.url,
              "OUT/page.html": str(tmp_path / "out" / "page.html")}
    if "PREDS" in COMMANDS[command][0]:
        values["PREDS"] = str(predictions_file(tmp_path, store, refs["t"]))
    return [values.get(a, a) for a in COMMANDS[command][0]]


def written(store: Store, tmp_path: Path) -> list[str]:
    """Versions other than t and u, and files exported, after a command."""
    names = sorted({v.name for v in store.versions()} - {"t", "u"})
    exported = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.suffix in (".parquet", ".html"))
    return names + exported


@pytest.mark.parametrize("command, how", CASES, ids=[f"{c}-{d or 'intact'}" for c, d in CASES])
def test_every_reader_refuses_a_damaged_version_by_name(built, command, how):
    store, refs, server, tmp_path = built
    argv = argv_for(command, built)  # before the damage: the predictions file reads the rows
    named = damage(store, refs["t"], how) if how else None
    code, out, err = cli(store.root, *argv)
    assert "internal error" not in err and "Traceback" not in err
    if how is None:
        assert code == 0, err  # the control: the same command on the intact version works
        return
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert written(Store(store.root), tmp_path) == []
    assert sum(server.served.values()) == 0  # nothing was sent from damaged bytes


def test_a_tampered_kind_is_refused_and_the_bench_still_guards(tmp_path):
    """Editing a bench's "kind" to "tasks" breaks its seal: build cot refuses it, and a
    tasks build over the same images still counts the overlap with that bench."""
    root = tmp_path / "store"
    code, out, _ = cli(root, "build", "bench", "--source", "synthetic", "--n", "4", "--seed", "7",
                       "--family", "mixed", "--name", "b", "--quiet")
    bench = Store(root).resolve(out.strip())
    manifest = bench.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"kind": "bench"', '"kind": "tasks"'))
    code, _, err = cli(root, "build", "cot", "--tasks", bench.ref, "--mode", "annotations", "--name", "c")
    assert code == 2 and "manifest.json" in err and "seal" in err
    assert Store(root).verify(bench.ref) == ["manifest.json: content changed (its seal does not match)"]
    assert Store(root).resolve(bench.ref).is_bench  # the kind its id was made from
    code, out, err = cli(root, "build", "tasks", "--source", "synthetic", "--n", "4", "--seed", "7",
                         "--family", "mixed", "--name", "again", "--quiet")
    assert code == 0
    contamination = Store(root).resolve(out.strip()).manifest["contamination"]
    assert contamination[bench.ref] > 0 and f"shared with benchmark split {bench.ref}" in err


@pytest.mark.parametrize("content", ['{"kind": 5}', "[1, 2]", "not json", ""])
def test_data_ls_lists_the_whole_store_and_marks_the_damaged(built, content):
    store, refs, _, _ = built
    (store.resolve(refs["t"]).path / "manifest.json").write_text(content)
    code, out, err = cli(store.root, "data", "ls")
    assert code == 0 and "internal error" not in err
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert listed == {refs["t"]: "damaged", refs["u"]: "tasks"}
    assert refs["t"] in err and "damaged" in err
    code, _, err = cli(store.root, "data", "verify", refs["t"])
    assert code == 1 and "manifest.json" in err and "internal error" not in err


def test_an_edited_row_count_lists_as_damaged_not_as_its_new_value(built):
    store, refs, _, _ = built
    damage(store, refs["t"], "manifest_edited")
    _, out, _ = cli(store.root, "data", "ls")
    assert "400" not in out and "damaged" in out


def test_a_ref_that_is_a_folder_is_no_tag(built):
    store, refs, _, _ = built
    (store.root / "refs" / "t" / "best").mkdir(parents=True)
    code, out, err = cli(store.root, "data", "ls")
    assert code == 0 and "internal error" not in err
    code, _, err = cli(store.root, "data", "show", "t@best")
    assert code == 2 and "'best' is neither a version id nor a tag" in err
    code, _, err = cli(store.root, "data", "tag", refs["t"], "best")
    assert code == 2 and "is a folder" in err


def test_tags_cannot_look_like_ids_and_move_only_with_force(built):
    store, refs, _, _ = built
    t, u = store.resolve(refs["t"]), store.resolve(refs["u"])
    for tag in (u.id, t.id[:6], "cafe", "2024"):
        code, _, err = cli(store.root, "data", "tag", refs["t"], tag)
        assert code == 2 and "looks like a version id" in err
    code, out, err = cli(store.root, "build", "tasks", "--source", "synthetic", "--n", "4", "--seed", "9",
                         "--family", "mixed", "--name", "t", "--quiet")
    t2 = out.strip()
    assert cli(store.root, "data", "tag", refs["t"], "best")[0] == 0
    code, _, err = cli(store.root, "data", "tag", t2, "best")
    assert code == 2 and f"t@best marks {refs['t']}; pass --force" in err
    assert store.resolve("t@best").ref == refs["t"]  # unmoved
    code, out, err = cli(store.root, "data", "tag", t2, "best", "--force")
    assert code == 0 and f"moved t@best from {refs['t']}" in err and store.resolve("t@best").ref == t2
    # a tag written by an older version of the tool, named like another id, shadows nothing
    (store.root / "refs" / "t" / t2.split("@")[1]).write_text(t.id + "\n")
    assert Store(store.root).resolve(t2).ref == t2


# ---- the environment: a read-only store, a full disk ------------------------
def can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def run_cli_process(root: Path, *argv, wrap: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "HF_HUB_OFFLINE": "1"}
    cmd = [*wrap, sys.executable, "-m", "polyground", "--store", str(root), *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def temp_leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".tmp-*"))


@pytest.mark.skipif(not can_unshare(), reason="needs `unshare -rm` for a read-only bind mount (root ignores chmod)")
def test_a_read_only_store_is_one_line(built):
    store, refs, _, tmp_path = built
    ro = ["unshare", "-rm", "sh", "-c",
          f'mount --bind "{store.root}" "{store.root}" && mount -o remount,ro,bind "{store.root}" "{store.root}" '
          '&& exec "$@"', "sh"]
    for argv in (["build", "tasks", "--source", "synthetic", "--n", "3", "--seed", "5", "--name", "new", "--quiet"],
                 ["data", "tag", refs["t"], "best"],
                 ["build", "cot", "--tasks", refs["t"], "--mode", "annotations", "--name", "c", "--quiet"]):
        p = run_cli_process(store.root, *argv, wrap=ro)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot ") and str(store.root) in lines[0], p.stderr
        assert "Traceback" not in p.stderr
    assert run_cli_process(store.root, "data", "ls", wrap=ro).returncode == 0  # reading still works


@pytest.mark.skipif(not can_unshare(), reason="needs `unshare -rm` to mount a small tmpfs")
def test_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    root = disk / "store"
    wrap = ["unshare", "-rm", "sh", "-c",
            f'mount -t tmpfs -o size=200k tmpfs "{disk}" && "$@"; rc=$?; '
            f'find "{disk}" -name ".tmp-*" >&2; exit $rc', "sh"]
    p = run_cli_process(root, "build", "tasks", "--source", "synthetic", "--n", "300", "--seed", "5",
                        "--family", "mixed", "--name", "big", "--quiet", wrap=wrap)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and lines == [f"error: cannot write to store {root}: No space left on device"], p.stderr


def _enospc(*_args, **_kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["image", "data"])
def test_a_full_disk_patched_in_process(tmp_path, monkeypatch, where, capsys):
    """The same without a mount (any machine): the disk fills while an image or the data file is written."""
    import builders.store as store_mod

    if where == "image":
        real_open = open

        def full_open(path, mode="r", *a, **kw):
            if ".tmp-" in str(path) and "w" in mode:
                f = real_open(path, mode, *a, **kw)
                f.write = _enospc
                return f
            return real_open(path, mode, *a, **kw)

        monkeypatch.setattr(store_mod, "open", full_open, raising=False)
    else:
        monkeypatch.setattr(store_mod, "_write_ipc", _enospc)
    root = tmp_path / "store"
    code = main(["--store", str(root), "build", "tasks", "--source", "synthetic", "--n", "5", "--name", "x",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: cannot write to store {root}: No space left on device\n"
    assert temp_leftovers(root) == [] and Store(root).versions() == []
