"""`train`: PQN-style soft Q(lambda) for the Q-RAG policy, on-policy, no replay (method.md).

One iteration, all in this file:
1. rollout: ceil(batch / E) steps of E episodes. At each step the current positions are applied, the
   state is encoded by the online and the target state encoders, the target soft value V(s_t) =
   V1 + V2 (masked top-5, `soft_value`) is recorded, and an action is taken: uniform over available
   chunks for the first `warmup_transitions`, then sampled from softmax((Q - max Q) / alpha) over the
   top-5 available. One more target encoding of the states that follow the last step gives its
   V(s_{T+1}) (these are the "+E transitions" of the method, used only to bootstrap).
2. lambda-returns with explicit V(s_{t+1}) (`lambda_returns`).
3. loss 0.5 * MSE(2 q1, G) + 0.5 * MSE(2 q2, G) on the taken actions (positions of their step),
   AdamW, gradient clip, lr warm-up then linear decay.
4. Polyak update (tau) of both target encoders after every optimiser step.
Every `val_every` updates: greedy coverage of every task on the validation split through the
inference loop (`validation.py`), then checkpoints (last, and best by the rule of `validation.py`: the
worst task counts more than the mean; a later validation wins a tie). Episodes are drawn from the task
mixture of `tasks.py`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, TrainingError
from ..settings import TrainSettings
from . import checkpoint as ckpt
from .env import MAX_STEPS, EnvPool, Episode
from .mining import NegativeMiner
from .qnet import ChunkLower, PolicyEncoder, QNet, StateBatch, polyak, rotate_t, twin_q
from .returns import lambda_returns, soft_value
from .tasks import (  # noqa: F401  (check, make_samples: part of this module's API)
    base_model_path,
    check,
    default_run_folder,
    make_samples,
    mixture,
    resumed_settings,
)
from .validation import select_key

Progress = Callable[[dict[str, Any]], None]
Stage = Callable[[str, int, int], None]


# --- the trainer ----------------------------------------------------------------------------------


@dataclass
class Counters:
    updates: int = 0
    transitions: int = 0
    best_coverage: float = -1.0  # coverage in the minimum number of steps, of the best checkpoint
    best_coverage_max_steps: float = -1.0  # its coverage within the episode's steps
    last_coverage: float | None = None
    best_select: float = -1.0  # its selection score (validation.py; the first criterion)


class Trainer:
    def __init__(self, s: TrainSettings, net: QNet, train_samples: list[dict], val_samples: list[dict],
                 stage: Stage | None = None) -> None:
        self.s, self.net, self.stage = s, net, stage
        self.val_samples = val_samples
        self.integer = s.positions == "int"
        self.target = net.make_target()
        self.opt = torch.optim.AdamW(net.trainable(), lr=s.lr, betas=(s.adam_beta1, s.adam_beta2), eps=s.adam_eps,
                                     weight_decay=s.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_factor)
        self.rng = np.random.default_rng(s.seed)
        self.counters = Counters()
        self._text_vectors: dict[str, torch.Tensor] = {}  # chunk text -> its frozen embedding (each text once)
        weights = mixture(s) if all("train_task" in x for x in train_samples) else None
        self.pool = EnvPool(train_samples, s.n_envs, self.steps_of, self.rng, self.episode_miner(), weights)
        self._lower_cache: dict[int, ChunkLower] = {}  # sample index -> frozen lower action layers' output
        self._vectors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per rollout: id(ep) -> (online, target)

    def steps_of(self, sample: dict[str, Any]) -> int:
        """Episode length of a sample: --max-steps, else its benchmark's (6 babilong, 5 ruler; 6 for others)."""
        if self.s.max_steps:
            return self.s.max_steps
        task = sample.get("train_task") or self.s.task
        bench = sample.get("benchmark") if task == "data" else task.split(":")[0]
        return MAX_STEPS.get(bench or "", MAX_STEPS["babilong"])

    def lr_factor(self, update: int) -> float:
        w = self.s.warmup_updates
        if update < w:
            return (update + 1) / (w + 1)
        return max(0.0, (self.s.steps - update) / max(1, self.s.steps - w))

    @property
    def alpha(self) -> float:
        if self.s.alpha_schedule == "lr":  # the reference: alpha follows the lr schedule
            return self.s.alpha * self.lr_factor(self.counters.updates)
        return self.s.alpha

    def episode_miner(self) -> NegativeMiner | None:
        """When a frozen-action run uses the training novels' 40,000 candidate sentences (--background-pool,
        --mined-negatives), their cached vectors (the same default model, float32) seed the per-text cache;
        with --mined-negatives, the miner that swaps the policy's own confusions into new episodes."""
        if not (self.s.freeze_action and (self.s.background_pool or self.s.mined_negatives)):
            return None
        from ..data.negatives import candidates

        told = self.stage and (lambda done, total: self.stage("embed candidate sentences", done, total))
        sentences, vectors = candidates("train", threads=self.s.threads, progress=told)
        self._text_vectors.update(zip(sentences, torch.from_numpy(vectors)))
        if not self.s.mined_negatives:
            return None
        self.set_rollout_mode()  # the first episodes are mined now, the others inside rollouts
        return NegativeMiner(self.net, sentences, vectors, self.s.mined_negatives, self.rng)

    # chunk embeddings: re-embedded every rollout (from the cached lower layers when those are frozen),
    # or, when the whole action encoder is frozen, each distinct text embedded once
    def lower(self, ep: Episode) -> ChunkLower:
        if ep.sample not in self._lower_cache:
            self._lower_cache[ep.sample] = self.net.chunk_lower(ep.chunks)
        return self._lower_cache[ep.sample]

    def chunk_vectors(self, ep: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        if self.s.freeze_action:
            if id(ep) not in self._vectors:
                v = self.frozen_vectors(ep.chunks)
                self._vectors[id(ep)] = (v, v)
        elif id(ep) not in self._vectors:
            with torch.no_grad():
                if self.net.action_frozen_layers:
                    low = self.lower(ep)
                    self._vectors[id(ep)] = (self.net.embed_lower(low),
                                             self.net.embed_lower(low, self.target["action"]))
                else:
                    self._vectors[id(ep)] = (self.net.embed_chunks(ep.chunks),
                                             self.net.embed_chunks(ep.chunks, self.target["action"]))
        return self._vectors[id(ep)]

    def frozen_vectors(self, texts: list[str]) -> torch.Tensor:
        """Frozen action embeddings of `texts`, embedding only texts no earlier context held: story lines
        and hard negatives recur across samples (qa3, 1,000 training contexts: 62% of the 126k
        chunks are distinct, 52% with --hard-negatives 0.2)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._text_vectors]
        if new:
            with torch.no_grad():
                self._text_vectors.update(zip(new, self.net.embed_chunks(new)))
        return torch.stack([self._text_vectors[t] for t in texts])

    def set_rollout_mode(self) -> None:
        for m in (self.net.state, self.net.action, self.target["state"], self.target["action"]):
            m.train(self.s.rollout_dropout)

    def target_values(self, eps: list[Episode], s_tgt: torch.Tensor) -> np.ndarray:
        """V(s) = V1 + V2 with the target encoders, soft maximum over the top-k available chunks."""
        out = np.empty(len(eps))
        for i, ep in enumerate(eps):
            ra = rotate_t(self.chunk_vectors(ep)[1], torch.from_numpy(ep.positions(self.integer)))
            q1, q2 = twin_q(s_tgt[i], ra)
            avail = torch.from_numpy(ep.available())
            out[i] = float(soft_value(q1, avail, self.alpha, self.s.soft_top)
                           + soft_value(q2, avail, self.alpha, self.s.soft_top))
        return out

    def act(self, ep: Episode, s_on: torch.Tensor, stats: list[float]) -> tuple[int, float]:
        """Behaviour action and its position: uniform during warm-up, then softmax over the top-k available."""
        p = ep.positions(self.integer)
        avail = ep.available()
        ids = np.flatnonzero(avail)
        if self.counters.transitions < self.s.warmup_transitions:
            a = int(self.rng.choice(ids))
        else:
            q = (rotate_t(self.chunk_vectors(ep)[0], torch.from_numpy(p)) @ s_on).double().numpy()[ids]
            stats.extend(q.tolist())
            k = min(self.s.soft_top, len(ids))
            top = np.argsort(-q, kind="stable")[:k]
            logits = (q[top] - q[top].max()) / self.alpha
            prob = np.exp(logits) / np.exp(logits).sum()
            a = int(ids[top[self.rng.choice(k, p=prob)]])
        return a, float(p[a])

    def rollout(self) -> dict[str, Any]:
        s, E = self.s, self.s.n_envs
        T = math.ceil(s.batch_size / E)
        self._vectors.clear()
        self.set_rollout_mode()
        step_batches, actions, pos, episodes = [], [], [], []
        rewards, dones, values = np.zeros((T, E)), np.zeros((T, E)), np.zeros((T + 1, E))
        q_seen: list[float] = []
        with torch.no_grad():
            for t in range(T):
                eps = list(self.pool.episodes)
                texts = [ep.state_text() for ep in eps]
                batch = self.net.state_batch(texts)
                step_batches.append(batch)
                s_on = self.net.embed_state_batch(batch)
                if t > 0:  # V(s_0) bootstraps nothing in this rollout
                    values[t] = self.target_values(eps, self.net.embed_state_batch(batch, self.target["state"]))
                for i, ep in enumerate(eps):
                    a, p = self.act(ep, s_on[i], q_seen)
                    actions.append(a)
                    pos.append(p)
                    episodes.append(ep)
                    rewards[t, i], done = ep.step(a)
                    dones[t, i] = float(done)
                    self.counters.transitions += 1
                    if done:
                        self.pool.episodes[i] = self.pool.new_episode()
            eps = list(self.pool.episodes)  # V(s_{T+1}): the states after the last step
            batch = self.net.state_batch([ep.state_text() for ep in eps])
            values[T] = self.target_values(eps, self.net.embed_state_batch(batch, self.target["state"]))
        # values[t + 1] is V(s_{t+1}) for every env; at a done step it belongs to a new episode and m_t = 0
        returns = lambda_returns(rewards, dones, values[1:], s.gamma, s.lam)
        return {"states": StateBatch.cat(step_batches), "actions": actions, "positions": pos, "episodes": episodes,
                "returns": returns.reshape(-1), "rewards": rewards, "dones": dones, "q_seen": q_seen}

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """0.5 * MSE(2 q1, G) + 0.5 * MSE(2 q2, G) on the taken actions; also returns q1 + q2."""
        self.net.state.train()
        self.net.action.train(not self.s.freeze_action)
        s_emb = self.net.embed_state_batch(batch["states"])
        if self.s.freeze_action:
            a_emb = torch.stack([self._text_vectors[ep.chunks[a]] for ep, a in zip(batch["episodes"], batch["actions"])])
        elif self.net.action_frozen_layers:
            taken = [(self.lower(ep), a) for ep, a in zip(batch["episodes"], batch["actions"])]
            a_emb = self.net.embed_lower(ChunkLower([low.rows[a] for low, a in taken],
                                                    [low.lower[a] for low, a in taken]))
        else:
            a_emb = self.net.embed_chunks([ep.chunks[a] for ep, a in zip(batch["episodes"], batch["actions"])])
        q1, q2 = twin_q(s_emb, rotate_t(a_emb, torch.tensor(batch["positions"], dtype=torch.float64)))
        g = torch.as_tensor(batch["returns"], dtype=torch.float32)
        return 0.5 * F.mse_loss(2 * q1, g) + 0.5 * F.mse_loss(2 * q2, g), (q1 + q2).detach()

    def update(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        batch = self.rollout()
        loss, q = _loss(self, batch)
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at update {self.counters.updates + 1}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.trainable(), self.s.clip)
        if not torch.isfinite(grad_norm):
            raise TrainingError(f"the gradient norm became {grad_norm.item()} at update {self.counters.updates + 1}")
        self.opt.step()
        self.sched.step()
        polyak(self.target["state"], self.net.state, self.s.tau)
        if not self.s.freeze_action:
            polyak(self.target["action"], self.net.action, self.s.tau)
        self.counters.updates += 1
        row = {"update": self.counters.updates, "transitions": self.counters.transitions,
               "loss": loss.item(), "q_mean": float(q.mean()), "return_mean": float(np.mean(batch["returns"])),
               "reward_sum": float(batch["rewards"].sum()), "episodes_ended": int(batch["dones"].sum()),
               "grad_norm": float(grad_norm), "lr": self.sched.get_last_lr()[0], "alpha": self.alpha,
               "seconds": time.perf_counter() - t0}
        if batch["q_seen"]:
            row.update(q_policy_mean=float(np.mean(batch["q_seen"])), q_policy_std=float(np.std(batch["q_seen"])))
        return row

    # validation through the one inference loop, per task (validation.py)
    def validate(self, stage: str = "") -> dict[str, float]:
        """The validation row (`stage`: its name in the setup progress, per sample)."""
        from .validation import validate

        self.net.state.eval()
        self.net.action.eval()
        told = self.stage and stage and (lambda done, total: self.stage(stage, done, total))
        return validate(PolicyEncoder(self.net, "state"), self.val_vectors, self.val_samples, self.steps_of,
                        self.s.piece_tokens, told or None)

    def val_vectors(self, j: int, x: dict[str, Any]) -> np.ndarray:
        if self.s.freeze_action:  # frozen: each distinct text embedded once, shared with training
            return self.frozen_vectors(x["context"]).numpy()
        with torch.no_grad():
            return self.net.embed_chunks(x["context"]).numpy()

    # resumable state
    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.counters.updates, "counters": asdict(self.counters),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "target_state": self.target["state"].state_dict(),
                "target_action": None if self.s.freeze_action else self.target["action"].state_dict(),
                "pool": self.pool.state_dict(), "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.counters = Counters(**st["counters"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.target["state"].load_state_dict(st["target_state"])
        if st["target_action"] is not None:
            self.target["action"].load_state_dict(st["target_action"])
        self.pool.load_state_dict(st["pool"])
        self.rng.bit_generator.state = st["numpy_rng"]
        torch.set_rng_state(st["torch_rng"])
        random.setstate(st["python_rng"])


def _loss(trainer: Trainer, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one batch (a module-level seam: tests inject a NaN here)."""
    return trainer.loss(batch)


def make_net(s: TrainSettings, base: Path | None = None) -> QNet:
    """The Q-network of resolved training settings (`base`: the base model folder, resolved from s.model)."""
    return QNet(base or base_model_path(s.model), scale=s.scale, positions=s.positions, piece_tokens=s.piece_tokens,
                max_tokens=s.max_tokens, train_state_layers=s.train_state_layers, freeze_action=s.freeze_action,
                bf16=s.bf16, train_action_layers=s.train_action_layers)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(settings: TrainSettings, progress: Progress | None = None, *,
          samples: tuple[list[dict], list[dict]] | None = None, stage: Stage | None = None) -> dict[str, Any]:
    """Train a policy into the run folder `settings.out`; returns a summary (run folder, updates, coverage).

    `progress(row)` gets each metrics row (and `steps_total`); `stage(name, done, total)` the setup:
    generating samples, embedding the candidate sentences, validating the untrained policy (embedding
    the validation contexts). `samples` = (training, validation) replaces the generated task samples
    (tests, custom data); each sample needs `question`, `context` (chunk texts) and `support` (chunk indices).
    """
    if settings.resume:  # the run's own settings for what was not given; a difference is refused
        run = Path(settings.out) if settings.out else default_run_folder(settings.task or
                                                                          ("" if settings.data else "babilong:qa1"))
        if (run / "settings.json").is_file():
            settings = resumed_settings(replace(settings, out=str(run)))
    s = check(settings)
    out = Path(s.out)
    base = base_model_path(s.model)
    ckpt.check_run(out, resume=s.resume, overwrite=s.overwrite)  # nothing is replaced before --init is loaded
    torch.set_num_threads(s.threads or os.cpu_count() or 1)
    train_samples, val_samples = samples if samples is not None else make_samples(s, stage)
    if not train_samples or not val_samples:
        raise InputError("training needs at least one training and one validation sample")
    seed_everything(s.seed)
    net = make_net(s, base)
    if s.init and not s.resume:  # before the target copies are made
        ckpt.init_from(Path(s.init), net)
    ckpt.prepare_run(out, resume=s.resume, overwrite=s.overwrite)
    if not s.resume:
        ckpt.write_json(out / "settings.json", asdict(s))
    trainer = Trainer(s, net, train_samples, val_samples, stage)
    metrics = out / "metrics.jsonl"
    last, best = out / "checkpoints" / "last", out / "checkpoints" / "best"
    if s.resume:
        _, st = ckpt.load_checkpoint(last, net)
        trainer.load_state_dict(st)
        ckpt.truncate_metrics(metrics, trainer.counters.updates)
        if trainer.counters.best_coverage_max_steps < 0 and (best / "manifest.json").is_file():
            # a checkpoint from before the 6-step rule: take `best`'s figure from its metrics line
            row = ckpt.validation_row(metrics, ckpt.read_manifest(best).get("updates", -1))
            if row is not None:
                trainer.counters.best_coverage_max_steps = row["val_coverage_max_steps"]
    else:
        row = {"update": 0, **trainer.validate("validate the untrained policy")}
        trainer.counters.last_coverage = row["val_coverage"]
        _append(metrics, row)
        if progress:
            progress({**row, "steps_total": s.steps})
    t_start, start_updates = time.perf_counter(), trainer.counters.updates
    while trainer.counters.updates < s.steps:
        try:
            row = trainer.update()
        except TrainingError as exc:
            raise TrainingError(f"{exc}; stopped, the last good checkpoint is kept in {last}") from exc
        u = trainer.counters.updates
        row["updates_per_s"] = (u - start_updates) / (time.perf_counter() - t_start)
        if u % s.val_every == 0 or u == s.steps:
            row.update(trainer.validate())
            c = trainer.counters
            c.last_coverage = row["val_coverage"]
            if is_best(row, c):
                c.best_coverage_max_steps, c.best_coverage = row["val_coverage_max_steps"], row["val_coverage"]
                c.best_select = row["val_select"]
                ckpt.save_policy(best, net, str(base), u, row["val_coverage"])
            ckpt.save_policy(last, net, str(base), u, row["val_coverage"], trainer.state_dict())
        _append(metrics, row)
        if progress:
            progress({**row, "steps_total": s.steps})
    c = trainer.counters
    return {"run": str(out), "updates": c.updates, "transitions": c.transitions,
            "val_coverage": c.last_coverage, "best_val_coverage": c.best_coverage,
            "best_val_coverage_max_steps": c.best_coverage_max_steps,
            "best": str(best), "last": str(last)}


def is_best(row: dict[str, Any], c: Counters) -> bool:
    """The rule of `validation.py` (the worst task first, then the mean; with one task, coverage within the
    episode's steps, then in the minimum number of steps); equal, the later validation wins."""
    best = c.best_select if c.best_select >= 0 else c.best_coverage_max_steps  # a checkpoint of an older run
    return select_key(row) >= (best, c.best_coverage)


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
