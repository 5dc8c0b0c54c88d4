"""The encoder interface: text and multi-piece states in, float32 embeddings out.

Tokenisation, the per-piece state layout of the method (`[CLS] q [SEP] c1 [SEP] c2 ... [SEP]`, each
piece truncated to a cap before joining), length-sorted batching and pooling post-processing live
here once; an engine (PyTorch, ONNX) only supplies `_forward`, which maps padded token ids and an
attention mask to masked-mean-pooled hidden states.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .models import ModelSpec

MAX_POSITIONS = 512
OnBatch = Callable[[int, int], None]  # told (rows, tokens) of each batch once it is embedded
OnStart = Callable[[int, int], None]  # told (rows, tokens) of a group once it is tokenized, before embedding


def padded_batches(
    ids: Sequence[Sequence[int]], size: int, pad_id: int = 0
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Rows sorted by length, cut into batches of `size`, each padded to its longest row:
    (row indices, input_ids int64, attention_mask int64) per batch, so padding stays small."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        width = max(len(ids[i]) for i in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, i in enumerate(rows):
            input_ids[j, : len(ids[i])] = ids[i]
            mask[j, : len(ids[i])] = 1
        yield rows, input_ids, mask


class TokenLayout:
    """Tokenisation and the method's token-id layouts of chunks and states (no engine)."""

    def __init__(self, spec: ModelSpec, max_tokens: int = 128) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self.max_tokens = min(max_tokens, MAX_POSITIONS)
        self.tokenizer = Tokenizer.from_file(str(Path(spec.path) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    @property
    def dim(self) -> int:
        return self.spec.dim

    def piece_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text, without special tokens and untruncated."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def _chunk_row(self, pieces: list[int]) -> list[int]:
        return [self.cls_id, *pieces[: self.max_tokens - 2], self.sep_id]

    def chunk_rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of chunks: `[CLS] chunk [SEP]`, truncated to max_tokens."""
        return [self._chunk_row(p) for p in self.piece_ids(texts)]

    def state_rows(self, states: Sequence[Sequence[str]], piece_tokens: int = 64) -> list[list[int]]:
        """Token ids of states [question, chunk, ...]: `[CLS] q [SEP] c1 [SEP] ...`, each piece capped."""
        flat = [text for state in states for text in state]
        pieces = iter(self.piece_ids(flat))
        rows = []
        for state in states:
            row = [self.cls_id]
            for _ in state:
                row.extend(next(pieces)[:piece_tokens])
                row.append(self.sep_id)
            rows.append(row[: MAX_POSITIONS - 1] + [self.sep_id] if len(row) > MAX_POSITIONS else row)
        return rows


class Encoder(TokenLayout, ABC):
    """Embeds chunks (`encode_texts`) and retrieval states (`encode_states`)."""

    engine: str = "abstract"

    def __init__(self, spec: ModelSpec, *, max_tokens: int = 128, batch_size: int = 64) -> None:
        super().__init__(spec, max_tokens)
        self.batch_size = batch_size

    def encode_texts(self, texts: Sequence[str], on_batch: OnBatch | None = None,
                     on_start: OnStart | None = None) -> tuple[np.ndarray, list[int]]:
        """Embed chunks: returns (float32 (n, dim), word-piece count of each text before truncation).
        `on_start(texts, tokens)` is told once the texts are tokenized (their number and word pieces, the
        work ahead); `on_batch(texts, tokens)` each batch once it is embedded (as returned)."""
        pieces = self.piece_ids(texts)
        counts = [len(p) for p in pieces]
        if on_start is not None:
            on_start(len(counts), sum(counts))
        told = None if on_batch is None else lambda rows: on_batch(len(rows), sum(counts[i] for i in rows))
        return self._embed_rows([self._chunk_row(p) for p in pieces], told), counts

    def encode_states(self, states: Sequence[Sequence[str]], piece_tokens: int = 64) -> np.ndarray:
        """Embed states; each state is [question, chunk, chunk, ...] (chunks already sorted by position)."""
        return self.embed_ids(self.state_rows(states, piece_tokens))

    def embed_ids(self, ids: list[list[int]], on_batch: OnBatch | None = None) -> np.ndarray:
        """Embed token-id rows, in batches sorted by length so padding stays small (`on_batch`: as
        `encode_texts`, counting the token ids of each row)."""
        told = None if on_batch is None else lambda rows: on_batch(len(rows), sum(len(ids[i]) for i in rows))
        return self._embed_rows(ids, told)

    def _embed_rows(self, ids: list[list[int]], told: Callable[[list[int]], None] | None) -> np.ndarray:
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for rows, input_ids, mask in padded_batches(ids, self.batch_size, self.pad_id):
            out[rows] = self._forward(input_ids, mask)
            if told is not None:
                told(rows)
        return self._post(out)

    def _post(self, pooled: np.ndarray) -> np.ndarray:
        pooling = self.spec.pooling
        if pooling.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        if pooling.scale != 1.0:
            pooled /= pooling.scale
        return pooled

    @abstractmethod
    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Masked mean of the last hidden states, float32 (batch, dim)."""


def load_encoder(
    spec: ModelSpec, *, max_tokens: int = 128, batch_size: int = 64, threads: int = 0, bulk: bool = False
) -> Encoder:
    """The encoder engine for a model: onnxruntime for an exported folder (no torch), else PyTorch.

    `bulk`: the caller keeps the encoder busy back to back (an index build): onnxruntime's worker
    threads then spin between operators instead of sleeping (measured +33% tokens/s on 2 cores; an
    interactive caller must not: spinning threads steal cores between calls).
    """
    if spec.engine == "onnx":
        from .onnx_encoder import OnnxEncoder

        return OnnxEncoder(spec, max_tokens=max_tokens, batch_size=batch_size, threads=threads, spin=bulk)
    from .torch_encoder import TorchEncoder

    return TorchEncoder(spec, max_tokens=max_tokens, batch_size=batch_size, threads=threads)
