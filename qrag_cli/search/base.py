"""The search-backend interface and the helpers every backend shares.

A backend answers maximum-inner-product queries over the index's chunk vectors. The vectors live in
the index folder as ``vectors.npy`` (float16, shape ``(n, d)``); the caller opens them with
``np.load(path, mmap_mode="r")`` and hands the memory-mapped array to the backend.

Whatever a backend finds its candidates with, the scores it returns are exact: candidates are
re-scored from the float16 vectors converted to float32 (:func:`rescore`), so scores from different
backends are comparable and ties are broken the same way everywhere (lower id first).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import CorruptIndexError, InputError

#: Rows of the vector matrix converted to float32 at a time (32k x 384 x 4 B = 48 MiB).
BLOCK_ROWS = 32_768

#: Upper bound on the float32 score block (queries x rows) kept at once, in elements (64 MiB).
MAX_SCORE_ELEMENTS = 16 * 1024 * 1024

ExcludeLike = Sequence[Collection[int]] | None


@runtime_checkable
class SearchBackend(Protocol):
    """Top-k maximum-inner-product search over a fixed set of vectors."""

    name: str

    def search(
        self, queries: np.ndarray, k: int, exclude: ExcludeLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 (q, d). Returns ids int64 (q, k) and scores float32 (q, k), best first, by inner product;
        ids in exclude[i] never returned for query i; rows padded with id -1 / score -inf when fewer than k remain."""
        ...

    def candidates(self, queries: np.ndarray, fetch: int) -> np.ndarray:
        """Ids of up to `fetch` likely best hits per query (q, <= fetch), -1 padded, not re-scored: for
        callers that score the hits themselves (the approximate positional search)."""
        ...


def resolve_threads(threads: int) -> int:
    """Threads for a library call: `threads`, or all cores when 0."""
    return threads if threads > 0 else (os.cpu_count() or 1)


def corrupt_file(path: Path, why: str) -> CorruptIndexError:
    """The error for a missing or unreadable backend file, naming the file and the fix."""
    return CorruptIndexError(f"{path}: {why}; rebuild with `qrag index ... --overwrite`")


#: Up to this many queries, scores are computed with numpy's einsum instead of BLAS (see inner_products).
EINSUM_MAX_QUERIES = 8


