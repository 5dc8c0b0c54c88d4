"""Hard negatives (data/negatives.py): the nearest-candidate union, the mixing, the samples they give."""

from __future__ import annotations

import random

import numpy as np
import pytest

from qrag_cli.data import negatives
from qrag_cli.data.generate import generate
from qrag_cli.errors import InputError
from qrag_cli.rl.tasks import make_samples
from qrag_cli.settings import DataSettings, TrainSettings
from tests.conftest import embed_minilm, shared_dir

needs_novels = pytest.mark.skipif(not (shared_dir() / "data" / "gutenberg").is_dir(),
                                  reason="shared Gutenberg novels absent (set QRAG_SHARED)")


def test_nearest_union_by_hand():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    cands = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [-1.0, 0.0]], dtype=np.float32)
    # query 0 scores .9 .1 .5 -1 -> [0, 2]; query 1 scores .1 .9 .5 0 -> [1, 2]; union in first appearance
    assert negatives.nearest_union(queries, cands, 2) == [0, 2, 1]
    assert negatives.nearest_union(queries, cands, 9) == [0, 2, 1, 3]  # k capped at the candidates


def test_mix_in_replaces_the_fraction_with_distinct_pool_sentences():
    bg = [f"b{i}" for i in range(10)]
    pool = [f"p{i}" for i in range(5)]
    out = negatives.mix_in(bg, pool, 0.3, random.Random(0))
    changed = [i for i, (a, b) in enumerate(zip(bg, out)) if a != b]
    assert len(out) == 10 and len(changed) == 3
    assert len({out[i] for i in changed}) == 3 and all(out[i] in pool for i in changed)
    assert negatives.mix_in(bg, pool, 0.0, random.Random(0)) == bg
    assert sum(s in pool for s in negatives.mix_in(bg, pool, 1.0, random.Random(0))) == 5  # capped at the pool
    with pytest.raises(InputError, match="fraction"):
        negatives.mix_in(bg, pool, 1.5, random.Random(0))


@needs_novels
def test_training_samples_keep_their_facts_and_swap_only_background(monkeypatch):
    pool = [f"HARD {i}" for i in range(50)]
    monkeypatch.setattr(negatives, "hard_pool", lambda task, split: pool)
    plain = generate(DataSettings(task="qa3", length="100", n=3, split="train", seed=0))[1]
    train, val = make_samples(TrainSettings(task="babilong:qa3", n_train=2, n_val=1, hard_negatives=0.2))
    for p, h in zip(plain, train + val):
        assert (p["question"], p["answer"], p["support"]) == (h["question"], h["answer"], h["support"])
        changed = [i for i, (a, b) in enumerate(zip(p["context"], h["context"])) if a != b]
        assert len(h["context"]) == len(p["context"]) and len(changed) == 20
        assert all(h["context"][i] in pool for i in changed)


@needs_novels
def test_hard_pool_mines_the_nearest_novel_sentences_and_caches_them(monkeypatch):
    monkeypatch.setattr(negatives, "POOL_CANDIDATES", 300)
    monkeypatch.setattr(negatives, "QUERY_STORIES", 5)
    from qrag_cli.embed.models import cache_root

    for f in (cache_root() / "negatives").glob("*-300-*.json"):
        f.unlink()
    pool = negatives.hard_pool("qa3", "train", per_query=3)
    cands = negatives.hs.BackgroundStream("train", "hard-negatives").extend_to(300)
    queries = negatives.query_lines("qa3", "train")
    assert set(pool) <= set(cands) and len(pool) == len(set(pool)) <= 3 * len(queries)
    # differential: the first query's nearest candidate by the PyTorch reference embedding comes first
    q, c = embed_minilm(queries[:1]), embed_minilm(cands)
    assert pool[0] == cands[int(np.argmax(c @ q[0]))]
    with monkeypatch.context() as m:
        m.setattr("qrag_cli.embed.encoder.load_encoder", lambda *a, **k: pytest.fail("not cached"))
        assert negatives.hard_pool("qa3", "train", per_query=3) == pool
    cached = next((cache_root() / "negatives").glob("*-300-3.json"))
    cached.write_text("{damaged", encoding="utf-8")  # a damaged cache is mined again, not an error
    assert negatives.hard_pool("qa3", "train", per_query=3) == pool
    # the candidates' vectors are cached as well; a damaged file is embedded again
    sentences, vectors = negatives.candidates("train")
    assert sentences == cands and vectors.shape == (300, c.shape[1])
    np.testing.assert_allclose(vectors, c, atol=2e-3)
    next((cache_root() / "negatives").glob("v1-candidates-train-300-*.npy")).write_bytes(b"damaged")
    np.testing.assert_allclose(negatives.candidates("train")[1], vectors, atol=1e-5)
