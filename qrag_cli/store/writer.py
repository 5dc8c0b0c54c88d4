"""Streaming writers of an index's data files.

- `chunks.arrow`: Arrow IPC file (uncompressed, so it memory-maps), one row per chunk, written in
  record batches of `rows_per_batch` as chunks arrive.
- `vectors.npy`: float16 (n, dim), appended as batches arrive. The `.npy` header is written first with
  a fixed length and rewritten with the final row count on close, so nothing is held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..corpus.types import Chunk
from .checksums import file_digest

CHUNK_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int64()),
        pa.field("doc", pa.string()),
        pa.field("start", pa.int64()),
        pa.field("end", pa.int64()),
        pa.field("tokens", pa.int32()),
        pa.field("text", pa.large_string()),
    ]
)
NPY_HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + padded dict; a multiple of 64


def npy_header(rows: int, dim: int) -> bytes:
    """A version-1.0 `.npy` header for little-endian float16 (rows, dim), exactly NPY_HEADER_BYTES long."""
    text = f"{{'descr': '<f2', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body_len = NPY_HEADER_BYTES - 10
    body = text.ljust(body_len - 1) + "\n"
    if len(body) != body_len:
        raise ValueError("npy header overflow")
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


class IndexWriter:
    """Appends chunks and their vectors to a (temporary) index folder."""

    def __init__(
        self, folder: Path, dim: int, *, chunks_name: str, vectors_name: str, rows_per_batch: int = 8192,
        last_doc: str | None = None,
    ):
        """`last_doc`: the document of the chunk before the first one added (continuing a corpus)."""
        self.folder = folder
        self.dim = dim
        self.rows = 0
        self.tokens = 0
        self.documents = 0
        self.last_doc = last_doc
        self._rows_per_batch = rows_per_batch
        self._pending: list[Chunk] = []
        self._pending_tokens: list[int] = []
        self.chunks_path = folder / chunks_name
        self.vectors_path = folder / vectors_name
        self._sink = pa.OSFile(str(self.chunks_path), "wb")
        self._arrow = pa.ipc.new_file(self._sink, CHUNK_SCHEMA)
        self._vec = open(self.vectors_path, "wb")
        self._vec.write(npy_header(0, dim))

    def add(self, chunks: Sequence[Chunk], vectors: np.ndarray, tokens: Sequence[int]) -> None:
        """Append chunks (in position order) with their float32 vectors and word-piece counts."""
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"expected vectors of shape {(len(chunks), self.dim)}, got {vectors.shape}")
        self._vec.write(np.ascontiguousarray(vectors, dtype="<f2").tobytes())
        for c in chunks:
            if c.doc != self.last_doc:
                self.documents += 1
                self.last_doc = c.doc
        self._pending.extend(chunks)
        self._pending_tokens.extend(tokens)
        self.rows += len(chunks)
        self.tokens += int(sum(tokens))
        if len(self._pending) >= self._rows_per_batch:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        p = self._pending
        batch = pa.record_batch(
            [
                pa.array([c.position for c in p], pa.int64()),
                pa.array([c.doc for c in p], pa.string()),
                pa.array([c.start for c in p], pa.int64()),
                pa.array([c.end for c in p], pa.int64()),
                pa.array(self._pending_tokens, pa.int32()),
                pa.array([c.text for c in p], pa.large_string()),
            ],
            schema=CHUNK_SCHEMA,
        )
        self._arrow.write_batch(batch)
        self._pending, self._pending_tokens = [], []

    def close(self) -> dict[str, dict[str, object]]:
        """Finish both files (fsynced) and return their sizes and checksums."""
        self._flush()
        self._arrow.close()
        self._sink.close()
        self._vec.seek(0)
        self._vec.write(npy_header(self.rows, self.dim))
        self._vec.flush()
        os.fsync(self._vec.fileno())
        self._vec.close()
        return {p.name: file_digest(p) for p in (self.chunks_path, self.vectors_path)}

    def abort(self) -> None:
        """Close the files without finishing them (the caller removes the folder)."""
        for closer in (self._arrow.close, self._sink.close, self._vec.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort on an abandoned build
                pass
