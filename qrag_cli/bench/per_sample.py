"""Per-sample rows of `qrag bench` (results.json ``"samples"``) and its missed samples (`--show-misses`).

One row per (sample, method), in run order::

    {"id", "task", "length", "method", "question", "answer", "support": [int, ...],
     "retrieved": [{"position", "score"}, ...],   # retrieval order; score: Q estimate (dense) or BM25 score
     "found": [int, ...],                          # the support positions among the retrieved ones
     "kept": [int, ...],                           # what a reader would get (after the Q-threshold stop)
     "coverage", "precision", "recall", "fact_f1", "latency_ms", "build_ms", "sentences_embedded",
     "string_match" (ruler), "reader_output", "answer_score" (with a reader)}

``task`` and ``length`` are those of the aggregate row the sample counts in (`results`); a sample whose
own task differs (the prose file's "single" / "two-hop") adds ``sample_task``. The aggregates are the
means of these rows (median for latency), so they can be recomputed from them.

A *miss* is a row whose coverage is 0: some supporting chunk was not retrieved after the last step.
Missed rows carry the texts needed to inspect them: ``missing`` (the support positions not found,
with their text) and a ``text`` on every retrieved item.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..output import jsonl, plain
from .baselines import MethodResult
from .metrics import coverage, fact_prf


def sample_row(sample: dict[str, Any], task: str, length: str, method: str, r: MethodResult,
               texts: Sequence[str], build_s: float, embedded: int | None) -> dict[str, Any]:
    """The row of one method on one sample (string match and reader fields are added by the caller)."""
    support = list(sample["support"])
    p, rec, f1 = fact_prf(r.kept, support)
    cov = coverage(r.retrieved, support)
    scores = list(r.scores) if len(r.scores) == len(r.retrieved) else [None] * len(r.retrieved)
    retrieved = [{"position": int(pos), "score": None if s is None else round(float(s), 6)}
                 for pos, s in zip(r.retrieved, scores)]
    got = set(r.retrieved)
    row: dict[str, Any] = {"id": str(sample.get("id", "")), "task": task, "length": length, "method": method}
    if sample.get("task", task) != task:
        row["sample_task"] = sample["task"]
    row.update({
        "question": sample["question"], "answer": sample.get("answer", ""), "support": support,
        "retrieved": retrieved, "found": [s for s in support if s in got], "kept": [int(x) for x in r.kept],
        "coverage": cov, "precision": p, "recall": rec, "fact_f1": f1,
        "latency_ms": round(1000 * r.latency_s, 3), "build_ms": round(1000 * build_s, 3),
        "sentences_embedded": embedded,
    })
    if cov < 1.0:  # a miss: keep the texts to inspect it
        row["missing"] = [{"position": s, "text": texts[s]} for s in support if s not in got]
        for item in retrieved:
            item["text"] = texts[item["position"]]
    return row


def misses(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The missed rows (coverage 0) of a results dict, in run order."""
    return [r for r in results.get("samples", []) if r.get("coverage", 1.0) < 1.0]


def load_results(folder: str | os.PathLike) -> dict[str, Any]:
    """results.json of a finished `qrag bench` folder (InputError when absent, unreadable or without rows)."""
    from .runner import RESULTS_FORMAT

    path = Path(folder) / "results.json"
    if not path.is_file():
        raise InputError(f"{path} not found: no finished benchmark in {folder}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable results ({exc})") from None
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise InputError(f"{path}: not a qrag bench results file")
    if "samples" not in results:
        raise InputError(f"{path}: no per-sample rows (written by an older qrag): run the benchmark again")
    return results


def _text(rows: Iterable[dict[str, Any]], width: int = 100) -> Iterable[str]:
    for r in rows:
        task = r["task"] + (f"/{r['sample_task']}" if "sample_task" in r else "")
        yield (f"[{plain(r['id'])}] {plain(r['method'])}  {plain(task)} {plain(r['length'])}  "
               f"found {len(r['found'])}/{len(r['support'])} supports, kept {len(r['kept'])}")
        yield f"  Q: {plain(r['question'])}  A: {plain(r['answer'])}"
        kept = set(r["kept"])
        for m in r.get("missing", []):
            yield f"  missed      chunk {m['position']}  {plain(m['text'])}"[:width]
        for i, item in enumerate(r["retrieved"], 1):
            score = "-" if item["score"] is None else f"{item['score']:.4f}"
            tag = "support" if item["position"] in r["support"] else ("kept" if item["position"] in kept else "")
            head = f"  {i:>2}. chunk {item['position']}  score {score}  {tag}".rstrip()
            yield head
            if "text" in item:
                for line in textwrap.wrap(plain(item["text"].replace("\n", " ")), width=width - 8)[:3] or [""]:
                    yield f"        {line}"
        yield ""


def render_misses(rows: list[dict[str, Any]], fmt: str) -> Iterable[str]:
    """Missed rows as JSON Lines ('jsonl') or readable text ('text')."""
    if fmt == "jsonl":
        return jsonl(rows)
    if fmt == "text":
        return _text(rows)
    raise InputError(f"unknown misses format {fmt!r}: use jsonl or text")
