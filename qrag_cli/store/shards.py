"""Shards of a build in progress, and their assembly into an index's data files.

A build writes its chunks in shards of a fixed number of chunks under `FOLDER/shards/`:
`NNNNNN.arrow` and `NNNNNN.npy` (the formats of `chunks.arrow` and `vectors.npy`), then
`NNNNNN.json` last and atomically, which marks the shard finished. It records the shard's rows,
tokens, documents, last document, the digest of its (position, doc, text) rows and the checksums of
its two files. A killed build leaves finished shards plus at most one unfinished shard (no JSON),
which `ShardStore.finished()` removes; finished shards are checksum-verified before they are reused.

`assemble()` concatenates data files (an existing index's, then the shards') into one
`chunks.arrow` (record batches copied, nothing decoded) and one `vectors.npy` (raw float16 rows
copied after a fixed-size header), in bounded memory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import xxhash

from ..atomic import write_json_atomic
from ..corpus.types import Chunk
from ..errors import CorruptIndexError
from ..versioned import read_versioned
from .checksums import file_digest, verify_file
from .writer import CHUNK_SCHEMA, NPY_HEADER_BYTES, npy_header

SHARDS = "shards"
SHARD_FORMAT = "qrag-shard"
SHARD_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard, as its JSON records it."""

    number: int
    rows: int
    tokens: int
    documents: int  # document changes counted from the previous shard's last document
    last_doc: str | None
    text_digest: str
    files: dict[str, dict[str, Any]]

    def paths(self, folder: Path) -> tuple[Path, Path]:
        return folder / SHARDS / f"{self.number:06d}.arrow", folder / SHARDS / f"{self.number:06d}.npy"


class RowDigest:
    """Running XXH3-128 of (position, doc, text) rows: the same chunks give the same digest."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, chunks: Sequence[Chunk]) -> None:
        for c in chunks:
            self._h.update(f"{c.position}\x00{c.doc}\x00".encode())
            self._h.update(c.text.encode("utf-8", "surrogatepass"))
            self._h.update(b"\x01")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class ShardStore:
    """The `shards/` folder of a build in progress."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.dir = self.folder / SHARDS

    def names(self, number: int) -> tuple[str, str, str]:
        stem = f"{number:06d}"
        return f"{stem}.arrow", f"{stem}.npy", f"{stem}.json"

    def count(self) -> int:
        """Finished shards on disk (their JSON written), without reading or verifying them."""
        return len(list(self.dir.glob("*.json"))) if self.dir.is_dir() else 0

    def finished(self) -> list[ShardInfo]:
        """Finished shards in order, each verified against its checksums; unfinished leftovers are removed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        shards: list[ShardInfo] = []
        while (meta := self.dir / self.names(len(shards))[2]).is_file():
            shards.append(self._read(meta, len(shards)))
        keep = {n for s in shards for n in self.names(s.number)}
        for p in self.dir.iterdir():
            if p.name not in keep:
                p.unlink()
        return shards

    def _read(self, meta: Path, number: int) -> ShardInfo:
        fix = "delete the interrupted build (run without --resume, with --overwrite) and start again"
        data = read_versioned(meta, SHARD_FORMAT, SHARD_FORMAT_VERSION, CorruptIndexError, fix)
        try:
            info = ShardInfo(**{k: data[k] for k in ShardInfo.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise CorruptIndexError(f"{meta} is unreadable ({exc}): {fix}") from exc
        if info.number != number:
            raise CorruptIndexError(f"{meta} says it is shard {info.number}: {fix}")
        for name, digest in info.files.items():
            verify_file(self.dir / name, digest, fix)
        return info

    def finish(self, info: ShardInfo) -> None:
        """Record a shard as finished (its data files are complete and fsynced)."""
        write_json_atomic(self.dir / self.names(info.number)[2],
                          {"format": SHARD_FORMAT, "format_version": SHARD_FORMAT_VERSION, **asdict(info)})

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def assemble(parts: Sequence[tuple[Path, Path]], chunks_out: Path, vectors_out: Path, rows: int, dim: int) -> None:
    """Concatenate (chunks.arrow, vectors.npy) pairs, in order, into one pair of files (fsynced)."""
    with pa.OSFile(str(chunks_out), "wb") as sink, pa.ipc.new_file(sink, CHUNK_SCHEMA) as writer:
        for arrow_path, _ in parts:
            with pa.memory_map(str(arrow_path), "r") as src:
                reader = pa.ipc.open_file(src)
                for b in range(reader.num_record_batches):
                    writer.write_batch(reader.get_batch(b))
    _fsync(chunks_out)
    expected = NPY_HEADER_BYTES + rows * dim * 2
    with open(vectors_out, "wb") as out:
        out.write(npy_header(rows, dim))
        for _, npy_path in parts:
            with open(npy_path, "rb") as src:
                head = src.read(NPY_HEADER_BYTES)
                if head[:6] != b"\x93NUMPY" or 10 + int.from_bytes(head[8:10], "little") != NPY_HEADER_BYTES:
                    raise CorruptIndexError(f"{npy_path} is not a .npy file written by qrag")
                shutil.copyfileobj(src, out, 1 << 22)
        out.flush()
        os.fsync(out.fileno())
        if out.tell() != expected:
            raise CorruptIndexError(f"assembled {vectors_out} has {out.tell()} bytes, expected {expected}")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def digests(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {n: file_digest(folder / n) for n in names}
