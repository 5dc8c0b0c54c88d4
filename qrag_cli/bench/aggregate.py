"""Aggregate figures of `qrag bench`: per (method, task, length) from the per-sample figures, and the
per-length averages over tasks (the figures are defined in `runner`'s module doc)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import baselines as bl
from .metrics import coverage, fact_prf, mean, median, wilson_interval


@dataclass
class Acc:
    """Per-sample figures of one method on one (task, length)."""

    coverage: list[float] = field(default_factory=list)
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    support_recall: list[float] = field(default_factory=list)  # of the retrieved chunks
    f1: list[float] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    retrieved: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    build: list[float] = field(default_factory=list)
    embedded: list[int] = field(default_factory=list)
    string_match: list[float] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)

    def add(self, r: bl.MethodResult, support: list[int], build_s: float, embedded: int | None) -> None:
        self.coverage.append(coverage(r.retrieved, support))
        self.support_recall.append(fact_prf(r.retrieved, support)[1])
        p, rec, f1 = fact_prf(r.kept, support)
        self.precision.append(p)
        self.recall.append(rec)
        self.f1.append(f1)
        self.kept.append(len(r.kept))
        self.retrieved.append(len(r.retrieved))
        self.latency.append(r.latency_s)
        self.build.append(build_s)
        if embedded is not None:
            self.embedded.append(embedded)


def _ci(successes: float, n: int) -> list[float] | None:
    ci = wilson_interval(successes, n)
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]


def r4(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def aggregate_row(method: str, task: str, length: str, a: Acc, samples: list[dict], ruler: bool,
                  reader_on: bool) -> dict[str, Any]:
    from .reader import answer_accuracy

    row: dict[str, Any] = {
        "method": method, "task": task, "length": length, "n": len(a.coverage),
        "coverage": r4(mean(a.coverage)), "coverage_ci95": _ci(sum(a.coverage), len(a.coverage)),
        "fact_f1": r4(mean(a.f1)), "precision": r4(mean(a.precision)),
        "recall": r4(mean(a.recall)),
        "support_recall": r4(mean(a.support_recall)), "kept_mean": r4(mean(a.kept), 3), "retrieved_mean": r4(mean(a.retrieved), 3),
        "latency_ms_median": r4(1000 * (median(a.latency) or 0.0), 3),
        "build_ms_mean": r4(1000 * (mean(a.build) or 0.0), 3),
        "sentences_embedded_mean": r4(mean(a.embedded), 2) if a.embedded else None,
    }
    if ruler:
        row["string_match"] = r4(mean(a.string_match))
    if reader_on:
        answered = sum(o is not None for o in a.outputs)
        row["answer_accuracy"] = r4(answer_accuracy(a.outputs, samples))
        row["reader_answered"] = answered
        row["reader_failures"] = len(a.outputs) - answered
    return row


def averages(rows: list[dict], methods: list[str], lengths: list[str]) -> list[dict[str, Any]]:
    """Per (method, length): the mean over tasks of the main figures (the paper's 'average' curve)."""
    out = []
    for m in methods:
        for length in lengths:
            sel = [r for r in rows if r["method"] == m and r["length"] == length]
            if not sel:
                continue
            avg: dict[str, Any] = {"method": m, "length": length, "tasks": len(sel)}
            for key in ("coverage", "fact_f1", "kept_mean", "latency_ms_median"):
                vals = [r[key] for r in sel if r.get(key) is not None]
                avg[key] = r4(mean(vals), 4)
            # the interval of the pooled samples (every task's samples counted once)
            n = sum(r["n"] for r in sel if r.get("coverage") is not None)
            hits = sum(r["coverage"] * r["n"] for r in sel if r.get("coverage") is not None)
            avg["coverage_pooled"] = r4(hits / n) if n else None
            avg["coverage_ci95"] = _ci(round(hits), n)
            out.append(avg)
    return out
