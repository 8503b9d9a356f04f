"""`build cot`: teacher mode through the real openai client against the loopback
server, the verifier gate and rewrite, cache reuse, rebuilds, shards, and
annotation-built trajectories."""
from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from builders.store import Store
from openai_server import FakeOpenAIServer, Faults, GroundTruthPolicy, image_hashes, request_text
from schemas.profiles import get_profile
from schemas.scoring import score_completion

GATE_REASONS = {"wrong_image", "low_iou", "unparsable", "truncated", "refusal", "empty", "over_keep_limit"}


def cli(root, *argv) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    from polyground.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(root), *argv])
    return code, out.getvalue(), err.getvalue()


def ok(root, *argv) -> str:
    code, out, err = cli(root, *argv)
    assert code == 0, err
    return out.strip().splitlines()[-1]


# Non-square and unequal: image k of task i is stretched to SIZES[(i + k) % 4], so a width/height swap
# or an image-order slip moves the pixel answers a teacher is asked for and graded on. A stretch keeps
# every normalised box (and so the annotations' positions) exact; NEAREST keeps the colours exact.
SIZES = [(112, 70), (84, 126), (140, 98), (98, 84)]


def stretched(items):
    import dataclasses

    from PIL import Image

    for i, item in enumerate(items):
        images = []
        for k, data in enumerate(item.images):
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).resize(SIZES[(i + k) % len(SIZES)], Image.NEAREST).save(buf, format="PNG")
            images.append(buf.getvalue())
        yield dataclasses.replace(item, images=images)


def make_tasks(root, n=12, family="mixed", seed=3, name="syn", kind="tasks") -> str:
    """A tasks (or bench) version of synthetic `family` tasks, images `stretched`; its ref."""
    from builders.sources.ingest import ingest
    from builders.sources.synthetic import read_synthetic
    from schemas import rows

    store = Store(root)
    records, rejects = ingest(stretched(read_synthetic(None, n=n, seed=seed, family=family)), store, progress=False)
    assert rejects == []
    with store.writer(name, kind, config={"source": "synthetic", "n": n, "family": family, "seed": seed,
                                          "sizes": SIZES}) as w:
        w.write(rows.to_table(records, kind), rows.to_table(rejects, "rejects"))
    return w.version.ref


def teacher(root, url, name, *extra, tasks="syn", model="teacher-a") -> list[str]:
    return ["build", "cot", "--tasks", tasks, "--teacher-url", url, "--teacher-model", model, "--name", name,
            "--quiet", "--timeout", "5", *extra]


def task_rows(root, ref="syn") -> list[dict]:
    from builders.store import Store

    return Store(root).resolve(ref).table().to_pylist()


def version(root, ref):
    from builders.store import Store

    return Store(root).resolve(ref)


@pytest.fixture
def root(tmp_path):
    make_tasks(tmp_path / "store")
    return tmp_path / "store"


def test_gate_keeps_only_verified_samples_rewritten_in_the_profile(root):
    tasks = task_rows(root)
    policy = GroundTruthPolicy(tasks, store=Store(root), render=get_profile("norm1000").render, success=0.5)
    faults = Faults(length=0.05, refusal=0.05, empty=0.05)
    with FakeOpenAIServer(policy, faults=faults) as s:
        ref = ok(root, *teacher(root, s.url, "cot", "--samples", "4", "--keep-per-task", "2"))
    v = version(root, ref)
    rows, rejects = v.table().to_pylist(), v.rejects().to_pylist()
    profile = get_profile("qwen2_vl")
    by_id = {t["id"]: t for t in tasks}
    for r in rows:
        t = by_id[r["task_id"]]
        sizes = [(i["width"], i["height"]) for i in t["images"]]
        sc = score_completion(r["completion"], t["target_image"], t["equivalent_images"], t["target_box"], sizes,
                              profile)
        assert sc.format_ok and sc.image_correct and sc.iou > 0.99  # the ground truth, in qwen2_vl words
        assert "<|box_start|>" in r["completion"] and r["iou"] >= 0.5 and r["image_correct"]
        assert r["prompt"] == t["question"] + profile.prompt_suffix(len(t["images"]))
        assert r["reasoning"] and r["reasoning"] in r["completion"] and r["profile"] == "qwen2_vl"
        assert (r["generator_model"], r["generator_kind"], r["template_id"]) == ("teacher-a", "endpoint", "teacher_v1")
    ids = [r["id"] for r in rows] + [r["id"] for r in rejects]
    assert sorted(ids) == sorted(f"{t['id']}#{k}" for t in tasks for k in range(4))  # each sample once
    assert {r["reason"] for r in rejects} <= GATE_REASONS
    assert {"wrong_image", "low_iou"} <= {r["reason"] for r in rejects}
    per_task = {t["id"]: sum(r["task_id"] == t["id"] for r in rows) for t in tasks}
    assert max(per_task.values()) == 2 and set(per_task.values()) <= {0, 1, 2}
    assert all(json.loads(r["record"])["task_type"] for r in rejects)  # `data diff` reads it


