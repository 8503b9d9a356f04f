"""publish: the dry-run folder loads back equal to the store; the upload path
runs against a local fake Hub (tests/hub_server.py), and `datasets.load_dataset(repo,
revision=tag)` reads the tag back through it; the token is never written."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders.publish.publish import check_folder, publish
from hub_server import FakeHub
from polyground.cli import main
from schemas.errors import UserError
from test_cards import make_cot, make_tasks

TOKEN = "hf_secret_xyz"


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """A planted token, and a client allowed to talk to the local fake Hub."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets offline mode for the real Hub
    # Not the path users get when hf-xet is installed: huggingface_hub 2.x then uploads every file
    # through Xet (hf_xet's Rust client sends chunked xorbs and shards to a CAS service named by the
    # Hub), with no fallback to LFS: the client decides (huggingface_hub 2.4 `_commit_api._upload_files`
    # takes Xet whenever `is_xet_available()`, before the Hub answers anything that could steer it), and
    # the documented way back to LFS is HF_HUB_DISABLE_XET=1. tests/hub_server.py has no CAS service, so
    # the upload here is the LFS path users get without hf-xet (or with HF_HUB_DISABLE_XET=1).
    # Untested: the Xet upload. (The load test's downloads carry no Xet headers: plain HTTP.)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))


