"""The multi-step retrieval loop of Q-RAG inference, and its Q-threshold stop rule.

At every step the state is the question plus the chunks retrieved so far, sorted by their position
in the corpus, encoded as `[CLS] q [SEP] c1 [SEP] ... [SEP]` (each piece capped at `piece_tokens`).
The action is the best not-yet-retrieved chunk by inner product with the state embedding. Questions
are stepped together: one batched state encoding and one batched search per step.

Models trained with relative rotary positions (pooling.positions "int" or "float") are scored range
by range (`search.positions`): exactly over the memory-mapped vectors (`positional="exact"`), or
with the backend's ANN index giving candidates per range and exact re-scoring (`"approx"`, opt-in:
it picks another chunk on up to 4% of steps at 10M tokens); `"auto"` is the exact mode. The exact
mode with integer positions reads the index's int8 copy of the vectors first (`compact_copy`: made on
first need for an index written without one) and re-scores only what its error bound keeps.
Models without positions are plain maximum-inner-product search on the backend.

Lexical and hybrid retrieval (`retriever` "bm25" or "hybrid", with a `Bm25Scorer`): at every step the
BM25 query is the state text the dense side encodes (the question, then the retrieved chunks sorted
by position, joined by spaces; whole chunks, not capped at `piece_tokens`), already retrieved chunks
excluded. "bm25" takes the `k` best by BM25; "hybrid" fuses the dense and the BM25 lists of the
`fusion_candidates` best each (`search.hybrid`: reciprocal rank or min-max score fusion) and takes
the `k` best fused. Either way the score recorded for a chunk (its Q value, what the stop threshold
reads) is the dense policy's score of that chunk in that state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..embed.encoder import Encoder
from ..errors import IncompatibleError, InputError
from ..search import hybrid
from ..search.base import SearchBackend
from ..search.positions import (
    approx_rotary_search,
    chunk_positions,
    exact_rotary_search,
    rotate,
)
from ..store.reader import ChunkRecord


class ChunkSource(Protocol):
    """What the loop reads chunks from: an on-disk `IndexReader` or an in-memory context."""

    vectors: np.ndarray  # (n, dim), row i embeds the chunk at position i

    def __len__(self) -> int: ...

    def chunk(self, position: int) -> ChunkRecord: ...


@dataclass(frozen=True)
class Retrieved:
    step: int  # 1-based step at which the chunk was taken
    chunk: ChunkRecord
    score: float  # Q estimate: inner product of the state and the chunk embedding


@dataclass
class Trajectory:
    question: str
    retrieved: list[Retrieved] = field(default_factory=list)

    def positions(self) -> list[int]:
        return [r.chunk.position for r in self.retrieved]

    def kept(self, threshold: float | None) -> list[int]:
        """Positions retrieved before the first step whose best score falls below the threshold."""
        if threshold is None:
            return self.positions()
        kept: list[int] = []
        for step in sorted({r.step for r in self.retrieved}):
            taken = [r for r in self.retrieved if r.step == step]
            if max(r.score for r in taken) < threshold:
                break
            kept.extend(r.chunk.position for r in taken)
        return kept


POSITIONAL_MODES = ("auto", "exact", "approx")


class MultiStepRetriever:
    """Runs the retrieval loop over an open index with an encoder and a search backend."""

    def __init__(self, encoder: Encoder, index: ChunkSource, backend: SearchBackend, *, piece_tokens: int = 64,
                 positional: str = "auto", candidates: int = 64, threads: int = 0, lexical=None,
                 retriever: str = "dense", fusion: str = "rrf", fusion_weight: float = 0.5,
                 fusion_candidates: int = 100):
        self.positions = encoder.spec.pooling.positions
        if self.positions not in ("none", "int", "float"):
            raise IncompatibleError(f"model {encoder.spec.name} declares unknown positions {self.positions!r}")
        if positional not in POSITIONAL_MODES:
            raise InputError(f"unknown positional search {positional!r}: use one of {', '.join(POSITIONAL_MODES)}")
        if candidates < 1:
            raise InputError("--candidates must be at least 1")
        hybrid.check(retriever, fusion, fusion_weight, fusion_candidates)
        if retriever != "dense" and lexical is None:
            raise IncompatibleError(f"--retriever {retriever} needs a BM25 index")
        self.retriever, self.lexical = retriever, lexical
        self.fusion, self.fusion_weight, self.fusion_candidates = fusion, fusion_weight, fusion_candidates
        if positional == "auto":  # exact: approx misses the best chunk on some steps (docs/benchmarks.md)
            positional = "exact"
        self.positional = positional
        self.candidates = candidates
        self.threads = threads  # of the exact mode's scan (0: all cores)
        self.encoder = encoder
        self.index = index
        self.backend = backend
        self.piece_tokens = piece_tokens
        self.compact = None  # the int8 copy of the vectors for the exact scan (an on-disk index's)
        if self.positional == "exact" and self.positions == "int" and hasattr(index, "compact_copy"):
            self.compact = index.compact_copy()

    def state_text(self, t: Trajectory) -> list[str]:
        """The state pieces: the question, then the retrieved chunks sorted by corpus position."""
        chunks = sorted((r.chunk for r in t.retrieved), key=lambda c: c.position)
        return [t.question, *(c.text for c in chunks)]

    def run(self, questions: Sequence[str], *, steps: int, k: int = 1) -> list[Trajectory]:
        """Retrieve `k` chunks per step for `steps` steps for every question (greedy policy)."""
        trajectories = [Trajectory(q) for q in questions]
        n = len(self.index)
        for step in range(1, steps + 1):
            active = [t for t in trajectories if len(t.retrieved) < n]
            if not active:
                break
            states = self.encoder.encode_states([self.state_text(t) for t in active], self.piece_tokens)
            exclude = [set(t.positions()) for t in active]
            if self.retriever != "dense":
                found = [self._fused(s, t, k) for s, t in zip(states, active)]
                ids, scores = [f[0] for f in found], [f[1] for f in found]
            elif self.positions == "none":
                ids, scores = self.backend.search(states, k, exclude)
            else:
                found = [self._positional(s, t.positions(), k) for s, t in zip(states, active)]
                ids, scores = [f[0] for f in found], [f[1] for f in found]
            for t, row_ids, row_scores in zip(active, ids, scores):
                for i, s in zip(row_ids, row_scores):
                    if i < 0:
                        continue
                    t.retrieved.append(Retrieved(step, self.index.chunk(int(i)), float(s)))
        return trajectories

    def _dense(self, state: np.ndarray, retrieved: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The dense top-k of one state (ids, scores), best first."""
        if self.positions == "none":
            ids, scores = self.backend.search(state[None, :], k, [retrieved])
            return ids[0][ids[0] >= 0], scores[0][ids[0] >= 0]
        return self._positional(state, retrieved, k)

    def dense_scores(self, state: np.ndarray, ids: np.ndarray, retrieved: list[int]) -> np.ndarray:
        """The policy's score of the chunks `ids` in this state (with their rotary positions, if any)."""
        rows = np.asarray(self.index.vectors[np.asarray(ids, dtype=np.int64)], dtype=np.float32)
        if self.positions != "none":
            p = chunk_positions(len(self.index), retrieved, integer=self.positions == "int")[ids]
            rows = rotate(rows, p)
        return rows @ np.asarray(state, dtype=np.float32)

    def _fused(self, state: np.ndarray, t: Trajectory, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One step of lexical or hybrid retrieval for one trajectory: ids and their dense scores."""
        retrieved = t.positions()
        left = len(self.index) - len(retrieved)
        count = min(max(self.fusion_candidates, k), left)
        bm25 = self.lexical.scores(" ".join(self.state_text(t)))
        if self.retriever == "bm25":
            ids = hybrid.lexical_list(bm25, retrieved, min(k, left), matching_only=False)[0]
            return ids, self.dense_scores(state, ids, retrieved)
        dense = self._dense(state, retrieved, count)
        ids = hybrid.fuse(dense, hybrid.lexical_list(bm25, retrieved, count), self.fusion, self.fusion_weight)[0][:k]
        known = dict(zip(dense[0].tolist(), dense[1].tolist()))
        missing = np.array([i for i in ids if i not in known], dtype=np.int64)
        if missing.size:
            known.update(zip(missing.tolist(), self.dense_scores(state, missing, retrieved).tolist()))
        return ids, np.array([known[int(i)] for i in ids], dtype=np.float32)

    def _positional(self, state: np.ndarray, retrieved: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        integer = self.positions == "int"
        if self.positional == "exact":
            return exact_rotary_search(self.index.vectors, state, retrieved, k, integer=integer, threads=self.threads,
                                       compact=self.compact)
        return approx_rotary_search(self.index.vectors, state, retrieved, k, self.backend.candidates,
                                    integer=integer, fetch=self.candidates)
