"""Exact positional top-k that reads the int8 compact copy first, with a proof of exactness.

Per (segment, bucket) range with rotated state q (float32), after `compact.quantize`:

    <q, x_i> = t <q̂, x̂_i> + err_i,   |err_i| <= sum_j |q_j| residual_j + min(sum_j |eq_j| max_abs_j, max|eq| l1_max)

where q' = q * scale (per dimension), t = max|q'| / 127, q̂ = round(q' / t) (int8) and eq = q' - t q̂.
The bound is the same for every row of the range, so the ranking by the integer D_i = <q̂, x̂_i> is
the ranking by approximate score, and <q, x_i> <= t D_i + bound. Each range yields its `count` best
rows by D (k + its retrieved chunks + `COMPACT_SLACK`); every other row of the range scores at most
t * D_min + bound (D_min: the smallest D yielded). The yielded rows are re-scored in float32 from the
float16 vectors, as the float16 scan does (`positions._rescore`), and the k-th best score is found.
Where `t * D_min + bound + float32 rounding` is not strictly below that k-th score, every row of the
range whose own `t * D_i + bound + rounding` is not below it is re-scored too (all the range's rows
when the kernel gave only the best ones). So no row left out can reach the k-th score, nor tie it
(ties go to the lower id, and every row that might tie was scored by the same routine): the results
are those of `positions._range_scan`, the same ids and the same float32 scores.

Kernels (`I8_KERNELS`, one small interface, each tested against the exact int64 product):
onnxruntime's MatMulInteger (`"onnxruntime"`, the default: MLAS int8 kernels, every row's D), NumPy
(`"numpy"`: einsum into int32, every row's D, slow) and usearch's exact int8 search (`"usearch"`: the
best rows only; its per-row overhead makes it barely faster than its float16 search).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import resolve_threads
from .compact import CompactVectors

#: Best rows kept per range beyond k and the range's retrieved chunks.
COMPACT_SLACK = 8
#: Ranges up to this many rows are re-scored in full straight away (no int8 pass).
SMALL_RANGE = 256
#: The int8 kernel `exact_rotary_search` uses by default (measured: docs/benchmarks.md).
DEFAULT_KERNEL = "onnxruntime"


def default_kernel() -> str | None:
    """`DEFAULT_KERNEL` when onnxruntime can be used in this process, else None (scan the float16 vectors).

    Importing onnxruntime after usearch's compiled module crashes the process (segmentation fault;
    usearch 2.26, onnxruntime 1.32); the other order is fine. A query session loads its ONNX encoder
    (onnxruntime) before its usearch backend, so this only matters where usearch came first."""
    import sys

    if "onnxruntime" not in sys.modules and "usearch.compiled" in sys.modules:
        return None
    import onnxruntime  # noqa: F401  (now, before anything imports usearch)

    return DEFAULT_KERNEL


def _usearch_top(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> tuple[np.ndarray, None]:
    """usearch's exact int8 search: the `count` best rows only (the scores of the rest stay unknown)."""
    from usearch.index import MetricKind
    from usearch.index import search as exact_search

    found = exact_search(np.ascontiguousarray(rows), np.ascontiguousarray(q), count, MetricKind.IP, exact=True,
                         threads=threads)
    return np.asarray(found.keys, dtype=np.int64).reshape(-1), None


