"""Where qa3's supporting facts sit among the story lines that look like them.

qa3 asks `Where was the {O} before the {R}?`; its support is the holder's move into the previous
room, the get of the object and the move into R (benchmarks.md). A policy that takes "the object's
latest get" (what a qa2 policy learns) is right only when the supporting get is the latest one in the
story. This counts, over generated qa3 samples (no model, no novels): how often that is so, how often
the object is mentioned again after the last supporting line, how many gets of the object by the
same actor precede the supporting one, and the support sizes.

    python benchmarks/research/qa3_support_order.py --n 2000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter

from qrag_cli.data.babi import DROP_VERBS, GET_VERBS, generate_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="qa3 samples to generate")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    c: Counter[str] = Counter()
    earlier, story_len = [], []
    for x in generate_samples("qa3", args.n, args.seed):
        obj = re.search(r"the (\w+) before", x.question).group(1)
        sup = sorted(x.support)
        gets = [i for i, s in enumerate(x.story) if any(f" {v} the {obj}" in s for v in GET_VERBS)]
        drops = [i for i, s in enumerate(x.story) if any(f" {v} the {obj}" in s for v in DROP_VERBS)]
        sup_get = max(i for i in sup if i in gets)
        actor = x.story[sup_get].split()[0]
        c[f"support size {len(sup)}"] += 1
        c["supporting get is the latest get"] += sup_get == gets[-1]
        c["object mentioned after the last supporting line"] += any(i > sup[-1] for i in gets + drops)
        earlier.append(sum(1 for i in gets if i < sup_get and x.story[i].startswith(actor + " ")))
        story_len.append(len(x.story))
    n = args.n
    out = {k: round(v / n, 3) for k, v in sorted(c.items())}
    out.update({"samples": n, "story lines, median": statistics.median(story_len),
                "earlier gets of the object by the same actor, mean": round(statistics.mean(earlier), 2),
                "share with at least one such earlier get": round(sum(e > 0 for e in earlier) / n, 3)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
