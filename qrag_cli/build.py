"""`qrag index` as a library call: corpus -> chunks -> embeddings -> store -> ANN -> manifest.

Streaming: chunks are embedded and written in groups, so memory does not grow with the corpus.
Atomic: everything is written into a hidden sibling folder `.NAME.partial-PID`; the manifest is
written last and the folder renamed into place only when complete. On any error or Ctrl-C the
partial folder is removed; after `kill -9` it stays behind without a manifest under a name that
`qrag query` never opens, and the next build of the same output removes it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus.chunking import iter_chunks
from .corpus.readers import open_corpus
from .embed.encoder import Encoder, load_encoder
from .embed.models import resolve_roles
from .errors import InputError, OutputExistsError
from .atomic import install_folder, write_json_atomic
from .search.registry import build_ann
from .settings import IndexSettings, to_dict
from .store.manifest import CHUNKS, MANIFEST, SETTINGS, VECTORS, new_manifest
from .store.writer import IndexWriter, file_digest

DEFAULT_HOME = Path("indexes")
PARTIAL = ".partial-"


@dataclass
class BuildProgress:
    """What a progress display needs; `phase` is 'embed' then 'ann'."""

    phase: str
    chunks: int = 0
    tokens: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    ann_done: int = 0
    ann_total: int = 0


@dataclass(frozen=True)
class BuildReport:
    out: Path
    documents: int
    chunks: int
    tokens: int
    seconds: float
    embed_seconds: float
    ann_seconds: float


def default_out(corpus_name: str) -> Path:
    return DEFAULT_HOME / corpus_name


def _groups(chunks: Iterator, size: int) -> Iterator[list]:
    while group := list(itertools.islice(chunks, size)):
        yield group


def build_index(
    settings: IndexSettings,
    *,
    progress: Callable[[BuildProgress], None] | None = None,
    warn: Callable[[str], None] | None = None,
    encoder: Encoder | None = None,
) -> BuildReport:
    """Build an index as `settings` say; returns what was built. Raises QragError subclasses."""
    settings.chunker.validate()
    if settings.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    corpus = open_corpus(settings.corpus, on_warning=warn)
    out = Path(settings.out) if settings.out else default_out(corpus.name)
    if out.exists() and not settings.overwrite:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --overwrite")
    spec = encoder.spec if encoder is not None else resolve_roles(settings.model)[1]  # chunks: the action side
    enc = encoder or load_encoder(
        spec, max_tokens=settings.max_tokens, batch_size=settings.batch_size, threads=settings.threads
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}{PARTIAL}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    writer = IndexWriter(tmp, spec.dim, chunks_name=CHUNKS, vectors_name=VECTORS)
    try:
        state = BuildProgress("embed", bytes_total=corpus.bytes_total)
        for group in _groups(iter_chunks(corpus, settings.chunker), settings.batch_size * 16):
            vectors, tokens = enc.encode_texts([c.text for c in group])
            writer.add(group, vectors, tokens)
            state.chunks, state.tokens, state.bytes_read = writer.rows, writer.tokens, corpus.bytes_read
            if progress:
                progress(state)
        files = writer.close()
        if writer.rows == 0:
            raise InputError(f"empty corpus: no text to index in {settings.corpus}")
        t_embed = time.perf_counter()
        vectors_mm = np.load(tmp / VECTORS, mmap_mode="r")
        state.phase, state.ann_total = "ann", writer.rows

        def ann_progress(done: int, total: int) -> None:
            state.ann_done, state.ann_total = done, total
            if progress:
                progress(state)

        ann_info = build_ann(
            settings.ann.backend, vectors_mm, tmp, settings.ann,
            seed=settings.seed, threads=settings.threads, progress=ann_progress,
        )
        del vectors_mm
        t_ann = time.perf_counter()
        write_json_atomic(tmp / SETTINGS, to_dict(settings))
        manifest = new_manifest(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seed=settings.seed,
            model={**spec.describe(), "ref": settings.model, "max_tokens": enc.max_tokens},
            corpus={
                "name": corpus.name,
                "source": str(settings.corpus),
                "documents": writer.documents,
                "chunks": writer.rows,
                "tokens": writer.tokens,
            },
            chunker=to_dict(settings.chunker),
            ann={**to_dict(settings.ann), **ann_info},
            store={"chunks": CHUNKS, "vectors": VECTORS, "vector_dtype": "float16"},
            files={**files, **{f: file_digest(tmp / f) for f in ann_info.get("files", [])}},
            build={"seconds": round(t_ann - t0, 3), "embed_engine": enc.engine},
        )
        write_json_atomic(tmp / MANIFEST, manifest)
        install_folder(tmp, out)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildReport(out, writer.documents, writer.rows, writer.tokens, t_ann - t0, t_embed - t0, t_ann - t_embed)


def _remove_stale_partials(out: Path) -> None:
    """Remove partial folders of earlier builds of `out` whose process is gone."""
    for p in out.parent.glob(f".{out.name}{PARTIAL}*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
