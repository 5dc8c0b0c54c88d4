"""What `qrag index` reports: `BuildProgress` after every embedding batch (for a progress display)
and `BuildReport` at the end (what `qrag index` prints as its summary)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BuildProgress:
    """What a progress display needs, reported after every embedding batch; `phase` is 'embed' then 'ann'.

    `chunks` / `tokens`: embedded so far (`resumed_chunks` of them by the interrupted run a --resume
    continues); `chunks_read`: read from the corpus (`bytes_read` of `bytes_total`), so
    `chunks_expected` estimates the total while the corpus is streamed."""

    phase: str
    chunks: int = 0
    tokens: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    ann_done: int = 0
    ann_total: int = 0
    shards_done: int = 0
    shards_resumed: int = 0
    chunks_read: int = 0
    resumed_chunks: int = 0
    corpus_done: bool = False
    pending_chunks: int = 0  # tokenized, not yet embedded (the local embedder tells them per group)
    pending_tokens: int = 0

    @property
    def chunks_expected(self) -> int:
        """The chunks the corpus will give: exact once it is read to the end, else extrapolated by bytes."""
        if self.corpus_done or not self.bytes_total or not self.bytes_read:
            return max(self.chunks_read, self.chunks)
        return max(self.chunks_read, round(self.chunks_read * self.bytes_total / self.bytes_read))

    @property
    def tokens_expected(self) -> int | None:
        """The word pieces the whole embedding will have done: those known (embedded or tokenized),
        scaled by the chunks expected; None before any is known. The ETA's measure of work."""
        known_chunks = self.chunks + self.pending_chunks
        known_tokens = self.tokens + self.pending_tokens
        if not known_chunks or not known_tokens:
            return None
        return max(known_tokens, round(known_tokens * self.chunks_expected / known_chunks))


@dataclass(frozen=True)
class BuildReport:
    out: Path
    documents: int
    chunks: int
    tokens: int
    seconds: float
    embed_seconds: float
    ann_seconds: float
    shards: int = 0
    shards_resumed: int = 0
    appended_chunks: int = 0
    embedded_tokens: int = 0  # tokens embedded by this run (not by the interrupted run it resumed)
