"""Facts spliced into background sentences (BabiLong style): one chunk = one sentence.

The facts keep their order and land at sorted random positions: `splice_positions` draws the final
chunk positions of the k facts uniformly among all ``C(n + k, k)`` interleavings; `insert_at` builds
the chunk list from a background and those positions (it is also how a stored sample whose
background is only referenced is materialised).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import InputError


def splice_positions(n_background: int, n_facts: int, rng: random.Random) -> list[int]:
    """Sorted final chunk positions of `n_facts` facts among `n_background` background sentences."""
    return sorted(rng.sample(range(n_background + n_facts), n_facts))


def insert_at(background: Sequence[str], facts: Sequence[str], positions: Sequence[int]) -> list[str]:
    """The chunk list with ``facts[i]`` at chunk position ``positions[i]`` (strictly increasing)."""
    if len(facts) != len(positions):
        raise InputError(f"{len(facts)} facts but {len(positions)} positions")
    total = len(background) + len(facts)
    out: list[str] = []
    b = 0
    prev = -1
    for fact, p in zip(facts, positions):
        if not prev < p < total:
            raise InputError(f"fact position {p} is out of order or outside 0..{total - 1}")
        take = p - len(out)
        out.extend(background[b : b + take])
        b += take
        out.append(fact)
        prev = p
    out.extend(background[b:])
    return out


def splice(background: Sequence[str], facts: Sequence[str], rng: random.Random) -> tuple[list[str], list[int]]:
    """Insert `facts`, in order, at sorted random positions among `background`.

    Returns the chunk list and the final position of every fact.
    """
    positions = splice_positions(len(background), len(facts), rng)
    return insert_at(background, facts, positions), positions
