"""The BM25 index of an index's chunks: written by `qrag index` (with --bm25) into the generation it
builds, or added to an existing index by `qrag index --add-bm25 DIR` as a new generation.

Adding makes the next generation in the index's build folder: the current generation's files are
hard-linked into it (copied where links are refused; index files are never edited in place, so a
link is as good as a copy), the BM25 files are written from its `chunks.arrow`, then the manifest
(with their sizes and checksums and a `bm25` entry) last, and the generation is installed with one
rename, as a build installs its own. Nothing is re-embedded: it costs tokenising the chunks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..atomic import write_json_atomic
from ..errors import InputError
from .checksums import file_digest
from .generations import install, recover
from .lock import FolderLock
from .manifest import FORMAT_VERSION, MANIFEST, SETTINGS
from .reader import IndexReader

GENERATION = "generation"


def chunk_texts(chunks_path: Path) -> Iterator[str]:
    """The chunk texts of a `chunks.arrow` file, in position order (memory-mapped, batch by batch)."""
    with pa.memory_map(str(chunks_path), "r") as src:
        reader = pa.ipc.open_file(src)
        for b in range(reader.num_record_batches):
            yield from reader.get_batch(b).column("text").to_pylist()


def write_index_bm25(folder: Path, chunks_name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Write the BM25 files of the chunks in `folder` (a generation being built): its manifest entry and
    the files' digests."""
    from ..search.lexical import write_bm25

    entry = write_bm25(folder, chunk_texts(folder / chunks_name))
    return entry, {name: file_digest(folder / name) for name in entry["files"]}


def add_bm25(root: Path) -> dict[str, Any]:
    """Add the BM25 index to the index at `root` (a new generation); a summary. An index that has one
    already is left as it is."""
    from ..build import BUILD_JSON, work_folder

    root = Path(root)
    real = root.resolve() if root.is_symlink() else root
    t0 = time.perf_counter()
    with FolderLock(real):
        work = work_folder(real)
        recover(real, work)
        if (work / BUILD_JSON).exists():
            raise InputError(f"an interrupted build of {root} is in {work}: finish it with `qrag index ... --resume` "
                             "or start over with --overwrite before adding BM25")
        reader = IndexReader(real)  # checks every file against the manifest
        try:
            manifest, current = reader.manifest, reader.folder
            if "bm25" in manifest:
                return {"index": str(root), "bm25": "present", "chunks": len(reader)}
            shutil.rmtree(work, ignore_errors=True)
            gen = work / GENERATION
            gen.mkdir(parents=True)
            for name in [*manifest["files"], SETTINGS]:
                if (current / name).is_file():
                    _link(current / name, gen / name)
            entry, digests = write_index_bm25(gen, manifest["store"]["chunks"])
            updated = {**manifest, "format_version": FORMAT_VERSION, "files": {**manifest["files"], **digests},
                       "bm25": entry}
            write_json_atomic(gen / MANIFEST, updated)
            chunks = len(reader)
        finally:
            reader.close()
        install(gen, work, real)
    size = sum(d["bytes"] for d in digests.values())
    return {"index": str(root), "bm25": "added", "chunks": chunks, "vocab": entry["vocab"], "bytes": size,
            "seconds": round(time.perf_counter() - t0, 2)}


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
