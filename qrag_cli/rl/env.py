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
    """E episodes stepped together; a finished episode is replaced by one on a random training sample.
    `prepare(episode, sample)`, when given, sees every new episode before its first step."""

    def __init__(self, samples: list[dict[str, Any]], n_envs: int, max_steps: int, rng: np.random.Generator,
                 prepare: Callable[[Episode, dict[str, Any]], None] | None = None) -> None:
        self.samples, self.max_steps, self.rng, self.prepare = samples, max_steps, rng, prepare
        self.episodes = [self.new_episode() for _ in range(n_envs)]

    def new_episode(self) -> Episode:
        i = int(self.rng.integers(len(self.samples)))
        ep = Episode.of(i, self.samples[i], self.max_steps)
        if self.prepare is not None:
            self.prepare(ep, self.samples[i])
        return ep

    def state_dict(self) -> list[dict[str, Any]]:
        return [{"sample": e.sample, "retrieved": list(e.retrieved), "swapped": [list(p) for p in e.swapped]}
                for e in self.episodes]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self.episodes = []
        for row in state:
            ep = Episode.of(row["sample"], self.samples[row["sample"]], self.max_steps)
            ep.swap([(int(place), str(text)) for place, text in row.get("swapped", [])])
            ep.retrieved = list(row["retrieved"])
            self.episodes.append(ep)
