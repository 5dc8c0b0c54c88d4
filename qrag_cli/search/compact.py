"""The compact copy of an index's vectors: int8 with one scale per dimension, and its error bounds.

`vectors_i8.npy` holds x̂ (int8, (n, d), values in [-127, 127]) with x[i, j] ≈ scale[j] * x̂[i, j];
`vectors_i8.json` holds the scales and what the exact positional scan needs to bound its error:

- `residual[j]` = max_i |x[i, j] - scale[j] * x̂[i, j]| (measured in float64, not assumed to be scale/2),
- `max_abs[j]` = max_i |x̂[i, j]|, `l1_max` = max_i sum_j |x̂[i, j]|, `norm_max` = max_i |x_i|.

One scale per dimension (not per row) keeps a single scale per query, so an int8 kernel's ranking by
<q̂, x̂_i> is the ranking by approximate score (`compact_scan`). Both files are listed in the manifest
with size and checksum like every index file (`manifest.compact` names them); the JSON also records
the checksum of the `vectors.npy` it was made from. Built by `qrag index`, or on first need for an
index written before it (`ensure_compact`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError
from ..versioned import read_versioned

FORMAT = "qrag-compact"
FORMAT_VERSION = 1
DATA = "vectors_i8.npy"
META = "vectors_i8.json"
KIND = "int8-per-dimension"
BLOCK_ROWS = 32_768
#: Relative slack on the measured residuals (float64 rounding of scale * x̂).
RESIDUAL_SLACK = 1e-9


@dataclass
class CompactVectors:
    """An int8 copy of a float16 matrix and the per-dimension constants of its error bound."""

    data: np.ndarray  # int8 (n, d), usually memory-mapped
    scale: np.ndarray  # float64 (d,)
    residual: np.ndarray  # float64 (d,)
    max_abs: np.ndarray  # float64 (d,)
    l1_max: float
    norm_max: float

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND,
                "rows": int(self.data.shape[0]), "dim": int(self.data.shape[1]),
                "scale": self.scale.tolist(), "residual": self.residual.tolist(),
                "max_abs": self.max_abs.tolist(), "l1_max": float(self.l1_max), "norm_max": float(self.norm_max)}


def quantize(vectors: np.ndarray, out: np.ndarray | None = None) -> CompactVectors:
    """The compact copy of a float matrix (read in blocks: two passes, memory does not grow with n).

    `out`: an int8 (n, d) array to write x̂ into (a memory-mapped file), else one is allocated."""
    n, d = vectors.shape
    top = np.zeros(d, dtype=np.float64)
    for a in range(0, n, BLOCK_ROWS):
        top = np.maximum(top, np.abs(np.asarray(vectors[a : a + BLOCK_ROWS], dtype=np.float64)).max(axis=0, initial=0))
    scale = np.where(top > 0, top / 127.0, 1.0)
    data = np.empty((n, d), dtype=np.int8) if out is None else out
    residual = np.zeros(d)
    max_abs = np.zeros(d)
    l1_max = norm_max = 0.0
    for a in range(0, n, BLOCK_ROWS):
        x = np.asarray(vectors[a : a + BLOCK_ROWS], dtype=np.float64)
        q = np.clip(np.rint(x / scale), -127, 127)
        data[a : a + len(x)] = q.astype(np.int8)
        residual = np.maximum(residual, np.abs(x - scale * q).max(axis=0, initial=0))
        max_abs = np.maximum(max_abs, np.abs(q).max(axis=0, initial=0))
        if len(x):
            l1_max = max(l1_max, float(np.abs(q).sum(axis=1).max()))
            norm_max = max(norm_max, float(np.linalg.norm(x, axis=1).max()))
    return CompactVectors(data, scale, residual * (1 + RESIDUAL_SLACK), max_abs, l1_max, norm_max)


def write_compact(folder: Path, vectors: np.ndarray) -> dict[str, str]:
    """Write `vectors_i8.npy` and `vectors_i8.json` into `folder` (each atomically); the manifest entry."""
    from ..atomic import write_json_atomic

    folder = Path(folder)
    tmp = folder / f".{DATA}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int8, shape=vectors.shape)
    compact = quantize(vectors, out)
    out.flush()
    del out
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / DATA)
    write_json_atomic(folder / META, compact.meta())
    return {"kind": KIND, "data": DATA, "meta": META, "format_version": FORMAT_VERSION}


def open_compact(folder: Path, entry: dict[str, Any], shape: tuple[int, int], fix: str) -> CompactVectors:
    """Open the compact copy named by a manifest's `compact` entry (files already checksum-verified);
    CorruptIndexError when it is unreadable or does not fit the vectors."""
    folder = Path(folder)
    data_path, meta_path = folder / entry.get("data", DATA), folder / entry.get("meta", META)
    meta = read_versioned(meta_path, FORMAT, FORMAT_VERSION, CorruptIndexError, fix)
    try:
        data = np.load(data_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"{data_path} is unreadable: {exc}; {fix}") from exc
    if data.dtype != np.int8 or data.shape != tuple(shape) or (meta.get("rows"), meta.get("dim")) != tuple(shape):
        raise CorruptIndexError(f"{data_path} holds {data.dtype} {data.shape}, expected int8 {tuple(shape)}; {fix}")
    try:
        arrays = [np.asarray(meta[k], dtype=np.float64) for k in ("scale", "residual", "max_abs")]
        l1_max, norm_max = float(meta["l1_max"]), float(meta["norm_max"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptIndexError(f"{meta_path} lacks or garbles {exc}; {fix}") from exc
    if meta.get("kind") != KIND or any(a.shape != (shape[1],) or not np.all(np.isfinite(a)) for a in arrays) \
            or np.any(arrays[0] <= 0):
        raise CorruptIndexError(f"{meta_path} does not describe int8 vectors of dimension {shape[1]}; {fix}")
    return CompactVectors(data, *arrays, l1_max, norm_max)


def ensure_compact(folder: Path, vectors: np.ndarray, manifest: dict[str, Any],
                   lock: Path | None = None) -> dict[str, Any] | None:
    """Add the compact copy to an index built without one: the files, then the manifest (atomically,
    under the index's write lock). Returns the new manifest, or None when the folder cannot be
    written (read-only, another writer busy): the caller then scans the float16 vectors."""
    from ..errors import BusyError
    from ..store.checksums import file_digest
    from ..store.lock import FolderLock
    from ..store.manifest import MANIFEST, read_manifest, write_json_atomic

    folder = Path(folder)
    try:
        with FolderLock(Path(lock) if lock is not None else folder):  # the index's write lock (its root)
            current = read_manifest(folder)
            if current.get("files") != manifest.get("files"):
                return None  # the index changed since it was opened: leave it to the next open
            entry = write_compact(folder, vectors)
            files = {**current["files"], DATA: file_digest(folder / DATA), META: file_digest(folder / META)}
            updated = {**current, "files": files, "compact": entry}
            write_json_atomic(folder / MANIFEST, updated)
            return updated
    except (OSError, BusyError):
        return None
