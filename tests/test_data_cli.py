"""`polyground build tasks|bench` and `polyground data ...` through cli.main."""
from __future__ import annotations

import json

import pytest
from conftest import png_bytes
from store_util import good_jsonl, write_jsonl_source

from builders.store import Store
from polyground.cli import main
from schemas import rows


@pytest.fixture
def cli(tmp_path, capsys):
    """Run the CLI on a fresh store; returns (exit code, stdout lines, stderr)."""
    root = tmp_path / "store"

    def run(*argv):
        code = main(["--store", str(root), *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    run.store = Store(root)
    return run


def build(cli, path, name="mine", kind="tasks", *more):
    code, out, err = cli("build", kind, "--source", "jsonl", "--path", path, "--name", name, *more)
    assert code == 0, err
    return out[-1]


def test_build_tasks_prints_the_ref_last_and_is_reproducible(cli, tmp_path):
    path = good_jsonl(tmp_path / "src")
    ref = build(cli, path)
    v = cli.store.resolve(ref)
    assert ref == f"mine@{v.id}" and v.kind == "tasks" and v.manifest["counts"]["rows"] == 7
    assert build(cli, path) == ref  # same inputs: the same version, no second folder
    assert len(cli.store.versions("mine")) == 1


def test_build_reports_drops_on_stderr_and_in_the_manifest(cli, tmp_path):
    path = good_jsonl(tmp_path / "src")
    with open(path, "a") as f:
        f.write("{broken\n")
    code, out, err = cli("build", "tasks", "--source", "jsonl", "--path", path, "--name", "mine", "--quiet")
    assert code == 0 and "malformed_json: 1" in err
    v = cli.store.resolve(out[-1])
    assert v.manifest["counts"]["dropped_by_reason"] == {"malformed_json": 1}
    assert v.rejects().column("reason").to_pylist() == ["malformed_json"]


@pytest.mark.parametrize("argv, message", [
    (["build", "tasks", "--source", "nope", "--name", "x"], "unknown source"),
    (["build", "tasks", "--source", "jsonl", "--name", "x"], "needs --path"),
    (["build", "tasks", "--source", "jsonl", "--path", "/no/such.jsonl", "--name", "x"], "no such file"),
    (["build", "tasks", "--source", "jsonl", "--path", "EMPTY", "--name", "x"], "no valid row"),
    (["build", "tasks", "--source", "jsonl", "--path", "GOOD", "--name", "a/b"], "dataset name"),
    (["data", "show", "nothing"], "no dataset named"),
    (["data", "verify", "nothing@abc"], "no dataset named"),
])
def test_user_errors_are_one_line_with_exit_2(cli, tmp_path, argv, message):
    empty = write_jsonl_source(tmp_path / "empty", ['{"id": "a", "images": ["x.png"], "question": "q"}'])
    good = good_jsonl(tmp_path / "good")
    argv = [str(empty) if a == "EMPTY" else str(good) if a == "GOOD" else a for a in argv]
    code, out, err = cli(*argv)
    last = err.strip().splitlines()[-1]  # progress bars may come before it
    assert code == 2 and last.startswith("error: ") and message in last and "Traceback" not in err


def test_contamination_is_recorded_and_refused_on_request(cli, tmp_path):
    path = good_jsonl(tmp_path / "src")
    bench = build(cli, path, "split", "bench")
    assert cli.store.resolve(bench).is_bench
    ref = build(cli, path)
    assert cli.store.resolve(ref).manifest["contamination"] == {bench: 3}
    code, out, err = cli("build", "tasks", "--source", "jsonl", "--path", path, "--name", "mine2",
                         "--no-contamination")
    assert code == 2 and bench in err and cli.store.versions("mine2") == []
    other = write_jsonl_source(tmp_path / "other", [{"id": "o", "images": ["o.png"], "question": "q",
                                                     "target_image": 0, "box": [0, 0, 1, 1]}],
                               {"o.png": png_bytes(20, 20, (1, 2, 3))})
    ref = build(cli, other, "clean", "tasks", "--no-contamination")
    assert cli.store.resolve(ref).manifest["contamination"] == {bench: 0}


def test_ls_show_tag(cli, tmp_path):
    ref = build(cli, good_jsonl(tmp_path / "src"))
    code, out, _ = cli("data", "tag", ref, "v1")
    assert code == 0 and cli.store.resolve("mine@v1").ref == ref
    code, out, _ = cli("data", "ls")
    assert code == 0 and any(line.startswith(ref) and line.endswith("v1") for line in out)
    code, out, _ = cli("data", "show", "mine@v1", "--json")
    assert code == 0 and json.loads("\n".join(out))["id"] == ref.split("@")[1]
    code, out, _ = cli("data", "show", "mine")
    text = "\n".join(out)
    assert code == 0 and "common_object" in text and "images per row" in text and "box area" in text


def test_verify_exit_codes(cli, tmp_path):
    ref = build(cli, good_jsonl(tmp_path / "src"))
    code, out, _ = cli("data", "verify", ref)
    assert code == 0 and "ok" in out[-1]
    v = cli.store.resolve(ref)
    victim = cli.store.image_path(sorted(v.image_hashes)[0])
    victim.unlink()
    code, out, err = cli("data", "verify", ref)
    assert code == 1 and victim.name in err and "missing" in err


def test_diff_counts_rows_by_id(cli, tmp_path):
    path = good_jsonl(tmp_path / "src", n=6)
    a = build(cli, path)
    lines = path.read_text().splitlines()
    changed = json.loads(lines[1])
    changed["question"] = "a new question"
    new = [lines[0], json.dumps(changed), *lines[3:], json.dumps({**json.loads(lines[0]), "id": "added"}), "{bad"]
    path.write_text("\n".join(new) + "\n")
    b = build(cli, path)
    code, out, _ = cli("data", "diff", a, b, "--json")
    d = json.loads("\n".join(out))
    assert code == 0 and d["rows"] == [7, 7]
    assert d["row_changes"]["added"] == {"n": 1, "examples": ["added"]}
    assert d["row_changes"]["removed"] == {"n": 1, "examples": ["j2"]}
    assert d["row_changes"]["changed"] == {"n": 1, "examples": ["j1"]}
    assert d["dropped_by_reason"] == {"malformed_json": [0, 1]}
    code, out, _ = cli("data", "diff", a, b)
    assert code == 0 and any("changed" in line and "j1" in line for line in out)


def cot_version(store, name: str, ious: list[float], usage: dict):
    """A tiny CoT version: one kept row per IoU, one rejected diff row."""
    h = store.put_image(png_bytes())
    base = {"source": "t", "images": [{"sha256": h, "width": 32, "height": 24}], "question": "q",
            "target_image": 0, "equivalent_images": [], "target_box": [0.1, 0.1, 0.5, 0.5], "choices": None,
            "answer": None, "meta": "{}"}
    recs = [{**base, "task_id": f"k{i}", "id": f"k{i}#0", "task_type": "diff", "iou": iou, "sample_index": 0}
            for i, iou in enumerate(ious)]
    table = rows.to_table([{f.name: r.get(f.name) for f in rows.COT} for r in recs], "cot")
    rejected = rows.to_table([{"id": "r#0", "reason": "low_iou", "detail": "",
                               "record": json.dumps({"task_type": "diff"})}], "rejects")
    with store.writer(name, "cot", config={"ious": ious}) as w:
        w.write(table, rejected, {"usage": usage})
    return w.version


def test_diff_of_cot_versions_compares_teachers(cli):
    a = cot_version(cli.store, "cot", [0.5, 0.7, 0.9], {"completion_tokens": 100})
    b = cot_version(cli.store, "cot", [0.6], {"completion_tokens": 40})
    code, out, _ = cli("data", "diff", a.ref, b.ref, "--json")
    d = json.loads("\n".join(out))["cot"]
    assert d["keep_rate"] == {"diff": [0.75, 0.5]}
    assert d["mean_iou"] == [0.7, 0.6] and d["usage"] == {"completion_tokens": [100, 40]}


def test_merge_refuses_overlaps_repeats_and_mixed_kinds(cli):
    from store_util import write_version

    a = cot_version(cli.store, "s0", [0.5], {"completion_tokens": 10})
    b = cot_version(cli.store, "s1", [0.6, 0.7], {"completion_tokens": 5})
    tasks = write_version(cli.store, name="tasks")
    for refs, message in (([a.ref, b.ref], "more than one input"), ([a.ref, a.ref], "twice"),
                          ([a.ref, tasks.ref], "one kind")):
        code, out, err = cli("data", "merge", *refs, "--name", "merged")
        assert code == 2 and message in err
    assert cli.store.versions("merged") == []


def test_merge_joins_disjoint_shards(cli):
    a = cot_version(cli.store, "s0", [0.5], {"completion_tokens": 10, "cost": 0.5})
    b = cot_version(cli.store, "s1", [0.6, 0.7], {"completion_tokens": 5, "cost": 0.25})
    table = b.table()
    ids = ["k8#0", "k9#0"]
    table = table.set_column(table.schema.get_field_index("id"), "id", rows.pa.array(ids))
    with cli.store.writer("s2", "cot", config={"shard": 2}) as w:
        w.write(table, None, {"usage": {"completion_tokens": 5, "cost": 0.25}})
    code, out, err = cli("data", "merge", a.ref, w.version.ref, "--name", "merged")
    assert code == 0, err
    m = cli.store.resolve(out[-1])
    assert m.manifest["counts"]["rows"] == 3 and m.manifest["usage"] == {"completion_tokens": 15, "cost": 0.75}
    assert [i["id"] for i in m.manifest["inputs"]] == [a.id, w.version.id]
    assert cli.store.verify(m) == []


def test_export_command(cli, tmp_path):
    ref = build(cli, good_jsonl(tmp_path / "src"))
    code, out, _ = cli("data", "export", ref, tmp_path / "out")
    assert code == 0 and out[-1] == str(tmp_path / "out")
    assert list((tmp_path / "out" / "data").glob("train-*.parquet"))
