"""Exact vs approximate positional search through `qrag query`'s own session, on a built index.

    python benchmarks/research/query_modes.py --index /tmp/q10m/ix-gutenberg-usearch --model /tmp/pol-int8 --steps 4

A model with rotary positions (a trained policy; one whose action encoder is the index's model can
query an index built with the base model) answers the same questions with `--positional exact` and
`--positional approx`: median time per question (state encodings included, the index already open)
and the fraction of questions whose retrieved chunks are identical in both modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from build_query import QUESTIONS  # the same questions as the build / latency benchmark (this folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--model", required=True, help="a model with rotary positions")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from qrag_cli.api import Question, QuerySession
    from qrag_cli.settings import QuerySettings

    found: dict[str, list[list[int]]] = {}
    times: dict[str, list[float]] = {}
    for mode in ("exact", "approx"):
        session = QuerySession(QuerySettings(index=str(args.index), model=args.model, steps=args.steps,
                                             positional=mode, candidates=args.candidates, threads=args.threads))
        if session.retriever.positions == "none":
            raise SystemExit(f"{args.model} has no rotary positions")
        session.ask([Question("warm", "warm up")])
        times[mode], found[mode] = [], []
        for r in range(args.repeats):
            for i, q in enumerate(QUESTIONS):
                t = time.perf_counter()
                [res] = session.ask([Question(str(i), q)])
                times[mode].append(time.perf_counter() - t)
                if r == 0:
                    found[mode].append([x["chunk"] for x in res["retrieved"]])
    same = sum(a == b for a, b in zip(found["exact"], found["approx"])) / len(QUESTIONS)
    steps_same = sum(x == y for a, b in zip(found["exact"], found["approx"]) for x, y in zip(a, b))
    result = {
        "index": str(args.index), "model": args.model, "steps": args.steps, "candidates": args.candidates,
        "chunks": len(session.index), "questions": len(QUESTIONS),
        "exact_ms_median": round(1000 * statistics.median(times["exact"]), 1),
        "approx_ms_median": round(1000 * statistics.median(times["approx"]), 1),
        "questions_identical": round(same, 3),
        "steps_identical": round(steps_same / (len(QUESTIONS) * args.steps), 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
