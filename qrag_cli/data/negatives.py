"""Hard negatives for short (per-sample) BabiLong contexts: novel sentences that look like the task.

A training context of 100 random novel sentences holds few sentences a story line could be confused
with; a 1M-token test context holds 40,000, and the trained policy's misses there are novel sentences
that read like a fact or the question ("Why can't I get it?" against "John got the milk.";
docs/experiments.md, "qa3 in round 6"). `hard_pool` mines such sentences from the novels of a split:

- candidates: `POOL_CANDIDATES` sentences of the split's novels (the background draw
  ``BackgroundStream(split, "hard-negatives")``, so the same novels the contexts come from);
- queries: the distinct story lines and questions of `QUERY_STORIES` samples of the task (the split's
  story generator, seed 0);
- both embedded with the default model (all-MiniLM-L6-v2, the frozen action encoder of the cpu
  preset: what is close to a fact here is close to it for every state vector of the policy), and each
  query keeps its `per_query` nearest candidates by cosine; the pool is the union, in order of first
  appearance. Cached as JSON under the qrag cache (``negatives/``): embedding the candidates takes a
  few minutes on one core. The candidates' embeddings are cached too (`candidates`): the trainer's
  policy-mined negatives (`rl/mining.py`) rank the same sentences.

`mix_in` replaces a fraction of one sample's background sentences with distinct pool sentences
(its own random stream, so the fact positions of a sample do not change).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError
from . import babi
from . import haystack as hs

log = logging.getLogger(__name__)

POOL_CANDIDATES = 40_000
QUERY_STORIES = 500
PER_QUERY = 20
POOL_VERSION = 1


def query_lines(task: str, split: str) -> list[str]:
    """The distinct story lines and questions of `QUERY_STORIES` samples of `task`, in order of appearance."""
    seen: dict[str, None] = {}
    for b in babi.generate_samples(task, QUERY_STORIES, hs.story_seed(split, 0)):
        for line in (*b.story, b.question):
            seen.setdefault(line, None)
    return list(seen)


def nearest_union(queries: np.ndarray, candidates: np.ndarray, per_query: int) -> list[int]:
    """Indices of the `per_query` best candidates of every query row (dot product), in order of first
    appearance (queries in order, each query's candidates best first)."""
    k = min(per_query, candidates.shape[0])
    out: dict[int, None] = {}
    for start in range(0, queries.shape[0], 256):
        scores = queries[start : start + 256] @ candidates.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for row, idx in zip(scores, top):
            for j in idx[np.argsort(-row[idx], kind="stable")]:
                out.setdefault(int(j), None)
    return list(out)


def candidate_sentences(split: str) -> list[str]:
    """The `POOL_CANDIDATES` novel sentences of `split` that hard negatives are mined from (runs of
    consecutive sentences, as in every background)."""
    return hs.BackgroundStream(split, "hard-negatives").extend_to(POOL_CANDIDATES)


def candidates(split: str, threads: int = 0,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """The `POOL_CANDIDATES` novel sentences of `split` that hard negatives are mined from, and their
    default-model embeddings (float32, L2-normalised: the frozen action encoder's vectors); the
    embeddings are cached under the qrag cache (``negatives/``), a damaged or stale file is embedded again
    (`progress(done, total)` after each batch; the embedding is logged at INFO)."""
    from ..embed.encoder import load_encoder
    from ..embed.models import cache_root, resolve_model

    import hashlib

    sentences = candidate_sentences(split)
    digest = hashlib.sha256("\x00".join(sentences).encode("utf-8")).hexdigest()[:12]  # the splitter may change
    path = cache_root() / "negatives" / f"v{POOL_VERSION}-candidates-{split}-{POOL_CANDIDATES}-{digest}.npy"
    try:
        vectors = np.load(path)
        if vectors.shape[0] == len(sentences) and vectors.dtype == np.float32:
            return sentences, vectors
    except (OSError, ValueError):  # absent or damaged
        pass
    log.info("embedding %d candidate sentences of the %s novels (once, cached in %s)", len(sentences), split,
             path.parent)
    done = [0]

    def batch(rows: int, tokens: int) -> None:
        done[0] += rows
        if progress:
            progress(done[0], len(sentences))

    vectors, _ = load_encoder(resolve_model("default"), threads=threads, bulk=True).encode_texts(sentences, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return sentences, vectors


def hard_pool(task: str, split: str, per_query: int = PER_QUERY, threads: int = 0) -> list[str]:
    """The mined pool of `task` in `split` (see the module docstring); cached on disk."""
    from ..atomic import write_json_atomic
    from ..embed.encoder import load_encoder
    from ..embed.models import cache_root, resolve_model

    path = cache_root() / "negatives" / f"v{POOL_VERSION}-{task}-{split}-{POOL_CANDIDATES}-{per_query}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["sentences"]
    except (OSError, ValueError, KeyError, TypeError):  # absent or damaged: mine it (again)
        pass
    sentences, cand_emb = candidates(split, threads)
    queries = query_lines(task, split)
    query_emb, _ = load_encoder(resolve_model("default"), threads=threads, bulk=True).encode_texts(queries)
    pool = [sentences[j] for j in nearest_union(query_emb, cand_emb, per_query)]
    pool = list(dict.fromkeys(pool))  # the draw can repeat a sentence ("Yes.")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"task": task, "split": split, "candidates": POOL_CANDIDATES, "queries": len(queries),
                             "per_query": per_query, "sentences": pool})
    return pool


def mix_in(background: Sequence[str], pool: Sequence[str], fraction: float, rng: random.Random) -> list[str]:
    """`background` with ``round(fraction * len)`` of its sentences (random places) replaced by
    distinct random sentences of `pool`."""
    if not 0 <= fraction <= 1:
        raise InputError(f"hard negatives fraction {fraction}: use a number in [0, 1]")
    out = list(background)
    m = min(round(fraction * len(out)), len(pool))
    for place, sentence in zip(rng.sample(range(len(out)), m), rng.sample(list(pool), m)):
        out[place] = sentence
    return out
