"""One coordinate frame and one pixel budget from data to reward to eval.

Against a loopback server that answers like a served Qwen2.5-VL (it decodes
what it receives, resizes it with its own smart_resize at the Hub bounds and
answers in pixels of THAT image: tests/openai_server.py ServedQwenPolicy), on
large non-square images as real data has them: a 1500x2250 PNG, a 1920x1080
JPEG, an 800x600 JPEG and a 4032x3024 JPEG stored landscape with EXIF
orientation 6 (displayed 3024x4032). Boxes are normalised on the displayed
image. Every right answer must score IoU >= 0.97 at every stage and every
wrong-image answer must be caught, whatever budget each stage uses.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from openai_server import FakeOpenAIServer, ServedQwenPolicy
from test_eval import run_cli

pytestmark = pytest.mark.slow

# name, stored width, stored height, format, EXIF orientation
IMAGES = [("a.png", 1500, 2250, "PNG", None), ("b.jpg", 1920, 1080, "JPEG", None),
          ("c.jpg", 4032, 3024, "JPEG", 6), ("d.jpg", 800, 600, "JPEG", None)]
DISPLAYED = {"a.png": (1500, 2250), "b.jpg": (1920, 1080), "c.jpg": (3024, 4032), "d.jpg": (800, 600)}
COMBOS = [["a.png", "b.jpg"], ["b.jpg", "c.jpg", "d.jpg"], ["c.jpg", "a.png"], ["d.jpg", "c.jpg"],
          ["a.png", "b.jpg", "c.jpg", "d.jpg"]]
WRONG = {"t00", "t05"}  # 2 of 10 tasks: the server names the wrong image
PX_BOX = [302.4, 403.2, 1512.0, 2016.0]  # pixels of c.jpg AS DISPLAYED (3024 wide): 0.1, 0.1, 0.5, 0.5
RECIPE_PIXELS = 401408  # recipes/qwen2_5_vl_7b_*.yaml image_max_pixels


def _image(w: int, h: int, fmt: str, orientation: int | None, seed: int) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // w), (y * 255 // h), np.full_like(x, 40 * seed)], -1).astype(np.uint8)
    im = Image.fromarray(arr)
    buf = io.BytesIO()
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, format=fmt, quality=85, exif=exif)
    else:
        im.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def task_lines() -> list[dict]:
    lines = []
    for n in range(9):
        images = COMBOS[n % len(COMBOS)]
        target = n % len(images)
        x1, y1 = 0.1 + 0.02 * (n % 10), 0.12 + 0.015 * n
        lines.append({"id": f"t{n:02d}", "images": images, "task_type": f"kind{n % 3}",
                      "question": f"Task {n}: find the marked region in image {target + 1}.",
                      "target_image": target, "box": [x1, y1, x1 + 0.35, y1 + 0.3], "box_frame": "norm1"})
    lines.append({"id": "px", "images": ["c.jpg", "d.jpg"], "task_type": "kind0",
                  "question": "Task px: find the marked region in image 1.", "target_image": 0,
                  "box": PX_BOX, "box_frame": "pixel"})
    return lines


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A store with the tasks (`big`) and the same rows as a bench split (`bigbench`)."""
    from builders.store import Store

    root = tmp_path_factory.mktemp("frame")
    src = root / "src"
    src.mkdir()
    for seed, (name, w, h, fmt, orient) in enumerate(IMAGES):
        (src / name).write_bytes(_image(w, h, fmt, orient, seed))
    (src / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in task_lines()))
    store = Store(root / "store")
    for kind, name in (("tasks", "big"), ("bench", "bigbench")):
        code, out, err = run_cli(store, "build", kind, "--source", "jsonl", "--path", str(src / "tasks.jsonl"),
                                 "--name", name, "--quiet")
        assert code == 0, err
    return store, src


def rows(store, ref="big") -> list[dict]:
    return store.resolve(ref).table().to_pylist()


def served(store, ref="big", right=None) -> FakeOpenAIServer:
    right = right or (lambda task, i: task["id"] not in WRONG)
    return FakeOpenAIServer(ServedQwenPolicy(rows(store, ref), right=right))