def test_reject_reasons_name_each_fault(root):
    tasks = task_rows(root)
    faults = Faults(length=0.25, refusal=0.25, empty=0.25)
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=Store(root), success=0.0), faults=faults) as s:
        ref = ok(root, *teacher(root, s.url, "cot", "--samples", "4"))
    counts = version(root, ref).manifest["counts"]["dropped_by_reason"]
    assert version(root, ref).manifest["counts"]["rows"] == 0
    assert {"truncated", "refusal", "empty"} <= set(counts) and set(counts) <= {"truncated", "refusal", "empty",
                                                                                "wrong_image", "low_iou"}


def test_unparsable_and_plain_text_refusals(root):
    def policy(request, k):
        return "I'm sorry, I cannot help with that." if k == 0 else "The object is on the left."

    with FakeOpenAIServer(policy) as s:
        ref = ok(root, *teacher(root, s.url, "cot", "--samples", "2"))
    reasons = {r["id"].split("#")[1]: r["reason"] for r in version(root, ref).rejects().to_pylist()}
    assert set(reasons.items()) == {("0", "refusal"), ("1", "unparsable")}


def test_manifest_records_generator_usage_and_cost(root, monkeypatch):
    tasks = task_rows(root)
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=Store(root)), keep_requests=True) as s:
        ref = ok(root, *teacher(root, s.url, "cot", "--samples", "2", "--temperature", "0.9",
                                "--price-in", "2", "--price-out", "10", "--hint", "answer"))
    m = version(root, ref).manifest
    gen, usage = m["generator"], m["usage"]
    assert gen["model"] == "teacher-a" and gen["kind"] == "openai-compatible"
    assert gen["sampling"] == {"n": 2, "temperature": 0.9, "top_p": 1.0, "max_tokens": 1024, "seed": 0}
    assert gen["templates"]["teacher"]["id"] == "teacher_v1" and len(gen["templates"]["teacher"]["sha256"]) == 64
    assert gen["templates"]["hint"]["id"] == "answer_hint_v1"
    assert m["config"]["templates"] == gen["templates"]  # prompt templates are part of the version id
    # the server counts words + 64 per image; the samples' shares add up to exactly that
    assert usage["prompt_tokens"] == sum(len(request_text(r).split()) + 64 * len(image_hashes(r)) for r in s.requests)
    assert usage["completion_tokens"] > 0 and usage["samples"] == 2 * len(tasks) == 2 * len(s.requests)
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 10) / 1e6)
    # --hint answer: the ground truth, in the teacher's format, is in the prompt
    t = tasks[0]
    answer = get_profile("norm1000").render_answer(t["target_image"], t["target_box"],
                                                   [(i["width"], i["height"]) for i in t["images"]])
    texts = [r["messages"][0]["content"][-1]["text"] for r in s.requests]
    assert any(answer in x and t["question"] in x for x in texts)


def test_rerun_asks_nothing_and_new_teacher_reuses_tasks_and_images(root):
    tasks = task_rows(root)
    images = sorted(p.name for p in (root / "images").rglob("*") if p.is_file())
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=Store(root))) as s:
        a = ok(root, *teacher(root, s.url, "cot"))
        sent = s.stats["requests"]
        assert ok(root, *teacher(root, s.url, "cot")) == a and s.stats["requests"] == sent
        b = ok(root, *teacher(root, s.url, "cot", model="teacher-b"))
        assert s.stats["requests"] == 2 * sent  # another model: every request again
    va, vb = version(root, a), version(root, b)
    assert va.id != vb.id and va.manifest["inputs"] == vb.manifest["inputs"]
    assert {r["generator_model"] for r in vb.table().to_pylist()} == {"teacher-b"}
    assert sorted(p.name for p in (root / "images").rglob("*") if p.is_file()) == images  # no new image bytes
    code, out, err = cli(root, "data", "diff", a, b)
    assert code == 0 and "keep rate" in out


def test_bench_split_is_refused(tmp_path):
    make_tasks(tmp_path, name="held", kind="bench")
    code, _, err = cli(tmp_path, *teacher(tmp_path, "http://127.0.0.1:9/v1", "cot", tasks="held"))
    assert code == 2 and "benchmark split" in err and len(err.strip().splitlines()) == 1


def test_options_are_checked_in_one_line(root):
    for argv, msg in ((["--shard", "2/2"], "--shard"), (["--min-iou", "1.5"], "--min-iou")):
        code, _, err = cli(root, *teacher(root, "http://127.0.0.1:9/v1", "cot", *argv))
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(root, "build", "cot", "--tasks", "syn", "--name", "cot")
    assert code == 2 and "--teacher-url" in err


