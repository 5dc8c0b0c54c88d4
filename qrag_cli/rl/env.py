"""Retrieval episodes over training samples (method.md, "the decision problem").

An episode: a question, the chunks of one context, its supporting chunk indices, `max_steps`. Each
step retrieves one not-yet-retrieved chunk; the completion reward is paid once, at the step where the
retrieved set first holds every supporting chunk. In training an episode always runs all its steps
(later steps earn 0) and the time limit counts as terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..search.positions import chunk_positions
from .returns import completion_reward

#: Steps per episode by benchmark (the method's max_steps).
MAX_STEPS = {"babilong": 6, "ruler": 5}


@dataclass
class Episode:
    sample: int  # index of its sample in the training list
    question: str
    chunks: list[str]
    support: list[int]
    max_steps: int
    retrieved: list[int] = field(default_factory=list)
    swapped: list[tuple[int, str]] = field(default_factory=list)  # (place, text) put in by `swap`

    @classmethod
    def of(cls, index: int, sample: dict[str, Any], max_steps: int) -> Episode:
        chunks = list(sample["context"])
        return cls(index, sample["question"], chunks, [int(i) for i in sample["support"]], min(max_steps, len(chunks)))

    def swap(self, pairs: list[tuple[int, str]]) -> None:
        """Replace chunk `place` by `text` for each pair (mined negatives; before the first step)."""
        for place, text in pairs:
            self.chunks[place] = text
        self.swapped.extend(pairs)

    def available(self) -> np.ndarray:
        mask = np.ones(len(self.chunks), dtype=bool)
        mask[self.retrieved] = False
        return mask

    def state_text(self) -> list[str]:
        """The state pieces of the inference loop: the question, then the retrieved chunks by position."""
        return [self.question, *(self.chunks[i] for i in sorted(self.retrieved))]

    def positions(self, integer: bool) -> np.ndarray:
        return chunk_positions(len(self.chunks), self.retrieved, integer=integer)

    def step(self, action: int) -> tuple[float, bool]:
        """Retrieve chunk `action`: (reward, done). Done only at the time limit."""
        if action in self.retrieved or not 0 <= action < len(self.chunks):
            raise ValueError(f"chunk {action} is not available")
        self.retrieved.append(int(action))
        return completion_reward(self.retrieved, self.support), len(self.retrieved) >= self.max_steps


class EnvPool:
    """E episodes stepped together; a finished episode is replaced by one on a training sample drawn from
    the task mixture: a task with probability `weights[task]` (each sample's `train_task`; one task
    when no weights are given), then one of its samples uniformly. `max_steps(sample)` is the episode
    length of a sample's task. `prepare(episode, sample)`, when given, sees every new episode before
    its first step."""

    def __init__(self, samples: list[dict[str, Any]], n_envs: int, max_steps: int | Callable[[dict[str, Any]], int],
                 rng: np.random.Generator, prepare: Callable[[Episode, dict[str, Any]], None] | None = None,
                 weights: dict[str, float] | None = None) -> None:
        self.samples, self.rng, self.prepare = samples, rng, prepare
        self.max_steps = max_steps if callable(max_steps) else (lambda _sample, n=max_steps: n)
        self.groups: list[np.ndarray] = []
        self.p: np.ndarray | None = None
        if weights and len(weights) > 1:
            by_task: dict[str, list[int]] = {t: [] for t in weights}
            for i, x in enumerate(samples):
                by_task[x["train_task"]].append(i)
            names = [t for t in weights if weights[t] > 0]
            if any(not by_task[t] for t in names):
                raise ValueError(f"no training samples for task(s) {[t for t in names if not by_task[t]]}")
            self.groups = [np.asarray(by_task[t]) for t in names]
            self.p = np.asarray([weights[t] for t in names], dtype=np.float64)
            self.p /= self.p.sum()
        self.episodes = [self.new_episode() for _ in range(n_envs)]

    def draw(self) -> int:
        """The index of a new episode's sample: its task by weight, then uniformly within the task."""
        if self.p is None:
            return int(self.rng.integers(len(self.samples)))
        group = self.groups[int(self.rng.choice(len(self.groups), p=self.p))]
        return int(group[self.rng.integers(len(group))])

    def new_episode(self) -> Episode:
        i = self.draw()
        ep = Episode.of(i, self.samples[i], self.max_steps(self.samples[i]))
        if self.prepare is not None:
            self.prepare(ep, self.samples[i])
        return ep

    def state_dict(self) -> list[dict[str, Any]]:
        return [{"sample": e.sample, "retrieved": list(e.retrieved), "swapped": [list(p) for p in e.swapped]}
                for e in self.episodes]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self.episodes = []
        for row in state:
            sample = self.samples[row["sample"]]
            ep = Episode.of(row["sample"], sample, self.max_steps(sample))
            ep.swap([(int(place), str(text)) for place, text in row.get("swapped", [])])
            ep.retrieved = list(row["retrieved"])
            self.episodes.append(ep)
