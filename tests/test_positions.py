"""Relative rotary positions and exact range-by-range scoring (method.md, issue hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from qrag_cli.search.exact import ExactBackend
from qrag_cli.search.positions import (
    approx_rotary_search,
    chunk_positions,
    exact_rotary_search,
    position_ranges,
    rotate,
)


def test_integer_positions_for_12_chunks_with_chunk_4_retrieved():
    assert chunk_positions(12, [4]).astype(int).tolist() == [0, 6, 12, 18, 20, 22, 25, 27, 30, 32, 35, 38]


def test_positions_before_any_retrieval_span_0_to_18():
    p = chunk_positions(10, [], integer=False)
    assert p[0] == 0 and p[-1] == 18 and np.all(np.diff(p) > 0)
    assert chunk_positions(1, []).tolist() == [0.0]


def test_ranges_are_contiguous_and_cover_everything():
    ranges = position_ranges(1000, [10, 500, 501])
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(ranges) <= 19 * 4
    p = chunk_positions(1000, [10, 500, 501])
    for a, b, q in ranges:
        assert np.all(p[a:b] == q)


def test_rotation_keeps_the_norm_and_inverts():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 384)).astype(np.float32)
    for p in (0.0, 3.0, 17.5, 123.0):
        r = rotate(x, p)
        np.testing.assert_allclose(np.linalg.norm(r, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
        np.testing.assert_allclose(rotate(r, -p), x, atol=1e-4)
    np.testing.assert_array_equal(rotate(x, 0.0), x)
    s, a = x[0], x[1]  # <s, R(p) a> == <R(-p) s, a>
    assert float(s @ rotate(a, 7.0)) == pytest.approx(float(rotate(s, -7.0) @ a), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("integer", [True, False])
def test_range_by_range_equals_rotate_everything(integer):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 64)).astype(np.float16)
    state = rng.standard_normal(64).astype(np.float32)
    retrieved = [5, 1200, 2999]
    ids, scores = exact_rotary_search(vectors, state, retrieved, 10, integer=integer)
    p = chunk_positions(3000, retrieved, integer=integer)
    brute = rotate(vectors.astype(np.float32), p) @ state
    brute[retrieved] = -np.inf
    want = np.argsort(-brute, kind="stable")[:10]
    assert ids.tolist() == want.tolist()
    np.testing.assert_allclose(scores, brute[want], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_kernel_scan_of_large_ranges_equals_rotate_everything_with_ties(scale):
    """Ranges above SMALL_RANGE rows go through usearch's float16 kernel: same ids (lowest id wins
    exact ties between duplicate rows), same float32 scores as the brute-force reference."""
    from qrag_cli.search import positions

    rng = np.random.default_rng(11)
    n = 30_000
    vectors = rng.standard_normal((n, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[rng.integers(0, n, 400)] = vectors[17]  # 400 copies of one row: exact ties within ranges
    vectors = (vectors * scale).astype(np.float16)
    assert n / 19 > positions.SMALL_RANGE  # every range is scanned by the kernel
    for retrieved in ([], [17], [17, 9000, 9001, 29_999]):
        for k in (1, 5, 40):
            state = rng.standard_normal(64).astype(np.float32)
            if k == 5:
                state = vectors[17].astype(np.float32)  # the duplicated row wins in many ranges at once
            ids, scores = exact_rotary_search(vectors, state, retrieved, k)
            brute = rotate(vectors.astype(np.float32), chunk_positions(n, retrieved)) @ state
            brute[retrieved] = -np.inf
            want = np.lexsort((np.arange(n), -brute))[:k]
            assert ids.tolist() == want.tolist()
            np.testing.assert_allclose(scores, brute[want], rtol=1e-5, atol=1e-5 * scale)


def test_greedy_never_picks_a_retrieved_chunk():
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((50, 8)).astype(np.float16)
    state = vectors[7].astype(np.float32) * 10  # chunk 7 would win if it were allowed
    retrieved: list[int] = [7]
    for _ in range(49):
        ids, _ = exact_rotary_search(vectors, state, retrieved, 1)
        assert ids[0] not in retrieved
        retrieved.append(int(ids[0]))
    assert exact_rotary_search(vectors, state, retrieved, 1)[0].size == 0


@pytest.mark.parametrize("positional", ["exact", "approx"])
def test_the_loop_applies_positions_of_a_position_trained_model(tmp_path, tiny_model, positional):
    """A model whose pooling declares integer positions: each step's choice is the brute-force argmax of
    <s, R(p) a> over unretrieved chunks, with the state re-embedded from the chunks sorted by position."""
    import json
    import shutil

    from qrag_cli.api import Question, QuerySession
    from qrag_cli.build import build_index
    from qrag_cli.settings import AnnSettings, IndexSettings, QuerySettings

    model = tmp_path / "pos-model"
    shutil.copytree(tiny_model, model)
    (model / "qrag_pooling.json").write_text(json.dumps({"normalize": False, "scale": 4.0, "positions": "int"}))
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(f"Person {i} walked to the room number {i % 7}." for i in range(60)))
    ann = _exact() if positional == "exact" else AnnSettings()  # approx: usearch candidates
    build_index(IndexSettings(corpus=str(corpus), out=str(tmp_path / "ix"), model=str(model), ann=ann))
    session = QuerySession(QuerySettings(index=str(tmp_path / "ix"), steps=4, positional=positional))
    assert session.retriever.positional == positional
    [result] = session.ask([Question("1", "Where did person 3 walk?")])
    vectors = session.index.vectors.astype(np.float32)
    retrieved: list[int] = []
    for step in result["retrieved"]:
        chunks = [session.index.chunk(i).text for i in sorted(retrieved)]
        s = session.encoder.encode_states([["Where did person 3 walk?", *chunks]])[0]
        brute = rotate(vectors, chunk_positions(len(vectors), retrieved)) @ s
        brute[retrieved] = -np.inf
        assert step["chunk"] == int(np.argmax(brute))
        assert step["score"] == pytest.approx(float(brute.max()), rel=1e-3, abs=1e-4)
        retrieved.append(step["chunk"])


def _all_candidates(vectors):
    return ExactBackend(vectors).candidates


@pytest.mark.parametrize("integer", [True, False])
def test_approximate_mode_with_complete_candidates_equals_exact(integer):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, 64)).astype(np.float16)
    for retrieved in ([], [5], [5, 6, 1500], [0, 999, 1999]):
        state = rng.standard_normal(64).astype(np.float32)
        want = exact_rotary_search(vectors, state, retrieved, 5, integer=integer)
        got = approx_rotary_search(vectors, state, retrieved, 5, _all_candidates(vectors), integer=integer,
                                   fetch=2000)
        assert got[0].tolist() == want[0].tolist()
        np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-4)


def test_approximate_mode_scores_small_ranges_exactly_and_never_returns_retrieved():
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((1000, 32)).astype(np.float16)
    state = rng.standard_normal(32).astype(np.float32)
    nothing = lambda qs, fetch: np.full((len(qs), fetch), -1, dtype=np.int64)  # noqa: E731
    retrieved = [500, 510]  # the segment 501..509 is made of small ranges
    small = [i for a, b, _ in position_ranges(1000, retrieved) if b - a <= 16 for i in range(a, b)
             if i not in retrieved]
    assert set(range(501, 510)) <= set(small) and len(small) < 20
    ids, scores = approx_rotary_search(vectors, state, retrieved, 50, nothing, exact_rows=16)
    assert sorted(ids.tolist()) == small  # the ANN found nothing: only the small ranges were scored
    p = chunk_positions(1000, retrieved)
    brute = rotate(vectors.astype(np.float32), p) @ state
    np.testing.assert_allclose(scores, brute[ids], rtol=1e-4, atol=1e-4)
    ids, _ = approx_rotary_search(vectors, state, retrieved, 1000, _all_candidates(vectors), fetch=1000)
    assert len(ids) == 998 and not set(ids.tolist()) & set(retrieved)


def test_approximate_mode_on_an_hnsw_index_agrees_with_exact(tmp_path, sentence_vectors):
    """Recall of the approximate mode against the exact reference on real sentence vectors."""
    from qrag_cli.search.usearch_backend import UsearchBackend, build_usearch
    from qrag_cli.settings import AnnSettings

    vectors = sentence_vectors
    build_usearch(vectors, tmp_path, AnnSettings(), seed=0, threads=1)
    backend = UsearchBackend.open(tmp_path, vectors, AnnSettings(), threads=1)
    rng = np.random.default_rng(5)
    agree = total = 0
    for _ in range(40):
        state = vectors[rng.integers(len(vectors))].astype(np.float32)
        retrieved: list[int] = []
        for _step in range(3):
            want = exact_rotary_search(vectors, state, retrieved, 1)[0]
            got = approx_rotary_search(vectors, state, retrieved, 1, backend.candidates)[0]
            agree += int(got[0] == want[0])
            total += 1
            retrieved.append(int(want[0]))
    assert agree / total >= 0.95, f"approximate agreed on {agree}/{total} steps"


def _exact():
    from qrag_cli.settings import AnnSettings

    return AnnSettings(backend="exact")


def test_query_refuses_an_unknown_positional_mode(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from qrag_cli.build import build_index
    from qrag_cli.cli import app
    from qrag_cli.settings import IndexSettings

    corpus = tmp_path / "c.txt"
    corpus.write_text("Mary went to the garden. John went to the office.")
    build_index(IndexSettings(corpus=str(corpus), out=str(tmp_path / "ix"), model=str(tiny_model)))
    res = CliRunner().invoke(app, ["query", "--index", str(tmp_path / "ix"), "--positional", "fast", "q?"])
    assert res.exit_code == 2 and "unknown positional search 'fast'" in res.stderr
    res = CliRunner().invoke(app, ["query", "--index", str(tmp_path / "ix"), "--candidates", "0", "q?"])
    assert res.exit_code == 2 and "--candidates" in res.stderr
