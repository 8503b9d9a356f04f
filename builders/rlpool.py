"""Rejection sampling into an RL pool: k samples per task, scored, kept by pass-rate band.

Contract
- in: a `tasks` (or `rl-pool`) version, a generation backend (builders.inference.backends:
  the merged SFT policy, local or behind an endpoint) and an `RLPoolConfig`;
- out: an `rl-pool` version (schemas.rows.RL_POOL): every task column plus
  k, pass_rate, mean_iou, max_iou, difficulty and the policy identity; rejects
  carry the pass rate in their reason (`pass_rate=1.00 above band`);
  optionally (`emit_sft`) a `cot` version holding, for every task with a
  verified sample, its best one (highest IoU, then lowest sample index):
  rejection-sampled SFT data in the COT row contract.

A sample PASSES when it parses, names the target image (or an equivalent one)
and its IoU on that image is >= min_iou (schemas.scoring, the same rules as
the rewards). pass_rate = passing samples / k; mean_iou and max_iou are over
the k strict IoUs (0 for a wrong image or an unparsable answer). Difficulty:
hard below 1/3, medium below 2/3, easy from 2/3.

The band is an interval in the usual notation: `(0,1)` (the default) keeps
0 < p < 1, i.e. drops the tasks the policy always solves and those it never
solves, whose GRPO groups would have no reward variance; `[0,1)` also keeps
the never-solved ones; a bare `LO,HI` includes both ends.

Tasks go through in chunks (`chunk` tasks: memory stays bounded on large
pools); every sample is in the response cache as soon as it arrives, so a
rerun after a crash asks nothing twice. Multiple-choice tasks are rejected
(`no_box_target`): the grounding rewards cannot score them.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass

import pyarrow as pa

from builders.options import option
from builders.sources.base import Reject
from builders.steps import BuildResult, commit, count_reasons
from schemas import rows
from schemas.errors import UserError

HARD_BELOW, EASY_FROM = 1 / 3, 2 / 3
_BAND = re.compile(r"^\s*([\[(]?)\s*([0-9.]+)\s*,\s*([0-9.]+)\s*([\])]?)\s*$")


@dataclass(frozen=True)
class Band:
    """A pass-rate interval; an open end excludes its value."""

    lo: float
    hi: float
    lo_open: bool = True
    hi_open: bool = True

    @classmethod
    def parse(cls, text: str) -> "Band":
        m = _BAND.match(str(text))
        if not m or bool(m.group(1)) != bool(m.group(4)):
            raise UserError(f"--band {text!r}: write an interval like (0,1), [0,1), [0.1,0.9] or 0.1,0.9")
        try:
            lo, hi = float(m.group(2)), float(m.group(3))
        except ValueError:
            raise UserError(f"--band {text!r}: the ends must be numbers") from None
        band = cls(lo, hi, m.group(1) == "(", m.group(4) == ")")
        if not 0 <= lo <= hi <= 1 or (lo == hi and (band.lo_open or band.hi_open)):
            raise UserError(f"--band {text!r}: need 0 <= LO <= HI <= 1 and a non-empty interval")
        return band

    def side(self, p: float) -> str | None:
        """"below" or "above" when p lies outside the band, else None."""
        if p < self.lo or (self.lo_open and p == self.lo):
            return "below"
        if p > self.hi or (self.hi_open and p == self.hi):
            return "above"
        return None

    def __str__(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g},{self.hi:g}{')' if self.hi_open else ']'}"


@dataclass
class RLPoolConfig:
    """Rejection-sampling settings; all but `chunk` are hashed into the version id.

    Each field is a `build rl-pool` flag (polyground.cli.add_config_flags)."""

    k: int = option(8, "samples per task")
    temperature: float = option(1.0, "sampling temperature (0 = greedy)")
    top_p: float = option(1.0, "nucleus sampling (1.0: off)")
    max_tokens: int = option(512, "new tokens per sample")
    min_iou: float = option(0.5, "a sample passes with the right image and IoU >= this")
    band: str = option("(0,1)", "pass rates kept, as an interval: (0,1) drops always- and never-solved tasks, "
                                "[0,1) keeps never-solved ones, a bare LO,HI includes both ends")
    seed: int = option(0, "sampling seed")
    # Not hashed: a rerun may re-chunk.
    chunk: int = option(1024, "tasks per round; bounds memory")

    def __post_init__(self):
        if self.k < 1 or self.max_tokens < 1 or self.chunk < 1:
            raise UserError("k, max_tokens and chunk must be >= 1")
        if not 0 <= self.min_iou <= 1 or self.temperature < 0:
            raise UserError("min_iou must lie in [0, 1] and temperature be >= 0")
        self.band = str(Band.parse(self.band))  # normalised: "(0, 1)" and "(0,1)" hash alike

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def hashed(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "chunk"}


class NoTaskInBand(UserError):
    """Every task fell outside the band; `pass_rates` counts tasks by pass rate (nothing is written)."""

    def __init__(self, message: str, pass_rates: dict[str, int]):
        super().__init__(message)
        self.pass_rates = pass_rates


@dataclass
class PoolResult(BuildResult):
    """The rl-pool's BuildResult, and the --emit-sft cot version (None when not asked or none verified)."""

    sft_version: object | None = None


