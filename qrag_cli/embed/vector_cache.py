"""An on-disk cache of sentence vectors, keyed by (model identity, text hash).

Folder: ``<root>/<model digest>/`` (`qrag bench`: ``$QRAG_CACHE/bench/sentences``), where the digest
is a SHA-256 of the model key (weights checksum, pooling, engine, quantisation, token cap: what
decides the vectors); ``model.json`` beside the shards says which model it is.

Shards: each is one file, ``shard-<random>.vec``, written whole to a temporary name and renamed, so a
writer killed at any point leaves either no shard or a complete one (never half an entry); readers
ignore temporary files, and files whose size does not match their header. Layout (little-endian)::

    b"QRAGVEC1"  uint32 dim  uint32 n  16 bytes reserved      (32-byte header)
    n x 16 bytes   keys: the first 16 bytes of SHA-256(text, UTF-8)
    n x dim        float16 vectors, row i for key i

Both parts are memory-mapped (`np.memmap`), so opening the cache reads the keys only. New vectors are
buffered and written as one shard per `FLUSH_ROWS` rows (and on `flush()`); when a folder holds more
than `MAX_SHARDS` shards, they are merged into one (written the same way, then the old ones
removed; a concurrent reader keeps its open maps, a reader that lists a shard just removed skips it).
Two processes may write at once: shards have random names, and a text cached twice is harmless.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json_atomic

MAGIC = b"QRAGVEC1"
HEADER_BYTES = 32
KEY_BYTES = 16
FLUSH_ROWS = 8192
MAX_SHARDS = 32
STALE_TMP_S = 24 * 3600  # temporary files older than this are a killed writer's: removed on merge
WRITE_BLOCK_ROWS = 4096

Encode = Callable[[list[str]], np.ndarray]


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:KEY_BYTES]


def model_digest(model: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _write_block(fh: Any, data: bytes) -> None:
    """One write of a shard's bytes (a seam: tests make it fail half-way)."""
    fh.write(data)