@pytest.fixture
def hub(hub_env):
    fake = FakeHub(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


def load_folder(folder: Path, tmp_path: Path):
    import datasets

    dd = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    assert len(dd) == 1
    return next(iter(dd.values()))


def assert_equals_store(ds, version, store):
    """Row by row: every stored column equal; images the stored bytes, in order."""
    import datasets

    stored = version.table().to_pylist()
    assert len(ds) == len(stored)
    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    for got, want in zip(raw, stored):
        assert got["image_refs"] == want["images"]
        assert [i["bytes"] for i in got["images"]] == [store.image_path(r["sha256"]).read_bytes() for r in want["images"]]
        assert {k: v for k, v in got.items() if k not in ("images", "image_refs")} == \
            {k: v for k, v in want.items() if k != "images"}


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_dry_run_folder_loads_equal_to_the_store(store, tmp_path, capsys):
    tasks = make_tasks(store, n=6)
    cot = make_cot(store, tasks)
    out = tmp_path / "out"
    code = main(["--store", str(store.root), "publish", cot.ref, "--repo", "me/toy-cot", "--dry-run", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["README.md", "data/train-00000-of-00001.parquet", "manifest.json", "plots/box_sizes.png",
                     "plots/iou.png", "plots/task_mix.png"]
    for name in names:
        assert f"  {name}" in printed
    assert printed.startswith("would send 6 files,") and f"tag {cot.id} (nothing sent)" in printed
    assert_equals_store(load_folder(out, tmp_path), cot, store)


def test_bench_folder_is_a_test_split(store, tmp_path):
    bench = make_tasks(store, name="bench", n=3, kind="bench")
    result = publish(store, bench.ref, "me/bench", dry_run=True, out=tmp_path / "b")
    assert [f for f, _ in result.files if f.endswith(".parquet")] == ["data/test-00000-of-00001.parquet"]
    ds = load_folder(tmp_path / "b", tmp_path)
    assert ds.split == "test"
    assert_equals_store(ds, bench, store)


def test_upload_one_commit_then_tag(store, tmp_path, hub, capsys):
    tasks = make_tasks(store, n=4)
    dry = publish(store, tasks.ref, "me/toy", dry_run=True, out=tmp_path / "dry")
    code = main(["--store", str(store.root), "publish", tasks.ref, "--repo", "me/toy", "--endpoint", hub.url, "--private"])
    assert code == 0, capsys.readouterr().err
    repo = hub.repos["me/toy"]
    assert repo.private and repo.repo_type == "dataset"
    commits = [m for m, p in hub.requests if p.startswith("/api/datasets/me/toy/commit/")]
    assert len(commits) == 1  # ONE commit for the whole folder
    assert repo.tags == {tasks.id: repo.branches["main"]}  # the tag marks that commit
    tree = repo.commit(tasks.id).tree
    sent = {p: b for p, b in tree.items() if p != ".gitattributes"}
    assert sorted(sent) == sorted(f for f, _ in dry.files)
    for path in ("README.md", "manifest.json", "data/train-00000-of-00001.parquet"):
        assert sent[path] == (tmp_path / "dry" / path).read_bytes(), path
    assert any(p.endswith("/lfs-upload/" + hashlib.sha256(sent["data/train-00000-of-00001.parquet"]).hexdigest())
               for _, p in hub.requests)  # the shard went through LFS, not inline
    assert set(hub.auth_headers) - {""} == {f"Bearer {TOKEN}"}
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(f"published {tasks.ref} to {hub.url}/datasets/me/toy at tag {tasks.id}")


# A user's process: HF_ENDPOINT names the Hub, no offline switch, its own cache. It runs apart from
# the suite's process because huggingface_hub and datasets read HF_ENDPOINT and HF_HUB_OFFLINE when
# imported; it prints the splits and the Arrow files datasets built.
LOAD = """
import json, sys
import datasets
dd = datasets.load_dataset(sys.argv[1], revision=sys.argv[2])
print(json.dumps({split: [f["filename"] for f in ds.cache_files] for split, ds in dd.items()}))
"""


def load_from_hub(hub, repo_id: str, revision: str, tmp_path: Path) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_UPDATE_DOWNLOAD_COUNTS="0",  # nothing sent beyond the test Hub
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    done = subprocess.run([sys.executable, "-c", LOAD, repo_id, revision], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_load_dataset_reads_the_tag_through_the_hub(store, tmp_path, hub):
    """`datasets.load_dataset(repo, revision=tag)` against the test Hub returns the tagged version,
    not what main holds after a later publish; LFS bytes come from the CDN without the token."""
    import datasets

    first = make_tasks(store, n=4)
    later = make_tasks(store, name="other", n=3)
    publish(store, first.ref, "me/toy", endpoint=hub.url, private=True)
    publish(store, later.ref, "me/toy", endpoint=hub.url)
    repo = hub.repos["me/toy"]
    commit = repo.tags[first.id]
    assert repo.branches["main"] == repo.tags[later.id] != commit
    shard = repo.commit(commit).tree["data/train-00000-of-00001.parquet"]
    asked = len(hub.requests)

    built = load_from_hub(hub, "me/toy", first.id, tmp_path)
    assert list(built) == ["train"] and len(built["train"]) == 1
    assert f"/{commit}/" in built["train"][0]  # datasets pinned the tag's commit
    assert_equals_store(datasets.Dataset.from_file(built["train"][0]), first, store)
    resolved = [p for m, p in hub.requests[asked:] if "/resolve/" in p or "/tree/" in p or "/revision/" in p]
    assert resolved and all(f"/{first.id}/" in p or f"/{commit}/" in p or p.endswith(f"/{commit}")
                            for p in resolved), resolved
    assert hub.unrouted == []
    lfs_gets = [(p, auth) for m, p, auth in hub.cdn_requests if m == "GET"]
    assert lfs_gets == [(f"/lfs/{hashlib.sha256(shard).hexdigest()}", "")]  # the tag's shard; no token off the Hub


def test_stale_files_are_deleted_in_the_same_commit(store, tmp_path, hub):
    tasks = make_tasks(store, n=2)
    hub.create_repo({"name": "toy", "organization": "me", "type": "dataset"})
    old = hub.repos["me/toy"].commit("main").tree
    hub._new_commit(hub.repos["me/toy"], {**old, "data/train-00001-of-00002.parquet": b"old shard"}, "old")
    result = publish(store, tasks.ref, "me/toy", endpoint=hub.url, tag="v1")
    tree = hub.repos["me/toy"].commit("v1").tree
    assert "data/train-00001-of-00002.parquet" not in tree and ".gitattributes" in tree
    assert hub.repos["me/toy"].tags["v1"] == result.commit


def test_existing_tag(store, tmp_path, hub):
    tasks = make_tasks(store, n=2)
    other = make_tasks(store, name="other", n=3)
    publish(store, tasks.ref, "me/toy", endpoint=hub.url)
    again = publish(store, tasks.ref, "me/toy", endpoint=hub.url)  # same version, same id tag: nothing to do
    assert again.commit is None and "already published" in again.notes[0]
    n_commits = len(hub.repos["me/toy"].commits)
    with pytest.raises(UserError, match=f"tag '{tasks.id}' already exists in me/toy"):
        publish(store, other.ref, "me/toy", endpoint=hub.url, tag=tasks.id)
    assert len(hub.repos["me/toy"].commits) == n_commits  # refused before any upload


def test_token_is_written_nowhere(store, tmp_path, hub, capsys):
    tasks = make_tasks(store, n=3)
    assert main(["--store", str(store.root), "publish", tasks.ref, "--repo", "me/toy", "--endpoint", hub.url,
                 "--out", str(tmp_path / "kept")]) == 0
    assert main(["--store", str(store.root), "publish", tasks.ref, "--repo", "me/x", "--dry-run",
                 "--out", str(tmp_path / "dry")]) == 0
    before = capsys.readouterr()
    wrong = FakeHub(token="hf_other")
    wrong.start()
    try:  # an error message must not carry the token either
        assert main(["--store", str(store.root), "publish", tasks.ref, "--repo", "me/toy", "--endpoint", wrong.url]) == 2
    finally:
        wrong.stop()
    printed = capsys.readouterr()
    assert "rejected the token (401)" in printed.err and printed.err.count("\n") == 1
    assert TOKEN not in before.out + before.err + printed.out + printed.err
    assert (tmp_path / "kept" / "README.md").is_file()
    assert files_holding(tmp_path, TOKEN.encode()) == []
    assert all(TOKEN.encode() not in b for b in hub.repos["me/toy"].commit("main").tree.values())


def test_errors_are_one_line(store, tmp_path, hub_env, monkeypatch, capsys):
    tasks = make_tasks(store, n=2)
    cli = ["--store", str(store.root), "publish", tasks.ref]
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    cases = [
        (["--repo", "me/toy", "--endpoint", dead], "error: cannot reach the Hub at " + dead),
        (["--repo", "bad repo!"], "error: --repo 'bad repo!':"),
        (["--repo", "me/toy", "--dry-run", "--out", str(store.root)], "exists and is not an empty folder"),
    ]
    for args, expected in cases:
        assert main(cli + args) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    monkeypatch.delenv("HF_TOKEN")
    assert main(cli + ["--repo", "me/toy"]) == 2
    assert capsys.readouterr().err.startswith("error: no Hugging Face token: set HF_TOKEN")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert main(cli + ["--repo", "me/toy"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_namespace_without_write_access(store, hub_env):
    tasks = make_tasks(store, n=2)
    hub = FakeHub(token=TOKEN, read_only_namespaces=("someorg",))
    hub.start()
    try:
        with pytest.raises(UserError, match=r"^the token has no write access to someorg/toy \(403\)"):
            publish(store, tasks.ref, "someorg/toy", endpoint=hub.url)
    finally:
        hub.stop()
    assert not hub.repos


def test_repo_not_found_message():
    import httpx2
    from huggingface_hub.errors import RepositoryNotFoundError

    from builders.publish.publish import hub_errors

    response = httpx2.Response(404, request=httpx2.Request("POST", "http://hub/api/datasets/me/toy/preupload/main"))
    with pytest.raises(UserError) as e, hub_errors("me/toy", "http://hub", "hf_tok"):
        raise RuntimeError("upload failed") from RepositoryNotFoundError("404 hf_tok Repository Not Found", response=response)
    assert str(e.value) == "dataset repo me/toy not found on http://hub, or the token cannot see it"
    with pytest.raises(UserError) as e, hub_errors("me/toy", "http://hub", "hf_tok"):
        raise ValueError("header Bearer hf_tok refused\nsecond line")  # an unforeseen failure quoting the token
    assert str(e.value) == "publishing to me/toy failed: ValueError: header Bearer *** refused"


def test_options_from_a_config_file(store, tmp_path, capsys, monkeypatch):
    tasks = make_tasks(store, n=2)
    config = tmp_path / "publish.yaml"
    config.write_text(f"repo: me/toy\ntag: v1\ndry_run: true\nout: {tmp_path / 'f'}\n")
    monkeypatch.setenv("POLYGROUND_STORE", str(store.root))
    assert main(["publish", tasks.ref, "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"dry run: {tasks.ref} -> me/toy at tag v1 (nothing sent)"
    assert main(["publish", tasks.ref]) == 2
    assert capsys.readouterr().err.startswith("error: publish needs --repo ID")


def test_card_patterns_must_match_the_shards(store, tmp_path):
    tasks = make_tasks(store, n=2)
    publish(store, tasks.ref, "me/toy", dry_run=True, out=tmp_path / "f")
    (tmp_path / "f" / "data" / "train-00000-of-00001.parquet").rename(tmp_path / "f" / "data" / "x.parquet")
    with pytest.raises(UserError, match="do not match the exported shards"):
        check_folder(tmp_path / "f")