def inner_products(queries: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """float32 scores (q, m) of float32 queries (q, d) against float32 rows (m, d).

    For a few queries numpy's einsum is used: its result for a (query, row) pair does not depend on
    the other rows, so the exact backend and the re-scoring of candidates give bit-identical scores,
    and it avoids OpenBLAS waking its threads for a matrix-vector product (measured 2.3 ms vs 7.6 ms
    per 32k x 384 block on 2 cores). Larger batches use BLAS (scores then agree to float32 rounding).
    """
    if queries.shape[0] <= EINSUM_MAX_QUERIES:
        return np.einsum("qd,nd->qn", queries, mat)
    return queries @ mat.T


def check_vectors(vectors: np.ndarray) -> None:
    """Raise InputError unless `vectors` is a 2-D floating matrix (float16 as stored in vectors.npy)."""
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        raise InputError(f"vectors must be a 2-D array (n, d), got {getattr(vectors, 'shape', type(vectors))}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(f"vectors must be floating point (float16), got {vectors.dtype}")
    if vectors.shape[1] < 1:
        raise InputError("vectors must have at least one dimension")


def check_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    """Validate a query batch and `k`; return the queries as a C-contiguous float32 (q, d) array."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[1] != dim:
        raise InputError(f"queries must have shape (q, {dim}), got {q.shape}")
    return np.ascontiguousarray(q, dtype=np.float32)


def exclude_arrays(exclude: ExcludeLike, n_queries: int) -> list[np.ndarray]:
    """One sorted, de-duplicated int64 array of excluded ids per query (empty arrays when `exclude` is None)."""
    if exclude is None:
        return [np.empty(0, dtype=np.int64) for _ in range(n_queries)]
    if len(exclude) != n_queries:
        raise InputError(f"exclude must hold one collection per query ({n_queries}), got {len(exclude)}")
    out = []
    for ex in exclude:
        arr = np.fromiter((int(i) for i in ex), dtype=np.int64) if not isinstance(ex, np.ndarray) else ex
        out.append(np.unique(arr.astype(np.int64, copy=False)))
    return out


def overfetch(k: int, n: int, excluded: list[np.ndarray]) -> int:
    """How many candidates an approximate backend should fetch so that, after dropping the excluded
    ids, `k` remain: k + the largest exclude set, capped at n."""
    extra = max((len(ex) for ex in excluded), default=0)
    return min(n, k + extra)


def empty_result(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All-padding result: ids -1, scores -inf."""
    return (
        np.full((n_queries, k), -1, dtype=np.int64),
        np.full((n_queries, k), -np.inf, dtype=np.float32),
    )


def finalize(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score (descending, lower id first on ties), turn -inf entries into padding
    (id -1) and pad or cut the rows to exactly `k` columns."""
    q, c = scores.shape
    out_ids, out_scores = empty_result(q, k)
    if c == 0:
        return out_ids, out_scores
    order = np.lexsort((ids, -scores), axis=-1)
    s = np.take_along_axis(scores, order, axis=1)[:, :k]
    i = np.take_along_axis(ids, order, axis=1)[:, :k]
    valid = np.isfinite(s) | (s == np.inf)
    i = np.where(valid, i, -1)
    s = np.where(valid, s, -np.inf)
    out_ids[:, : s.shape[1]] = i
    out_scores[:, : s.shape[1]] = s
    return out_ids, out_scores


def rescore(
    vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, excluded: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among candidate ids.

    `candidates` is int64 (q, c) with -1 for "no candidate". Each candidate is scored as the float32
    inner product of the query with its float16 vector converted to float32; excluded, missing and
    duplicate candidates are dropped; rows are sorted best first (lower id first on ties) and padded.
    """
    q = queries.shape[0]
    if candidates.size == 0:
        return empty_result(q, k)
    cand = np.asarray(candidates, dtype=np.int64)
    present = cand >= 0
    uniq = np.unique(cand[present])
    if uniq.size == 0:
        return empty_result(q, k)
    mat = np.asarray(vectors[uniq], dtype=np.float32)  # fancy index on a memmap reads only these rows
    all_scores = inner_products(queries, mat)  # (q, u)
    pos = np.searchsorted(uniq, np.where(present, cand, uniq[0]))
    scores = np.take_along_axis(all_scores, pos, axis=1).astype(np.float32, copy=False)
    drop = ~present
    for row, ex in enumerate(excluded):
        if ex.size:
            drop[row] |= np.isin(cand[row], ex, assume_unique=False)
    # duplicates within a row (an index should not return them, but a corrupt one might)
    srt = np.sort(np.where(drop, -1, cand), axis=1)
    if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
        for row in range(q):
            _, first = np.unique(cand[row], return_index=True)
            dup = np.ones(cand.shape[1], dtype=bool)
            dup[first] = False
            drop[row] |= dup
    scores = np.where(drop, -np.inf, scores).astype(np.float32, copy=False)
    return finalize(scores, np.where(drop, -1, cand), k)


class GraphBackend(ABC):
    """The shared part of the HNSW backends: a library's graph over `vectors`, hits re-scored exactly.

    Subclasses set `name` and implement `_candidates(qs, fetch)`: int64 ids (q, <= fetch), -1 where a
    row has fewer hits, or None when the library cannot answer (then the search is exact).
    """

    name = "graph"
    file_name = "index"

    def __init__(self, index: Any, vectors: np.ndarray, *, ef: int, threads: int = 0, path: Path | None = None) -> None:
        self.index = index
        self.path = path if path is not None else Path(self.file_name)
        self.vectors = vectors
        self.ef = int(ef)
        self.threads = resolve_threads(threads)
        self._exact: Any = None

    @abstractmethod
    def _candidates(self, qs: np.ndarray, fetch: int) -> np.ndarray | None:
        """The library's hits for each query (see the class doc)."""

    def _checked(self, cand: np.ndarray) -> np.ndarray:
        if cand.size and (cand.max() >= self.vectors.shape[0] or cand.min() < -1):
            raise corrupt_file(self.path, "returned an id outside the vector range")
        return cand

    def candidates(self, queries: np.ndarray, fetch: int) -> np.ndarray:
        """Raw graph hits, not re-scored (exact top-`fetch` when the library cannot answer); see
        :class:`SearchBackend`."""
        n, d = self.vectors.shape
        qs = check_queries(queries, d, max(1, fetch))
        cand = self._candidates(qs, min(fetch, n)) if n else None
        if cand is None:
            return self.search(qs, min(fetch, n))[0] if n else np.full((qs.shape[0], 0), -1, dtype=np.int64)
        return self._checked(cand)

    def search(self, queries: np.ndarray, k: int, exclude: ExcludeLike = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k with exact scores; see :class:`SearchBackend`."""
        n, d = self.vectors.shape
        qs = check_queries(queries, d, k)
        excluded = exclude_arrays(exclude, qs.shape[0])
        if qs.shape[0] == 0 or n == 0:
            return empty_result(qs.shape[0], k)
        cand = self._candidates(qs, overfetch(min(k, n), n, excluded))
        if cand is None:
            if self._exact is None:
                from .exact import ExactBackend

                self._exact = ExactBackend(self.vectors)
            return self._exact.search(qs, k, excluded)
        return rescore(self.vectors, qs, self._checked(cand), excluded, k)
