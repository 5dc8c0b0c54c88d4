"""Opening an index: manifest checks, memory-mapped vectors and chunks, per-row chunk access.

Every data file is checked against the size and checksum in the manifest first (a truncated or
edited file is refused with the file's name). Nothing is loaded whole: vectors are
`np.load(mmap_mode="r")`, chunks an Arrow IPC file over a memory map (zero copy). A chunk is fetched by position through the record-batch offsets, never `take()`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import CorruptIndexError
from .checksums import verify_file
from .generations import OpenGeneration
from .manifest import REBUILD, read_manifest


@dataclass(frozen=True)
class ChunkRecord:
    position: int
    doc: str
    start: int
    end: int
    text: str


class IndexReader:
    """A finished index, opened read-only.

    `root` is the index folder given; `folder` the folder of the generation opened (resolved once, and
    held by a shared lock until `close()` so that no writer removes it meanwhile); for an index of
    format version 1 both are the same."""

    def __init__(self, folder: Path) -> None:
        self.root = Path(folder)
        self._gen = OpenGeneration(self.root)
        self.folder = self._gen.folder
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the generation (its files stay readable while mapped)."""
        self._gen.close()

    def _open(self) -> None:
        self.manifest: dict[str, Any] = read_manifest(self.folder)
        for name, info in self.manifest["files"].items():  # sizes and checksums (XXH3: ~19 GB/s)
            verify_file(self.folder / name, info, REBUILD)
        store = self.manifest["store"]
        vectors_path = self.folder / store["vectors"]
        try:
            self.vectors = np.load(vectors_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{vectors_path} is unreadable: {exc}; {REBUILD}") from exc
        n, dim = self.manifest["corpus"]["chunks"], self.manifest["model"]["dim"]
        if self.vectors.shape != (n, dim) or self.vectors.dtype != np.float16:
            raise CorruptIndexError(
                f"{vectors_path} holds {self.vectors.dtype} {self.vectors.shape}, expected float16 {(n, dim)}; {REBUILD}"
            )
        chunks_path = self.folder / store["chunks"]
        try:
            self._mmap = pa.memory_map(str(chunks_path), "r")
            table = pa.ipc.open_file(self._mmap).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise CorruptIndexError(f"{chunks_path} is unreadable: {exc}; {REBUILD}") from exc
        if table.num_rows != n:
            raise CorruptIndexError(f"{chunks_path} has {table.num_rows} chunks, expected {n}; {REBUILD}")
        self.compact = None  # the int8 copy of the vectors (search.compact), when the index has one
        if "compact" in self.manifest:
            from ..search.compact import open_compact

            self.compact = open_compact(self.folder, self.manifest["compact"], self.vectors.shape, REBUILD)
        self._batches = table.to_batches()
        self._offsets = [0]
        for b in self._batches:
            self._offsets.append(self._offsets[-1] + b.num_rows)

    def compact_copy(self) -> Any:
        """The int8 copy of the vectors for the exact positional scan; an index written without one gets
        it now (files and manifest entry, under the write lock). None when the folder cannot be written."""
        if self.compact is None:
            from ..search.compact import ensure_compact, open_compact

            manifest = ensure_compact(self.folder, self.vectors, self.manifest, lock=self.root)
            if manifest is not None:
                self.manifest = manifest
                self.compact = open_compact(self.folder, manifest["compact"], self.vectors.shape, REBUILD)
        return self.compact

    def bm25(self) -> Any:
        """The index's BM25 scorer (`search.lexical`, memory-mapped, opened on first use); NoBm25Error
        for an index built without one."""
        if getattr(self, "_bm25", None) is None:
            entry = self.manifest.get("bm25")
            if entry is None:
                from ..errors import NoBm25Error

                raise NoBm25Error(f"{self.root} has no BM25 index (built without --bm25): add one with "
                                  f"`qrag index --add-bm25 {self.root}` (nothing is re-embedded), or query with "
                                  "--retriever dense")
            from ..search.lexical import open_bm25

            self._bm25 = open_bm25(self.folder, entry, len(self), REBUILD)
        return self._bm25

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def chunk(self, position: int) -> ChunkRecord:
        """The chunk at a global position (0-based)."""
        if not 0 <= position < len(self):
            raise IndexError(position)
        b = bisect.bisect_right(self._offsets, position) - 1
        batch, row = self._batches[b], position - self._offsets[b]
        return ChunkRecord(
            position=int(batch.column(0)[row].as_py()),
            doc=batch.column(1)[row].as_py(),
            start=int(batch.column(2)[row].as_py()),
            end=int(batch.column(3)[row].as_py()),
            text=batch.column(5)[row].as_py(),
        )
