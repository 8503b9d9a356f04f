"""Builders as steps with one shape: every dataset builder commits through `commit` and returns a `BuildResult`.

Like datatrove's base filter, where a filter only says why it drops a document
and the base counts it: a builder only names the reason of each row it drops
(a `Reject(...).row()`); `commit` writes the version (its rows and rejects
table) and counts the rejects by reason, in one place. The CLI prints from the
result. `build tasks|bench` (builders.tasks), `build cot`, `build rl-pool`
(and its --emit-sft version), `build negatives` and eval's predictions
version all commit here.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class BuildResult:
    """One committed version and what became of its input rows."""

    version: object  # builders.store.Version
    kept: int  # rows in the version
    dropped: dict[str, int]  # rows left out, by named reason, sorted by reason
    summary: dict = field(default_factory=dict)  # the builder's own figures (what the CLI reports)


def count_reasons(rejects) -> dict[str, int]:
    """Rejects rows counted by their `reason`, sorted by reason (the manifest's dropped_by_reason order)."""
    return dict(sorted(Counter(r["reason"] for r in rejects).items()))


def commit(store, name: str, kind: str, table, rejects: list[dict] | None, *, inputs, config: dict,
           extra: dict, summary: dict | None = None, dropped: dict[str, int] | None = None) -> BuildResult:
    """Write `table` (and `rejects`, a rejects table, unless None) as a new `kind` version.

    `dropped` stands in for the rejects' counts when a builder drops rows without
    rejects rows (build negatives: the rows that made no negative, by reason)."""
    from schemas import rows

    with store.writer(name, kind, inputs=inputs, config=config) as w:
        w.write(table, None if rejects is None else rows.to_table(rejects, "rejects"), extra)
    counts = count_reasons(rejects or []) if dropped is None else dict(sorted(dropped.items()))
    return BuildResult(w.version, table.num_rows, counts, summary or {})
