"""Negative samples from existing tasks: leave out the target's image(s), and "none" is the answer.

`build negatives --from TASKS --name NAME` writes a new tasks version whose
lineage names TASKS as its input: every row of TASKS (unless
`--negatives-only`) plus, per grounding row it can, one negative row
`<id>~no_target` holding the row's images without its target and equivalent
images, the same question, and an EMPTY target set (schemas/rows.py
`targets: []`). Its meta says only what is true of it: `negative_of` (the
source id), `negative_rule` ("drop_target_images"), `kept_images` (the source
row's indices of the images it keeps, in order), the annotations of the kept
images (`meta.objects`, builders/annotations.py) and the name of what the
question asks for (`meta.target_object`'s naming keys, not where it was). The
rest of the source's meta is not copied: a reader's meta describes the source
row's images and targets (MC-Bench's `file_names`, `image_sizes`, `bbox_raw`,
`annotation_ids`, `positive_sample`; MIG-Bench's `target_from`), and read on the
negative it would describe an image that is gone and a target that is not
there. It stays on the source row, found by `negative_of` and indexed by
`kept_images`. The manifest's
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
from dataclasses import dataclass

from builders.annotations import LABEL_KEYS, WORD_KEYS
from builders.options import option
from schemas.errors import UserError
from schemas.profiles import image_mentions

RULE = "drop_target_images"
SUFFIX = "~no_target"


@dataclass
class NegativesConfig:
    """Options of `build negatives`; each field is its flag (polyground.cli.add_config_flags)."""

    negatives_only: bool = option(False, "write only the negative rows")


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
    meta = negative_meta(row["id"], meta, keep, len(row["images"]))
    return {**row, "id": row["id"] + SUFFIX, "images": [row["images"][k] for k in keep], "target_image": None,
            "target_box": None, "equivalent_images": [], "targets": [],
            "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)}, None


def negative_meta(source_id: str, meta: dict, keep: list[int], n_images: int) -> dict:
    """The negative's meta from its source's: the rule, the kept images, and only what still holds."""
    out = {"negative_of": source_id, "negative_rule": RULE, "kept_images": keep}
    objects = meta.get("objects")
    if isinstance(objects, list) and len(objects) == n_images:  # one list per image
        out["objects"] = [objects[k] for k in keep]
    target = meta.get("target_object")
    if isinstance(target, dict) and (name := {k: target[k] for k in LABEL_KEYS + WORD_KEYS if k in target}):
        out["target_object"] = name  # what the question asks for; its cell or box was on a dropped image
    return out


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


def build_negatives(store, source_ref: str, name: str, config: NegativesConfig):
    """Write a tasks version: `source_ref`'s rows plus their negatives (builders.steps.BuildResult;
    `dropped`: the rows that made no negative, by reason; `summary`: the manifest's block)."""
    from builders.sources.ingest import task_summary
    from builders.steps import commit
    from schemas import rows as contract

    version = store.resolve(source_ref)
    store.check_trainable(version)
    if version.kind != "tasks":
        raise UserError(f"{version.ref} is a {version.kind} version; build negatives reads a tasks version")
    records, block = with_negatives(version.table().to_pylist(), config.negatives_only)
    if not block["made"]:
        why = ", ".join(f"{k}: {v}" for k, v in block["skipped"].items()) or "no row"
        raise UserError(f"no negative could be made from {version.ref} ({why})")
    table = contract.to_table(records, "tasks")
    extra = {"summary": task_summary(table), "negatives": {**block, "from": version.ref}}
    config_record = {"negatives": RULE, "negatives_only": config.negatives_only}
    return commit(store, name, "tasks", table, None, inputs=[version], config=config_record, extra=extra,
                  summary=extra["negatives"], dropped=block["skipped"])
