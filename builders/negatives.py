"""Negative samples from existing tasks: leave out the target's image(s), and "none" is the answer.

`build negatives --from TASKS --name NAME` writes a new tasks version whose
lineage names TASKS as its input: every row of TASKS (unless
`--negatives-only`) plus, per grounding row it can, one negative row
`<id>~no_target` holding the row's images without its target and equivalent
images, the same question, and an EMPTY target set (schemas/rows.py
`targets: []`). Its meta keeps the source row's, plus
`negative_of` (the source id) and `negative_rule` ("drop_target_images");
annotations in `meta.objects` follow their images. The manifest's
`negatives` block counts what was made and why a row was not used:
- `question_names_an_image`: the question points at an image ("... in the
  second image", or the source recorded `target_from: question`): once that
  image is gone, the question asks about a picture that is not there;
- `no_image_left`: every image holds the target;
- `not_grounding`: multiple choice, or already a no-target row.
"""
from __future__ import annotations

import json
from collections import Counter

from schemas.profiles import image_mentions

RULE = "drop_target_images"
SUFFIX = "~no_target"


def negative_of(row: dict) -> tuple[dict | None, str | None]:
    """(the negative row, None), or (None, why this row makes none)."""
    from schemas.rows import target_pairs

    pairs = target_pairs(row)
    if not pairs:
        return None, "not_grounding"
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    if meta.get("target_from") == "question" or image_mentions(row["question"]):
        return None, "question_names_an_image"
    drop = {i for i, _ in pairs} | set(row.get("equivalent_images") or [])
    keep = [k for k in range(len(row["images"])) if k not in drop]
    if not keep:
        return None, "no_image_left"
    if isinstance(meta.get("objects"), list) and len(meta["objects"]) == len(row["images"]):
        meta["objects"] = [meta["objects"][k] for k in keep]
    meta.update(negative_of=row["id"], negative_rule=RULE)
    return {**row, "id": row["id"] + SUFFIX, "images": [row["images"][k] for k in keep], "target_image": None,
            "target_box": None, "equivalent_images": [], "targets": [],
            "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)}, None


def with_negatives(rows: list[dict], negatives_only: bool = False) -> tuple[list[dict], dict]:
    """(rows out, the manifest's `negatives` block)."""
    out, skipped = ([] if negatives_only else list(rows)), Counter()
    ids = {r["id"] for r in rows}
    made = 0
    for row in rows:
        neg, why = negative_of(row)
        if why is None and neg["id"] in ids:
            why = "id_taken"
        if why:
            skipped[why] += 1
            continue
        out.append(neg)
        made += 1
    return out, {"rule": RULE, "made": made, "skipped": dict(sorted(skipped.items())),
                 "negatives_only": negatives_only}
