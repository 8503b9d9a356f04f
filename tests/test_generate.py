"""Generation backends: policy identity, cache scoping, prompts, and the local transformers generator."""
from __future__ import annotations

import pytest

from conftest import png_bytes
from schemas.errors import UserError
from store_util import tasks_table, write_version


def test_policy_identity(tmp_path):
    from builders.inference.backends import policy_identity

    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights v1")
    (folder / "checkpoint-5").mkdir()  # not part of what from_pretrained(folder) loads
    first = policy_identity(str(folder))
    assert first.startswith("local:merged:sha256:") and len(first.rsplit(":", 1)[1]) == 12
    (folder / "checkpoint-5" / "x").write_bytes(b"ignored")
    assert policy_identity(str(folder)) == first
    (folder / "model.safetensors").write_bytes(b"weights v2")  # retrained in place: a new identity
    assert policy_identity(str(folder)) != first
    assert policy_identity("http://user:pw@host:8000/v1/", "pol") == "endpoint:pol@http://host:8000/v1"
    assert policy_identity("Qwen/Qwen2.5-VL-7B-Instruct") == "hub:Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(UserError, match="--policy-model"):
        policy_identity("http://host:8000/v1")
    with pytest.raises(UserError, match="not a model folder"):
        policy_identity(str(tmp_path / "missing"))


def test_scoped_cache_separates_policies(tmp_path):
    from builders.inference.cache import CachedSample, ResponseCache
    from builders.inference.backends import ScopedCache

    cache = ResponseCache(tmp_path / "c.sqlite")
    a, b = ScopedCache(cache, "local:a"), ScopedCache(cache, "local:b")
    a.put("rk", "m", [CachedSample(0, "from a", "stop", None, 0, 0)])
    assert a.get("rk", [0])[0].text == "from a" and b.get("rk", [0]) == {}


def test_multiple_choice_prompt_lists_choices():
    from builders.inference.backends import MC_SUFFIX, prompt_text
    from schemas.profiles import get_profile

    p = get_profile("short")
    img = {"sha256": "h", "width": 4, "height": 4}
    mc = {"question": "Which is red?", "images": [img], "choices": ["left", "right"]}
    assert prompt_text(mc, p) == "Which is red?\n(A) left\n(B) right" + MC_SUFFIX


def test_resolve_frame_reads_the_model_family_and_its_budget(tiny_model):
    from builders.inference.backends import resolve_frame
    from schemas.boxes import SERVED_QWEN2_5_VL, PixelBudget

    p, budget, given = resolve_frame(str(tiny_model), None, None)
    assert p.name == "qwen2_5_vl" and p.min_pixels == 28 * 28 * 4 and p.max_pixels == 28 * 28 * 16
    assert budget == PixelBudget(28 * 28 * 4, 28 * 28 * 16) and not given  # the folder's own processor bounds
    assert resolve_frame(str(tiny_model), None, "short")[0].name == "short"
    assert resolve_frame("http://h/v1", "Qwen2-VL-7B", None)[0].name == "qwen2_vl"
    p, budget, given = resolve_frame("http://h/v1", "Qwen/Qwen2.5-VL-7B-Instruct", None)
    assert (p.min_pixels, p.max_pixels) == (3136, 12845056) and budget == SERVED_QWEN2_5_VL
    p, budget, given = resolve_frame("http://h/v1", "Qwen2.5-VL-7B", None, max_pixels=401408)
    assert (p.max_pixels, budget.max_pixels, given) == (401408, 401408, True)


@pytest.mark.parametrize("served", ["sft", "my-policy", "llava-1.6"])
def test_an_endpoint_whose_name_names_no_family_is_refused(served):
    from builders.inference.backends import resolve_frame
    from schemas.errors import UserError

    with pytest.raises(UserError, match="names no model family.*pass --profile"):
        resolve_frame("http://localhost:8001/v1", served, None)
    assert resolve_frame("http://localhost:8001/v1", served, "qwen2_5_vl")[0].name == "qwen2_5_vl"


@pytest.fixture(scope="module")
def generator(tiny_model):
    from builders.inference.local import load_generator

    return load_generator(tiny_model, device="cpu")


def _images(tmp_path):
    paths = []
    for k, (w, h) in enumerate([(56, 56), (40, 30), (60, 44)]):
        paths.append(tmp_path / f"{k}.png")
        paths[-1].write_bytes(png_bytes(w, h, (50 * k, 100, 200)))
    return paths


def test_local_sampling_is_seeded_and_greedy_is_batch_independent(generator, tmp_path):
    import torch

    ims = _images(tmp_path)
    texts, images = ["Locate the red object.", "Where?"], [ims[:2], ims[2:]]
    hot = {"temperature": 1.0, "max_tokens": 8}
    torch.manual_seed(123)
    a = generator.generate(texts, images, 3, hot, seed=7)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = generator.generate(texts, images, 3, hot, seed=7)
    assert a == b and torch.equal(after_a, torch.rand(1))  # same samples; the caller's RNG untouched
    assert [len(x) for x in a] == [3, 3] and len(set(a[0])) > 1
    assert generator.generate(texts, images, 3, hot, seed=8) != a
    greedy = {"temperature": 0, "max_tokens": 8}
    batch = generator.generate(texts, images, 2, greedy, seed=0)
    assert batch[0][0] == batch[0][1]
    # left padding: the shorter prompt decodes the same alone as beside a longer one
    assert generator.generate(texts[1:], images[1:], 1, greedy, seed=0)[0][0] == batch[1][0]


def test_local_backend_caches_by_policy(store, tiny_model):
    from builders.inference.backends import LocalBackend, open_cache
    from schemas.profiles import get_profile

    write_version(store, "tasks", table=tasks_table(store, 3))
    tasks = store.resolve("tasks").table().to_pylist()
    backend = LocalBackend(store, get_profile("short"), str(tiny_model), cache=open_cache(store), batch_size=2,
                           device="cpu")
    calls = []
    real = backend.generator.generate
    backend.generator.generate = lambda *a: calls.append(len(a[0])) or real(*a)
    sampling = {"temperature": 1.0, "max_tokens": 6}
    first = backend.generate(tasks, 2, sampling, seed=0)
    assert calls == [2, 1] and all(len(s) == 2 for s in first)
    assert backend.generate(tasks, 2, sampling, seed=0) == first and calls == [2, 1]  # all from the cache
    backend.generate(tasks[:1], 2, sampling, seed=1)  # another seed is another request
    assert calls == [2, 1, 1]


@pytest.mark.slow
def test_eval_with_local_model(store, tiny_model, tmp_path):
    """`eval --model`: greedy answers from the tiny model are scored (all wrong) and versioned."""
    import json

    from test_eval import run_cli

    table = tasks_table(store, 2)
    with store.writer("b", "bench", config={}) as w:
        w.write(table)
    code, out, err = run_cli(store, "eval", "--bench", "b", "--model", str(tiny_model), "--profile", "short",
                             "--max-tokens", "6", "--device", "cpu", "--output", str(tmp_path / "r"))
    assert code == 0, err
    pred = store.resolve(out.strip().splitlines()[-1])
    assert pred.name == "b-pred-model" and all(r["completion"] is not None for r in pred.table().to_pylist())
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["overall"]["n"] == 2 and m["overall"]["strict_acc@0.5"] == 0.0
    assert pred.manifest["config"]["source"]["identity"].startswith("local:model:sha256:")
