"""Validation of a policy during training, per task, and the rule that picks `best`.

Each validation sample (carved from the training split, or `--val-data`) is answered greedily by the
inference loop (`MultiStepRetriever`) for its task's episode length. Per task: `coverage` (every
support among the first len(support) chunks: the minimum number of steps) and `coverage_max_steps`
(within the episode's steps: the figure `qrag bench` reports). A metrics row gets one column of each
per task (`val_coverage_max_steps:babilong:qa3`, ...), their means over tasks (`val_coverage`,
`val_coverage_max_steps`), the worst task's (`val_worst`) and the selection score.

**The `best` rule**: `val_select = (worst + mean) / 2` of the per-task coverage within the episode's
steps, so the worst task carries more than half the weight (a policy that gains on easy tasks while
losing one task does not win); ties go to the mean coverage in the minimum number of steps, then to the
later validation. With one task the score is that task's coverage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def validate(encoder: Any, embed: Callable[[int, dict], np.ndarray], samples: list[dict],
             steps_of: Callable[[dict], int], piece_tokens: int,
             progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """The validation row of `samples`, each answered by `encoder` over the vectors `embed(j, sample)`
    (`progress(done, total)` after each sample)."""
    from ..bench.contexts import MemoryContext
    from ..policy.loop import MultiStepRetriever
    from ..search.exact import ExactBackend

    per: dict[str, dict[str, list[float]]] = {}
    first_q: list[float] = []
    for j, x in enumerate(samples):
        vecs = embed(j, x)
        ctx = MemoryContext(x["context"], vecs, doc=str(x.get("id", "val")))
        loop = MultiStepRetriever(encoder, ctx, ExactBackend(vecs), piece_tokens=piece_tokens)
        traj = loop.run([x["question"]], steps=min(steps_of(x), len(ctx)))[0]
        got, need = traj.positions(), set(x["support"])
        cell = per.setdefault(x.get("train_task", "task"), {"min": [], "max": []})
        cell["min"].append(float(need <= set(got[: len(need)])))
        cell["max"].append(float(need <= set(got)))
        first_q.append(traj.retrieved[0].score)
        if progress:
            progress(j + 1, len(samples))
    return summarise({t: (float(np.mean(c["min"])), float(np.mean(c["max"]))) for t, c in per.items()},
                     float(np.mean(first_q)))


def summarise(per_task: dict[str, tuple[float, float]], first_q: float) -> dict[str, float]:
    """A metrics row from {task: (coverage, coverage_max_steps)}."""
    row: dict[str, float] = {}
    for t, (at_min, at_max) in per_task.items():
        row[f"val_coverage:{t}"] = at_min
        row[f"val_coverage_max_steps:{t}"] = at_max
    mins = [v[0] for v in per_task.values()]
    maxs = [v[1] for v in per_task.values()]
    mean_max, worst = float(np.mean(maxs)), float(min(maxs))
    row.update(val_coverage=float(np.mean(mins)), val_coverage_max_steps=mean_max, val_worst=worst,
               val_select=(worst + mean_max) / 2, val_q_first=first_q)
    return row


def select_key(row: dict[str, Any]) -> tuple[float, float]:
    """What `best` maximises: (val_select, val_coverage); a row of an older run without val_select uses
    its coverage within the episode's steps."""
    return (row.get("val_select", row.get("val_coverage_max_steps", -1.0)), row.get("val_coverage", -1.0))
