"""Approximate vs exact positional search on BabiLong-style contexts (issue 6: agreement and speed).

    python benchmarks/positional.py --policy /tmp/pol-int8 --tasks qa1,qa2,qa3 --lengths 1M,10M --n 20 \
        --json /tmp/positional.json

For each length and task, `--n` test samples are generated as `qrag bench` does (shared background
embedded once and cached in `--cache`, facts spliced in). An HNSW index (usearch, the index default,
M=16, ef_construction=100) is built once per background over its vectors; the approximate mode's
candidates are that index's hits mapped to context positions, plus the sample's fact sentences (the
few rows that are not in the background index; they are re-scored like every candidate).

Each sample follows the exact greedy trajectory of the policy for `--steps` steps. At every step
the same state is searched both ways; a step agrees when both modes pick the same chunk ("same
text": the same sentence, possibly another copy of it: the 10M background holds every test-novel
sentence about three times, and copies in one position bucket score exactly alike). Times are
per search call (state encoding excluded), median over all steps. "Steps above T": the steps whose
exact best score is at least `--threshold` (the chunks the Q-threshold stop rule would keep). Coverage is that of the exact
trajectory (every supporting fact retrieved).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True, help="a policy with rotary positions (trained, or exported)")
    ap.add_argument("--tasks", default="qa1,qa2,qa3")
    ap.add_argument("--lengths", default="1M,10M")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--query-every", type=int, default=1, help="ANN query for every N-th position range only")
    ap.add_argument("--ef", type=int, default=0, help="HNSW ef of the candidate searches (0: the index default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5, help="the Q-threshold stop rule of `qrag bench`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="background cache (default $QRAG_CACHE/bench)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qrag-positional"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from qrag_cli.bench.contexts import ContextBuilder
    from qrag_cli.data.generate import generate
    from qrag_cli.data.samples import materialise
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import cache_root, resolve_roles
    from qrag_cli.search.positions import approx_rotary_search, exact_rotary_search
    from qrag_cli.search.usearch_backend import UsearchBackend, build_usearch
    from qrag_cli.settings import AnnSettings, DataSettings

    state_spec, action_spec = resolve_roles(args.policy)
    if action_spec.pooling.positions == "none":
        sys.exit(f"{args.policy} has no rotary positions: nothing to compare")
    integer = action_spec.pooling.positions == "int"
    states = load_encoder(state_spec, threads=args.threads)
    actions = load_encoder(action_spec, threads=args.threads)
    builder = ContextBuilder(actions, args.cache or cache_root() / "bench",
                             progress=lambda what, done, total: print(f"  {what} {done}/{total}", file=sys.stderr))
    rows = []
    for length in args.lengths.split(","):
        for task in args.tasks.split(","):
            _, samples = generate(DataSettings(task=task, length=length, n=args.n, seed=args.seed, split="test"))
            bg = builder.background(samples[0]["background"])
            folder = args.work / Path(bg.path).stem
            t = time.perf_counter()
            if not (folder / "usearch.index").is_file():
                folder.mkdir(parents=True, exist_ok=True)
                build_usearch(bg.vectors, folder, AnnSettings(), seed=0, threads=args.threads)
            ann_build_s = time.perf_counter() - t
            ann = UsearchBackend.open(folder, bg.vectors, AnnSettings(), ef=args.ef or None, threads=args.threads)
            agree = same_text = total = covered = kept = kept_agree = 0
            t_exact: list[float] = []
            t_approx: list[float] = []
            for sample in samples:
                texts = materialise(sample)
                ctx, _, _ = builder.build(sample, texts)
                n = len(ctx)
                facts = np.array([f["position"] for f in sample["facts"]], dtype=np.int64)
                is_bg = np.ones(n, dtype=bool)
                is_bg[facts] = False
                bg_to_ctx = np.flatnonzero(is_bg)

                def candidates(qs, fetch, bg_to_ctx=bg_to_ctx, facts=facts):
                    ids = ann.candidates(qs, fetch)
                    mapped = np.where(ids >= 0, bg_to_ctx[np.maximum(ids, 0)], -1)
                    return np.concatenate([mapped, np.broadcast_to(facts, (len(qs), len(facts)))], axis=1)

                retrieved: list[int] = []
                for _ in range(args.steps):
                    chunks = [texts[i] for i in sorted(retrieved)]
                    s = states.encode_states([[sample["question"], *chunks]])[0]
                    t0 = time.perf_counter()
                    want, want_score = exact_rotary_search(ctx.vectors, s, retrieved, 1, integer=integer)
                    t1 = time.perf_counter()
                    got = approx_rotary_search(ctx.vectors, s, retrieved, 1, candidates, integer=integer,
                                               fetch=args.candidates, query_every=args.query_every)[0]
                    t2 = time.perf_counter()
                    t_exact.append(t1 - t0)
                    t_approx.append(t2 - t1)
                    agree += int(len(got) > 0 and got[0] == want[0])
                    # the background repeats novel sentences at 10M: an equal-scoring copy elsewhere is the same text
                    same_text += int(len(got) > 0 and texts[got[0]] == texts[want[0]])
                    if want_score[0] >= args.threshold:  # a step whose chunk the stop rule would keep
                        kept += 1
                        kept_agree += int(len(got) > 0 and got[0] == want[0])
                    total += 1
                    retrieved.append(int(want[0]))
                covered += int(set(sample["support"]) <= set(retrieved))
            row = {"task": task, "length": length, "n": len(samples), "chunks": n, "steps": total,
                   "agreement": round(agree / total, 4), "same_text": round(same_text / total, 4),
                   "kept_steps": kept, "kept_agreement": round(kept_agree / kept, 4) if kept else None, "coverage_exact": round(covered / len(samples), 3),
                   "exact_ms_median": round(1000 * statistics.median(t_exact), 1),
                   "approx_ms_median": round(1000 * statistics.median(t_approx), 1),
                   "speedup": round(statistics.median(t_exact) / statistics.median(t_approx), 1),
                   "ann_build_s": round(ann_build_s, 1), "candidates": args.candidates, "ef": ann.ef,
                   "query_every": args.query_every}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    print("| task | length | chunks | steps | same chunk | same text | steps above T: n, same chunk | exact ms/step | "
          "approx ms/step | speed-up | coverage (exact) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['task']} | {r['length']} | {r['chunks']:,} | {r['steps']} | {r['agreement']:.4f} | "
              f"{r['same_text']:.4f} | {r['kept_steps']}, {r['kept_agreement']} | "
              f"{r['exact_ms_median']} | {r['approx_ms_median']} | {r['speedup']}x | {r['coverage_exact']} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
