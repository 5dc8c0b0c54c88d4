"""Exact positional scan: the float16 kernel against the int8 compact copy with exact re-scoring, one run.

    python benchmarks/positional_scan.py --rows 416885 --states 57            # random unit vectors, 10M size
    python benchmarks/positional_scan.py --vectors INDEX/vectors.npy --states 57

Each state follows a greedy trajectory of `--steps` steps (integer positions, k = `--k`); the
trajectory is the float16 scan's (`exact_rotary_search` without the compact copy), and at every step
the same rotated states are searched by both scans, in alternating order. Random vectors: standard
normal rows scaled to unit norm, stored float16 (`--rows`, `--dim`); states are random unit vectors
(`--state-kind random`) or a random row plus as much noise (`row`). The compact copy is made in
memory (`compact.quantize`, timed). Every int8 kernel in `--kernels` is timed; `new_ms` is the
first. Times are medians per step in ms, wall clock (`*_ms`) and CPU time of the process
(`*_cpu_ms`: all its threads); `agreement` is the fraction of steps whose top-k ids are identical,
`scores_equal` the fraction whose float32 scores are too. The last line is one JSON object.

`--cold N`: N rounds of the first query after open, each path on files evicted from the page cache
(`posix_fadvise(DONTNEED)` on this benchmark's own files: vectors.npy, written to `--work` for random
vectors, and the compact copy written there by `compact.write_compact`): fresh memory maps, a fresh
onnxruntime session, one search. Also the XXH3 checksum of each file from cold, which an index open
pays for every file (`cold_*` fields, medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def random_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((rows, dim), dtype=np.float16)
    for a in range(0, rows, 65_536):
        x = rng.standard_normal((min(rows, a + 65_536) - a, dim), dtype=np.float32)
        out[a : a + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold_rounds(args: argparse.Namespace, vectors: np.ndarray) -> dict[str, float]:
    from qrag_cli.search import compact_scan
    from qrag_cli.search.compact import open_compact, write_compact
    from qrag_cli.search.positions import exact_rotary_search
    from qrag_cli.store.checksums import file_digest

    args.work.mkdir(parents=True, exist_ok=True)
    path = args.vectors
    if path is None:
        path = args.work / "vectors.npy"
        np.save(path, vectors)
    entry = write_compact(args.work, vectors)
    data = args.work / entry["data"]
    state = np.random.default_rng(args.seed + 2).standard_normal(vectors.shape[1]).astype(np.float32)
    got: dict[str, list[float]] = {"cold_old_ms": [], "cold_new_ms": [], "cold_checksum_vectors_ms": [],
                                   "cold_checksum_compact_ms": []}
    for _ in range(args.cold):
        for name, f in (("cold_checksum_vectors_ms", path), ("cold_checksum_compact_ms", data)):
            evict(f)
            t = time.perf_counter()
            file_digest(f)
            got[name].append(time.perf_counter() - t)
        evict(path)
        t = time.perf_counter()
        v = np.load(path, mmap_mode="r")
        exact_rotary_search(v, state, [], args.k, threads=args.threads)
        got["cold_old_ms"].append(time.perf_counter() - t)
        del v
        evict(path)
        evict(data)
        compact_scan._SESSIONS.clear()
        t = time.perf_counter()
        v = np.load(path, mmap_mode="r")
        c = open_compact(args.work, entry, v.shape, "")
        exact_rotary_search(v, state, [], args.k, threads=args.threads, compact=c)
        got["cold_new_ms"].append(time.perf_counter() - t)
        del v, c
    return {k: round(1000 * statistics.median(v), 1) for k, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--vectors", type=Path, help="a float16 .npy matrix (an index's vectors.npy), memory-mapped")
    ap.add_argument("--states", type=int, default=57)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--state-kind", choices=("random", "row"), default="random")
    ap.add_argument("--kernels", default="onnxruntime,usearch",
                    help="int8 kernels to time (compact_scan.I8_KERNELS: onnxruntime, usearch, numpy)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold", type=int, default=0, help="rounds of the first query after open from evicted files")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qrag-positional-scan"), help="files of --cold")
    args = ap.parse_args()

    import onnxruntime  # noqa: F401  (before usearch: see compact_scan.default_kernel)

    from qrag_cli.search.compact import quantize
    from qrag_cli.search.positions import exact_rotary_search

    t = time.perf_counter()
    vectors = np.load(args.vectors, mmap_mode="r") if args.vectors else random_vectors(args.rows, args.dim, args.seed)
    make_s = time.perf_counter() - t
    n, dim = vectors.shape
    t = time.perf_counter()
    compact = quantize(vectors)
    quantize_s = time.perf_counter() - t
    kernels = args.kernels.split(",")
    rng = np.random.default_rng(args.seed + 1)
    times: dict[str, list[float]] = {"old": [], **{k: [] for k in kernels}}
    cpu: dict[str, list[float]] = {"old": [], **{k: [] for k in kernels}}
    same = {k: 0 for k in kernels}
    same_scores = {k: 0 for k in kernels}
    stats = {k: {} for k in kernels}
    steps = 0
    for i in range(args.states):
        s = rng.standard_normal(dim).astype(np.float32)
        s /= np.linalg.norm(s)
        if args.state_kind == "row":
            s = np.asarray(vectors[rng.integers(n)], dtype=np.float32) + s * 0.5
        retrieved: list[int] = []
        for _ in range(args.steps):
            order = ["old", *kernels] if (i + len(retrieved)) % 2 == 0 else [*kernels[::-1], "old"]
            got = {}
            for path in order:
                t, c = time.perf_counter(), time.process_time()
                if path == "old":
                    got[path] = exact_rotary_search(vectors, s, retrieved, args.k, threads=args.threads)
                else:
                    got[path] = exact_rotary_search(vectors, s, retrieved, args.k, threads=args.threads,
                                                    compact=compact, kernel=path, stats=stats[path])
                times[path].append(time.perf_counter() - t)
                cpu[path].append(time.process_time() - c)
            want = got["old"]
            for k in kernels:
                same[k] += int(got[k][0].tolist() == want[0].tolist())
                same_scores[k] += int(np.array_equal(got[k][1], want[1]))
            steps += 1
            retrieved.append(int(want[0][0]))
    ms = {p: 1000 * statistics.median(v) for p, v in times.items()}
    cpu_ms = {p: 1000 * statistics.median(v) for p, v in cpu.items()}
    first = kernels[0]
    for k in kernels:
        print(f"{k}: {ms[k]:.1f} ms/step (old {ms['old']:.1f}), same ids {same[k]}/{steps}, "
              f"fallback ranges {stats[k].get('fallback', 0)}/{stats[k].get('scanned', 0)}, "
              f"rows re-scored per step {stats[k].get('rescored', 0) / steps:.1f}", file=sys.stderr)
    cold = cold_rounds(args, vectors) if args.cold else {}
    print(json.dumps({**cold,
        "rows": n, "dim": dim, "source": str(args.vectors) if args.vectors else "random", "states": args.states,
        "steps": steps, "k": args.k, "threads": args.threads, "state_kind": args.state_kind,
        "old_ms": round(ms["old"], 2), "new_ms": round(ms[first], 2), "speedup": round(ms["old"] / ms[first], 2),
        "agreement": same[first] / steps, "scores_equal": same_scores[first] / steps,
        "old_cpu_ms": round(cpu_ms["old"], 2), "new_cpu_ms": round(cpu_ms[first], 2),
        "cpu_speedup": round(cpu_ms["old"] / max(cpu_ms[first], 1e-9), 2),
        "kernels": {k: {"ms": round(ms[k], 2), "speedup": round(ms["old"] / ms[k], 2), "agreement": same[k] / steps,
                        "cpu_ms": round(cpu_ms[k], 2), "scores_equal": same_scores[k] / steps,
                        "fallback_ranges": stats[k].get("fallback", 0), "scanned_ranges": stats[k].get("scanned", 0),
                        "rescored_per_step": round(stats[k].get("rescored", 0) / steps, 1)} for k in kernels},
        "old_mean_ms": round(1000 * statistics.fmean(times["old"]), 2),
        "new_mean_ms": round(1000 * statistics.fmean(times[first]), 2),
        "quantize_s": round(quantize_s, 2), "load_s": round(make_s, 2),
    }))


if __name__ == "__main__":
    main()
