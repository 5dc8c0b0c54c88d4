"""Exact (brute-force) inner-product search: the reference every approximate backend is measured against.

The float16 matrix (usually memory-mapped) is scored in row blocks converted to float32, because
numpy has no float16 BLAS. A running top-k per query is merged with each block; ties are broken
deterministically, lower id first. When the float32 matrix is small (<= 256 MiB by default) one
float32 copy is made on the first query and reused.
"""

from __future__ import annotations

import numpy as np

from .base import (
    BLOCK_ROWS,
    MAX_SCORE_ELEMENTS,
    ExcludeLike,
    check_queries,
    check_vectors,
    empty_result,
    exclude_arrays,
    finalize,
    inner_products,
)

#: Keep a float32 copy of the vectors when it takes at most this many bytes.
CACHE_LIMIT_BYTES = 256 * 1024 * 1024


def _merge_topk(
    run_s: np.ndarray, run_i: np.ndarray, blk_s: np.ndarray, blk_i: np.ndarray, kk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a running top-kk (ids ascending per row) with a block whose ids are all larger.

    Keeps the kk best per row; among entries tied with the kk-th best score the lowest ids win.
    The result's ids stay in ascending order per row, which is what makes the tie rule hold.
    """
    q, b = blk_s.shape
    s = np.concatenate([run_s, blk_s], axis=1)
    ids = np.concatenate([run_i, np.broadcast_to(blk_i, (q, b))], axis=1)
    c = s.shape[1]
    if c <= kk:
        return s, ids
    t = np.partition(s, c - kk, axis=1)[:, c - kk : c - kk + 1]  # kk-th largest per row
    gt = s > t
    eq = s == t
    need = kk - gt.sum(axis=1, keepdims=True)
    keep = gt | (eq & (np.cumsum(eq, axis=1) <= need))
    return s[keep].reshape(q, kk), ids[keep].reshape(q, kk)


class ExactBackend:
    """Brute-force top-k by inner product over a (memory-mapped) float16 matrix."""

    name = "exact"

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        block_rows: int = BLOCK_ROWS,
        cache_limit_bytes: int = CACHE_LIMIT_BYTES,
    ) -> None:
        check_vectors(vectors)
        self.vectors = vectors
        self.block_rows = max(1, int(block_rows))
        self.cache_limit_bytes = cache_limit_bytes
        self._f32: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _source(self) -> np.ndarray:
        """The matrix blocks are read from: the float32 cache when allowed (made lazily), else the input."""
        if self._f32 is None and self.n * self.dim * 4 <= self.cache_limit_bytes:
            self._f32 = np.asarray(self.vectors, dtype=np.float32)
        return self._f32 if self._f32 is not None else self.vectors

    def candidates(self, queries: np.ndarray, fetch: int) -> np.ndarray:
        """The exact top-`fetch` ids; see :class:`qrag_cli.search.base.SearchBackend`."""
        return self.search(queries, fetch)[0]

    def search(
        self, queries: np.ndarray, k: int, exclude: ExcludeLike = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k; see :class:`qrag_cli.search.base.SearchBackend`."""
        qs = check_queries(queries, self.dim, k)
        excluded = exclude_arrays(exclude, qs.shape[0])
        nq = qs.shape[0]
        if nq == 0 or self.n == 0:
            return empty_result(nq, k)
        kk = min(k, self.n)
        src = self._source()
        rows = max(1024, min(self.block_rows, MAX_SCORE_ELEMENTS // max(nq, 1)))
        run_s = np.empty((nq, 0), dtype=np.float32)
        run_i = np.empty((nq, 0), dtype=np.int64)
        for a in range(0, self.n, rows):
            b = min(self.n, a + rows)
            block = np.asarray(src[a:b], dtype=np.float32)
            blk_s = inner_products(qs, block)
            if np.isnan(blk_s).any():
                blk_s[np.isnan(blk_s)] = -np.inf
            for row, ex in enumerate(excluded):
                if ex.size:
                    lo, hi = np.searchsorted(ex, (a, b))
                    if hi > lo:
                        blk_s[row, ex[lo:hi] - a] = -np.inf
            run_s, run_i = _merge_topk(run_s, run_i, blk_s, np.arange(a, b, dtype=np.int64), kk)
        return finalize(run_s, run_i, k)
