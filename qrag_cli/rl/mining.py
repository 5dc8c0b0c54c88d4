"""Policy-mined negatives: training contexts that hold the novel sentences the policy itself confuses.

A training context holds 100 novel sentences; a 1M-token test context 40,000, and the trained qa3
policies lose their 1M misses (and most of their 32K ones) to novel sentences that their *state
vectors* score above a supporting line (docs/experiments.md, "qa3 in round 6"). Hard negatives mined
by the base model (`data/negatives.py`) did not change that: what confuses the policy moves with the
policy. So, when a training episode starts, `NegativeMiner` encodes its question (and the question with
each supporting line: the states of a good episode's first steps) with the current online state
encoder, ranks the training novels' candidate sentences (`negatives.candidates`, embedded once with
the frozen action encoder) by their inner product with each of those states, and swaps `count` of the
context's background sentences, at random places, for the best-ranked ones, taking the states in
turn. Story lines (the sample's ``story`` positions) are never replaced, so the support and the
story's meaning stay. Needs a frozen action encoder: the candidates' vectors must be the ones the
policy scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .env import Episode
from .qnet import QNet


class NegativeMiner:
    def __init__(self, net: QNet, sentences: list[str], vectors: np.ndarray, count: int,
                 rng: np.random.Generator) -> None:
        if len(sentences) != vectors.shape[0]:
            raise ValueError("one vector per candidate sentence")
        self.net, self.sentences, self.count, self.rng = net, sentences, count, rng
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))

    def states(self, ep: Episode) -> list[list[str]]:
        return [[ep.question], *([ep.question, ep.chunks[i]] for i in sorted(ep.support))]

    def picks(self, ep: Episode) -> list[str]:
        """Up to `count` candidate sentences absent from the context: each state's best in turn."""
        with torch.no_grad():
            s = self.net.embed_state_batch(self.net.state_batch(self.states(ep)))
            k = min(self.vectors.shape[0], self.count + len(ep.chunks))  # enough to skip what the context holds
            order = torch.topk(s.float() @ self.vectors.T, k, dim=1).indices.numpy()
        have, out = set(ep.chunks), []
        for rank in range(k):
            for row in order[:, rank]:
                text = self.sentences[int(row)]
                if text not in have:
                    have.add(text)
                    out.append(text)
                    if len(out) == self.count:
                        return out
        return out

    def __call__(self, ep: Episode, sample: dict[str, Any]) -> None:
        """Swap background sentences of the new episode `ep` (of `sample`) for mined ones."""
        if "story" not in sample and not sample.get("train_task", "babilong").startswith("babilong"):
            return  # another task of the mixture: its context has no novel background to swap
        if "story" not in sample:
            raise InputError("--mined-negatives needs samples that mark their story lines ('story': positions), "
                             "as qrag's babilong training samples do")
        story = set(sample["story"])
        places = [i for i in range(len(ep.chunks)) if i not in story]
        picks = self.picks(ep)[: len(places)]
        chosen = self.rng.choice(len(places), size=len(picks), replace=False)
        ep.swap([(places[int(j)], text) for j, text in zip(chosen, picks)])
