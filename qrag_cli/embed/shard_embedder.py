"""Shard embedders: what turns the chunks of a build's shards into vectors.

A build cuts the corpus into shards and hands them, in order, to a shard embedder, which gives back
for each shard the vectors of its embedding groups (`embed_group` chunks per encoder call, never
crossing a shard boundary) in order. `LocalEmbedder` runs one encoder in this process, group by group
as the driver writes; `qrag_cli.distributed.ray_build.RayShardEmbedder` runs the same encoder code in
Ray actors. Both embed the same groups with the same model, so they give the same vectors, and the
build writes the shards itself either way (same files, same commit markers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ..corpus.types import Chunk
from .encoder import Encoder, OnBatch, OnStart
from .models import ModelSpec

#: the vectors of one embedding group (float32 or float16, (n, dim)) and the word-piece count of each chunk
Encoded = tuple[np.ndarray, Sequence[int]]
#: one shard handed to an embedder: its number and its chunks
Part = tuple[int, list[Chunk]]


class ShardEmbedder(Protocol):
    spec: ModelSpec
    engine: str
    max_tokens: int

    def shards(self, parts: Iterable[Part], on_batch: OnBatch | None = None, on_start: OnStart | None = None
               ) -> Iterator[tuple[int, list[Chunk], Iterable[Encoded]]]:
        """(number, chunks, the groups' vectors) per shard, in the order of `parts`, reading `parts` lazily;
        where the embedder can (the local one), `on_start(rows, tokens)` is told each group once it is
        tokenized and `on_batch(rows, tokens)` each encoder batch once it is embedded."""
        ...

    def record(self) -> dict[str, Any]:
        """What the manifest's `build` section records about this embedder (empty for the local one)."""
        ...

    def close(self) -> None: ...


def groups(chunks: Sequence[Chunk], size: int) -> list[list[str]]:
    """The texts of a shard's embedding groups (`size` chunks each, the last one shorter)."""
    return [[c.text for c in chunks[lo : lo + size]] for lo in range(0, len(chunks), size)]


class LocalEmbedder:
    """One encoder in this process; each group is embedded when the build asks for it."""

    def __init__(self, encoder: Encoder, group: int) -> None:
        self.encoder, self.group = encoder, group
        self.spec, self.engine, self.max_tokens = encoder.spec, encoder.engine, encoder.max_tokens

    def shards(self, parts: Iterable[Part], on_batch: OnBatch | None = None, on_start: OnStart | None = None
               ) -> Iterator[tuple[int, list[Chunk], Iterable[Encoded]]]:
        for number, chunks in parts:
            yield number, chunks, (self.encoder.encode_texts(texts, on_batch, on_start)
                                   for texts in groups(chunks, self.group))

    def record(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
