"""Variants of the Q-threshold stop rule, measured on the multi-step loop's own step scores.

Runs the loop with the base embedder (exact search, `--steps` steps of one chunk) on samples files,
records each step's chunk and score, and scores every rule variant and threshold offline with fact
F1 (kept chunks against the support) and the mean number of chunks kept:

- ``prefix`` (what ``--stop-threshold`` does): keep the steps before the first one scoring below T;
- ``first``: always keep step 1, then as ``prefix``;
- ``each``: keep every step scoring at least T (not only a prefix);
- ``relative``: ``prefix`` with T times the best score of the trajectory as the threshold.

    python benchmarks/research/stop_rules.py vt.jsonl mk.jsonl --steps 5 --thresholds 0.3,0.4,0.5,0.6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's qrag_cli

from qrag_cli.bench import baselines as bl  # noqa: E402
from qrag_cli.bench.contexts import ContextBuilder  # noqa: E402
from qrag_cli.bench.metrics import fact_prf  # noqa: E402
from qrag_cli.data.samples import materialise, read_samples  # noqa: E402
from qrag_cli.embed.encoder import load_encoder  # noqa: E402
from qrag_cli.embed.models import cache_root, resolve_model  # noqa: E402

RULES = ("prefix", "first", "each", "relative")


def kept(scores: list[float], positions: list[int], rule: str, t: float) -> list[int]:
    """The positions a rule keeps from one trajectory (one chunk per step)."""
    if rule == "each":
        return [p for p, s in zip(positions, scores) if s >= t]
    if rule == "relative":
        t = t * max(scores)
    out: list[int] = []
    for i, (p, s) in enumerate(zip(positions, scores)):
        if s < t and not (rule == "first" and i == 0):
            break
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="qrag-samples files")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--thresholds", default="0.3,0.4,0.5,0.6")
    ap.add_argument("--relative", default="0.6,0.7,0.8,0.9", help="fractions of the best score for 'relative'")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    enc = load_encoder(resolve_model("default"), threads=a.threads)
    builder = ContextBuilder(enc, cache_root() / "bench")
    for path in a.files:
        header, it = read_samples(path)
        runs = []
        for x in it:
            texts = materialise(x)
            ctx, _, _ = builder.build(x, texts)
            (traj,) = bl.retriever_for(enc, ctx).run([x["question"]], steps=a.steps, k=1)
            runs.append(([r.score for r in traj.retrieved], traj.positions(), x["support"]))
        first = sorted(s[0] for s, _, _ in runs)
        later = sorted(v for s, _, _ in runs for v in s[1:])
        rows = []
        for rule in RULES:
            ts = a.relative if rule == "relative" else a.thresholds
            for t in (float(v) for v in ts.split(",")):
                ks = [kept(s, p, rule, t) for s, p, _ in runs]
                f1 = sum(fact_prf(k, sup)[2] for k, (_, _, sup) in zip(ks, runs)) / len(runs)
                rows.append({"rule": rule, "t": t, "fact_f1": round(f1, 3),
                             "kept": round(sum(map(len, ks)) / len(runs), 2)})
        print(json.dumps({"file": path, "task": header["task"], "length": header["length"], "n": len(runs),
                          "first_step_score": [round(first[0], 3), round(first[len(first) // 2], 3), round(first[-1], 3)],
                          "later_step_score": [round(later[0], 3), round(later[len(later) // 2], 3), round(later[-1], 3)],
                          "rules": rows}))


if __name__ == "__main__":
    main()
