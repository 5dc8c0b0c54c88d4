"""The int8 compact copy and the exact positional scan that reads it first (issue 22).

Every result is compared with the rotate-everything reference (float32 scores of every chunk, lower
id first on ties) and with the float16 scan it replaces (`exact_rotary_search` without the copy).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

if "usearch.compiled" not in sys.modules:
    import onnxruntime  # noqa: F401  (before usearch: the other order crashes, see compact_scan.default_kernel)

from qrag_cli.search import compact_scan
from qrag_cli.search.compact import quantize
from qrag_cli.search.positions import chunk_positions, exact_rotary_search, position_ranges, rotate

KERNELS = sorted(compact_scan.I8_KERNELS)
if "onnxruntime" not in sys.modules:  # usearch came first in this process: onnxruntime cannot be loaded
    KERNELS.remove("onnxruntime")


def reference(vectors: np.ndarray, state: np.ndarray, retrieved: list[int], k: int):
    n = len(vectors)
    brute = rotate(vectors.astype(np.float32), chunk_positions(n, retrieved)) @ state
    brute[retrieved] = -np.inf
    ids = np.lexsort((np.arange(n), -brute))[: min(k, n - len(set(retrieved)))]
    return ids, brute[ids]


def unit_rows(rng, n, d, scale=1.0):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True) * scale).astype(np.float16)


def check(vectors, compact, state, retrieved, k, kernel, stats=None):
    want = reference(vectors, state, retrieved, k)
    old = exact_rotary_search(vectors, state, retrieved, k)
    got = exact_rotary_search(vectors, state, retrieved, k, compact=compact, kernel=kernel, stats=stats)
    assert got[0].tolist() == want[0].tolist()
    assert got[0].tolist() == old[0].tolist()
    np.testing.assert_array_equal(got[1], old[1])  # the same float32 re-score as the float16 scan
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5 * float(np.abs(want[1]).max() + 1))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_compact_scan_equals_the_reference_with_ties(kernel, scale):
    rng = np.random.default_rng(11)
    n = 30_000
    vectors = unit_rows(rng, n, 64).astype(np.float32)
    vectors[rng.integers(0, n, 400)] = vectors[17]  # 400 copies of one row: exact ties within ranges
    vectors = (vectors * scale).astype(np.float16)
    compact = quantize(vectors)
    assert sum(b - a for a, b, _ in position_ranges(n, []) if b - a > compact_scan.SMALL_RANGE) > 0.9 * n  # int8 pass
    stats: dict = {}
    for retrieved in ([], [17], [17, 9000, 9001, 29_999]):
        for k in (1, 5, 40):
            state = rng.standard_normal(64).astype(np.float32)
            if k == 5:
                state = vectors[17].astype(np.float32)  # the duplicated row wins in many ranges at once
            check(vectors, compact, state, retrieved, k, kernel, stats)
    assert stats["scanned"] > 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_ranges_shorter_than_the_candidate_count_and_k_beyond_them(kernel, monkeypatch):
    """Ranges of a few rows (next to retrieved chunks), k larger than most ranges, and the int8 pass
    forced on small ranges (SMALL_RANGE 0): every range shorter than k + slack is taken whole."""
    monkeypatch.setattr(compact_scan, "SMALL_RANGE", 0)
    rng = np.random.default_rng(3)
    n = 1500
    vectors = unit_rows(rng, n, 32)
    compact = quantize(vectors)
    for retrieved in ([], [0], [700, 702, 705, 1499], list(range(0, 1500, 97))):
        for k in (1, 37, 200):
            check(vectors, compact, rng.standard_normal(32).astype(np.float32), retrieved, k, kernel)
    retrieved = list(range(n - 3))  # three chunks left, k larger than that
    ids, _ = exact_rotary_search(vectors, np.ones(32, np.float32), retrieved, 10, compact=compact, kernel=kernel)
    assert sorted(ids.tolist()) == [n - 3, n - 2, n - 1]


@pytest.mark.parametrize("kernel", KERNELS)
def test_near_ties_below_int8_resolution_fall_back_to_the_full_range(kernel, monkeypatch):
    """Rows that differ by less than one int8 step: the bound cannot separate them, so those ranges
    are re-scored in full, and the answer is still the reference's (no slack rows: only the bound
    stands between the int8 ranking and a wrong answer)."""
    monkeypatch.setattr(compact_scan, "COMPACT_SLACK", 0)
    rng = np.random.default_rng(5)
    n, d = 20_000, 64
    base = unit_rows(rng, 1, d).astype(np.float32)
    vectors = (base + 1e-3 * rng.standard_normal((n, d))).astype(np.float16)
    compact = quantize(vectors)
    stats: dict = {}
    for retrieved in ([], [4000]):
        check(vectors, compact, base[0] * 3, retrieved, 3, kernel, stats)
    assert stats["fallback"] > 0


def test_error_bound_holds_for_every_row_including_outliers_and_zero_columns():
    rng = np.random.default_rng(7)
    n, d = 5000, 48
    x = rng.standard_normal((n, d)).astype(np.float32) * 0.05
    x[:, 3] = 0.0  # a dimension that is zero everywhere
    x[10, 7] = 40.0  # one outlier sets a coarse scale for its dimension
    x[11] = -x[11] * 100
    vectors = x.astype(np.float16)
    compact = quantize(vectors)
    assert np.all(np.abs(compact.data.astype(np.int32)) <= 127)
    queries = rng.standard_normal((50, d)).astype(np.float32) * np.array([1.0, 100.0] * (d // 2), np.float32)
    qhat, t, bound = compact_scan.quantize_queries(compact, queries)
    exact = vectors.astype(np.float64) @ queries.astype(np.float64).T  # (n, q)
    approx = compact.data.astype(np.int64) @ qhat.astype(np.int64).T * t
    err = np.abs(exact - approx)
    assert np.all(err <= bound[None, :])
    assert (err / bound[None, :]).max() > 0.05  # the bound is not vacuous: some rows come near it


def test_int8_kernels_rank_by_the_exact_integer_dot_product():
    """usearch's int8 kernel at the extremes (+-127 everywhere: sums up to 127 * 127 * d) against an
    exact int64 product; a kernel that saturated or rounded would reorder these rows."""
    rng = np.random.default_rng(9)
    rows = rng.integers(-127, 128, (2 * compact_scan.ONNX_BLOCK_ROWS + 5, 384)).astype(np.int8)  # 3 blocks
    rows[:20] = 127
    rows[20:40, :200] = 127
    for q in (np.full(384, 127, np.int8), rng.integers(-127, 128, 384).astype(np.int8)):
        exact = rows.astype(np.int64) @ q.astype(np.int64)
        kth = np.sort(exact)[::-1][49]
        for name, kernel in compact_scan.I8_KERNELS.items():
            got, dots = kernel(rows, q, 50, 1)
            if dots is not None:  # every row's dot product
                np.testing.assert_array_equal(dots, exact, err_msg=name)
            else:  # the 50 best rows
                assert len(set(got.tolist())) == 50, name
                assert exact[got].min() >= kth and (exact > kth).sum() <= 50, name


@pytest.mark.parametrize("kernel", KERNELS)
def test_compact_scan_on_real_sentence_vectors(kernel, sentence_vectors):
    vectors = sentence_vectors
    compact = quantize(vectors)
    rng = np.random.default_rng(5)
    for _ in range(15):
        state = vectors[rng.integers(len(vectors))].astype(np.float32) * 4
        retrieved: list[int] = []
        for _step in range(3):
            check(vectors, compact, state, retrieved, 2, kernel)
            retrieved.append(int(exact_rotary_search(vectors, state, retrieved, 1)[0][0]))


def test_the_stored_onnx_model_is_matmul_integer_as_onnx_helper_builds_it():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "i8dot",
        [helper.make_tensor_value_info("a", TensorProto.INT8, ["m", "d"]),
         helper.make_tensor_value_info("b", TensorProto.INT8, ["d", 1])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qrag")
    model.ir_version = 8
    assert model.SerializeToString() == compact_scan.MATMUL_INTEGER_ONNX