def test_exif_orientation_is_applied_once_for_store_export_and_training(big, processor, tmp_path):
    from datasets import load_dataset
    from PIL import Image

    from training.data import load_grpo_dataset

    store, _ = big
    px = next(r for r in rows(store) if r["id"] == "px")
    assert (px["images"][0]["width"], px["images"][0]["height"]) == DISPLAYED["c.jpg"]
    assert px["target_box"] == pytest.approx([0.1, 0.1, 0.5, 0.5], abs=1e-6)
    with Image.open(store.image_path(px["images"][0]["sha256"])) as im:
        assert im.size == DISPLAYED["c.jpg"] and im.getexif().get(0x0112) in (None, 1)  # upright, no tag left
    sizes = {(i["width"], i["height"]) for r in rows(store) for i in r["images"]}
    assert sizes == set(DISPLAYED.values())

    code, _, err = run_cli(store, "data", "export", "big", str(tmp_path / "exp"))
    assert code == 0, err
    exported = load_dataset("parquet", data_files=str(tmp_path / "exp" / "data" / "*.parquet"), split="train")
    by_id = {r["id"]: r for r in exported}
    assert by_id["px"]["images"][0].size == DISPLAYED["c.jpg"]  # datasets.Image would rotate a tagged one

    ds, _, _ = load_grpo_dataset(store, "big", processor, "qwen2_5_vl", profile_name="qwen2_5_vl")
    row = next(r for r in ds if r["id"] == "px")
    assert row["images"][0].size == DISPLAYED["c.jpg"] and row["image_sizes"][0] == list(DISPLAYED["c.jpg"])


@pytest.fixture(scope="module")
def processor(tiny_model):
    """The tiny model's processor: bounds 28*28*4 .. 28*28*16, far from every other stage's."""
    from builders.inference.models import load_processor

    return load_processor(str(tiny_model))


@pytest.mark.parametrize("budget", [[], ["--image-max-pixels", str(RECIPE_PIXELS)]], ids=["served", "recipe"])
def test_cot_teacher_keeps_every_right_answer_and_catches_every_wrong_image(big, budget):
    store, _ = big
    with served(store) as s:
        code, out, err = run_cli(store, "build", "cot", "--tasks", "big", "--teacher-url", s.url,
                                 "--teacher-model", "Qwen2.5-VL-7B-Instruct", "--teacher-profile", "qwen2_5_vl",
                                 "--profile", "qwen2_5_vl", "--samples", "1", "--name", f"cot{len(budget)}",
                                 "--quiet", *budget)
        seen = s.policy.seen_sizes
    assert code == 0, err
    v = store.resolve(out.strip().splitlines()[-1])
    kept = v.table().to_pylist()
    assert sorted(r["task_id"] for r in kept) == sorted(r["id"] for r in rows(store) if r["id"] not in WRONG)
    assert min(r["iou"] for r in kept) >= 0.97
    assert sorted(r["id"].split("#")[0] for r in v.rejects().to_pylist()) == sorted(WRONG)
    assert {r["reason"] for r in v.rejects().to_pylist()} == {"wrong_image"}
    cap = RECIPE_PIXELS if budget else 12845056
    assert all(w % 28 == 0 and h % 28 == 0 and w * h <= cap for sizes in seen for w, h in sizes)
    assert v.manifest["config"]["image_pixels"] == {"min_pixels": 3136, "max_pixels": cap}


def test_eval_endpoint_scores_a_served_qwen_in_its_own_frame(big, tmp_path):
    store, _ = big
    with served(store, "bigbench") as s:
        code, out, err = run_cli(store, "eval", "--bench", "bigbench", "--endpoint", s.url, "--endpoint-model",
                                 "Qwen2.5-VL-7B-Instruct", "--output", str(tmp_path / "e"))
    assert code == 0, err
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["profile"] == "qwen2_5_vl"
    assert m["overall"]["strict_acc@0.5"] == pytest.approx(0.8)  # the right image is required
    assert m["overall"]["official_acc@0.5"] == pytest.approx(1.0)  # MIG-Bench ignores which image was named
    assert m["overall"]["image_acc"] == pytest.approx(0.8)
    pred = store.resolve(out.strip().splitlines()[-1]).table().to_pylist()
    assert min(p["iou"] for p in pred if p["id"] not in WRONG) >= 0.97


def test_a_served_name_of_no_family_is_refused_not_guessed(big, tmp_path):
    store, _ = big
    code, out, err = run_cli(store, "eval", "--bench", "bigbench", "--endpoint", "http://127.0.0.1:9/v1",
                             "--endpoint-model", "sft", "--output", str(tmp_path / "e"))
    assert code == 2 and "names no model family" in err and "--profile" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "big", "--policy", "http://127.0.0.1:9/v1",
                             "--policy-model", "sft", "--name", "p")
    assert code == 2 and "pass --profile" in err


