"""In-memory benchmark contexts, and the on-disk cache of background embeddings.

A sample's context is its chunk list (`data.samples.materialise`) with one vector per chunk. Short
samples (1K, 4K, and the inline ``context`` of a user's file) store their whole context: it is
embedded per sample, through a per-run dictionary of sentence vectors (`SentenceCache`) backed by the
on-disk sentence cache (`embed.vector_cache`, ``<cache>/sentences``, keyed by model and text hash),
so a sentence repeated across samples, tasks, lengths or runs (the same per-sample background
draws, the bAbI templates, the same file benchmarked again) is embedded once. Fact sentences go
through it too. Long samples (>= 32K) share
one referenced background: its vectors are embedded once and cached on disk, and per sample only the
fact sentences are embedded and spliced in at their positions (`splice_vectors`).

Background cache (`BackgroundCache`, default folder ``$QRAG_CACHE/bench``): per background reference
(kind, split, seed, n_sentences, ...) and embedder (checksum, pooling, engine, quantisation, token
cap), a float16 ``.npy`` and a small ``.json`` beside it (the key, the SHA-256 of the sentences, the
embedding time). Both are written to temporary files and renamed (the JSON last: it marks the entry
complete), and the ``.npy`` is memory-mapped on reuse. Backgrounds are prefix-stable (a shorter
background is the prefix of a longer one with the same seed), so a cached background of m sentences
also serves a request for n < m sentences (a slice) and n > m sentences (only the n - m new ones are
embedded); every reuse is checked against the SHA-256 of the sentences it stands for.

Vectors handed to the search are float32 when they fit in 256 MiB (no per-query conversion), else
float16 (memory-mapped background, spliced copy); fact and inline vectors are rounded through
float16 either way, as the vectors of a real index are.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json_atomic
from ..embed.encoder import Encoder
from ..embed.vector_cache import VectorCache
from ..errors import InputError
from ..store.reader import ChunkRecord

CACHE_FORMAT = "qrag-bench-background"
CACHE_FORMAT_VERSION = 1
#: Vectors are kept as float32 when the matrix takes at most this many bytes.
F32_LIMIT_BYTES = 256 * 1024 * 1024
#: Sub-folder of the cache folder holding the sentence vectors (`embed.vector_cache`).
SENTENCE_DIR = "sentences"
#: Background sentences embedded per encoder call (each call sorts its texts by length).
EMBED_BLOCK = 2048

Progress = Callable[[str, int, int], None]


class MemoryContext:
    """A `ChunkSource` over in-memory chunk texts and their vectors (row i embeds chunk i).

    Chunk offsets (`start`, `end`) are character offsets in the texts joined with single spaces.
    """

    def __init__(self, texts: Sequence[str], vectors: np.ndarray, doc: str = "sample") -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise InputError(f"context {doc!r}: {len(texts)} chunks but vectors of shape {vectors.shape}")
        self.texts = texts
        self.vectors = vectors
        self.doc = doc
        self._starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def chunk(self, position: int) -> ChunkRecord:
        if not 0 <= position < len(self.texts):
            raise IndexError(f"chunk {position} outside 0..{len(self.texts) - 1}")
        if self._starts is None:
            lengths = np.fromiter((len(t) + 1 for t in self.texts), dtype=np.int64, count=len(self.texts))
            self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        start = int(self._starts[position])
        text = self.texts[position]
        return ChunkRecord(position, self.doc, start, start + len(text), text)


def _round16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


class SentenceCache:
    """Vectors of the sentences embedded so far in this run, for one encoder (text -> float32 row),
    backed by the on-disk `VectorCache` when one is given (then a sentence embedded by an earlier run
    is read, not embedded again)."""

    def __init__(self, encoder: Encoder, disk: VectorCache | None = None) -> None:
        self.encoder = encoder
        self.disk = disk
        self.rows: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """float32 (n, dim) vectors of `texts` (rounded through float16) and how many were newly embedded."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.rows]
        new = 0
        if missing:
            if self.disk is not None:
                vecs16, new = self.disk.get(missing, lambda xs: self.encoder.encode_texts(xs)[0])
                vecs = vecs16.astype(np.float32)
            else:
                vecs, _ = self.encoder.encode_texts(missing)
                vecs, new = _round16(vecs), len(missing)
            for t, v in zip(missing, vecs):
                self.rows[t] = v
        if not texts:
            return np.empty((0, self.encoder.dim), dtype=np.float32), 0
        return np.stack([self.rows[t] for t in texts]), new


