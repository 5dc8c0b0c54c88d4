"""`qrag index --append`: extending an index's HNSW graph vs rebuilding it over every vector.

Builds the graph over the first N - k rows of an index's vectors (untimed), then times, in one run,
(a) a full build over all N rows and (b) loading the prefix graph and adding the k new rows, and
checks recall@10 of both against exact search for queries among the old and among the new rows.

    python benchmarks/research/append_graph.py --vectors /tmp/qrag-bench/ix-1000k-usearch/vectors.npy --new 5000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from qrag_cli.search.exact import ExactBackend
from qrag_cli.search.registry import build_ann, open_backend
from qrag_cli.settings import AnnSettings


def recall(backend, vectors: np.ndarray, qids: np.ndarray) -> float:
    queries = np.asarray(vectors[qids], dtype=np.float32)
    exclude = [{int(i)} for i in qids]
    ref, _ = ExactBackend(vectors).search(queries, 10, exclude=exclude)
    got, _ = backend.search(queries, 10, exclude=exclude)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), ref.tolist())]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", required=True, help="an index's vectors.npy (float16)")
    ap.add_argument("--new", type=int, default=5000, help="rows appended (k)")
    ap.add_argument("--backend", default="usearch", choices=["usearch", "hnswlib"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    vectors = np.load(a.vectors, mmap_mode="r")
    n, k = len(vectors), a.new
    ann = AnnSettings(backend=a.backend)
    with tempfile.TemporaryDirectory() as tmp:
        prefix, full, grown = (Path(tmp) / x for x in ("prefix", "full", "grown"))
        for f in (prefix, full, grown):
            f.mkdir()
        file = build_ann(a.backend, vectors[: n - k], prefix, ann, seed=0, threads=a.threads)["files"][0]
        t0 = time.perf_counter()
        build_ann(a.backend, vectors, full, ann, seed=0, threads=a.threads)
        t1 = time.perf_counter()
        build_ann(a.backend, vectors, grown, ann, seed=0, threads=a.threads, extend=prefix / file)
        t2 = time.perf_counter()
        rng = np.random.default_rng(0)
        old = rng.choice(n - k, a.queries, replace=False)
        new = n - k + rng.choice(k, min(k, a.queries), replace=False)
        out = {"rows": n, "new_rows": k, "backend": a.backend, "threads": a.threads,
               "rebuild_s": round(t1 - t0, 2), "extend_s": round(t2 - t1, 2), "speedup": round((t1 - t0) / (t2 - t1), 1)}
        for name, folder in (("rebuild", full), ("extend", grown)):
            b = open_backend(a.backend, folder, vectors, ann)
            out[f"{name}_recall10_old"] = recall(b, vectors, old)
            out[f"{name}_recall10_new"] = recall(b, vectors, new)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
