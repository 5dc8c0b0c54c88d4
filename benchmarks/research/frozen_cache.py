"""What embedding each distinct training text once saves when the action encoder is frozen.

A frozen-action run (`--preset cpu`) embeds every training context once, when an episode first
draws it. Story lines and hard negatives recur across the 1,000 contexts, so the trainer embeds each
distinct text once (`Trainer.frozen_vectors`). This times, in one process and one after the other,
the per-context embedding (`QNet.embed_chunks` on each context, what the trainer did before) and the
trainer's, over the same training samples, and reports the lowest cosine between the two (bf16
autocast: batches of other texts pad differently).

    python benchmarks/research/frozen_cache.py --task babilong:qa3 --n-train 1000 --hard-negatives 0.2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from qrag_cli.rl.tasks import base_model_path, check, make_samples
from qrag_cli.rl.trainer import Trainer, make_net
from qrag_cli.settings import TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="babilong:qa3")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--hard-negatives", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = check(TrainSettings(task=args.task, preset="cpu", n_train=args.n_train, n_val=1,
                            hard_negatives=args.hard_negatives, out="unused"))
    train, val = make_samples(s)
    net = make_net(s, base_model_path(s.model)).eval()
    contexts = [x["context"] for x in train]
    t0 = time.perf_counter()
    with torch.no_grad():
        per_context = [net.embed_chunks(c) for c in contexts]
    t1 = time.perf_counter()
    trainer = Trainer(s, net, train, val)
    deduped = [trainer.frozen_vectors(c) for c in contexts]
    t2 = time.perf_counter()
    cos = min(float(torch.nn.functional.cosine_similarity(a, b).min()) for a, b in zip(per_context, deduped))
    chunks = sum(len(c) for c in contexts)
    print(json.dumps({"task": args.task, "contexts": len(contexts), "hard_negatives": args.hard_negatives,
                      "chunks": chunks, "distinct": len(trainer._text_vectors), "threads": args.threads,
                      "per_context_s": round(t1 - t0, 1), "distinct_once_s": round(t2 - t1, 1),
                      "speedup": round((t1 - t0) / (t2 - t1), 2), "min_cosine": round(cos, 5)}))


if __name__ == "__main__":
    main()
