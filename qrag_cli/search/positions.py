"""Relative rotary positions of the method (action side only) and exact range-by-range scoring.

The retrieved chunks cut the context of N chunks into segments [0, j1), [j1, j2), ..., [jk, N);
segment m gives its chunks positions `20*m + linspace(0, 18, len_m)` (before any retrieval: one
segment, the normalised position 0..18). With integer buckets (the reference's default) p is
truncated, so every (segment, bucket) is a contiguous range of chunks sharing one rotation and the
exact best action is a maximum over at most 19*(k+1) ranges of <R(-p) s, a>: the state is rotated
once per range, the chunk vectors never are.

Approximate mode (`approx_rotary_search`): one ANN query per range (the rotated state); every hit
is re-scored exactly with its own range's rotation; small ranges are scored exactly outright.

Rotation: interleaved pairs (2i, 2i+1) of each half of the embedding (the twin halves of the
Q-function are rotated separately), angle p * 10000^(-2i/d_half).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .compact import CompactVectors

SEGMENT_STRIDE = 20.0
SEGMENT_SPAN = 18.0
BASE = 10000.0
BLOCK_ROWS = 32_768
#: Ranges up to this many rows are scored with NumPy in the exact mode, larger ones with usearch's kernel.
SMALL_RANGE = 256
#: Best rows kept per range beyond k and the range's retrieved chunks (then re-scored in float32).
RANGE_SLACK = 8
#: Error bound of the kernel's scores relative to |q| |a| (its query is cast to float16: 2^-11, doubled).
KERNEL_EPS = 2.0**-10


def chunk_positions(n: int, retrieved: Collection[int], integer: bool = True) -> np.ndarray:
    """Position p of every chunk (float64, shape (n,)) given the retrieved chunk indices."""
    cuts = [0, *sorted(set(int(j) for j in retrieved if 0 < j < n)), n]
    p = np.empty(n, dtype=np.float64)
    for m, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        p[a:b] = SEGMENT_STRIDE * m + np.linspace(0.0, SEGMENT_SPAN, b - a)
    return np.floor(p) if integer else p


def position_ranges(n: int, retrieved: Collection[int]) -> list[tuple[int, int, float]]:
    """Integer buckets as contiguous ranges: [(start, end, p), ...] covering 0..n."""
    p = chunk_positions(n, retrieved, integer=True)
    if n == 0:
        return []
    edges = np.flatnonzero(np.diff(p)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    return [(int(a), int(b), float(p[a])) for a, b in zip(starts, ends)]


def _angles(p: np.ndarray, dim: int) -> np.ndarray:
    if dim % 4:
        raise ValueError(f"rotary positions need a dimension divisible by 4, got {dim}")
    half = dim // 2
    freqs = BASE ** (-2.0 * np.arange(half // 2) / half)
    return np.asarray(p, dtype=np.float64)[..., None] * freqs  # (..., half/2)


def rotate(x: np.ndarray, p: float | np.ndarray) -> np.ndarray:
    """R(p) x for vectors x (..., dim); p a scalar or one position per vector. Keeps the norm."""
    x = np.asarray(x, dtype=np.float32)
    dim = x.shape[-1]
    ang = _angles(np.broadcast_to(np.asarray(p, dtype=np.float64), x.shape[:-1]), dim)
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    out = np.empty_like(x)
    for h in (0, dim // 2):
        even, odd = x[..., h : h + dim // 2 : 2], x[..., h + 1 : h + dim // 2 : 2]
        out[..., h : h + dim // 2 : 2] = even * cos - odd * sin
        out[..., h + 1 : h + dim // 2 : 2] = even * sin + odd * cos
    return out


def exact_rotary_search(
    vectors: np.ndarray, state: np.ndarray, retrieved: Sequence[int], k: int, *, integer: bool = True,
    threads: int = 0, compact: CompactVectors | None = None, kernel: str | None = None, stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of <s, R(p_i) a_i> over all unretrieved chunks i; ids and scores, best first (lower id wins ties).

    Integer positions: the state is rotated by -p once per range and each range of the matrix is
    scanned as stored (`_range_scan`: usearch's SIMD float16 kernel); the few best of each range are
    re-scored in float32, so scores and ties are those of a float32 reference. With the index's
    int8 `compact` copy, the ranges are scanned in int8 first and only the rows the error bound
    cannot exclude are re-scored (`compact_scan`, `kernel`: its int8 kernel): the same results,
    half the bytes read (`stats`: counts of its ranges, added to). Float positions: every chunk has its
    own p, so blocks of chunks are rotated.
    """
    n = vectors.shape[0]
    done = set(int(j) for j in retrieved)
    k = min(k, n - len(done))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    s = np.asarray(state, dtype=np.float32)
    if integer and compact is not None:
        from .compact_scan import compact_range_scan, default_kernel

        kernel = kernel or default_kernel()
        if kernel is not None:
            ranges = position_ranges(n, done)
            queries = rotate(np.broadcast_to(s, (len(ranges), s.shape[0])), -np.array([p for _, _, p in ranges]))
            return compact_range_scan(vectors, compact, ranges, queries, np.array(sorted(done), dtype=np.int64), k,
                                      threads, kernel=kernel, stats=stats)
    if integer:
        return _range_scan(vectors, s, done, k, threads)
    scores = np.empty(n, dtype=np.float32)
    p = chunk_positions(n, done, integer=False)
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(n, lo + BLOCK_ROWS)
        scores[lo:hi] = rotate(np.asarray(vectors[lo:hi], dtype=np.float32), p[lo:hi]) @ s
    if done:
        scores[np.fromiter(done, dtype=np.int64)] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = np.lexsort((top, -scores[top]))
    ids = top[order].astype(np.int64)
    return ids, scores[ids]