def _reject(task_id: str, reason: str, detail: str = "", record: dict | None = None) -> dict:
    return Reject(task_id, reason, detail, record or {}).row()


def score_samples(task: dict, texts: list[str], profile, min_iou: float) -> list[dict]:
    """One record per sample: sample_index, format_ok, image_correct, iou (strict, 0-1), passed, scores."""
    from schemas.sets import score_row

    sizes = rows.image_sizes(task)
    out = []
    for j, text in enumerate(texts):
        s = score_row(text, task, sizes, profile)  # a set row: named image set exact, set IoU (schemas.sets)
        out.append({"task_id": task["id"], "sample_index": j, "format_ok": s.format_ok,
                    "image_correct": bool(s.image_correct), "iou": float(s.iou or 0.0),
                    "passed": bool(s.image_correct) and (s.iou or 0.0) >= min_iou, "scores": s})
    return out


def _outcome(sample: dict) -> str:
    """Why a sample failed (a parse error, wrong_image, low_iou), or "passed"."""
    if sample["passed"]:
        return "passed"
    return sample["scores"].reason or "low_iou"


def aggregate(samples: list[dict]):
    """Per task (polars): k, pass_rate, mean_iou, max_iou, difficulty, best (passing sample index or null)."""
    import polars as pl

    df = pl.DataFrame([{k: v for k, v in s.items() if k != "scores"} for s in samples],
                      schema={"task_id": pl.String, "sample_index": pl.Int32, "format_ok": pl.Boolean,
                              "image_correct": pl.Boolean, "iou": pl.Float64, "passed": pl.Boolean})
    passing = pl.col("passed")
    agg = df.group_by("task_id", maintain_order=True).agg(
        pl.len().cast(pl.Int32).alias("k"),
        passing.cast(pl.Float64).mean().alias("pass_rate"),
        pl.col("iou").mean().alias("mean_iou"),
        pl.col("iou").max().alias("max_iou"),
        pl.col("sample_index").filter(passing)
        .sort_by([pl.col("iou").filter(passing), pl.col("sample_index").filter(passing)], descending=[True, False])
        .first().alias("best"),
    )
    return agg.with_columns(
        pl.when(pl.col("pass_rate") < HARD_BELOW).then(pl.lit("hard"))
        .when(pl.col("pass_rate") < EASY_FROM).then(pl.lit("medium")).otherwise(pl.lit("easy")).alias("difficulty"))


def _pool_columns(table: pa.Table, stats: list[dict], policy: str) -> pa.Table:
    """The kept tasks' columns plus the RL_POOL statistics, in schema order."""
    extra = {"k": [s["k"] for s in stats], "pass_rate": [s["pass_rate"] for s in stats],
             "mean_iou": [s["mean_iou"] for s in stats], "max_iou": [s["max_iou"] for s in stats],
             "difficulty": [s["difficulty"] for s in stats], "policy": [policy] * len(stats)}
    for name, values in extra.items():
        table = table.append_column(rows.RL_POOL.field(name), pa.array(values, rows.RL_POOL.field(name).type))
    return table