def write_shard(path: Path, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
    """Write a shard atomically: a temporary file next to `path`, fsynced, then renamed onto it."""
    vecs = np.ascontiguousarray(vectors, dtype=np.float16)
    n, dim = vecs.shape
    if len(keys) != n or any(len(k) != KEY_BYTES for k in keys):
        raise ValueError("one 16-byte key per vector row")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            _write_block(fh, MAGIC + np.array([dim, n], dtype="<u4").tobytes() + bytes(HEADER_BYTES - 16))
            _write_block(fh, b"".join(keys))
            for a in range(0, n, WRITE_BLOCK_ROWS):
                _write_block(fh, vecs[a : a + WRITE_BLOCK_ROWS].astype("<f2").tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_shard(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(keys as an (n, 16) uint8 map, vectors as an (n, dim) float16 map), or None when the file is not
    a complete shard of this dimension (or vanished)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError:
        return None
    if len(head) != HEADER_BYTES or head[:8] != MAGIC:
        return None
    d, n = (int(x) for x in np.frombuffer(head[8:16], dtype="<u4"))
    if d != dim or size != HEADER_BYTES + n * (KEY_BYTES + 2 * dim):
        return None
    if n == 0:
        return np.empty((0, KEY_BYTES), np.uint8), np.empty((0, dim), np.float16)
    try:
        keys = np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_BYTES, shape=(n, KEY_BYTES))
        vecs = np.memmap(path, dtype="<f2", mode="r", offset=HEADER_BYTES + n * KEY_BYTES, shape=(n, dim))
    except (OSError, ValueError):
        return None
    return keys, vecs


class VectorCache:
    """Sentence vectors of one model on disk (see module doc). `get` embeds only what is missing."""

    def __init__(self, root: str | os.PathLike, model: dict[str, Any], dim: int) -> None:
        self.folder = Path(root) / model_digest(model)
        self.model = model
        self.dim = dim
        self._index: dict[bytes, tuple[int, int]] = {}  # key -> (shard number, row)
        self._shards: list[np.ndarray] = []  # vector maps
        self._names: set[str] = set()
        self._pending_keys: list[bytes] = []
        self._pending: list[np.ndarray] = []
        self._pending_index: dict[bytes, int] = {}
        self.hits = 0  # texts found on disk
        self.embedded = 0  # texts embedded (and written)
        self.refresh()

    def refresh(self) -> None:
        """Map the shards written since the last look (by this or another process)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("shard-*.vec")):
            if path.name in self._names:
                continue
            got = read_shard(path, self.dim)
            if got is None:
                continue
            keys, vecs = got
            s = len(self._shards)
            self._shards.append(vecs)
            self._names.add(path.name)
            for row, key in enumerate(keys.tobytes()[i : i + KEY_BYTES] for i in range(0, keys.size, KEY_BYTES)):
                self._index.setdefault(key, (s, row))

    def __len__(self) -> int:
        return len(self._index) + len(self._pending_index)

    def lookup(self, text: str) -> np.ndarray | None:
        """The float16 vector of `text`, or None."""
        key = text_key(text)
        at = self._index.get(key)
        if at is not None:
            return self._shards[at[0]][at[1]]
        i = self._pending_index.get(key)
        return None if i is None else self._pending[i // FLUSH_ROWS][i % FLUSH_ROWS]

    def get(self, texts: Sequence[str], encode: Encode) -> tuple[np.ndarray, int]:
        """float16 (n, dim) vectors of `texts` and how many distinct texts were embedded now."""
        out = np.empty((len(texts), self.dim), dtype=np.float16)
        missing: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            v = self.lookup(t)
            if v is None:
                missing.setdefault(t, []).append(i)
            else:
                out[i] = v
        self.hits += len(texts) - sum(len(v) for v in missing.values())
        if missing:
            new = list(missing)
            vecs = np.asarray(encode(new), dtype=np.float32).astype(np.float16)
            for t, v in zip(new, vecs):
                out[missing[t]] = v
                self._add(text_key(t), v)
            self.embedded += len(new)
        return out, len(missing)

    def _add(self, key: bytes, vec: np.ndarray) -> None:
        if key in self._pending_index:
            return
        n = len(self._pending_keys)
        if n % FLUSH_ROWS == 0:
            self._pending.append(np.empty((FLUSH_ROWS, self.dim), dtype=np.float16))
        self._pending[-1][n % FLUSH_ROWS] = vec
        self._pending_keys.append(key)
        self._pending_index[key] = n
        if len(self._pending_keys) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered vectors as one shard (merging the shards when there are too many)."""
        if not self._pending_keys:
            return
        n = len(self._pending_keys)
        vecs = np.concatenate(self._pending)[:n]
        keys = self._pending_keys
        self._pending_keys, self._pending, self._pending_index = [], [], {}
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "model.json").is_file():
            write_json_atomic(self.folder / "model.json", {"model": self.model, "dim": self.dim}, sort_keys=True)
        write_shard(self.folder / f"shard-{uuid.uuid4().hex}.vec", keys, vecs)
        self.refresh()
        if len(list(self.folder.glob("shard-*.vec"))) > MAX_SHARDS:
            self.merge()

    def merge(self) -> None:
        """Merge every shard into one (then remove the merged ones and stale temporary files)."""
        paths = sorted(self.folder.glob("shard-*.vec"))
        parts, seen = [], set()
        keys: list[bytes] = []
        for path in paths:
            got = read_shard(path, self.dim)
            if got is None:
                continue
            k, v = got
            rows = [i for i, key in enumerate(bytes(k[j]) for j in range(len(k))) if key not in seen]
            for i in rows:
                key = bytes(k[i])
                seen.add(key)
                keys.append(key)
            parts.append(np.asarray(v[rows]))
        if parts:
            write_shard(self.folder / f"shard-{uuid.uuid4().hex}.vec", keys, np.concatenate(parts))
        for path in paths:
            path.unlink(missing_ok=True)
        now = time.time()
        for tmp in self.folder.glob("shard-*.tmp-*"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
            except OSError:
                pass
        self._index, self._shards, self._names = {}, [], set()
        self.refresh()