def splice_vectors(background: np.ndarray, facts: np.ndarray, positions: Sequence[int],
                   dtype: Any = np.float32) -> np.ndarray:
    """The chunk vectors with ``facts[i]`` at chunk position ``positions[i]`` and the background rows,
    in order, everywhere else (the vector counterpart of `data.splice.insert_at`)."""
    n = background.shape[0] + facts.shape[0]
    pos = np.asarray(positions, dtype=np.int64)
    if facts.shape[0] != pos.size or (pos.size and (pos.min() < 0 or pos.max() >= n or np.any(np.diff(pos) <= 0))):
        raise InputError(f"fact positions must be increasing and within 0..{n - 1}")
    out = np.empty((n, background.shape[1]), dtype=dtype)
    is_bg = np.ones(n, dtype=bool)
    is_bg[pos] = False
    out[is_bg] = background
    out[pos] = facts
    return out


def texts_sha256(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def model_key(encoder: Encoder) -> dict[str, Any]:
    """What identifies the vectors an encoder produces (the cache key's model part).

    Rotary positions are applied at search time, never stored in the vectors, so the key always says
    "none": a policy with a frozen action encoder shares the base model's cached backgrounds.
    """
    spec = encoder.spec
    pooling = {**asdict(spec.pooling), "positions": "none"}
    return {"checksum": spec.checksum, "pooling": pooling, "engine": spec.engine,
            "quantization": spec.quantization, "max_tokens": encoder.max_tokens}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()[:24]


@dataclass
class Background:
    """A background's vectors (float32 or memory-mapped float16) and how they were obtained."""

    ref: dict[str, Any]
    vectors: np.ndarray
    embed_s: float  # seconds spent embedding now (0 on a full cache hit)
    embedded: int  # sentences embedded now
    reused: int  # sentences whose vectors came from the cache
    path: str

    @property
    def from_cache(self) -> bool:
        return self.embedded == 0

    def describe(self) -> dict[str, Any]:
        return {"background": self.ref, "n_sentences": int(self.vectors.shape[0]), "embed_s": round(self.embed_s, 3),
                "embedded": self.embedded, "reused": self.reused, "from_cache": self.from_cache, "path": self.path}


class BackgroundCache:
    """Background vectors on disk, keyed by background reference and embedder (see module doc)."""

    def __init__(self, folder: str | os.PathLike, encoder: Encoder, progress: Progress | None = None) -> None:
        self.folder = Path(folder)
        self.encoder = encoder
        self.model = model_key(encoder)
        self.progress = progress

    def _family(self, ref: dict[str, Any]) -> str:
        return _digest({"background": {k: v for k, v in ref.items() if k != "n_sentences"}, "model": self.model})

    def _paths(self, family: str, n: int) -> tuple[Path, Path]:
        stem = f"bg-{family}-{n}"
        return self.folder / f"{stem}.npy", self.folder / f"{stem}.json"

    def _cached(self, family: str) -> dict[int, dict[str, Any]]:
        """Complete entries of a family: n -> their JSON (entries whose JSON or .npy is unusable skipped)."""
        out: dict[int, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return out
        for meta_path in self.folder.glob(f"bg-{family}-*.json"):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                n = int(meta["n"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if (meta.get("format") == CACHE_FORMAT and meta.get("format_version") == CACHE_FORMAT_VERSION
                    and meta.get("model") == self.model and self._paths(family, n)[0].is_file()):
                out[n] = meta
        return out

    def _open(self, family: str, n: int) -> np.ndarray | None:
        path = self._paths(family, n)[0]
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if arr.dtype != np.float16 or arr.shape != (n, self.encoder.dim):
            return None
        return arr

    def get(self, ref: dict[str, Any], texts: Sequence[str],
            texts_for: Callable[[int], Sequence[str]] | None = None) -> Background:
        """Vectors of background `texts` (described by `ref`), from the cache or embedded and cached.

        `texts_for(m)` gives the first m sentences of the same background family; it is needed only to
        check a longer cached background before slicing it (without it, only exact hits and shorter
        prefixes are reused).
        """
        n = len(texts)
        family = self._family(ref)
        digest = texts_sha256(texts)
        entries = self._cached(family)
        meta = entries.get(n)
        if meta is not None and meta.get("texts_sha256") == digest:
            arr = self._open(family, n)
            if arr is not None:
                return Background(ref, arr, 0.0, 0, n, str(self._paths(family, n)[0]))
        if texts_for is not None:
            for m in sorted(k for k in entries if k > n):
                arr = self._open(family, m)
                if arr is not None and entries[m].get("texts_sha256") == texts_sha256(texts_for(m)):
                    if list(texts_for(m)[:n]) == list(texts):
                        return Background(ref, arr[:n], 0.0, 0, n, str(self._paths(family, m)[0]))
        prefix: np.ndarray | None = None
        for m in sorted((k for k in entries if 0 < k < n), reverse=True):
            if entries[m].get("texts_sha256") == texts_sha256(texts[:m]):
                prefix = self._open(family, m)
                if prefix is not None:
                    break
        return self._embed(ref, family, texts, digest, prefix)

    def _embed(self, ref: dict[str, Any], family: str, texts: Sequence[str], digest: str,
               prefix: np.ndarray | None) -> Background:
        n, dim = len(texts), self.encoder.dim
        self.folder.mkdir(parents=True, exist_ok=True)
        npy, meta_path = self._paths(family, n)
        tmp = npy.with_name(f"{npy.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        start = 0 if prefix is None else prefix.shape[0]
        label = f"embed background {ref.get('kind', 'novel')} {n} sentences"
        t0 = time.perf_counter()
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, dim))
            if prefix is not None:
                out[:start] = prefix
            for a in range(start, n, EMBED_BLOCK):
                b = min(n, a + EMBED_BLOCK)
                vecs, _ = self.encoder.encode_texts(list(texts[a:b]))
                out[a:b] = vecs.astype(np.float16)
                if self.progress is not None:
                    self.progress(label, b - start, n - start)
            out.flush()
            del out
            embed_s = time.perf_counter() - t0
            os.replace(tmp, npy)
        finally:
            tmp.unlink(missing_ok=True)
        write_json_atomic(meta_path, sort_keys=True, data={
            "format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "background": ref, "n": n,
            "dim": dim, "model": self.model, "texts_sha256": digest, "embed_s": round(embed_s, 3),
            "embedded": n - start, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        return Background(ref, np.load(npy, mmap_mode="r"), embed_s, n - start, start, str(npy))


def _ref_key(ref: dict[str, Any]) -> str:
    return json.dumps(ref, sort_keys=True)


class ContextBuilder:
    """Builds the `MemoryContext` of each sample for one encoder (see module doc).

    Keeps the vectors of one background in memory at a time (float32 when small enough); samples of
    the same length share it, so run the samples of a length together.
    """

    def __init__(self, encoder: Encoder, cache_dir: str | os.PathLike, progress: Progress | None = None,
                 sentence_cache: bool = True) -> None:
        self.encoder = encoder
        self.disk = (VectorCache(Path(cache_dir) / SENTENCE_DIR, model_key(encoder), encoder.dim)
                     if sentence_cache else None)
        self.sentences = SentenceCache(encoder, self.disk)
        self.cache = BackgroundCache(cache_dir, encoder, progress)
        self._bg_key: str | None = None
        self._bg: Background | None = None
        self._bg_vectors: np.ndarray | None = None
        self.backgrounds: list[dict[str, Any]] = []  # every background obtained, for the report

    def flush(self) -> None:
        """Write the sentence vectors embedded since the last flush to the on-disk cache."""
        if self.disk is not None:
            self.disk.flush()

    def describe_sentences(self) -> dict[str, Any] | None:
        """The on-disk sentence cache: its folder, texts read from it and embedded into it in this run."""
        if self.disk is None:
            return None
        return {"path": str(self.disk.folder), "from_disk": self.disk.hits, "embedded": self.disk.embedded}

    def background(self, ref: dict[str, Any]) -> Background:
        """The (cached) vectors of a referenced background, loaded once while it stays the current one."""
        from ..data.samples import load_background

        key = _ref_key(ref)
        if key != self._bg_key or self._bg is None:
            self._bg = self._bg_vectors = None
            texts = load_background(ref)
            bg = self.cache.get(ref, texts, lambda m: load_background({**ref, "n_sentences": m}))
            n, dim = bg.vectors.shape
            if n * dim * 4 <= F32_LIMIT_BYTES:
                self._bg_vectors = np.asarray(bg.vectors, dtype=np.float32)
            else:
                self._bg_vectors = bg.vectors
            self._bg, self._bg_key = bg, key
            self.backgrounds.append(bg.describe())
        return self._bg

    def build(self, sample: dict[str, Any], texts: Sequence[str] | None = None) -> tuple[MemoryContext, float, int]:
        """(context, build seconds, sentences newly embedded) of one sample.

        `texts` is the sample's materialised chunk list when the caller has it already. Background
        embedding (long samples) is not part of the build time: call `background()` first to time it.
        """
        from ..data.samples import materialise

        if texts is None:
            texts = materialise(sample)
        t0 = time.perf_counter()
        if "context" in sample:
            vecs, new = self.sentences.embed(texts)
            if vecs.nbytes > F32_LIMIT_BYTES:
                vecs = vecs.astype(np.float16)
        else:
            self.background(sample["background"])
            assert self._bg_vectors is not None
            t0 = time.perf_counter()
            facts = sample["facts"]
            fact_vecs, new = self.sentences.embed([f["text"] for f in facts])
            vecs = splice_vectors(self._bg_vectors, fact_vecs, [f["position"] for f in facts],
                                  dtype=self._bg_vectors.dtype)
        ctx = MemoryContext(texts, vecs, doc=str(sample.get("id", "sample")))
        return ctx, time.perf_counter() - t0, new
