"""What the BM25 index adds to `qrag index`: CPU time and disk on a corpus, against embedding.

    python benchmarks/bm25_cost.py CORPUS [--sample 2000]   # --sample 0: no embedding

Chunks the corpus as `qrag index` does (sentences), writes the BM25 files (`search.lexical.write_bm25`,
what a build writes) and measures their CPU seconds and bytes; embeds a sample of the chunks with the
default model on one thread (`--sample`, every n-th chunk) to get embedding CPU seconds per token in
the same run. CPU time (`time.process_time`), not wall time: the machine may be shared. Disk is set
against the index's fixed-size files (vectors.npy, the int8 copy) and the chunk text bytes; the HNSW
graph is not counted, so the BM25 share printed is an upper bound. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrag_cli.corpus.chunking import iter_chunks
from qrag_cli.corpus.readers import open_corpus
from qrag_cli.search.lexical import write_bm25
from qrag_cli.settings import ChunkerSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--sample", type=int, default=2000)
    a = ap.parse_args()
    from tokenizers import Tokenizer

    from qrag_cli.embed.models import default_model_path

    c0 = time.process_time()
    texts = [c.text for c in iter_chunks(open_corpus(a.corpus), ChunkerSettings())]
    chunk_cpu = time.process_time() - c0
    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    with tempfile.TemporaryDirectory() as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        entry = write_bm25(Path(tmp), texts)
        bm25_cpu, bm25_wall = time.process_time() - c0, time.perf_counter() - w0
        bm25_bytes = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}
    embed = {}
    if a.sample:
        from qrag_cli.embed.encoder import load_encoder
        from qrag_cli.embed.models import resolve_model

        enc = load_encoder(resolve_model("default"), threads=1)
        sample = texts[:: max(1, len(texts) // a.sample)]
        c0 = time.process_time()
        enc.encode_texts(sample)
        cpu = (time.process_time() - c0) * len(texts) / len(sample)
        embed = {"embed_sample_chunks": len(sample), "embed_cpu_s_extrapolated": round(cpu, 1),
                 "bm25_vs_embed_cpu": round(bm25_cpu / cpu, 4)}
    n, dim = len(texts), 384
    fixed = {"vectors.npy": 128 + n * dim * 2, "vectors_i8.npy": 128 + n * dim,
             "chunk text": sum(len(t.encode()) for t in texts)}
    total_bm25 = sum(bm25_bytes.values())
    print(json.dumps({
        "corpus": a.corpus, "chunks": n, "tokens": tokens, "vocab": entry["vocab"],
        "chunking_cpu_s": round(chunk_cpu, 2), "bm25_cpu_s": round(bm25_cpu, 2), "bm25_wall_s": round(bm25_wall, 2),
        **embed,
        "bm25_bytes": bm25_bytes, "bm25_total_bytes": total_bm25, "fixed_bytes": fixed,
        "bm25_vs_fixed_bytes": round(total_bm25 / sum(fixed.values()), 4),
    }, indent=1))


if __name__ == "__main__":
    main()
