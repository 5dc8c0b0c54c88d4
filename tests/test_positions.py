"""Relative rotary positions and exact range-by-range scoring (method.md, issue hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest

from qrag_cli.search.positions import chunk_positions, exact_rotary_search, position_ranges, rotate


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


def test_the_loop_applies_positions_of_a_position_trained_model(tmp_path, tiny_model):
    """A model whose pooling declares integer positions: each step's choice is the brute-force argmax of
    <s, R(p) a> over unretrieved chunks, with the state re-embedded from the chunks sorted by position."""
    import json
    import shutil

    from qrag_cli.api import Question, QuerySession
    from qrag_cli.build import build_index
    from qrag_cli.settings import IndexSettings, QuerySettings

    model = tmp_path / "pos-model"
    shutil.copytree(tiny_model, model)
    (model / "qrag_pooling.json").write_text(json.dumps({"normalize": False, "scale": 4.0, "positions": "int"}))
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(f"Person {i} walked to the room number {i % 7}." for i in range(60)))
    build_index(IndexSettings(corpus=str(corpus), out=str(tmp_path / "ix"), model=str(model), ann=_exact()))
    session = QuerySession(QuerySettings(index=str(tmp_path / "ix"), steps=4))
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


def _exact():
    from qrag_cli.settings import AnnSettings

    return AnnSettings(backend="exact")
