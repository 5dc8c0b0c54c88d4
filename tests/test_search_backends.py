"""Tests of the search backends (exact, hnswlib, usearch): results, exclusion, padding, errors, recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qrag_cli.errors import CorruptIndexError, InputError
from qrag_cli.search.base import SearchBackend
from qrag_cli.search.exact import ExactBackend
from qrag_cli.search.registry import BACKENDS, build_ann, open_backend
from qrag_cli.settings import AnnSettings

N, D = 600, 24
SETTINGS = AnnSettings(m=16, ef_construction=100, ef=128)


def _save_vectors(folder: Path, vectors: np.ndarray) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "vectors.npy", vectors.astype(np.float16))
    return np.load(folder / "vectors.npy", mmap_mode="r")


def _brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k: float32 scores, descending, lower id first on ties."""
    scores = queries.astype(np.float32) @ np.asarray(vectors, dtype=np.float32).T
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=-1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module")
def random_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A folder with random float16 vectors and every backend built (single-threaded)."""
    folder = tmp_path_factory.mktemp("rand")
    rng = np.random.default_rng(0)
    vectors = _save_vectors(folder, rng.standard_normal((N, D)))
    for name in BACKENDS:
        build_ann(name, vectors, folder, SETTINGS, seed=0, threads=1)
    return folder, vectors


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((7, D)).astype(np.float32)


@pytest.mark.parametrize("name", BACKENDS)
def test_shapes_order_and_exact_scores(random_index: tuple[Path, np.ndarray], queries: np.ndarray, name: str) -> None:
    folder, vectors = random_index
    backend = open_backend(name, folder, vectors, SETTINGS)
    assert isinstance(backend, SearchBackend) and backend.name == name
    ids, scores = backend.search(queries, 10)
    assert ids.shape == (7, 10) and ids.dtype == np.int64
    assert scores.shape == (7, 10) and scores.dtype == np.float32
    assert np.all(ids >= 0) and np.all(ids < N)
    assert np.all(np.diff(scores, axis=1) <= 0)
    expect = np.einsum("qd,qkd->qk", queries, np.asarray(vectors, dtype=np.float32)[ids])
    np.testing.assert_allclose(scores, expect, rtol=1e-5, atol=1e-5)
    ref_ids, _ = _brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), ref_ids.tolist())])
    assert recall >= (1.0 if name == "exact" else 0.9)


@pytest.mark.parametrize("name", BACKENDS)
def test_single_query(random_index: tuple[Path, np.ndarray], queries: np.ndarray, name: str) -> None:
    folder, vectors = random_index
    backend = open_backend(name, folder, vectors, SETTINGS)
    batch_ids, batch_scores = backend.search(queries, 5)
    for i in range(len(queries)):
        ids, scores = backend.search(queries[i : i + 1], 5)
        assert ids.shape == (1, 5) and scores.shape == (1, 5)
        assert ids[0].tolist() == batch_ids[i].tolist()
        # a single query's scores are bit-identical to the exact backend's for the same ids
        ref_ids, ref_scores = ExactBackend(vectors).search(queries[i : i + 1], 5)
        same = ids == ref_ids
        np.testing.assert_array_equal(scores[same], ref_scores[same])
    ids, _ = backend.search(queries[:1], N + 3)
    assert sorted(ids[0, :N].tolist()) == list(range(N)) and ids[0, N:].tolist() == [-1] * 3


def test_exact_matches_brute_force(random_index: tuple[Path, np.ndarray], queries: np.ndarray) -> None:
    _, vectors = random_index
    ref_ids, ref_scores = _brute_force(vectors, queries, 25)
    for backend in (ExactBackend(vectors), ExactBackend(vectors, block_rows=64, cache_limit_bytes=0)):
        ids, scores = backend.search(queries, 25)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_exact_ties_lower_id_first() -> None:
    base = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float16)
    vectors = np.concatenate([base, base, base, base])  # row i ties with i+5, i+10, i+15
    query = base[3:4].astype(np.float32)
    for backend in (ExactBackend(vectors), ExactBackend(vectors, block_rows=3, cache_limit_bytes=0)):
        ids, _ = backend.search(query, 4)
        assert ids.tolist() == [[3, 8, 13, 18]]
        ids, _ = backend.search(query, 2, exclude=[{3}])
        assert ids.tolist() == [[8, 13]]


@pytest.mark.parametrize("name", BACKENDS)
def test_exclusion(random_index: tuple[Path, np.ndarray], queries: np.ndarray, name: str) -> None:
    folder, vectors = random_index
    backend = open_backend(name, folder, vectors, SETTINGS)
    first, _ = backend.search(queries, 5)
    exclude = [set(row[:3].tolist()) for row in first]
    exclude[0] = set()  # an empty set, and out-of-range ids, are allowed
    exclude[1] |= {-5, N + 10}
    ids, scores = backend.search(queries, 5, exclude=exclude)
    for row, ex in zip(ids.tolist(), exclude):
        assert not set(row) & ex and -1 not in row
    assert ids[0].tolist() == first[0].tolist()
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", BACKENDS)
def test_everything_excluded_pads(random_index: tuple[Path, np.ndarray], queries: np.ndarray, name: str) -> None:
    folder, vectors = random_index
    backend = open_backend(name, folder, vectors, SETTINGS)
    everything = np.arange(N)
    ids, scores = backend.search(queries[:2], 4, exclude=[everything, everything[:-2]])
    assert ids[0].tolist() == [-1] * 4 and np.all(scores[0] == -np.inf)
    assert sorted(ids[1, :2].tolist()) == [N - 2, N - 1] and ids[1, 2:].tolist() == [-1, -1]
    assert np.all(np.isfinite(scores[1, :2])) and np.all(scores[1, 2:] == -np.inf)


@pytest.mark.parametrize("name", BACKENDS)
def test_k_larger_than_n(tmp_path: Path, name: str) -> None:
    vectors = _save_vectors(tmp_path, np.random.default_rng(3).standard_normal((12, 6)))
    build_ann(name, vectors, tmp_path, SETTINGS, seed=0, threads=1)
    backend = open_backend(name, tmp_path, vectors, SETTINGS)
    query = np.random.default_rng(4).standard_normal((2, 6)).astype(np.float32)
    ids, scores = backend.search(query, 20, exclude=[[0], []])
    assert ids.shape == (2, 20)
    assert sorted(ids[0, :11].tolist()) == list(range(1, 12)) and np.all(ids[0, 11:] == -1)
    assert sorted(ids[1, :12].tolist()) == list(range(12)) and np.all(ids[1, 12:] == -1)
    assert np.all(scores[:, 12:] == -np.inf)
    ref_ids, _ = _brute_force(vectors, query, 12)
    assert ids[1, :12].tolist() == ref_ids[1].tolist()


@pytest.mark.parametrize("name", BACKENDS)
def test_bad_queries(random_index: tuple[Path, np.ndarray], name: str) -> None:
    folder, vectors = random_index
    backend = open_backend(name, folder, vectors, SETTINGS)
    with pytest.raises(InputError):
        backend.search(np.zeros((1, D + 1), np.float32), 3)
    with pytest.raises(InputError):
        backend.search(np.zeros((1, D), np.float32), 0)
    with pytest.raises(InputError):
        backend.search(np.zeros((2, D), np.float32), 3, exclude=[[1]])


def test_unknown_backend(random_index: tuple[Path, np.ndarray]) -> None:
    folder, vectors = random_index
    with pytest.raises(InputError, match="exact, hnswlib, usearch"):
        open_backend("faiss", folder, vectors, SETTINGS)
    with pytest.raises(InputError, match="exact, hnswlib, usearch"):
        build_ann("faiss", vectors, folder, SETTINGS, seed=0, threads=1)


@pytest.mark.parametrize("name", ["hnswlib", "usearch"])
def test_build_is_deterministic_single_threaded(tmp_path: Path, name: str) -> None:
    vectors = _save_vectors(tmp_path, np.random.default_rng(5).standard_normal((400, 16)))
    calls: list[tuple[int, int]] = []
    blobs = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        out.mkdir()
        info = build_ann(name, vectors, out, SETTINGS, seed=7, threads=1, progress=lambda a, b: calls.append((a, b)))
        assert info["deterministic"] and info["files"] and info["library_version"]
        blobs.append((out / info["files"][0]).read_bytes())
        assert info["bytes"][info["files"][0]] == len(blobs[-1])
        assert not list(out.glob("*.tmp"))
    assert blobs[0] == blobs[1]
    assert calls[-1] == (400, 400)


FILES = {"hnswlib": "hnsw.bin", "usearch": "usearch.index"}
MODULES = {"hnswlib": "hnsw", "usearch": "usearch_backend"}


@pytest.mark.parametrize("name", ["hnswlib", "usearch"])
@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "garbage", "other_vectors", "other_dim"])
def test_missing_or_corrupt_file(random_index: tuple[Path, np.ndarray], tmp_path: Path, name: str, damage: str) -> None:
    src, vectors = random_index
    data = (src / FILES[name]).read_bytes()
    path = tmp_path / FILES[name]
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(6).bytes(len(data)))
    elif damage == "other_vectors":
        path.write_bytes(data)
        vectors = np.asarray(vectors[:-1])  # the index holds one vector more than these
    elif damage == "other_dim":
        path.write_bytes(data)
        vectors = np.zeros((N, D + 8), dtype=np.float16)  # same count, other dimension
    with pytest.raises(CorruptIndexError) as err:
        open_backend(name, tmp_path, vectors, SETTINGS)
    message = str(err.value)
    assert FILES[name] in message and "--overwrite" in message


@pytest.mark.parametrize("name", ["hnswlib", "usearch"])
def test_extending_a_graph_adds_only_the_new_rows_and_keeps_recall(random_index, queries, tmp_path, name,
                                                                   monkeypatch) -> None:
    """--append's path: a graph over the first 400 rows, extended to 600, searches all 600 like exact."""
    import importlib

    monkeypatch.setattr(importlib.import_module(f"qrag_cli.search.{MODULES[name]}"), "BLOCK_ROWS", 100)
    folder, vectors = random_index
    first = tmp_path / "first"
    build_ann(name, _save_vectors(first, np.asarray(vectors[:400])), first, SETTINGS, seed=0, threads=1)
    grown = tmp_path / "grown"
    added = []
    info = build_ann(name, _save_vectors(grown, np.asarray(vectors)), grown, SETTINGS, seed=0, threads=1,
                     progress=lambda done, total: added.append(done), extend=first / FILES[name])
    assert info["count"] == N and added == [500, 600]  # blocks of 100 rows from row 400 on
    ids, _ = open_backend(name, grown, vectors, SETTINGS).search(queries, 10)
    ref, _ = _brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), ref.tolist())])
    assert recall >= 0.9 and ids.max() >= 400  # new rows are found
    with pytest.raises(CorruptIndexError):  # another dimension: refused, nothing half-built
        build_ann(name, _save_vectors(tmp_path / "other", np.zeros((N, D + 8))), tmp_path / "other", SETTINGS,
                  seed=0, threads=1, extend=first / FILES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hnswlib", "usearch"])
def test_recall_on_sentence_vectors(sentence_vectors: np.ndarray, tmp_path: Path, name: str) -> None:
    """recall@10 >= 0.95 against exact on real MiniLM vectors, 200 in-set queries excluding themselves."""
    vectors = _save_vectors(tmp_path, sentence_vectors)
    n = vectors.shape[0]
    build_ann(name, vectors, tmp_path, AnnSettings(), seed=0, threads=2)
    qids = np.linspace(0, n - 1, 200).astype(np.int64)
    queries = np.asarray(vectors[qids], dtype=np.float32)
    exclude = [{int(i)} for i in qids]
    ref, ref_scores = ExactBackend(vectors).search(queries, 10, exclude=exclude)
    ids, scores = open_backend(name, tmp_path, vectors, AnnSettings()).search(queries, 10, exclude=exclude)
    assert not np.any(ids == qids[:, None])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), ref.tolist())])
    assert recall >= 0.95, f"{name} recall@10 = {recall:.3f}"
    # where an id is found by both, the scores are the same exact inner products
    both = ids == ref
    np.testing.assert_allclose(scores[both], ref_scores[both], rtol=1e-5, atol=1e-6)
