"""Backend names, and building / opening a backend by name.

The library modules (hnswlib, usearch) are imported only when their backend is used, so the exact
backend and the CLI's startup do not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..settings import AnnSettings
from .base import SearchBackend, check_vectors

BACKENDS: tuple[str, ...] = ("exact", "hnswlib", "usearch")

#: Files each backend writes into the index folder.
BACKEND_FILES: dict[str, tuple[str, ...]] = {"exact": (), "hnswlib": ("hnsw.bin",), "usearch": ("usearch.index",)}


def check_name(name: str) -> str:
    """Return `name` if it is a known backend, else raise InputError listing the choices."""
    if name not in BACKENDS:
        raise InputError(f"unknown search backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def build_ann(
    name: str,
    vectors: np.ndarray,
    folder: Path,
    settings: AnnSettings,
    *,
    seed: int,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
    extend: Path | None = None,
) -> dict[str, Any]:
    """Build backend `name`'s file(s) into `folder` from the float16 (n, d) vectors.

    `extend`: the backend's file of an index over the first rows of `vectors` (an --append); the graph
    is loaded from it and only the new rows are added, instead of building over all rows again.

    Vectors are read in blocks (memory stays bounded apart from the library's own graph and vector
    copy). `threads` 0 means all cores; only ``threads=1`` gives byte-identical rebuilds.
    `progress(done, total)` is called after each block. Returns the dict to record in the manifest:
    backend, files, bytes per file, count, dim, params, threads, deterministic, library, library_version.
    """
    check_name(name)
    check_vectors(vectors)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"index folder {folder} does not exist")
    if name == "exact":
        n, d = vectors.shape
        if progress is not None:
            progress(int(n), int(n))
        return {
            "backend": "exact",
            "files": [],
            "bytes": {},
            "count": int(n),
            "dim": int(d),
            "params": {},
            "threads": threads,
            "deterministic": True,
            "library": "numpy",
            "library_version": metadata.version("numpy"),
        }
    if name == "hnswlib":
        from .hnsw import build_hnswlib

        return build_hnswlib(vectors, folder, settings, seed=seed, threads=threads, progress=progress,
                             extend=extend)
    from .usearch_backend import build_usearch

    return build_usearch(vectors, folder, settings, seed=seed, threads=threads, progress=progress, extend=extend)


def open_backend(
    name: str,
    folder: Path,
    vectors: np.ndarray,
    settings: AnnSettings,
    *,
    ef: int | None = None,
    threads: int = 0,
) -> SearchBackend:
    """Open backend `name` over `vectors` (the memory-mapped ``vectors.npy`` of the index in `folder`).

    `ef` overrides ``settings.ef`` (None or 0: use the settings). A missing or corrupt backend file
    raises CorruptIndexError naming the file and the fix.
    """
    check_name(name)
    if ef is not None and ef < 0:
        raise InputError(f"ef must be positive, got {ef}")
    if name == "exact":
        from .exact import ExactBackend

        return ExactBackend(vectors)
    if name == "hnswlib":
        from .hnsw import HnswlibBackend

        return HnswlibBackend.open(Path(folder), vectors, settings, ef=ef, threads=threads)
    from .usearch_backend import UsearchBackend

    return UsearchBackend.open(Path(folder), vectors, settings, ef=ef, threads=threads)
