"""What a trained policy's first step prefers by position: Q of the object's 'get' chunks moved along
the context's 19 integer position buckets (method.md: before any retrieval p is the normalised
position 0..18).

For validation samples of the run's own task, prints each chunk that picks up the question's object,
its bucket, whether it is a supporting fact, and Q(s_0, a; p) for p = 0, 3, ..., 18. A policy that
prefers the latest evidence shows Q rising with p.

    python benchmarks/research/position_preference.py --run /tmp/runs/qa2c --n 10
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import torch

from qrag_cli.data.babi import GET_VERBS
from qrag_cli.rl import checkpoint as ckpt
from qrag_cli.rl.qnet import rotate_t
from qrag_cli.rl.trainer import check, make_net, make_samples
from qrag_cli.settings import TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a `qrag train` run folder")
    ap.add_argument("--checkpoint", default="last", choices=["last", "best"])
    ap.add_argument("--n", type=int, default=10, help="validation samples shown")
    a = ap.parse_args()
    run = Path(a.run)
    s = check(replace(TrainSettings(**json.loads((run / "settings.json").read_text())), resume=False))
    torch.set_num_threads(1)
    _, val = make_samples(s)
    net = make_net(s)
    ckpt.load_checkpoint(run / "checkpoints" / a.checkpoint, net)
    net.eval()
    p = torch.arange(19, dtype=torch.float64)
    print("support  chunk  bucket  text".ljust(52), "Q at p = " + " ".join(f"{int(x):>4}" for x in p[::3]))
    with torch.no_grad():
        for x in val[: a.n]:
            obj = re.search(r"the (\w+)\W*(before|\?)", x["question"]).group(1)
            s0 = net.embed_states([[x["question"]]])[0]
            vecs = net.embed_chunks(x["context"])
            n = len(x["context"])
            print(x["question"])
            for i, c in enumerate(x["context"]):
                if any(f" {v} the {obj}" in c for v in GET_VERBS):
                    q = (rotate_t(vecs[i].unsqueeze(0).repeat(19, 1), p) @ s0).numpy()
                    tag = "S" if i in x["support"] else " "
                    print(f"  {tag} {i:>7} {int(18 * i / max(1, n - 1)):>7}  {c[:30]:<30}",
                          " ".join(f"{v:.2f}" for v in q[::3]))


if __name__ == "__main__":
    main()
