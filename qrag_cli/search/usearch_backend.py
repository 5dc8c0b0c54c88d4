"""Memory-mapped HNSW search with usearch (file ``usearch.index``).

The index stores float16 vectors ("f16") and the graph in one file that is opened with
``Index.restore(path, view=True)``: the file is memory-mapped, so opening costs tens of milliseconds
whatever its size and pages are read on demand. usearch's "ip" metric returns distances
``1 - dot``; the backend ignores them and re-scores candidates exactly from the float16 vectors.
Exclusion over-fetches k + the largest exclude set and drops the excluded ids.

usearch has no seed option. Its level generator has a fixed internal seed, so a build with
``threads=1`` is byte-identical every time; with more threads the graph depends on scheduling.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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

FILE_NAME = "usearch.index"


def build_usearch(
    vectors: np.ndarray,
    folder: Path,
    settings: AnnSettings,
    *,
    seed: int,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
    extend: Path | None = None,
) -> dict[str, Any]:
    """Build ``usearch.index`` in `folder` from the float16 vectors (keys = row numbers).

    `extend`: an existing ``usearch.index`` over the first rows of `vectors` (an --append): it is
    loaded and only the rows after it are added. `seed` is recorded but has no effect (usearch exposes
    none); returns what the manifest should record.
    """
    import usearch
    from usearch.index import Index

    check_vectors(vectors)
    n, d = vectors.shape
    start = 0
    if extend is not None:
        index = Index.restore(str(extend))  # a copy in memory, not a view: it grows
        if index is None or index.ndim != d or len(index) > n or index.connectivity != settings.m:
            raise corrupt_file(extend, "does not match the vectors it indexes")
        index.expansion_add, index.expansion_search = settings.ef_construction, settings.ef
        start = len(index)
    else:
        index = Index(
            ndim=int(d),
            metric="ip",
            dtype="f16",
            connectivity=settings.m,
            expansion_add=settings.ef_construction,
            expansion_search=settings.ef,
        )
    nthreads = resolve_threads(threads)
    for a in range(start, n, BLOCK_ROWS):
        b = min(n, a + BLOCK_ROWS)
        block = np.ascontiguousarray(vectors[a:b], dtype=np.float16)
        index.add(np.arange(a, b, dtype=np.uint64), block, threads=nthreads)
        if progress is not None:
            progress(b, n)
    folder = Path(folder)
    tmp = folder / (FILE_NAME + ".tmp")
    index.save(str(tmp))
    os.replace(tmp, folder / FILE_NAME)
    return {
        "backend": "usearch",
        "files": [FILE_NAME],
        "bytes": {FILE_NAME: (folder / FILE_NAME).stat().st_size},
        "count": int(n),
        "dim": int(d),
        "params": {
            "metric": "ip",
            "dtype": "f16",
            "m": settings.m,
            "ef_construction": settings.ef_construction,
            "ef": settings.ef,
            "seed": None,
        },
        "threads": nthreads,
        "deterministic": nthreads == 1,
        "library": "usearch",
        "library_version": usearch.__version__,
    }


class UsearchBackend(GraphBackend):
    """Approximate top-k by inner product with a memory-mapped usearch graph, re-scored exactly."""

    name = "usearch"
    file_name = FILE_NAME

    @classmethod
    def open(
        cls, folder: Path, vectors: np.ndarray, settings: AnnSettings, *, ef: int | None = None, threads: int = 0
    ) -> UsearchBackend:
        """Memory-map ``usearch.index`` and check it matches `vectors` (count, dimension, metric, dtype)."""
        from usearch.index import Index, MetricKind, ScalarKind

        check_vectors(vectors)
        n, d = vectors.shape
        path = Path(folder) / FILE_NAME
        if not path.is_file():
            raise corrupt_file(path, "missing usearch index file")
        try:
            meta = Index.metadata(str(path))
        except (ValueError, RuntimeError) as exc:
            raise corrupt_file(path, f"unreadable usearch index ({exc})") from exc
        if not meta:
            raise corrupt_file(path, "unreadable usearch index")
        if meta.get("kind_metric") != MetricKind.IP or meta.get("kind_scalar") != ScalarKind.F16:
            raise corrupt_file(
                path, f"expected an f16 inner-product index, found {meta.get('kind_scalar')} {meta.get('kind_metric')}"
            )
        if meta.get("dimensions") != d or meta.get("count_present") != n:
            raise corrupt_file(
                path,
                f"holds {meta.get('count_present')} vectors of dimension {meta.get('dimensions')}"
                f" but vectors.npy is {n} x {d}",
            )
        try:
            index = Index.restore(str(path), view=True)
        except (ValueError, RuntimeError) as exc:
            raise corrupt_file(path, f"unreadable usearch index ({exc})") from exc
        if index is None or len(index) != n:
            raise corrupt_file(path, "unreadable usearch index")
        backend = cls(index, vectors, ef=ef if ef else settings.ef, threads=threads, path=path)
        index.expansion_search = backend.ef
        return backend

    def _candidates(self, qs: np.ndarray, fetch: int) -> np.ndarray | None:
        want_ef = max(self.ef, fetch)
        if self.index.expansion_search != want_ef:
            self.index.expansion_search = want_ef
        matches = self.index.search(qs, fetch, threads=min(self.threads, qs.shape[0]))
        keys = np.asarray(matches.keys)
        if keys.ndim == 1:  # a single query gives `Matches`, its keys cut to the number found
            counts = np.array([keys.shape[0]])
            keys = keys[None, :]
        else:
            counts = np.asarray(matches.counts).reshape(-1)
        filled = np.arange(keys.shape[1])[None, :] < counts[:, None]
        cand = np.where(filled, keys, 0).astype(np.int64)
        cand[~filled] = -1
        return cand