def test_rl_pool_pass_rates_are_exact_through_a_served_qwen(big):
    store, _ = big
    passes = {r["id"]: n % 5 for n, r in enumerate(rows(store))}  # 0..4 of k=4 right
    with served(store, right=lambda t, i: i < passes[t["id"]]) as s:
        code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "big", "--policy", s.url, "--policy-model",
                                 "sft", "--profile", "qwen2_5_vl", "--image-max-pixels", str(RECIPE_PIXELS),
                                 "--k", "4", "--band", "[0,1]", "--emit-sft", "rs", "--name", "pool", "--quiet")
    assert code == 0, err
    ref_rs, ref_pool = out.strip().splitlines()
    pool = {r["id"]: r["pass_rate"] for r in store.resolve(ref_pool).table().to_pylist()}
    assert pool == {t: min(p, 4) / 4 for t, p in passes.items()}
    assert store.resolve(ref_pool).manifest["config"]["image_pixels"]["max_pixels"] == RECIPE_PIXELS
    rs = store.resolve(ref_rs)
    assert {r["task_id"] for r in rs.table().to_pylist()} == {t for t, p in passes.items() if p > 0}
    assert min(r["iou"] for r in rs.table().to_pylist()) >= 0.97


def test_sft_targets_are_rendered_in_the_trainers_frame(big, processor):
    """A cot version built at the recipe's budget trains a model whose processor has other bounds:
    every target the adapter renders parses back, with the rewards' profile, to the stored box."""
    from schemas.boxes import iou
    from training.data import load_sft_dataset

    store, _ = big
    with served(store) as s:
        code, out, err = run_cli(store, "build", "cot", "--tasks", "big", "--teacher-url", s.url,
                                 "--teacher-model", "Qwen2.5-VL-7B-Instruct", "--teacher-profile", "qwen2_5_vl",
                                 "--profile", "qwen2_5_vl", "--samples", "1", "--name", "cotr", "--quiet",
                                 "--image-max-pixels", str(RECIPE_PIXELS))
    assert code == 0, err
    cot = store.resolve(out.strip().splitlines()[-1])
    ds, info, profile = load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl")
    assert (profile.min_pixels, profile.max_pixels) == (28 * 28 * 4, 28 * 28 * 16)  # the trainer's own bounds
    assert info.image_pixels == {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
    by_id = {r["id"]: r for r in cot.table().to_pylist()}
    for rec in ds:
        row = by_id[rec["id"]]
        text = rec["completion"][0]["content"][0]["text"]
        assert text != row["completion"]  # re-rendered: the stored one is in the 401408 frame
        sizes = [(i["width"], i["height"]) for i in row["images"]]
        parsed = profile.parse(text, sizes)
        frame = profile.frame(sizes[parsed.image])
        assert parsed.image == row["target_image"]
        # Integer pixels of a small frame: within half a pixel of the stored box on each side.
        assert all(abs(a - b) <= 0.5 / f + 1e-9 for a, b, f in zip(parsed.box, row["target_box"], frame * 2))
        assert iou(parsed.box, row["target_box"]) >= 0.85


def test_reasoning_that_quotes_coordinates_of_another_frame_is_refused(big, processor):
    from schemas.errors import UserError
    from training.data import load_sft_dataset
    from training_util import cot_version

    store, _ = big

    def quote(r):
        return {**r, "reasoning": "The region spans (120, 340) to (400, 560) in image 1."}

    cot = cot_version(store, store.resolve("big"), name="quoted", profile_name="qwen2_5_vl", edit=quote)
    with pytest.raises(UserError, match="quote coordinates in their reasoning.*this trainer reads min_pixels=3136"):
        load_sft_dataset(store, cot.ref, processor, "qwen2_5_vl")


def test_local_backend_and_predictions_use_the_stage_budget(big, tiny_model, tmp_path):
    """Local rl-pool and eval set the processor to the budget given; --predictions reads pixel
    answers in the budget's frame (right ones score >= 0.97, wrong images are caught)."""
    from builders.inference.backends import LocalBackend
    from schemas.profiles import get_profile

    store, _ = big
    code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "big", "--policy", str(tiny_model), "--k", "1",
                             "--max-tokens", "4", "--band", "[0,1]", "--device", "cpu", "--image-max-pixels",
                             str(28 * 28 * 8), "--name", "lpool", "--quiet")
    assert code == 0, err
    pool = store.resolve(out.strip().splitlines()[-1])
    assert pool.manifest["config"]["image_pixels"] == {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 8}
    backend = LocalBackend(store, get_profile("qwen2_5_vl", 28 * 28 * 4, 28 * 28 * 8), str(tiny_model),
                           budget=pool_budget(pool), set_bounds=True, device="cpu")
    assert backend.generator.processor.image_processor.size["longest_edge"] == 28 * 28 * 8

    profile = get_profile("qwen2_5_vl", 3136, RECIPE_PIXELS)
    preds = {}
    for t in rows(store, "bigbench"):
        k = t["target_image"] if t["id"] not in WRONG else (t["target_image"] + 1) % len(t["images"])
        sizes = [(i["width"], i["height"]) for i in t["images"]]
        preds[t["id"]] = profile.render("x", k, t["target_box"], sizes)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "completion": c}) + "\n" for i, c in preds.items()))
    code, out, err = run_cli(store, "eval", "--bench", "bigbench", "--predictions", str(path), "--profile",
                             "qwen2_5_vl", "--image-max-pixels", str(RECIPE_PIXELS), "--output", str(tmp_path / "o"))
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["overall"]["strict_acc@0.5"] == pytest.approx(0.8) and m["overall"]["official_acc@0.5"] == 1.0


