"""The on-disk store: streaming writers, the memory-mapped reader, manifest checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qrag_cli.corpus.types import Chunk
from qrag_cli.errors import CorruptIndexError, IndexNotFoundError, ModelMismatchError
from qrag_cli.store.manifest import check_model, new_manifest, read_manifest, write_json_atomic
from qrag_cli.store.reader import IndexReader
from qrag_cli.store.writer import NPY_HEADER_BYTES, IndexWriter, npy_header


def test_npy_header_is_fixed_length_and_loadable(tmp_path):
    for rows in (0, 7, 10**9):
        assert len(npy_header(rows, 384)) == NPY_HEADER_BYTES
    data = np.arange(12, dtype="<f2").reshape(3, 4)
    p = tmp_path / "v.npy"
    p.write_bytes(npy_header(3, 4) + data.tobytes())
    np.testing.assert_array_equal(np.load(p, mmap_mode="r"), data)


def _write_index(folder, n=20_000, dim=8, rows_per_batch=4096):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    folder.mkdir()
    w = IndexWriter(folder, dim, chunks_name="chunks.arrow", vectors_name="vectors.npy", rows_per_batch=rows_per_batch)
    chunks = [Chunk(f"d{i // 1000}", i, 10 * i, 10 * i + 5, f"chunk number {i}") for i in range(n)]
    for a in range(0, n, 777):  # uneven groups: batches and groups do not line up
        w.add(chunks[a : a + 777], vecs[a : a + 777], [3] * len(chunks[a : a + 777]))
    files = w.close()
    manifest = new_manifest(
        seed=0, model={"name": "m", "checksum": "abc", "dim": dim, "pooling": {"kind": "mean"}},
        corpus={"name": "c", "chunks": n, "documents": w.documents, "tokens": w.tokens},
        chunker={}, ann={"backend": "exact"}, files=files,
        store={"chunks": "chunks.arrow", "vectors": "vectors.npy"},
    )
    write_json_atomic(folder / "manifest.json", manifest)
    return vecs, w


def test_writer_reader_roundtrip(tmp_path):
    vecs, w = _write_index(tmp_path / "ix")
    assert (w.rows, w.documents, w.tokens) == (20_000, 20, 60_000)
    r = IndexReader(tmp_path / "ix")
    assert len(r) == 20_000 and r.dim == 8
    np.testing.assert_allclose(np.asarray(r.vectors, dtype=np.float32), vecs, atol=2e-3, rtol=1e-3)
    for pos in (0, 4095, 4096, 12_345, 19_999):
        c = r.chunk(pos)
        assert (c.position, c.doc, c.start, c.end, c.text) == (pos, f"d{pos // 1000}", 10 * pos, 10 * pos + 5,
                                                                 f"chunk number {pos}")
    with pytest.raises(IndexError):
        r.chunk(20_000)


def test_truncated_vectors_are_detected(tmp_path):
    _write_index(tmp_path / "ix", n=100)
    p = tmp_path / "ix" / "vectors.npy"
    p.write_bytes(p.read_bytes()[:-16])
    with pytest.raises(CorruptIndexError, match="truncated or edited"):
        IndexReader(tmp_path / "ix")


def test_missing_or_partial_index(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no index at"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "partial").mkdir()
    with pytest.raises(IndexNotFoundError, match="is not a qrag index") as info:
        read_manifest(tmp_path / "partial")
    assert "--overwrite" not in str(info.value)  # it would replace a folder that is not an index


def test_other_format_version_is_refused(tmp_path):
    _write_index(tmp_path / "ix", n=10)
    m = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptIndexError, match="format version 99"):
        IndexReader(tmp_path / "ix")


def test_check_model():
    manifest = {"model": {"name": "a", "checksum": "x", "dim": 4, "pooling": {"kind": "mean"}}}
    check_model(manifest, {"name": "a", "checksum": "x", "dim": 4, "pooling": {"kind": "mean"}}, "ix")
    with pytest.raises(ModelMismatchError, match="dimension 8"):
        check_model(manifest, {"name": "b", "checksum": "x", "dim": 8, "pooling": {"kind": "mean"}}, "ix")
    with pytest.raises(ModelMismatchError, match="not the model the index"):
        check_model(manifest, {"name": "b", "checksum": "y", "dim": 4, "pooling": {"kind": "mean"}}, "ix")
    with pytest.raises(ModelMismatchError, match="pools as"):
        check_model(manifest, {"name": "a", "checksum": "x", "dim": 4, "pooling": {"kind": "max"}}, "ix")
