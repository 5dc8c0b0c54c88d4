"""HNSW search with hnswlib (file ``hnsw.bin``).

hnswlib stores its own float32 copy of the vectors next to the graph and cannot memory-map the file:
opening reads all of it into RAM. Candidates are re-scored exactly from the float16 vectors.
Exclusion over-fetches k + the largest exclude set and drops excluded ids afterwards (hnswlib's
``filter=`` callback holds the GIL and is slow).

A build is reproducible (byte-identical file) only with ``threads=1``: with more threads the
insertion order, and so the graph, depends on scheduling.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import AnnSettings
from .base import (
    BLOCK_ROWS,
    GraphBackend,
    check_vectors,
    corrupt_file,
    resolve_threads,
)

FILE_NAME = "hnsw.bin"


def _version() -> str:
    try:
        return metadata.version("hnswlib")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        return "unknown"


def build_hnswlib(
    vectors: np.ndarray,
    folder: Path,
    settings: AnnSettings,
    *,
    seed: int,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
    extend: Path | None = None,
) -> dict[str, Any]:
    """Build ``hnsw.bin`` in `folder` from the float16 vectors (added in float32 blocks, ids = row numbers).

    `extend`: an existing ``hnsw.bin`` over the first rows of `vectors` (an --append): it is loaded
    with room for all rows and only the rows after it are added. Returns what the manifest should
    record about the index.
    """
    import hnswlib

    check_vectors(vectors)
    n, d = vectors.shape
    index = hnswlib.Index(space="ip", dim=int(d))
    start = 0
    if extend is not None:  # hnswlib loads a file of another dimension without a word: check the header
        header = read_header(extend)
        if header is None or header["data_size"] != 4 * d or header["cur_element_count"] > n \
                or header["m"] != settings.m:
            raise corrupt_file(extend, "does not match the vectors it indexes")
        try:
            index.load_index(str(extend), max_elements=max(1, int(n)))
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise corrupt_file(extend, f"cannot be extended ({exc})") from exc
        start = index.get_current_count()
    else:
        index.init_index(
            max_elements=max(1, int(n)), M=settings.m, ef_construction=settings.ef_construction, random_seed=seed
        )
    nthreads = resolve_threads(threads)
    index.set_num_threads(nthreads)
    for a in range(start, n, BLOCK_ROWS):
        b = min(n, a + BLOCK_ROWS)
        index.add_items(np.asarray(vectors[a:b], dtype=np.float32), np.arange(a, b, dtype=np.int64))
        if progress is not None:
            progress(b, n)
    folder = Path(folder)
    tmp = folder / (FILE_NAME + ".tmp")
    index.save_index(str(tmp))
    os.replace(tmp, folder / FILE_NAME)
    return {
        "backend": "hnswlib",
        "files": [FILE_NAME],
        "bytes": {FILE_NAME: (folder / FILE_NAME).stat().st_size},
        "count": int(n),
        "dim": int(d),
        "params": {
            "space": "ip",
            "m": settings.m,
            "ef_construction": settings.ef_construction,
            "ef": settings.ef,
            "seed": seed,
        },
        "threads": nthreads,
        "deterministic": nthreads == 1,
        "library": "hnswlib",
        "library_version": _version(),
    }


#: hnswlib 0.8 file header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
#: label_offset, offsetData (size_t); maxlevel, enterpoint_node (int); maxM, maxM0, M (size_t);
#: mult (double); ef_construction (size_t). Little-endian, as written on x86-64 / arm64.
_HEADER = struct.Struct("<6Q2i3QdQ")
_HEADER_FIELDS = (
    "offset_level0", "max_elements", "cur_element_count", "size_data_per_element", "label_offset",
    "offset_data", "max_level", "enterpoint_node", "max_m", "max_m0", "m", "mult", "ef_construction",
)


def read_header(path: Path) -> dict[str, Any] | None:
    """The header fields of an hnswlib index file (plus ``data_size``, the bytes per vector), or None
    when the file is too short to hold one."""
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        return None
    header = dict(zip(_HEADER_FIELDS, _HEADER.unpack(raw)))
    header["data_size"] = header["label_offset"] - header["offset_data"]
    return header


class HnswlibBackend(GraphBackend):
    """Approximate top-k by inner product with an hnswlib graph, re-scored exactly."""

    name = "hnswlib"
    file_name = FILE_NAME

    @classmethod
    def open(
        cls, folder: Path, vectors: np.ndarray, settings: AnnSettings, *, ef: int | None = None, threads: int = 0
    ) -> HnswlibBackend:
        """Load ``hnsw.bin`` (read fully into memory) and check it matches `vectors`."""
        import hnswlib

        check_vectors(vectors)
        n, d = vectors.shape
        path = Path(folder) / FILE_NAME
        if not path.is_file():
            raise corrupt_file(path, "missing hnswlib index file")
        header = read_header(path)
        if header is None:
            raise corrupt_file(path, "not an hnswlib index (short or unreadable header)")
        if header["cur_element_count"] != n or header["data_size"] != 4 * d:
            raise corrupt_file(
                path,
                f"holds {header['cur_element_count']} vectors of {header['data_size']} bytes"
                f" but vectors.npy is {n} x {d} (float32: {4 * d} bytes)",
            )
        index = hnswlib.Index(space="ip", dim=int(d))
        try:
            index.load_index(str(path), max_elements=0)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise corrupt_file(path, f"unreadable hnswlib index ({exc})") from exc
        count = index.get_current_count()
        if count != n:
            raise corrupt_file(path, f"holds {count} vectors but vectors.npy has {n}")
        index.set_num_threads(resolve_threads(threads))
        return cls(index, vectors, ef=ef if ef else settings.ef, threads=threads, path=path)

    def _candidates(self, qs: np.ndarray, fetch: int) -> np.ndarray | None:
        self.index.set_ef(max(self.ef, fetch))
        try:
            labels, _ = self.index.knn_query(qs, k=fetch, num_threads=min(self.threads, qs.shape[0]))
        except RuntimeError:
            return None  # hnswlib could not find `fetch` neighbours (a tiny or sparse graph): answer exactly
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and labels.min() < 0:
            raise corrupt_file(self.path, "returned an id outside the vector range")
        return labels
