"""Exact positional top-k that reads the int8 compact copy first, with a proof of exactness.

Per (segment, bucket) range with rotated state q (float32), after `compact.quantize`:

    <q, x_i> = t <q̂, x̂_i> + err_i,   |err_i| <= sum_j |q_j| residual_j + min(sum_j |eq_j| max_abs_j, max|eq| l1_max)

where q' = q * scale (per dimension), t = max|q'| / 127, q̂ = round(q' / t) (int8) and eq = q' - t q̂.
The bound is the same for every row of the range, so an int8 kernel's ranking by the integer
<q̂, x̂_i> is the ranking by approximate score. Each range yields its `count` best rows by that
integer; every row it did not yield has <q, x_i> <= t * D_min + bound (D_min: the smallest integer
among the rows yielded). All yielded rows are re-scored in float32 from the float16 vectors, as the
float16 scan does (`positions._rescore`), and the k-th best score is found. A range whose
`t * D_min + bound + float32 rounding` is not strictly below that k-th score is re-scored in full
(all its rows in float32): so no row left out can reach the k-th score, nor tie it (ties go to the
lower id, and every row that might tie was scored by the same routine). Results are those of
`positions._range_scan`: the same ids, the same float32 scores.

Kernels (`I8_KERNELS`): usearch's exact search on int8 (`"usearch"`, SIMD integer dot products) and
NumPy (`"numpy"`: int8 rows converted to float32 and one BLAS product; integer sums below 2^24 are exact).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .compact import CompactVectors

#: Best rows kept per range beyond k and the range's retrieved chunks.
COMPACT_SLACK = 32
#: Ranges up to this many rows are re-scored in full straight away (no int8 pass).
SMALL_RANGE = 256


def _usearch_top(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> np.ndarray:
    from usearch.index import MetricKind
    from usearch.index import search as exact_search

    found = exact_search(np.ascontiguousarray(rows), np.ascontiguousarray(q), count, MetricKind.IP, exact=True,
                         threads=threads)
    return np.asarray(found.keys, dtype=np.int64).reshape(-1)


def _numpy_top(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> np.ndarray:
    dots = np.asarray(rows, dtype=np.float32) @ q.astype(np.float32)
    return np.argpartition(-dots, count - 1)[:count].astype(np.int64)


#: int8 top-`count` kernels: (rows int8 (m, d), q int8 (d,), count, threads) -> local ids (count,)
I8_KERNELS: dict[str, Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]] = {
    "usearch": _usearch_top, "numpy": _numpy_top,
}


def quantize_queries(compact: CompactVectors, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 queries q̂ (r, d), their scales t (r,) and the error bound of t <q̂, x̂_i> (r,), float64."""
    q = np.asarray(queries, dtype=np.float64)
    qs = q * compact.scale
    top = np.abs(qs).max(axis=1)
    t = np.where(top > 0, top / 127.0, 1.0)
    qhat = np.clip(np.rint(qs / t[:, None]), -127, 127)
    eq = np.abs(qs - t[:, None] * qhat)
    query_err = np.minimum(eq @ compact.max_abs, eq.max(axis=1) * compact.l1_max)
    bound = np.abs(q) @ compact.residual + query_err
    return qhat.astype(np.int8), t, bound * (1 + 1e-9)


def rounding(queries: np.ndarray, compact: CompactVectors) -> np.ndarray:
    """Bound on the float32 re-score's rounding error per query: (d + 2) 2^-23 |q| max|x|."""
    d = queries.shape[1]
    return (d + 2) * 2.0**-23 * np.linalg.norm(queries.astype(np.float64), axis=1) * compact.norm_max


def compact_range_scan(
    vectors: np.ndarray, compact: CompactVectors, ranges: list[tuple[int, int, float]], queries: np.ndarray,
    done_sorted: np.ndarray, k: int, threads: int, *, kernel: str = "usearch", stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (ids, float32 scores; best first, lower id first on ties) over the ranges, each
    scored with its rotated state `queries[r]` (float32), rows in `done_sorted` excluded."""
    from .positions import _rescore

    top = I8_KERNELS[kernel]
    qhat, t, bound = quantize_queries(compact, queries)
    limit = bound + rounding(queries, compact)  # added to t * D_min: the best any left-out row can score
    ids: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    ceiling: dict[int, float] = {}  # range -> best score a row it did not yield could have
    for r, (a, b, _) in enumerate(ranges):
        inside = int(np.searchsorted(done_sorted, b) - np.searchsorted(done_sorted, a))
        count = k + inside + COMPACT_SLACK
        if b - a <= max(count, SMALL_RANGE):
            got = np.arange(a, b, dtype=np.int64)
        else:
            local = top(compact.data[a:b], qhat[r], count, threads)
            rows = np.asarray(compact.data[a + np.sort(local)], dtype=np.int32)
            d_min = int((rows @ qhat[r].astype(np.int32)).min())
            ceiling[r] = t[r] * d_min + limit[r]
            got = a + local
        ids.append(got)
        owner.append(np.full(len(got), r, dtype=np.int64))
    cand, where = np.concatenate(ids), np.concatenate(owner)
    keep = ~np.isin(cand, done_sorted)
    cand, where = cand[keep], where[keep]
    scores, _ = _rescore(vectors, cand, queries[where])
    kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
    more = [r for r, c in ceiling.items() if not c < kth]
    if more:  # the bound does not exclude the rest of these ranges: score them in full
        full = [np.arange(ranges[r][0], ranges[r][1], dtype=np.int64) for r in more]
        extra = np.concatenate(full)
        extra_where = np.repeat(np.array(more, dtype=np.int64), [len(f) for f in full])
        fresh = ~np.isin(extra, done_sorted) & ~np.isin(extra, cand)
        extra, extra_where = extra[fresh], extra_where[fresh]
        extra_scores, _ = _rescore(vectors, extra, queries[extra_where])
        cand, scores = np.concatenate([cand, extra]), np.concatenate([scores, extra_scores])
    if stats is not None:
        stats["ranges"] = stats.get("ranges", 0) + len(ranges)
        stats["scanned"] = stats.get("scanned", 0) + len(ceiling)
        stats["fallback"] = stats.get("fallback", 0) + len(more)
        stats["rescored"] = stats.get("rescored", 0) + len(cand)
    order = np.lexsort((cand, -scores))[:k]
    return cand[order], scores[order]