def _sft_row(task: dict, sample: dict, backend, config: RLPoolConfig) -> dict:
    """The best verified sample of a task as a COT row (id `<task id>#<sample index>`).

    As `build cot` does with a teacher's: the sample's reasoning, re-rendered with the
    ground-truth box on the image it named, so the label is exact and, stored canonically
    (reasoning + image + box), renders in any trainer's frame (training.data)."""
    from builders.inference.backends import prompt_text
    from schemas.set_answers import render_row

    s = sample["scores"]
    image = getattr(s.parsed, "image", None)  # a set row's parse names no one image
    completion = render_row(task, backend.profile, (s.parsed.think or "").strip(), image)
    return {**task, "task_id": task["id"], "id": f"{task['id']}#{sample['sample_index']}",
            "prompt": prompt_text(task, backend.profile), "completion": completion,
            "reasoning": (s.parsed.think or "").strip(),
            "profile": backend.profile.name, "pred_image": image, "pred_box": getattr(s.parsed, "box", None),
            "format_ok": s.format_ok, "image_correct": s.image_correct, "iou": s.iou,
            "generator_model": backend.model_name, "generator_kind": backend.kind,
            "sampling": json.dumps({**config.sampling(), "seed": config.seed}, sort_keys=True),
            "template_id": f"train-prompt:{backend.profile.name}", "sample_index": sample["sample_index"]}


class _Run:
    """Accumulates one build's kept tables, rejects, SFT rows and counters, chunk by chunk."""

    def __init__(self, backend, config: RLPoolConfig, emit_sft: bool):
        self.backend, self.config, self.emit_sft = backend, config, emit_sft
        self.band = Band.parse(config.band)
        self.kept: list[pa.Table] = []
        self.rejects: list[dict] = []
        self.sft: list[dict] = []
        self.pass_rates: Counter = Counter()
        self.samples: Counter = Counter()

    def chunk(self, batch: pa.RecordBatch) -> None:
        table = pa.Table.from_batches([batch]).select([f.name for f in rows.TASK_FIELDS])
        tasks = table.to_pylist()
        grounding = [i for i, t in enumerate(tasks) if rows.target_pairs(t) is not None]
        for i in sorted(set(range(len(tasks))) - set(grounding)):
            self.rejects.append(_reject(tasks[i]["id"], "no_box_target", "multiple choice: no box to score"))
        texts = self.backend.generate([tasks[i] for i in grounding], self.config.k, self.config.sampling(),
                                      self.config.seed)
        scored, index = [], {}
        for i, samples in zip(grounding, texts):
            task = tasks[i]
            if len(samples) != self.config.k:
                why = self.backend.failures.get(task["id"], f"{len(samples)} of {self.config.k} samples")
                self.rejects.append(_reject(task["id"], "generation_failed", why))
                continue
            per = score_samples(task, samples, self.backend.profile, self.config.min_iou)
            if per[0]["scores"].reason and per[0]["scores"].reason.startswith("unverifiable"):
                self.rejects.append(_reject(task["id"], per[0]["scores"].reason))
                continue
            scored.extend(per)
            index[task["id"]] = (i, per, samples)
            self.samples.update(_outcome(s) for s in per)
        if scored:
            self._keep(table, tasks, aggregate(scored).to_dicts(), index)

    def _keep(self, table: pa.Table, tasks: list[dict], stats: list[dict], index: dict) -> None:
        kept_idx, kept_stats = [], []
        for st in stats:
            i, per, _ = index[st["task_id"]]
            self.pass_rates[f"{st['pass_rate']:.2f}"] += 1
            side = self.band.side(st["pass_rate"])
            if side:
                detail = f"k={st['k']} mean_iou={st['mean_iou']:.3f} max_iou={st['max_iou']:.3f} band={self.band}"
                record = {key: st[key] for key in ("k", "pass_rate", "mean_iou", "max_iou", "difficulty")}
                self.rejects.append(_reject(st["task_id"], f"pass_rate={st['pass_rate']:.2f} {side} band", detail, record))
            else:
                kept_idx.append(i)
                kept_stats.append(st)
            if self.emit_sft and st["best"] is not None:
                self.sft.append(_sft_row(tasks[i], per[st["best"]], self.backend, self.config))
        if kept_idx:
            self.kept.append(_pool_columns(table.take(kept_idx), kept_stats, self.backend.identity))

    def no_task_message(self, n_tasks: int) -> str:
        rates = ", ".join(f"{p}: {n}" for p, n in sorted(self.pass_rates.items()))
        reasons = count_reasons(r for r in self.rejects if not r["reason"].startswith("pass_rate="))
        other = "".join(f", {n} {why}" for why, n in reasons.items())
        return (f"no task in band {self.band}: {n_tasks} tasks, pass rates {{{rates or 'none'}}}{other}; "
                f"nothing written (samples are cached: rerun with a wider --band, e.g. [0,1])")