def _range_scan(vectors: np.ndarray, s: np.ndarray, done: set[int], k: int, threads: int):
    """Exact top-k with integer positions: one rotated state per range, each range scanned once.

    Float16 rows (an index's memory-mapped vectors): a range of more than `SMALL_RANGE` rows is
    scanned with usearch's exact (brute-force) search, which reads float16 with SIMD instead of
    converting it (~9x NumPy's float16 path at 10M tokens); smaller ranges and float32 rows (BLAS,
    as fast) are scored with NumPy. Each range yields its best `k + retrieved-in-range + RANGE_SLACK`,
    re-scored in float32. A range whose last kept row is within `KERNEL_EPS * |q| |a|` of the final k-th score
    (ties or near-ties the kernel's float16 query may order differently) is scored fully in float32.
    """
    n = vectors.shape[0]
    ranges = position_ranges(n, done)
    queries = rotate(np.broadcast_to(s, (len(ranges), s.shape[0])), -np.array([p for _, _, p in ranges]))
    done_sorted = np.array(sorted(done), dtype=np.int64)
    ids: list[np.ndarray] = []
    owner: list[np.ndarray] = []  # range number of each id
    partial: list[int] = []  # ranges of which only the best rows were kept
    kernel = vectors.dtype == np.float16  # float32 rows: NumPy's BLAS is as fast, with no float16 query
    for r, ((a, b, _), q) in enumerate(zip(ranges, queries)):
        inside = int(np.searchsorted(done_sorted, b) - np.searchsorted(done_sorted, a))
        count = k + inside + RANGE_SLACK
        if b - a <= count:
            got = np.arange(a, b, dtype=np.int64)
        elif b - a <= SMALL_RANGE or not kernel:
            sc = np.asarray(vectors[a:b], dtype=np.float32) @ q
            got = a + np.argpartition(-sc, count - 1)[:count].astype(np.int64)
            partial.append(r)
        else:
            got = a + _kernel_top(vectors[a:b], q, count, threads)
            partial.append(r)
        ids.append(got)
        owner.append(np.full(len(got), r, dtype=np.int64))
    cand, where = np.concatenate(ids), np.concatenate(owner)  # where[i]: the range of cand[i]
    keep = ~np.isin(cand, done_sorted)
    cand, where = cand[keep], where[keep]
    scores, norms = _rescore(vectors, cand, queries[where])
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    more = []  # ranges whose kept rows end within the kernel's error of the k-th score
    for r in partial:
        mine = where == r
        if mine.any() and scores[mine].min() >= kth - KERNEL_EPS * norms[mine].max():
            more.append(r)
    if more:  # near-ties at a range's cut: all of the range, every score from the same routine (equal rows tie)
        full = [np.arange(ranges[r][0], ranges[r][1], dtype=np.int64) for r in more]
        extra = np.concatenate(full)
        fresh = ~np.isin(extra, done_sorted) & ~np.isin(extra, cand)
        cand = np.concatenate([cand, extra[fresh]])
        where = np.concatenate([where, np.repeat(np.array(more, dtype=np.int64), [len(f) for f in full])[fresh]])
        scores, _ = _rescore(vectors, cand, queries[where])
    order = np.lexsort((cand, -scores))[:k]
    return cand[order], scores[order]