def pool_budget(version):
    from schemas.boxes import PixelBudget

    return PixelBudget(**version.manifest["config"]["image_pixels"])


def test_rows_over_the_length_limit_are_downscaled_not_dropped(big, processor):
    """GRPO rows too long at the processor's bounds get smaller images (the rewards read the
    smaller frame); only a row that overflows even at min_pixels is dropped as too_long."""
    from schemas.scoring import score_completion
    from training.data import load_grpo_dataset

    store, _ = big
    full, info, profile = load_grpo_dataset(store, "big", processor, "qwen2_5_vl", profile_name="qwen2_5_vl")
    longest = max(info.max_tokens, 1)
    # 8 visual tokens short of the longest row: it and its like must shrink their images.
    ds, info, profile = load_grpo_dataset(store, "big", processor, "qwen2_5_vl", profile_name="qwen2_5_vl",
                                          max_length=longest - 8, on_overflow="refuse")
    assert info.downscaled > 0 and info.rows_kept == info.rows_in and not info.dropped
    by_id = {r["id"]: r for r in full}
    shrunk = [r for r in ds if r["image_sizes"] != by_id[r["id"]]["image_sizes"]]
    assert len(shrunk) == info.downscaled
    for r in shrunk:
        for im, (w, h) in zip(r["images"], r["image_sizes"]):
            assert im.size == (w, h) and w % 28 == 0 and h % 28 == 0  # the processor leaves it as it is
        right = profile.render("x", r["target_image"], r["target_box"], r["image_sizes"])
        s = score_completion(right, r["target_image"], r["equivalent_images"], r["target_box"], r["image_sizes"],
                             profile)
        assert s.image_correct and s.iou >= 0.8  # a few dozen pixels a side: integer rounding
    with pytest.raises(Exception, match="would be cut"):  # no room even at min_pixels: refused, not truncated
        load_grpo_dataset(store, "big", processor, "qwen2_5_vl", profile_name="qwen2_5_vl", max_length=20)


@pytest.mark.parametrize("max_pixels", [12845056, RECIPE_PIXELS])
@pytest.mark.parametrize("size", [(1500, 2250), (1920, 1080), (3024, 4032), (800, 600)])
def test_the_budget_frame_is_the_real_processors_resize(tiny_model, size, max_pixels):
    """The tiny model's processor set to Qwen2.5-VL-7B-Instruct's published preprocessor values
    (patch 14, merge 2, temporal patch 2, min 3136): the grid it makes of an image is exactly
    PixelBudget.resized, the frame polyground sends in and reads qwen2_5_vl answers in."""
    from PIL import Image

    from schemas.boxes import PixelBudget
    from training.data import visual_tokens
    from builders.inference.models import load_processor, set_pixel_bounds

    processor = load_processor(str(tiny_model))
    ip = processor.image_processor
    ip.patch_size, ip.merge_size, ip.temporal_patch_size = 14, 2, 2
    set_pixel_bounds(processor, 3136, max_pixels)
    out = ip(images=[Image.new("RGB", size)], return_tensors="np")
    _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    budget = PixelBudget(3136, max_pixels)
    assert (gw * 14, gh * 14) == budget.resized(*size)
    assert budget.resized(*budget.resized(*size)) == budget.resized(*size)  # a sent image resizes to itself
    assert visual_tokens(processor, *size) == gw * gh // 4
