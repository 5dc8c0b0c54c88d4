"""The compact (int8) copy as an index file: written by the build, checksummed, made on first need."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.search.compact import DATA, META, quantize
from qrag_cli.search.positions import chunk_positions, rotate


def _positional_model(tmp_path, tiny_model):
    model = tmp_path / "pos-model"
    shutil.copytree(tiny_model, model)
    (model / "qrag_pooling.json").write_text(json.dumps({"normalize": False, "scale": 4.0, "positions": "int"}))
    return model


def _build(tmp_path, model, name="ix"):
    from qrag_cli.build import build_index
    from qrag_cli.settings import AnnSettings, IndexSettings

    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(f"Person {i} walked to the room number {i % 7}." for i in range(400)))
    build_index(IndexSettings(corpus=str(corpus), out=str(tmp_path / name), model=str(model),
                              ann=AnnSettings(backend="exact")))
    return tmp_path / name


def gen(folder):
    """The folder of the index's current generation, where its files are."""
    from qrag_cli.store.generations import current_folder

    return current_folder(folder)


def _strip_compact(folder):
    """Make `folder` look like an index written before the compact copy existed."""
    manifest = json.loads((gen(folder) / "manifest.json").read_text())
    del manifest["compact"]
    for name in (DATA, META):
        del manifest["files"][name]
        (gen(folder) / name).unlink()
    (gen(folder) / "manifest.json").write_text(json.dumps(manifest))


def _ask(folder, question="Where did person 3 walk?"):
    from qrag_cli.api import Question, QuerySession
    from qrag_cli.settings import QuerySettings

    session = QuerySession(QuerySettings(index=str(folder), steps=4, positional="exact"))
    [result] = session.ask([Question("1", question)])
    return session, [s["chunk"] for s in result["retrieved"]]


def _brute_trajectory(session, question, steps):
    vectors = session.index.vectors.astype(np.float32)
    retrieved: list[int] = []
    for _ in range(steps):
        chunks = [session.index.chunk(i).text for i in sorted(retrieved)]
        s = session.encoder.encode_states([[question, *chunks]])[0]
        brute = rotate(vectors, chunk_positions(len(vectors), retrieved)) @ s
        brute[retrieved] = -np.inf
        retrieved.append(int(np.lexsort((np.arange(len(brute)), -brute))[0]))
    return retrieved


def test_the_build_writes_a_checksummed_compact_copy_and_the_query_uses_it(tmp_path, tiny_model):
    from qrag_cli.store.reader import IndexReader

    folder = _build(tmp_path, _positional_model(tmp_path, tiny_model))
    manifest = json.loads((gen(folder) / "manifest.json").read_text())
    assert manifest["compact"]["data"] == DATA and manifest["compact"]["format_version"] == 1
    assert {DATA, META} <= set(manifest["files"]) and "xxh3_128" in manifest["files"][DATA]
    reader = IndexReader(folder)
    assert reader.compact is not None
    np.testing.assert_array_equal(np.asarray(reader.compact.data), quantize(reader.vectors).data)
    session, got = _ask(folder)
    assert session.retriever.compact is not None
    assert got == _brute_trajectory(session, "Where did person 3 walk?", 4)


@pytest.mark.parametrize("damage", ["data", "meta"])
def test_a_damaged_compact_file_is_refused_at_open_with_exit_3(tmp_path, tiny_model, damage):
    from qrag_cli.cli import app

    folder = _build(tmp_path, _positional_model(tmp_path, tiny_model))
    path = gen(folder) / (DATA if damage == "data" else META)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    res = CliRunner().invoke(app, ["query", "--index", str(folder), "--positional", "exact", "q?"])
    assert res.exit_code == 3, res.output
    assert path.name in res.stderr


def test_an_edited_but_rechecksummed_meta_file_is_still_refused(tmp_path, tiny_model):
    """A compact copy whose description does not fit the vectors (dimension) fails at open, exit 3."""
    from qrag_cli.errors import CorruptIndexError
    from qrag_cli.store.checksums import file_digest
    from qrag_cli.store.reader import IndexReader

    folder = _build(tmp_path, _positional_model(tmp_path, tiny_model))
    meta = json.loads((gen(folder) / META).read_text())
    meta["scale"] = meta["scale"][:-1]
    (gen(folder) / META).write_text(json.dumps(meta))
    manifest = json.loads((gen(folder) / "manifest.json").read_text())
    manifest["files"][META] = file_digest(gen(folder) / META)
    (gen(folder) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError, match=META) as err:
        IndexReader(folder)
    assert err.value.exit_code == 3


def test_an_index_without_the_copy_answers_and_gets_one_on_first_need(tmp_path, tiny_model):
    from qrag_cli.store.reader import IndexReader

    folder = _build(tmp_path, _positional_model(tmp_path, tiny_model))
    _, with_copy = _ask(folder)
    _strip_compact(folder)
    assert IndexReader(folder).compact is None
    session, got = _ask(folder)
    assert got == with_copy
    assert session.retriever.compact is not None
    manifest = json.loads((gen(folder) / "manifest.json").read_text())
    assert manifest["compact"]["data"] == DATA and (gen(folder) / DATA).is_file()
    assert IndexReader(folder).compact is not None  # checksums recorded: the next open verifies and loads it


def test_an_index_that_cannot_be_written_answers_with_the_float16_scan(tmp_path, tiny_model):
    from qrag_cli.store.lock import FolderLock

    folder = _build(tmp_path, _positional_model(tmp_path, tiny_model))
    _, with_copy = _ask(folder)
    _strip_compact(folder)
    with FolderLock(folder):  # another writer holds the index
        session, got = _ask(folder)
    assert session.retriever.compact is None
    assert got == with_copy
    assert "compact" not in json.loads((gen(folder) / "manifest.json").read_text())


def test_auto_is_the_exact_mode_even_on_a_large_index_with_an_ann_backend():
    """The approximate mode is opt-in: 'auto' on 2M chunks with an HNSW backend scans exactly."""
    from types import SimpleNamespace

    from qrag_cli.policy.loop import MultiStepRetriever

    encoder = SimpleNamespace(spec=SimpleNamespace(name="m", pooling=SimpleNamespace(positions="int")))
    big = type("Big", (), {"__len__": lambda self: 2_000_000, "vectors": np.zeros((1, 4), np.float16)})()
    retriever = MultiStepRetriever(encoder, big, SimpleNamespace(name="usearch"), positional="auto")
    assert retriever.positional == "exact"
    assert MultiStepRetriever(encoder, big, SimpleNamespace(name="usearch"), positional="approx").positional == "approx"
