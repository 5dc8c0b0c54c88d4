"""The methods `qrag bench` compares on the same contexts (docs/benchmarks.md, section 4).

- ``dense-topk``: single-step top-k by the base embedder (`MultiStepRetriever.run(steps=1, k=k)`);
- ``bm25-topk``: BM25 top-k with the bm25s library (no Q score: everything retrieved is kept);
- ``multistep-base``: the Q-RAG loop with the untrained base embedder, `steps` steps, Q-threshold stop;
- ``qrag-trained``: the same loop with a trained model (when one is given);
- ``hybrid-topk``: single-step top-k of the dense and BM25 lists fused (`--fusion`, `search.hybrid`);
- ``multistep-hybrid``: the untrained loop, each step's chunk picked by that fusion (BM25 of the state
  text), the Q values (and the stop) still the base embedder's.

Dense and BM25 keep everything they retrieve; the multi-step methods keep `Trajectory.kept(threshold)`.
Every method returns the retrieved positions (coverage), the kept positions (fact F1) and its latency.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..policy.loop import MultiStepRetriever
from ..search.registry import open_backend
from ..settings import AnnSettings
from .contexts import MemoryContext

DENSE = "dense-topk"
BM25 = "bm25-topk"
MULTISTEP = "multistep-base"
TRAINED = "qrag-trained"
HYBRID = "hybrid-topk"
MULTI_HYBRID = "multistep-hybrid"
METHODS = (DENSE, BM25, MULTISTEP, TRAINED)  # run by default (TRAINED when a trained model is given)
ON_REQUEST = (HYBRID, MULTI_HYBRID)  # run when --methods names them


@dataclass(frozen=True)
class MethodResult:
    retrieved: list[int]  # positions, in retrieval order
    kept: list[int]  # positions handed to a reader
    latency_s: float  # the question's retrieval time (state encodings and searches)
    scores: list[float] = field(default_factory=list)  # of each retrieved position: Q estimate or BM25 score


def retriever_for(encoder, ctx: MemoryContext, lexical=None, fusion: str = "rrf") -> MultiStepRetriever:
    """The qrag loop over one in-memory context, with the exact inner-product backend (with a BM25
    scorer of the context: hybrid retrieval, `fusion` rrf or score)."""
    backend = open_backend("exact", Path("."), ctx.vectors, AnnSettings(backend="exact"))
    if lexical is None:
        return MultiStepRetriever(encoder, ctx, backend)
    return MultiStepRetriever(encoder, ctx, backend, lexical=lexical, retriever="hybrid", fusion=fusion)


def bm25_scorer(texts: Sequence[str]):
    """A BM25 scorer of one context's chunks (what an index's BM25 files hold), and its build seconds."""
    from ..search.lexical import Bm25Scorer

    t0 = time.perf_counter()
    scorer = Bm25Scorer.from_texts(texts)
    return scorer, time.perf_counter() - t0


def dense_topk(retriever: MultiStepRetriever, question: str, k: int) -> MethodResult:
    """Single-step top-k: one question encoding, one search."""
    t0 = time.perf_counter()
    (traj,) = retriever.run([question], steps=1, k=k)
    dt = time.perf_counter() - t0
    pos = traj.positions()
    return MethodResult(pos, list(pos), dt, [r.score for r in traj.retrieved])


def multistep(retriever: MultiStepRetriever, question: str, steps: int, threshold: float | None) -> MethodResult:
    """The Q-RAG loop: `steps` steps of one chunk, then the Q-threshold stop for the kept chunks."""
    t0 = time.perf_counter()
    (traj,) = retriever.run([question], steps=steps, k=1)
    dt = time.perf_counter() - t0
    return MethodResult(traj.positions(), traj.kept(threshold), dt, [r.score for r in traj.retrieved])


class Bm25:
    """BM25 top-k over one context at a time (bm25s, English stop words, Lucene scoring).

    Tokens are memoised per sentence, so a shared background is tokenised once per run; the index is
    built per context (its document frequencies depend on the spliced facts).
    """

    def __init__(self) -> None:
        import bm25s  # noqa: F401  (fail early when missing)

        self.tokens: dict[str, list[str]] = {}

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        missing = [t for t in dict.fromkeys(texts) if t not in self.tokens]
        if missing:
            toks = bm25s.tokenize(missing, stopwords="en", return_ids=False, show_progress=False)
            self.tokens.update(zip(missing, toks))
        return [self.tokens[t] for t in texts]

    def index(self, texts: Sequence[str]):
        """A bm25s index of the chunk texts (and the build seconds)."""
        import bm25s

        t0 = time.perf_counter()
        corpus = self._tokenize(texts)
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return model, time.perf_counter() - t0

    def topk(self, model, n_chunks: int, question: str, k: int) -> MethodResult:
        """Top-k chunk positions for the question (ties as bm25s orders them)."""
        import bm25s

        t0 = time.perf_counter()
        query = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
        kk = min(k, n_chunks)
        if kk < 1:
            return MethodResult([], [], time.perf_counter() - t0)
        docs, scores = model.retrieve(query, k=kk, show_progress=False, n_threads=1)
        pos = [int(i) for i in docs[0]]
        return MethodResult(pos, list(pos), time.perf_counter() - t0, [float(x) for x in scores[0]])