def test_shards_split_by_task_id_and_merge_to_the_whole(root):
    tasks = task_rows(root)
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=Store(root), success=0.7)) as s:
        whole = ok(root, *teacher(root, s.url, "cot", "--samples", "2"))
        parts = [ok(root, *teacher(root, s.url, f"cot-{i}", "--samples", "2", "--shard", f"{i}/3")) for i in range(3)]
        assert s.stats["requests"] == len(tasks)  # the shards were answered from the cache
    shard_ids = [{r["task_id"] for r in version(root, p).table().to_pylist()} for p in parts]
    assert all(not (a & b) for i, a in enumerate(shard_ids) for b in shard_ids[i + 1:])
    merged = ok(root, "data", "merge", *parts, "--name", "cot-merged")
    key = lambda t: sorted((r["id"], r["completion"]) for r in t.to_pylist())  # noqa: E731
    assert key(version(root, merged).table()) == key(version(root, whole).table())


def test_secret_key_is_written_nowhere(root, tmp_path, monkeypatch):
    secret = "sk-PLANTED-9c1e2b"
    monkeypatch.setenv("TEACHER_KEY", secret)
    with FakeOpenAIServer(GroundTruthPolicy(task_rows(root), store=Store(root)), faults=Faults(server_error=0.2)) as s:
        ok(root, *teacher(root, s.url, "cot", "--teacher-api-key-env", "TEACHER_KEY"))
    written = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written)
    assert all(secret.encode() not in p.read_bytes() for p in written)


def test_annotations_locate_red_is_short(tmp_path):
    make_tasks(tmp_path, n=8, family="locate_red", seed=1, name="red")
    ref = ok(tmp_path, "build", "cot", "--tasks", "red", "--mode", "annotations", "--profile", "short", "--name", "ann")
    rows = version(tmp_path, ref).table().to_pylist()
    assert len(rows) == 8
    for r in rows:
        kth = ("first", "second")[r["target_image"]]  # not "image k": the answer writes that (template v2)
        assert re.fullmatch(rf"The red object is at the (top|bottom) (left|right) of the {kth} image\.", r["reasoning"])
        assert re.fullmatch(r"<think>.*</think><answer>image \d: \(\d+,\d+\),\(\d+,\d+\)</answer>", r["completion"])
        assert (r["generator_kind"], r["template_id"], r["iou"]) == ("annotations", "annotations_v2", 1.0)


def test_annotations_every_family_and_rows_without_annotations(tmp_path):
    from builders.store import Store
    from schemas import rows as contract

    make_tasks(tmp_path, n=7, family="mixed", seed=2, name="mix")
    tasks = task_rows(tmp_path, "mix")
    bare = [dict(t, id=t["id"] + "-bare", meta="{}") for t in tasks[:2]]
    with Store(tmp_path).writer("mix2", "tasks", config={"t": 1}) as w:
        w.write(contract.to_table(tasks + bare, "tasks"))
    ref = ok(tmp_path, "build", "cot", "--tasks", "mix2", "--mode", "annotations", "--name", "ann")
    v = version(tmp_path, ref)
    rows = v.table().to_pylist()
    assert len(rows) == 7 and {r["task_type"] for r in rows} == {t["task_type"] for t in tasks}
    assert [(r["id"], r["reason"]) for r in v.rejects().to_pylist()] == [(b["id"], "no_annotations") for b in bare]
    diff = next(r for r in rows if r["task_type"] == "diff")
    assert re.search(r"was (removed|added|recoloured)", diff["reasoning"])
    for r in rows:  # every image is described, in order
        n = len(r["images"])
        assert [int(x) for x in re.findall(r"Image (\d) (?:has|is)", r["reasoning"])] == list(range(1, n + 1))


def test_annotations_from_any_source_with_labels_and_boxes():
    from builders.annotations import parse_sections, position, reasoning_for
    from builders.cot import load_template

    sections = parse_sections(load_template("annotations_v2").text)
    meta = {"objects": [[{"label": "dog", "box": [0.0, 0.0, 0.3, 0.3]}],
                        [{"label": "cat", "box": [0.6, 0.6, 0.9, 0.95]}, {"label": "owl", "box": [0.1, 0.1, 0.2, 0.2]}]]}
    task = {"task_type": "free_form", "images": [{}, {}], "target_image": 1, "target_box": [0.62, 0.6, 0.9, 0.9],
            "meta": json.dumps(meta)}
    assert reasoning_for(task, sections) == ("Image 1 has a dog. Image 2 has a cat and an owl. "
                                             "The target is the cat in image 2, at the bottom right.")
    assert reasoning_for(dict(task, meta=json.dumps({"objects": [[]]})), sections) is None  # one image described
    assert [position(b) for b in ([0, 0, 1, 1], [0.4, 0, 0.6, 0.2], [0, 0.4, 0.2, 0.6])] == ["centre", "top", "left"]


def test_ordinal_words_then_suffixes():
    from schemas.profiles import ordinal  # the one ordinal (0-based), used by annotations and readers too

    got = [ordinal(n - 1) for n in (1, 2, 3, 10, 11, 12, 13, 21, 22, 23, 101, 111)]
    assert got == ["first", "second", "third", "tenth", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]
