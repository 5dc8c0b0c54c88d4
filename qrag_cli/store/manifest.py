"""`manifest.json`: the versioned description of an on-disk index.

The manifest is written last, atomically, so a folder without one is never a finished index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_json_atomic  # noqa: F401  (re-exported: the store's writer)
from ..errors import CorruptIndexError, IndexNotFoundError, ModelMismatchError
from ..versioned import read_versioned

FORMAT = "qrag-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
CHUNKS = "chunks.arrow"
VECTORS = "vectors.npy"

REQUIRED = ("format", "format_version", "qrag_version", "model", "corpus", "chunker", "ann", "files", "seed")


def new_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest dict with the format header filled in."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "qrag_version": __version__, **fields}


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and validate an index's manifest (raises IndexNotFoundError / CorruptIndexError)."""
    if not folder.exists():
        raise IndexNotFoundError(f"no index at {folder}: build one with `qrag index CORPUS --out {folder}`")
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(
            f"{folder} is not a finished qrag index (no {MANIFEST}); rebuild it with `qrag index ... --overwrite`"
        )
    data = read_versioned(path, FORMAT, FORMAT_VERSION, CorruptIndexError,
                          "rebuild it with `qrag index ... --overwrite`")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CorruptIndexError(f"{path} lacks {', '.join(missing)}")
    return data


def check_model(manifest: dict[str, Any], model: dict[str, Any], folder: Path) -> None:
    """Refuse a model other than the one the index was built with."""
    built = manifest["model"]
    if built.get("dim") != model.get("dim"):
        raise ModelMismatchError(
            f"model {model.get('name')} has dimension {model.get('dim')} but the index {folder} was built "
            f"with dimension {built.get('dim')} ({built.get('name')}): query with that model or re-index"
        )
    if built.get("checksum") != model.get("checksum"):
        raise ModelMismatchError(
            f"model {model.get('name')} (sha256 {str(model.get('checksum'))[:12]}) is not the model the index "
            f"{folder} was built with ({built.get('name')}, sha256 {str(built.get('checksum'))[:12]}): "
            "query with that model or re-index"
        )
    # positions are applied per retrieval step, never stored in the vectors: they do not matter here
    if _without_positions(built.get("pooling")) != _without_positions(model.get("pooling")):
        raise ModelMismatchError(
            f"model {model.get('name')} pools as {model.get('pooling')} but the index {folder} was built "
            f"with {built.get('pooling')}: re-index"
        )


def _without_positions(pooling: Any) -> Any:
    return {k: v for k, v in pooling.items() if k != "positions"} if isinstance(pooling, dict) else pooling
