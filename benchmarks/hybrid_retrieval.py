"""Dense, BM25, hybrid (rrf and score fusion), the untrained loop and the loop with hybrid steps, on
the same contexts: support recall and full coverage within the first 5 and 10 chunks retrieved.

    python benchmarks/hybrid_retrieval.py --data benchmarks/data/prose-qa.jsonl
    python benchmarks/hybrid_retrieval.py --task qa2 --length 32K --n 50

One run retrieves 10 chunks per method and scores its prefixes (top-k rankings and the greedy loop
are prefix-stable: the first 5 of 10 are what a run of 5 returns). Contexts are built as `qrag bench`
builds them (`bench.contexts`, cached background embeddings); BM25 is indexed per context.
Prints one JSON object: per method, recall@5, coverage@5, recall@10, coverage@10 and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrag_cli.bench import baselines as bl
from qrag_cli.bench.contexts import ContextBuilder
from qrag_cli.data.samples import materialise, read_samples
from qrag_cli.embed.encoder import load_encoder
from qrag_cli.embed.models import cache_root, resolve_model
from qrag_cli.search.hybrid import lexical_list
from qrag_cli.search.lexical import Bm25Scorer

CUTS = (5, 10)


def retrieve(method: str, enc, ctx, scorer: Bm25Scorer, q: str, most: int) -> list[int]:
    """The first `most` chunk positions `method` retrieves for question `q`."""
    if method == "bm25":
        return lexical_list(scorer.scores(q), (), most, matching_only=False)[0].tolist()
    fusion = method.rsplit("-", 1)[1] if "hybrid" in method else None
    loop = bl.retriever_for(enc, ctx, scorer if fusion else None, fusion or "rrf")
    steps, k = (most, 1) if method.startswith("loop") else (1, most)
    return loop.run([q], steps=steps, k=k)[0].positions()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="")
    ap.add_argument("--task", default="qa2")
    ap.add_argument("--length", default="32K")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.data:
        _, it = read_samples(a.data)
        samples = list(it)[: a.n]
    else:
        from qrag_cli.data.generate import generate
        from qrag_cli.settings import DataSettings

        _, samples = generate(DataSettings(benchmark="babilong", task=a.task, length=a.length, n=a.n, seed=0,
                                           split="test"))
    enc = load_encoder(resolve_model("default"), threads=a.threads)
    builder = ContextBuilder(enc, cache_root() / "bench", lambda *x: None)
    most = max(CUTS)
    methods = ("dense", "bm25", "hybrid-rrf", "hybrid-score", "loop", "loop-hybrid-rrf", "loop-hybrid-score")
    hits: dict[str, list[tuple[list[int], list[int]]]] = {m: [] for m in methods}
    secs = dict.fromkeys(methods, 0.0)
    t_start = time.perf_counter()
    for sample in samples:
        if "background" in sample:
            builder.background(sample["background"])
        texts = materialise(sample)
        ctx, _, _ = builder.build(sample, texts)
        scorer = Bm25Scorer.from_texts(texts)
        q, support = sample["question"], list(sample["support"])
        for m in methods:
            t0 = time.perf_counter()
            hits[m].append((retrieve(m, enc, ctx, scorer, q, most), support))
            secs[m] += time.perf_counter() - t0
    out = {"n": len(samples), "wall_s": round(time.perf_counter() - t_start, 1), "methods": {}}
    for m in methods:
        row = {}
        for c in CUTS:
            rec = [len(set(r[:c]) & set(s)) / len(s) for r, s in hits[m]]
            cov = [float(set(s) <= set(r[:c])) for r, s in hits[m]]
            row[f"recall@{c}"] = round(sum(rec) / len(rec), 3)
            row[f"coverage@{c}"] = round(sum(cov) / len(cov), 3)
        row["seconds"] = round(secs[m], 2)
        out["methods"][m] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
