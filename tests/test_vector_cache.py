"""The on-disk sentence-vector cache: the vectors of direct embedding, nothing embedded twice (also
across `qrag bench` runs on an inline-context file), and a writer that fails half-way leaves the
cache readable and consistent."""

from __future__ import annotations

import numpy as np
import pytest

from qrag_cli.embed import vector_cache as vc
from qrag_cli.embed.vector_cache import VectorCache, read_shard
from qrag_cli.settings import BenchSettings
from tests.test_bench import HEADER, Counting, tiny_samples, write_lines

MODEL = {"checksum": "fake", "pooling": {"kind": "mean"}}
DIM = 8


def fake_encode(texts: list[str]) -> np.ndarray:
    """Deterministic vectors from the text (a stand-in encoder for the storage tests)."""
    calls.append(list(texts))
    return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(DIM) for t in texts]).astype(np.float32)


calls: list[list[str]] = []


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(DIM) for t in texts]).astype(np.float16)


def sentences(prefix: str, n: int) -> list[str]:
    return [f"{prefix} sentence number {i}." for i in range(n)]


@pytest.fixture()
def tiny_encoder(tiny_model):
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model

    return load_encoder(resolve_model(str(tiny_model)), threads=1)


def test_cached_vectors_equal_direct_embedding(tmp_path, tiny_encoder):
    from qrag_cli.bench.contexts import model_key

    texts = ["Mary moved to the garden.", "The sky is blue.", "Mary moved to the garden.", "Here we go."]
    direct = tiny_encoder.encode_texts(texts)[0].astype(np.float16)
    enc = Counting(tiny_encoder)
    cache = VectorCache(tmp_path, model_key(tiny_encoder), tiny_encoder.dim)
    got, new = cache.get(texts, lambda xs: enc.encode_texts(xs)[0])
    assert new == 3 and enc.texts == 3  # the repeated sentence is embedded once
    assert np.array_equal(got, direct)
    cache.flush()
    again = VectorCache(tmp_path, model_key(tiny_encoder), tiny_encoder.dim)  # another process, later
    got2, new2 = again.get(texts, lambda xs: enc.encode_texts(xs)[0])
    assert new2 == 0 and enc.texts == 3 and again.hits == 4
    assert np.array_equal(got2, direct)
    other = VectorCache(tmp_path, {**model_key(tiny_encoder), "checksum": "other"}, tiny_encoder.dim)
    assert len(other) == 0  # another model never sees these vectors


def test_failed_writer_leaves_the_cache_readable_and_consistent(tmp_path, monkeypatch):
    first, second = sentences("first", 50), sentences("second", 5000)
    cache = VectorCache(tmp_path, MODEL, DIM)
    cache.get(first, fake_encode)
    cache.flush()
    monkeypatch.setattr(vc, "WRITE_BLOCK_ROWS", 1000)
    writes = []

    def dies_half_way(fh, data):
        writes.append(len(data))
        if len(writes) == 4:  # header, keys and one block of vectors written: then the process "dies"
            raise KeyboardInterrupt("killed")
        fh.write(data)

    monkeypatch.setattr(vc, "_write_block", dies_half_way)
    cache.get(second, fake_encode)
    with pytest.raises(KeyboardInterrupt):
        cache.flush()
    monkeypatch.setattr(vc, "_write_block", lambda fh, data: fh.write(data))
    # leftovers of writers killed harder (no cleanup): a temporary file and a truncated shard
    (tmp_path / cache.folder.name / "shard-dead.vec.tmp-1-abc").write_bytes(b"QRAGVEC1" + bytes(100))
    good = next(cache.folder.glob("shard-*.vec"))
    (cache.folder / "shard-truncated.vec").write_bytes(good.read_bytes()[:-7])

    reopened = VectorCache(tmp_path, MODEL, DIM)
    assert len(reopened) == len(first)  # every complete entry, nothing of the failed write
    calls.clear()
    got, new = reopened.get(first, fake_encode)
    assert new == 0 and not calls and np.array_equal(got, expected(first))
    assert reopened.lookup(second[0]) is None
    got, new = reopened.get(second[:10], fake_encode)  # the lost ones are embedded again, and kept
    assert new == 10 and np.array_equal(got, expected(second[:10]))
    reopened.flush()
    assert len(VectorCache(tmp_path, MODEL, DIM)) == len(first) + 10


def test_shards_are_merged_when_there_are_many(tmp_path, monkeypatch):
    monkeypatch.setattr(vc, "MAX_SHARDS", 3)
    cache = VectorCache(tmp_path, MODEL, DIM)
    for i in range(4):
        cache.get(sentences(f"batch{i}", 5) + sentences("shared", 2), fake_encode)
        cache.flush()
    shards = list(cache.folder.glob("shard-*.vec"))
    assert len(shards) == 1 and read_shard(shards[0], DIM)[0].shape == (22, 16)  # 4 x 5 + 2, no duplicates
    reopened = VectorCache(tmp_path, MODEL, DIM)
    texts = [t for i in range(4) for t in sentences(f"batch{i}", 5)] + sentences("shared", 2)
    got, new = reopened.get(texts, fake_encode)
    assert new == 0 and np.array_equal(got, expected(texts))


def test_second_bench_run_on_an_inline_file_embeds_nothing(tmp_path, tiny_model, monkeypatch):
    import qrag_cli.embed.encoder as encoder_mod
    from qrag_cli.bench.runner import run_bench

    made: list[Counting] = []
    real = encoder_mod.load_encoder

    def counting_load(*a, **k):
        made.append(Counting(real(*a, **k)))
        return made[-1]

    monkeypatch.setattr(encoder_mod, "load_encoder", counting_load)
    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    settings = BenchSettings(data=str(data), model=str(tiny_model), trained="", methods="dense-topk,multistep-base",
                             threads=1, cache=str(tmp_path / "cache"))
    first = run_bench(settings)
    unique = len({t for s in tiny_samples() for t in s["context"]})
    assert made[0].texts == unique and first["sentence_cache"][0]["embedded"] == unique
    second = run_bench(settings)
    assert made[1].texts == 0 and made[1].calls == 0  # no context sentence embedded again
    assert second["sentence_cache"][0]["embedded"] == 0 and second["sentence_cache"][0]["from_disk"] == unique
    assert all(r["sentences_embedded"] == 0 for r in second["samples"])
    assert [r["coverage"] for r in second["results"]] == [r["coverage"] for r in first["results"]]