def _rescore(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 <q_i, a_ids[i]> row by row (and |q_i| |a_ids[i]|), in blocks of BLOCK_ROWS."""
    scores = np.empty(len(ids), dtype=np.float32)
    norms = np.empty(len(ids), dtype=np.float32)
    for lo in range(0, len(ids), BLOCK_ROWS):
        rows = np.asarray(vectors[ids[lo : lo + BLOCK_ROWS]], dtype=np.float32)
        q = queries[lo : lo + BLOCK_ROWS]
        scores[lo : lo + BLOCK_ROWS] = np.einsum("nd,nd->n", rows, q)
        norms[lo : lo + BLOCK_ROWS] = np.linalg.norm(rows, axis=1) * np.linalg.norm(q, axis=1)
    return scores, norms


def _kernel_top(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> np.ndarray:
    """Local ids of the `count` best float16 rows by inner product with q (usearch's exact search)."""
    from usearch.index import MetricKind
    from usearch.index import search as exact_search

    found = exact_search(np.ascontiguousarray(rows), q.astype(np.float16), count, MetricKind.IP, exact=True,
                         threads=threads)
    return np.asarray(found.keys, dtype=np.int64)


#: Candidate generator of the approximate mode: queries float32 (r, d), fetch -> candidate ids int64
#: (r, <= fetch), -1 where none (a search backend's `candidates`).
Candidates = Callable[[np.ndarray, int], np.ndarray]


def approx_rotary_search(
    vectors: np.ndarray,
    state: np.ndarray,
    retrieved: Sequence[int],
    k: int,
    candidates: Candidates,
    *,
    integer: bool = True,
    fetch: int = 64,
    exact_rows: int = 128,
    query_every: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate `exact_rotary_search`: ANN candidates per range, re-scored exactly.

    Each (segment, bucket) range's rotated state `R(-p) s` is one ANN query for `fetch` candidates
    (`query_every` > 1: only every n-th range is queried). Every hit of every query is a candidate,
    re-scored exactly with the rotation of its own range (float positions: its own position): a
    chunk found by a neighbouring bucket's query counts too, which is what makes the ANN's misses
    on rotated queries rare. Ranges of at most `exact_rows` chunks (next to retrieved chunks, where
    answers cluster) are scored exactly outright. Scores are exact; only the candidate set is approximate.
    """
    n = vectors.shape[0]
    s = np.asarray(state, dtype=np.float32)
    done = set(int(j) for j in retrieved)
    k = min(k, n - len(done))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    ranges = position_ranges(n, done)
    found: set[int] = set()
    ann = []
    for a, b, p in ranges:
        if b - a <= exact_rows:
            found.update(range(a, b))
        else:
            ann.append(p)
    ann = ann[::query_every]
    if ann:
        queries = rotate(np.broadcast_to(s, (len(ann), s.shape[0])), -np.array(ann))
        ids = np.asarray(candidates(queries, min(fetch, n)))
        found.update(ids[ids >= 0].tolist())  # every hit, scored with its own range's rotation below
    cand = np.array(sorted(found - done), dtype=np.int64)
    if integer:  # each candidate's bucket, looked up in the ranges (the same positions, not recomputed)
        starts = np.array([a for a, _, _ in ranges], dtype=np.int64)
        p = np.array([q for _, _, q in ranges])[np.searchsorted(starts, cand, side="right") - 1]
        rotated = rotate(np.broadcast_to(s, (len(cand), s.shape[0])), -p)  # the state, per candidate's range
        scores = np.einsum("nd,nd->n", np.asarray(vectors[cand], dtype=np.float32), rotated)
    else:
        p = chunk_positions(n, done, integer=False)[cand]
        scores = rotate(np.asarray(vectors[cand], dtype=np.float32), p) @ s
    scores = scores.astype(np.float32)
    order = np.lexsort((cand, -scores))[:k]
    return cand[order], scores[order]
