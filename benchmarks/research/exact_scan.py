"""Exact positional search: usearch's float16 kernel against NumPy's float16 path, same run.

    python benchmarks/research/exact_scan.py --vectors /tmp/q10m3/ix-gutenberg-usearch/vectors.npy --states 10

`exact_rotary_search` with integer positions on a memory-mapped float16 matrix (an index's
`vectors.npy`), random states, retrieved sets of 0, 1, 2 and 5 chunks. The NumPy path is the same
function with every range scored by NumPy (`SMALL_RANGE` raised above the corpus size). Interleaved
rounds, best round per path; the two paths' answers are compared call by call.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=Path, required=True, help="a float16 .npy matrix (an index's vectors.npy)")
    ap.add_argument("--states", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=1)
    args = ap.parse_args()

    from qrag_cli.search import positions

    vectors = np.load(args.vectors, mmap_mode="r")
    n, dim = vectors.shape
    rng = np.random.default_rng(0)
    states = [rng.standard_normal(dim).astype(np.float32) for _ in range(args.states)]
    retrieved = [[], [n // 8], [n // 8, n // 2], [n // 8, n // 2, 3 * n // 4, 3 * n // 4 + 1, 100]]
    kernel_rows = positions.SMALL_RANGE
    best: dict[str, float] = {}
    answers: dict[str, list] = {}
    for _ in range(args.rounds):
        for path, small in (("kernel", kernel_rows), ("numpy", n + 1)):
            positions.SMALL_RANGE = small
            got = []
            t = time.perf_counter()
            for s in states:
                for r in retrieved:
                    got.append(positions.exact_rotary_search(vectors, s, r, args.k)[0].tolist())
            ms = 1000 * (time.perf_counter() - t) / (len(states) * len(retrieved))
            best[path] = min(best.get(path, float("inf")), ms)
            answers[path] = got
    positions.SMALL_RANGE = kernel_rows
    same = sum(a == b for a, b in zip(answers["kernel"], answers["numpy"])) / len(answers["kernel"])
    print(json.dumps({"rows": n, "dim": dim, "calls": len(answers["kernel"]),
                      "kernel_ms": round(best["kernel"], 1), "numpy_ms": round(best["numpy"], 1),
                      "speedup": round(best["numpy"] / best["kernel"], 1), "same_answers": same}))


if __name__ == "__main__":
    main()
