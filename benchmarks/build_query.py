"""Index build throughput and per-question query latency on a corpus made from the shared novels.

    python benchmarks/build_query.py --tokens 1000000 --work /tmp/qrag-bench --json docs/bench-1m.json
    python benchmarks/build_query.py --corpus ../shared/data/gutenberg --model default:int8 --work /tmp/q10m

1. Picks novels from ../shared/data/gutenberg/ in a seeded order and concatenates whole novels until
   the corpus has about --tokens word-piece tokens (counted with the model's tokenizer); or takes
   --corpus as it is (a file or folder, e.g. the whole novel folder: ~10M tokens).
2. Runs `qrag index` on it as a real subprocess (wall time, tokens/s from the build summary, peak RSS).
3. Opens the index in-process and times questions at --steps 1, 2 and 4 (median, p90 per question),
   and times one `qrag query` subprocess from process start to its answer (cold start).
Prints a Markdown table; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Where is the football?", "Who wrote the letter to her sister?", "What did the captain say about the storm?",
    "Where did they go after dinner?", "Why was she angry with him?", "Who came to the house in the evening?",
    "What was in the box?", "Where was the money hidden?", "Who is the heir of the estate?",
    "What happened at the ball?", "When did the ship arrive?", "Who saw the ghost?",
]


def shared() -> Path:
    return Path(os.environ.get("QRAG_SHARED", ROOT.parent / "shared"))


def make_corpus(target_tokens: int, seed: int, out: Path) -> tuple[int, list[str]]:
    from tokenizers import Tokenizer

    from qrag_cli.embed.models import default_model_path

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()  # tokenizer.json pads batches to the longest: that would over-count
    tok.no_truncation()
    novels = sorted((shared() / "data" / "gutenberg").glob("*.txt.xz"))
    if not novels:
        sys.exit(f"no novels under {shared() / 'data' / 'gutenberg'}")
    random.Random(seed).shuffle(novels)
    total, used = 0, []
    with open(out, "w", encoding="utf-8") as f:
        for p in novels:
            with lzma.open(p, "rt", encoding="utf-8") as src:
                text = src.read()
            n = sum(len(e.ids) for e in tok.encode_batch(text.split("\n\n"), add_special_tokens=False))
            f.write(text.rstrip() + "\n\n")
            total += n
            used.append(p.name)
            if total >= target_tokens:
                break
    return total, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qrag-bench"))
    ap.add_argument("--backend", default="usearch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--corpus", type=Path, help="index this corpus as it is instead of making one of --tokens")
    ap.add_argument("--model", default="default", help="embedder of the build (e.g. default:int8)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.corpus:
        corpus, tokens, used = args.corpus, 0, [args.corpus.name]
        out = args.work / f"ix-{args.corpus.name}-{args.backend}"
    else:
        corpus = args.work / f"gutenberg-{args.tokens // 1000}k.txt"
        tokens, used = make_corpus(args.tokens, args.seed, corpus)
        out = args.work / f"ix-{args.tokens // 1000}k-{args.backend}"
    qrag = [sys.executable, "-m", "qrag_cli.cli"]

    t0 = time.perf_counter()
    build = subprocess.run([*qrag, "index", str(corpus), "--out", str(out), "--overwrite", "--backend", args.backend,
                            "--threads", str(args.threads), "--model", args.model],
                           capture_output=True, text=True)
    if build.returncode:
        sys.exit(f"the build failed ({build.returncode}):\n{build.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads(build.stdout)
    manifest = json.loads((out / "manifest.json").read_text())

    from qrag_cli.api import Question, open_session
    from qrag_cli.settings import QuerySettings
    from qrag_cli.store.reader import IndexReader

    opens = []
    for _ in range(3):  # the index alone: manifest, checksums of every file, memory maps
        t = time.perf_counter()
        IndexReader(out)
        opens.append(time.perf_counter() - t)

    t_open = time.perf_counter()
    latency: dict[int, list[float]] = {}
    session = None
    for steps in (1, 2, 4):
        session = open_session(QuerySettings(index=str(out), steps=steps, threads=args.threads))
        if steps == 1:
            open_s = time.perf_counter() - t_open
        session.ask([Question("warm", "warm up")])
        times = []
        for _ in range(args.repeats):
            for i, q in enumerate(QUESTIONS):
                t = time.perf_counter()
                session.ask([Question(str(i), q)])
                times.append(time.perf_counter() - t)
        latency[steps] = times
    t = time.perf_counter()
    cold = subprocess.run([*qrag, "query", "--index", str(out), "--steps", "4", QUESTIONS[0]],
                          capture_output=True, text=True, check=True)
    cold_s = time.perf_counter() - t

    result = {
        "corpus": {"novels": used, "tokens_counted": tokens, "chunks": summary["chunks"], "tokens": summary["tokens"]},
        "backend": args.backend, "threads": args.threads,
        "build": {"wall_s": round(wall, 1), "index_seconds": summary["seconds"],
                  "embed_tokens_per_s": summary["tokens_per_s"],
                  "end_to_end_tokens_per_s": round(summary["tokens"] / wall),
                  "peak_rss_mb": round(rss_mb), "engine": manifest["build"]["embed_engine"]},
        "query": {
            "index_open_s": round(min(opens), 3),
            "session_open_s": round(open_s, 3),
            "cold_process_4_steps_s": round(cold_s, 2),
            **{f"steps_{s}": {"median_ms": round(1000 * statistics.median(v), 1),
                              "p90_ms": round(1000 * sorted(v)[int(0.9 * len(v))], 1), "n": len(v)}
               for s, v in latency.items()},
        },
    }
    assert cold.stdout.strip()
    b, q = result["build"], result["query"]
    print("| corpus | chunks | tokens | build wall | end-to-end tokens/s | embed tokens/s | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(used)} novels | {summary['chunks']:,} | {summary['tokens']:,} | {b['wall_s']} s | "
          f"{b['end_to_end_tokens_per_s']:,} | {b['embed_tokens_per_s']:,} | {b['peak_rss_mb']} MB |")
    print()
    print("| steps | median ms/question | p90 ms | n |")
    print("| --- | --- | --- | --- |")
    for s in (1, 2, 4):
        print(f"| {s} | {q[f'steps_{s}']['median_ms']} | {q[f'steps_{s}']['p90_ms']} | {q[f'steps_{s}']['n']} |")
    print(f"\nindex open (checksums included) {q['index_open_s']} s; session open {q['session_open_s']} s; cold `qrag query --steps 4` process: {q['cold_process_4_steps_s']} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
