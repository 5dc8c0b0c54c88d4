"""Policy-mined negatives (rl/mining.py): the picks by hand, the swap, and training and resuming with them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from qrag_cli.data import negatives
from qrag_cli.errors import InputError
from qrag_cli.rl import trainer as trainer_mod
from qrag_cli.rl.env import Episode
from qrag_cli.rl.mining import NegativeMiner
from qrag_cli.settings import TrainSettings
from tests.test_rl import WORDS, interrupted_then_resumed, synthetic, tiny_settings


class FakeNet:
    """State vectors by hand: the question alone -> e0, the question with a chunk -> e1."""

    def state_batch(self, texts):
        return texts

    def embed_state_batch(self, texts):
        return torch.tensor([[1.0, 0.0] if len(t) == 1 else [0.0, 1.0] for t in texts])


def test_picks_take_each_states_best_in_turn_and_skip_what_the_context_holds():
    sentences = ["q1", "q2", "c1", "c2", "in ctx", "q3"]
    vectors = np.array([[0.9, 0], [0.8, 0], [0, 0.9], [0, 0.8], [1.0, 1.0], [0.7, 0]], dtype=np.float32)
    ep = Episode(0, "where?", ["b0", "fact", "b2", "in ctx", "b4"], [1], 6)
    miner = NegativeMiner(FakeNet(), sentences, vectors, 3, np.random.default_rng(0))
    assert miner.states(ep) == [["where?"], ["where?", "fact"]]
    # both states rank 'in ctx' first (1.0): the context holds it; then q1 (question), c1 (with the fact), q2
    assert miner.picks(ep) == ["q1", "c1", "q2"]
    miner.count = 9
    assert miner.picks(ep) == ["q1", "c1", "q2", "c2", "q3"]  # every candidate the context lacks


def test_swap_replaces_background_only_and_is_capped_by_it():
    sentences = [f"mined {i}" for i in range(10)]
    vectors = np.random.default_rng(1).normal(size=(10, 2)).astype(np.float32)
    sample = {"question": "where?", "context": ["b0", "s1", "b2", "s3", "b4"], "support": [3], "story": [1, 3]}
    miner = NegativeMiner(FakeNet(), sentences, vectors, 2, np.random.default_rng(0))
    ep = Episode.of(0, sample, 6)
    miner(ep, sample)
    assert ep.chunks[1] == "s1" and ep.chunks[3] == "s3" and sample["context"][0] == "b0"  # the sample is untouched
    assert sum(c.startswith("mined") for c in ep.chunks) == 2 and len(ep.swapped) == 2
    miner.count = 9
    ep = Episode.of(0, sample, 6)
    miner(ep, sample)
    assert [c.startswith("mined") for c in ep.chunks] == [True, False, True, False, True]  # 3 places only
    unmarked = {k: v for k, v in sample.items() if k != "story"}
    with pytest.raises(InputError, match="story"):
        miner(Episode.of(0, unmarked, 6), unmarked)


def storied(samples: list[dict]) -> list[dict]:
    """The synthetic samples with their one supporting chunk marked as the story."""
    return [{**x, "story": list(x["support"])} for x in samples]


@pytest.fixture
def mined_candidates(monkeypatch, tiny_model):
    from qrag_cli.rl.qnet import QNet

    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=8, freeze_action=True).eval()
    sentences = [f"{w} treasure {v}" for w in WORDS for v in WORDS[:3]]  # 36 confusable sentences
    with torch.no_grad():
        vectors = net.embed_chunks(sentences).numpy()
    monkeypatch.setattr(negatives, "candidates", lambda split, threads=0, progress=None: (sentences, vectors))
    return set(sentences)


def test_training_with_mined_negatives_swaps_them_in_and_resumes_like_an_uninterrupted_run(
        tmp_path, tiny_model, mined_candidates, monkeypatch):
    data = (storied(synthetic(200, 0)), storied(synthetic(40, 1)))
    monkeypatch.setattr("tests.test_rl.data", lambda: data)
    s = trainer_mod.check(tiny_settings(tmp_path, tiny_model, freeze_action=True, train_state_layers=1,
                                        mined_negatives=3))
    tr = trainer_mod.Trainer(s, trainer_mod.make_net(s), *data)
    for ep in tr.pool.episodes:
        sample = data[0][ep.sample]
        assert [p for p, _ in ep.swapped] and all(t in mined_candidates for _, t in ep.swapped)
        assert len(ep.swapped) == 3 and sample["support"][0] not in [p for p, _ in ep.swapped]
        assert ep.chunks[sample["support"][0]] == sample["context"][sample["support"][0]]
    tr.update()  # the loss reads the mined sentences' vectors
    interrupted_then_resumed(tmp_path, tiny_model, 12, 6, freeze_action=True, train_state_layers=1,
                             mined_negatives=3)


def test_mined_negatives_refuse_what_they_cannot_use(tmp_path, tiny_model):
    for kw, message in (({"mined_negatives": -1}, ">= 0"),
                        ({"mined_negatives": 2, "freeze_action": False}, "frozen action encoder"),
                        ({"mined_negatives": 2, "task": "ruler:vt", "freeze_action": True}, "babilong task")):
        with pytest.raises(InputError, match=message):
            trainer_mod.check(replace(tiny_settings(tmp_path, tiny_model), **kw))
    assert trainer_mod.check(TrainSettings(preset="cpu", mined_negatives=2, out="unused")).mined_negatives == 2


def test_the_candidates_cached_vectors_seed_the_frozen_cache(tmp_path, tiny_model, mined_candidates, monkeypatch):
    first, second = sorted(mined_candidates)[:2]
    samples = [{"question": "q?", "context": [first, "story line", second], "support": [1], "story": [1]}]
    s = trainer_mod.check(tiny_settings(tmp_path, tiny_model, freeze_action=True, background_pool=36))
    net = trainer_mod.make_net(s)
    tr = trainer_mod.Trainer(s, net, samples, samples)
    calls, embed = [], net.embed_chunks
    monkeypatch.setattr(net, "embed_chunks", lambda texts, *a, **k: calls.append(list(texts)) or embed(texts, *a, **k))
    vectors = tr.frozen_vectors(samples[0]["context"])
    assert calls == [["story line"]]  # the pool's sentences come from the cache
    with torch.no_grad():
        np.testing.assert_allclose(vectors.numpy(), embed(samples[0]["context"]).numpy(), atol=1e-5)
