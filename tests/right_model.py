"""A tiny model that answers right on a measurable share of tasks, and a scorer written apart from schemas.

`train_right_model(folder)` trains the "test" tiny Qwen2.5-VL (~0.2M parameters)
with full-parameter SFT, vision tower frozen (docs/learning.md: a random tower
trained at this lr wrecks its features), for 100 steps at batch 16 and a
constant lr of 3e-3, on 400 `red_image` tasks: two images of unequal,
non-square sizes, one red all over, "Locate the red object.", the whole red
image as the target. Measured here (load average 8 from other sessions):
100 steps in 101 s, 153 s with the set-up (about a fifth of that alone);
held-out greedy: 48/48 right, and 0/48 with each task's two images swapped;
at temperature 1, k=6, most tasks pass 3-5 of 6. What it cannot do is find a
small object's cell (the `locate_red` family: 56 px, 2x2 grid): 150 steps of
this recipe there gave 73-83% image accuracy on one seed and chance on
padded images, so benches here mix the two families and the model is right
on a share of tasks that each test recounts.

`short_score` re-implements the scoring of a `short` completion with a regex
and plain arithmetic, so a test can recount what schemas.scoring,
training.evaluation and builders.rlpool report instead of trusting them.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

STEPS, BATCH, LR = 100, 16, "3e-3"
N_TRAIN, TRAIN_SEED = 400, 0
# The short profile's contract: a think block, then an answer naming one image ("image N") and
# holding one box "(x1,y1),(x2,y2)" on 0-1000; other text inside the answer is allowed.
ANSWER = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
BOX = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
IMAGE = re.compile(r"image (\d+)")


SIZES = [(84, 56), (56, 84), (56, 56), (112, 56)]  # non-square and unequal: sizes must not be swapped
COLOURS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (50, 80, 220), "yellow": (225, 195, 30)}


def red_image_items(n: int, seed: int):
    """n two-image tasks: one image is red all over, the other another colour; the target is the whole red image.

    Every visual token of the red image is red, so the tiny model learns which image it is in ~100 steps
    (the cell of a small object it does not learn in minutes: docs/learning.md)."""
    import io as _io
    import random

    from PIL import Image

    from builders.sources.base import SourceItem

    rng = random.Random(seed)
    for i in range(n):
        target = rng.randrange(2)
        images = []
        for k in range(2):
            colour = COLOURS["red"] if k == target else COLOURS[rng.choice(["green", "blue", "yellow"])]
            im = Image.new("RGB", SIZES[(i + k) % len(SIZES)], colour)
            for _ in range(6):  # unique bytes per image (no cross-split duplicates)
                im.putpixel((rng.randrange(im.width), rng.randrange(im.height)), tuple(c + rng.randint(-3, 3) for c in colour))
            buf = _io.BytesIO()
            im.save(buf, format="PNG")
            images.append(buf.getvalue())
        yield SourceItem(id=f"red-{seed}-{i}", source="test", task_type="locate_red", images=images,
                         question="Locate the red object.", target_image=target, target_box=[0.0, 0.0, 1.0, 1.0])


def red_tasks(store, name: str, n: int, seed: int, kind: str = "tasks", n_locate: int = 0):
    """A version of n red_image tasks, then n_locate padded locate_red ones (whose cell the model misses)."""
    import itertools

    from builders.sources.ingest import ingest
    from builders.sources.synthetic import read_synthetic
    from schemas import rows
    from training_util import padded

    items = itertools.chain(red_image_items(n, seed), padded(read_synthetic(None, n=n_locate, seed=seed))
                            if n_locate else [])
    records, rejects = ingest(items, store, progress=False)
    with store.writer(name, kind, config={"family": "red_image", "n": n, "seed": seed, "n_locate": n_locate}) as w:
        w.write(rows.to_table(records, kind), rows.to_table(rejects, "rejects"))
    return w.version


def train_right_model(folder: Path) -> Path:
    """The trained model folder (folder/model); its wall time is written to folder/seconds.txt."""
    from builders.store import Store
    from polyground.cli import main
    from training.models import build_tiny_model

    start = time.perf_counter()
    store = Store(folder / "store")
    tasks = red_tasks(store, "train", n=N_TRAIN, seed=TRAIN_SEED)
    base = build_tiny_model(folder / "base", size="test")
    out = folder / "model"
    argv = ["--store", str(store.root), "train", "sft", "--data", tasks.ref, "--model", str(base), "--output",
            str(out), "--full", "--freeze_vision_tower", "true", "--profile", "short", "--max_steps", str(STEPS),
            "--per_device_train_batch_size", str(BATCH), "--learning_rate", LR, "--lr_scheduler_type", "constant",
            "--warmup_steps", "0", "--weight_decay", "0.0", "--max_length", "256", "--seed", "0",
            "--disable_tqdm", "true", "--logging_steps", "50", "--save_strategy", "no"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0, "training the right model failed"
    (folder / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return out


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def short_score(text: str, task: dict) -> dict:
    """format_ok, image_ok and the strict IoU (0 unless the right image is named) of one `short` completion."""
    m = ANSWER.fullmatch(text or "")
    boxes = BOX.findall(m.group(1)) if m else []
    named = IMAGE.findall(BOX.sub(" ", m.group(1))) if m else []
    if len(boxes) != 1 or len(set(named)) != 1:
        return {"format_ok": False, "image_ok": False, "iou": 0.0}
    image = int(named[0]) - 1
    box = [int(v) / 1000 for v in boxes[0]]
    if not (0 <= image < len(task["images"])) or not (box[0] < box[2] and box[1] < box[3]):
        return {"format_ok": False, "image_ok": False, "iou": 0.0}
    ok = image == task["target_image"] or image in (task.get("equivalent_images") or [])
    return {"format_ok": True, "image_ok": ok, "iou": iou(box, task["target_box"]) if ok else 0.0}


def recount(completions: dict[str, str], tasks: list[dict]) -> dict:
    """format_rate, image_acc, strict_acc@0.5 and strict_miou over `tasks` (a missing completion scores 0)."""
    scores = [short_score(completions.get(t["id"], ""), t) for t in tasks]
    n = len(scores)
    return {"format_rate": sum(s["format_ok"] for s in scores) / n,
            "image_acc": sum(s["image_ok"] for s in scores) / n,
            "strict_acc@0.5": sum(s["iou"] >= 0.5 for s in scores) / n,
            "strict_miou": sum(s["iou"] for s in scores) / n}