def _numpy_dots(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> tuple[None, np.ndarray]:
    return None, np.einsum("nd,d->n", rows, q, dtype=np.int32)


_SESSIONS: dict[int, Any] = {}


#: Rows per MatMulInteger call: larger ranges are cut (onnxruntime copies its operand into a packed
#: buffer; 4096 x 384 bytes stay in cache; whole 7,000-row ranges at 10M tokens measured slower).
ONNX_BLOCK_ROWS = 4096


def _onnx_dots(rows: np.ndarray, q: np.ndarray, count: int, threads: int) -> tuple[None, np.ndarray]:
    """onnxruntime's MatMulInteger (int8 x int8 -> int32, MLAS kernels): every row's exact dot product."""
    session = _SESSIONS.get(threads)
    if session is None:
        session = _SESSIONS[threads] = _matmul_integer(threads)
    b = q.reshape(-1, 1)
    out = np.empty(rows.shape[0], dtype=np.int32)
    for a in range(0, rows.shape[0], ONNX_BLOCK_ROWS):
        block = np.ascontiguousarray(rows[a : a + ONNX_BLOCK_ROWS])
        out[a : a + len(block)] = session.run(None, {"a": block, "b": b})[0].reshape(-1)
    return None, out


#: The ONNX model y = MatMulInteger(a: int8 (m, d), b: int8 (d, 1)) -> int32 (m, 1), opset 13, serialised
#: (made with onnx.helper; kept as bytes so that a query does not import onnx; tests/test_compact_scan.py
#: rebuilds it and compares).
MATMUL_INTEGER_ONNX = (
    b'\x08\x08\x12\x04qrag:d\n\x18\n\x01a\n\x01b\x12\x01y"\rMatM'
    b'ulInteger\x12\x05i8dotZ\x15\n\x01a\x12\x10\n\x0e\x08\x03\x12'
    b'\n\n\x03\x12\x01m\n\x03\x12\x01dZ\x14\n\x01b\x12\x0f\n\r\x08'
    b'\x03\x12\t\n\x03\x12\x01d\n\x02\x08\x01b\x14\n\x01y\x12\x0f\n\r\x08\x06\x12\t\n'
    b'\x03\x12\x01m\n\x02\x08\x01B\x04\n\x00\x10\r'
)


def _matmul_integer(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(MATMUL_INTEGER_ONNX, options, providers=["CPUExecutionProvider"])


#: int8 kernels: (rows int8 (m, d), q int8 (d,), count, threads) -> (local ids of the `count` best rows,
#: None) or (None, every row's exact integer dot product)
I8_KERNELS: dict[str, Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray | None, np.ndarray | None]]] = {
    "onnxruntime": _onnx_dots, "numpy": _numpy_dots, "usearch": _usearch_top,
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
    done_sorted: np.ndarray, k: int, threads: int, *, kernel: str = DEFAULT_KERNEL, stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (ids, float32 scores; best first, lower id first on ties) over the ranges, each
    scored with its rotated state `queries[r]` (float32), rows in `done_sorted` excluded."""
    from .positions import _rescore

    top = I8_KERNELS[kernel]
    qhat, t, bound = quantize_queries(compact, queries)
    limit = bound + rounding(queries, compact)  # added to t * D: the best score a row can have
    ids: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    ceiling: dict[int, float] = {}  # range -> best score a row it did not yield could have
    dots: dict[int, np.ndarray] = {}  # range -> every row's integer score, when the kernel gives them
    for r, (a, b, _) in enumerate(ranges):
        inside = int(np.searchsorted(done_sorted, b) - np.searchsorted(done_sorted, a))
        count = k + inside + COMPACT_SLACK
        if b - a <= max(count, SMALL_RANGE):
            got = np.arange(a, b, dtype=np.int64)
        else:
            local, every = top(compact.data[a:b], qhat[r], count, threads)
            if every is None:
                rows = np.asarray(compact.data[a + np.sort(local)], dtype=np.int32)
                d_min = int((rows @ qhat[r].astype(np.int32)).min())
            else:
                local = np.argpartition(-every, count - 1)[:count]
                d_min = int(every[local].min())
                dots[r] = every
            ceiling[r] = t[r] * d_min + limit[r]
            got = a + local.astype(np.int64)
        ids.append(got)
        owner.append(np.full(len(got), r, dtype=np.int64))
    cand, where = np.concatenate(ids), np.concatenate(owner)
    keep = ~np.isin(cand, done_sorted)
    cand, where = cand[keep], where[keep]
    scores, _ = _rescore(vectors, cand, queries[where])
    kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
    more = [r for r, c in ceiling.items() if not c < kth]
    if more:  # the bound does not exclude the rest of these ranges: re-score every row it does not exclude
        extra_ids, extra_owner = [], []
        for r in more:
            a, b, _ = ranges[r]
            if r in dots:  # rows whose own bound reaches the k-th score
                rows = a + np.flatnonzero(t[r] * dots[r].astype(np.float64) + limit[r] >= kth)
            else:
                rows = np.arange(a, b, dtype=np.int64)
            extra_ids.append(rows)
            extra_owner.append(np.full(len(rows), r, dtype=np.int64))
        extra, extra_where = np.concatenate(extra_ids), np.concatenate(extra_owner)
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
