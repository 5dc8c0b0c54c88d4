"""A Ray build beside a single-process build of the same corpus, in one run, and the per-shard costs
of the scaling model in docs/distributed.md.

    python benchmarks/ray_build.py --tokens 300000 --work /tmp/qrag-ray --json /tmp/qrag-ray/result.json

1. Makes a corpus of whole novels from ../shared/data/gutenberg/ (about --tokens word-piece tokens,
   the same seeded order as benchmarks/build_query.py).
2. Builds it in this process without Ray, then with `ray="auto"` on a local cluster of --cpus CPUs
   (`ray.init` timed apart), --workers actors; both with the same settings (--model, --threads,
   --shard-chunks); checks that chunks.arrow and vectors.npy are byte-identical.
3. Measures what the model needs: the driver's reading and chunking per shard (the corpus chunked
   alone), the actors' embedding time per shard (recorded in the manifest), the driver's assembly and
   graph time, the float16 vectors per shard and the time to fetch a ready shard-sized result from
   the object store (an actor's return value, local object store).
Prints and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qrag-ray"))
    ap.add_argument("--model", default="default:int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-chunks", type=int, default=2048)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np
    import ray

    from build_query import make_corpus
    from qrag_cli.build import build_index
    from qrag_cli.corpus.chunking import iter_chunks
    from qrag_cli.corpus.readers import open_corpus
    from qrag_cli.settings import ChunkerSettings, IndexSettings
    from qrag_cli.store.generations import current_folder

    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / f"gutenberg-{args.tokens // 1000}k.txt"
    if not corpus.is_file():
        make_corpus(args.tokens, args.seed, corpus)
    base = IndexSettings(corpus=str(corpus), model=args.model, threads=args.threads, shard_chunks=args.shard_chunks,
                         overwrite=True)

    t = time.perf_counter()
    chunks = sum(1 for _ in iter_chunks(open_corpus(str(corpus)), ChunkerSettings()))
    chunk_s = time.perf_counter() - t

    single_out, ray_out = args.work / "single", args.work / "ray"
    t = time.perf_counter()
    single = build_index(replace(base, out=str(single_out)))
    single_wall = time.perf_counter() - t

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    on_ray = build_index(replace(base, out=str(ray_out), ray="auto", workers=args.workers))
    ray_wall = time.perf_counter() - t

    files = ("chunks.arrow", "vectors.npy")
    identical = all((current_folder(single_out) / f).read_bytes() == (current_folder(ray_out) / f).read_bytes()
                    for f in files)
    rec = json.loads((current_folder(ray_out) / "manifest.json").read_text())["build"]["ray"]

    @ray.remote
    def shard_sized(rows: int, dim: int):
        return np.ones((rows, dim), dtype="<f2")

    fetch = []
    for _ in range(5):
        ref = shard_sized.remote(args.shard_chunks, 384)
        ray.wait([ref])
        t = time.perf_counter()
        ray.get(ref)
        fetch.append(time.perf_counter() - t)
    ray.shutdown()

    shards = on_ray.shards
    result = {
        "corpus": {"file": corpus.name, "chunks": on_ray.chunks, "tokens": on_ray.tokens, "shards": shards,
                   "shard_chunks": args.shard_chunks},
        "settings": {"model": args.model, "threads": args.threads, "cpus": args.cpus, "workers": args.workers},
        "single": {"wall_s": round(single_wall, 2), "embed_s": round(single.embed_seconds, 2),
                   "graph_and_assembly_s": round(single.ann_seconds, 2),
                   "tokens_per_s": round(single.tokens / single_wall)},
        "ray": {"init_s": round(init_s, 2), "wall_s": round(ray_wall, 2), "embed_phase_s": round(on_ray.embed_seconds, 2),
                "graph_and_assembly_s": round(on_ray.ann_seconds, 2), "tokens_per_s": round(on_ray.tokens / ray_wall),
                "worker_embed_s_per_shard": round(rec["worker_embed_seconds"] / shards, 3),
                "driver_wait_s": rec["driver_wait_seconds"]},
        "overhead_ratio": round(ray_wall / single_wall, 3),
        "overhead_ratio_with_init": round((ray_wall + init_s) / single_wall, 3),
        "byte_identical": identical,
        "per_shard": {"driver_chunking_s": round(chunk_s / max(chunks / args.shard_chunks, 1), 4),
                      "vector_bytes": args.shard_chunks * 384 * 2,
                      "object_store_fetch_s": round(min(fetch), 5),
                      "tokens": round(on_ray.tokens / shards)},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
