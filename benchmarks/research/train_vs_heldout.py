"""Does a policy generalise or remember? Greedy coverage on its own training samples vs held-out ones.

Runs the trainer's validation (the inference loop, greedy, the episode's steps) of a checkpoint on the
first `--n` samples the run trained on and on `--n` held-out samples of the same generator (the
validation tail, never trained on), so the two differ only in whether the policy has seen them.

    python benchmarks/research/train_vs_heldout.py --checkpoint RUN/checkpoints/last --n 100
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from qrag_cli.rl.checkpoint import init_from
from qrag_cli.rl.tasks import check, make_samples
from qrag_cli.rl.trainer import Trainer, make_net
from qrag_cli.settings import TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="RUN/checkpoints/last or best (its run's settings.json is read)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = Path(args.checkpoint)
    run = json.loads((ckpt.parent.parent / "settings.json").read_text(encoding="utf-8"))
    s = check(replace(TrainSettings(**run), n_val=args.n, resume=False, init="", out="unused"))
    train, held_out = make_samples(s)
    net = make_net(s)
    init_from(ckpt, net)
    out = {"checkpoint": str(ckpt), "n_train": s.n_train}
    for name, samples in (("trained_on", train[: args.n]), ("held_out", held_out)):
        out[name] = Trainer(replace(s, mined_negatives=0), net, train[:1], samples).validate()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
