"""Where a trained policy's misses come from: background sentences or the story's own lines.

Runs the policy (an exported `qrag export` folder) the way `qrag bench` does (generated test samples,
cached background embeddings, exact search, 6 steps) on one BabiLong task at one length, and counts,
over the samples whose support was not all retrieved: how many retrieved a background (novel)
sentence, and the retrieved chunks that were background overall. `--show` prints the first misses
with their supporting facts and the six retrieved chunks (F: a story line, BG: a novel sentence).

    python benchmarks/research/misses.py --policy /tmp/pol-qa3 --task qa3 --length 1M --n 100 --show 4
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from qrag_cli.bench import baselines as bl
from qrag_cli.bench.contexts import ContextBuilder
from qrag_cli.data.generate import generate
from qrag_cli.data.samples import materialise
from qrag_cli.embed.encoder import load_encoder
from qrag_cli.embed.models import cache_root, resolve_roles
from qrag_cli.settings import DataSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="an exported policy folder (qrag export)")
    ap.add_argument("--task", default="qa3")
    ap.add_argument("--length", default="1M", help="32K or longer (samples that reference a shared background)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--show", type=int, default=0, help="misses printed in full")
    ap.add_argument("--cache", default="", help="background-embedding cache (default: qrag bench's, $QRAG_CACHE/bench)")
    a = ap.parse_args()
    state_spec, action_spec = resolve_roles(a.policy)
    action = load_encoder(action_spec, threads=1)
    state = action if state_spec == action_spec else load_encoder(state_spec, threads=1)
    builder = ContextBuilder(action, a.cache or cache_root() / "bench")
    _, samples = generate(DataSettings(benchmark="babilong", task=a.task, length=a.length, n=a.n, seed=0,
                                       split="test"))
    counts: Counter[str] = Counter()
    shown = 0
    for x in samples:
        if "facts" not in x:
            raise SystemExit(f"length {a.length} stores whole contexts: use 32K or longer")
        texts = materialise(x)
        ctx, _, _ = builder.build(x, texts)
        got = bl.multistep(bl.retriever_for(state, ctx), x["question"], a.steps, None).retrieved
        facts = {f["position"] for f in x["facts"]}
        support = set(x["support"])
        background = sum(p not in facts for p in got)
        counts["samples"] += 1
        counts["background_retrieved"] += background
        if support <= set(got):
            counts["covered"] += 1
            continue
        counts["misses"] += 1
        counts["misses_with_background"] += background > 0
        counts["supporting_facts_missed"] += len(support - set(got))
        if shown < a.show:
            shown += 1
            print(f"{x['question']}  ({len(facts)} story lines)")
            for p in sorted(support):
                print(f"   support {p:>6} {texts[p]}{'  (retrieved)' if p in got else ''}")
            for k, p in enumerate(got):
                print(f"   step {k}  {p:>6} {'F ' if p in facts else 'BG'} {texts[p][:80]}")
    print(json.dumps({"policy": a.policy, "task": a.task, "length": a.length, **counts}))


if __name__ == "__main__":
    main()
