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
FORMAT_VERSION = 2  # 2: the files live in a generation folder named by the index's CURRENT pointer
READ_VERSIONS = (1, 2)  # 1: the files directly in the index folder (still opened)
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
CHUNKS = "chunks.arrow"
VECTORS = "vectors.npy"

REQUIRED = ("format", "format_version", "qrag_version", "model", "corpus", "chunker", "ann", "files", "seed")
NOT_AN_INDEX = "give the folder of an index, or build one into a new folder with `qrag index CORPUS --out NEW`"
REBUILD = "rebuild it with `qrag index ... --overwrite`"


def new_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest dict with the format header filled in."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "qrag_version": __version__, **fields}


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and validate an index's manifest (raises IndexNotFoundError / CorruptIndexError)."""
    if not folder.exists():
        raise IndexNotFoundError(f"no index at {folder}: build one with `qrag index CORPUS --out {folder}`")
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(f"{folder} is not a qrag index (no {MANIFEST}): {NOT_AN_INDEX}")
    data = read_versioned(path, FORMAT, READ_VERSIONS, CorruptIndexError, REBUILD)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CorruptIndexError(f"{path} lacks {', '.join(missing)}: {REBUILD}")
    _check_fields(path, data)
    return data


def _check_fields(path: Path, data: dict[str, Any]) -> None:
    """Refuse fields of the wrong type, file names outside the folder and files without checksums."""
    def bad(what: str) -> CorruptIndexError:
        return CorruptIndexError(f"{path} is damaged: {what}; {REBUILD}")

    for key in ("model", "corpus", "chunker", "ann", "files", "store"):
        if not isinstance(data.get(key), dict):
            raise bad(f"'{key}' is {type(data.get(key)).__name__}, not an object")
    model, corpus, store, files = data["model"], data["corpus"], data["store"], data["files"]
    if not _is_int(model.get("dim")) or model["dim"] < 1:
        raise bad("'model.dim' is not a positive integer")
    if not _is_int(corpus.get("chunks")) or corpus["chunks"] < 0:
        raise bad("'corpus.chunks' is not a count")
    if not isinstance(data["ann"].get("backend"), str):
        raise bad("'ann.backend' is not a name")
    ann_files = data["ann"].get("files", [])
    if not isinstance(ann_files, list):
        raise bad("'ann.files' is not a list")
    bm25 = data.get("bm25", {})
    if not isinstance(bm25, dict) or not isinstance(bm25.get("files", []), list):
        raise bad("'bm25' is not an object with a list of files")
    named = [store.get("chunks"), store.get("vectors"), *ann_files, *bm25.get("files", [])]
    for name in [*named, *files]:
        if not safe_name(name):
            raise bad(f"the file name {name!r} is not a plain name inside the index folder")
    for name in named:
        if name not in files:
            raise bad(f"{name} has no checksum in 'files'")
    for name, info in files.items():
        if not isinstance(info, dict) or not _is_int(info.get("bytes")) or not (
                isinstance(info.get("xxh3_128"), str) or isinstance(info.get("sha256"), str)):
            raise bad(f"'files.{name}' lacks its size or checksum")


def safe_name(name: Any) -> bool:
    """A plain file name: no folder part, not '.', '..' or hidden, so it stays inside its folder."""
    return (isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and "\0" not in name
            and not name.startswith("."))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