def _write_sft(store, name: str, sft_rows: list[dict], version, cfg: dict, extra: dict):
    """The best verified samples as a cot version (None, with a note, when there is none)."""
    if not sft_rows:
        print(f"rl-pool: no verified sample, so no SFT version {name} was written", file=sys.stderr)
        return None
    return commit(store, name, "cot", rows.to_table(sft_rows, "cot"), None, inputs=[version],
                  config={**cfg, "emit": "best verified sample per task"},
                  extra={k: extra[k] for k in ("policy", "usage", "contamination", "near_duplicates")}).version


def input_version(store, tasks_ref):
    """The version to sample: a tasks (or rl-pool) version, never a benchmark split."""
    version = store.resolve(tasks_ref)
    store.check_trainable(version)
    if version.kind not in ("tasks", "rl-pool"):
        raise UserError(f"{version.ref} is a {version.kind} version; build rl-pool samples a tasks (or rl-pool) version")
    return version


def build_rl_pool(store, tasks_ref, backend, config: RLPoolConfig, name: str, emit_sft: str | None = None,
                  progress: bool = True) -> PoolResult:
    """Sample, score, aggregate, keep by band; write the rl-pool (and the SFT) version(s).

    Raises NoTaskInBand (a UserError) when nothing is kept, before anything is written."""
    from builders.store.contamination import contamination_fields
    from schemas.scoring import SCORING_VERSION

    version = input_version(store, tasks_ref)
    table = version.table()
    store.check_images(version.image_hashes, version.ref)  # hashed once, before any sample is drawn
    run = _Run(backend, config, emit_sft is not None)
    done = 0
    for batch in table.to_batches(max_chunksize=config.chunk):
        run.chunk(batch)
        done += batch.num_rows
        if progress:
            print(f"rl-pool: {done}/{table.num_rows} tasks, {sum(run.samples.values())} samples scored, "
                  f"{run.samples['passed']} passed", file=sys.stderr)
    if not run.kept:
        raise NoTaskInBand(run.no_task_message(table.num_rows), dict(run.pass_rates))
    pool = pa.concat_tables(run.kept)
    policy = backend.describe()
    cfg = {**config.hashed(), "policy": policy["identity"], "profile": backend.profile.name,
           "profile_version": backend.profile.version, "scoring_version": SCORING_VERSION,
           "image_pixels": policy.get("image_pixels")}
    extra = {"policy": policy, "usage": backend.usage(), "pass_rates": dict(sorted(run.pass_rates.items())),
             "samples": dict(sorted(run.samples.items())), "band": str(run.band),
             **contamination_fields(store, table, refuse=False)}
    summary = {"tasks": table.num_rows, "pass_rates": dict(run.pass_rates), "sft_rows": len(run.sft)}
    result = commit(store, name, "rl-pool", pool, run.rejects, inputs=[version], config=cfg, extra=extra,
                    summary=summary)
    sft_version = _write_sft(store, emit_sft, run.sft, version, cfg, extra) if emit_sft else None
    return PoolResult(**vars(result), sft_version=sft_version)
