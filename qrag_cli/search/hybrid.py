"""Fusing the dense and the BM25 candidate lists of one retrieval step (`qrag query --retriever hybrid`).

Each list is a ranking of candidate chunk ids, best first (the dense list by the policy's score, the
BM25 list by BM25 score, holding only chunks that share a token with the query). Two fusions:

- ``rrf``: reciprocal-rank fusion, ``sum over lists of 1 / (RRF_K + rank)`` (rank from 1, RRF_K = 60);
- ``score``: each list's scores min-max normalised over that list (to [0, 1]; a list whose scores are
  all equal gives 1), then ``weight * dense + (1 - weight) * bm25``; a chunk absent from a list gets 0
  from it.

The fused ranking is best first, ties broken by the lower chunk id (as the search backends do).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from ..errors import InputError

RETRIEVERS = ("dense", "bm25", "hybrid")
FUSIONS = ("rrf", "score")
RRF_K = 60


def check(retriever: str, fusion: str, weight: float, candidates: int) -> None:
    if retriever not in RETRIEVERS:
        raise InputError(f"unknown retriever {retriever!r}: use one of {', '.join(RETRIEVERS)}")
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion {fusion!r}: use one of {', '.join(FUSIONS)}")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"--fusion-weight must be within [0, 1], got {weight}")
    if candidates < 1:
        raise InputError("--fusion-candidates must be at least 1")


def ranked(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ids and scores sorted best first, ties by the lower id."""
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def lexical_list(scores: np.ndarray, exclude: Collection[int], count: int, *, matching_only: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The `count` best chunks by BM25 score (float32 (n,)), `exclude` left out, best first (ties: lower id).

    `matching_only`: only chunks scoring above 0 (sharing a token with the query)."""
    s = np.asarray(scores, dtype=np.float32).copy()
    if exclude:
        s[np.fromiter(exclude, dtype=np.int64)] = -np.inf
    keep = np.flatnonzero(s > 0) if matching_only else np.flatnonzero(np.isfinite(s))
    if len(keep) > count:
        part = np.argpartition(-s[keep], count - 1)[:count]
        cut = s[keep][part].min()
        keep = keep[s[keep] >= cut]  # every tie at the cut, then sorted and cut by id
    ids, sc = ranked(keep.astype(np.int64), s[keep])
    return ids[:count], sc[:count]


def fuse(dense: tuple[np.ndarray, np.ndarray], lexical: tuple[np.ndarray, np.ndarray], fusion: str,
         weight: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The fused ranking of two (ids, scores) lists, each best first: (ids, fused scores), best first."""
    fused: dict[int, float] = {}
    if fusion == "rrf":
        for ids, _ in (dense, lexical):
            for rank, i in enumerate(ids, 1):
                fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (RRF_K + rank)
    elif fusion == "score":
        for (ids, scores), w in ((dense, weight), (lexical, 1.0 - weight)):
            for i, x in zip(ids, minmax(np.asarray(scores, dtype=np.float64))):
                fused[int(i)] = fused.get(int(i), 0.0) + w * float(x)
    else:
        raise InputError(f"unknown fusion {fusion!r}: use one of {', '.join(FUSIONS)}")
    ids = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    return ranked(ids, np.fromiter(fused.values(), dtype=np.float64, count=len(fused)))


def minmax(x: np.ndarray) -> np.ndarray:
    """x scaled to [0, 1] over its own range (all 1 when the range is 0)."""
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x) if hi <= lo else (x - lo) / (hi - lo)
