"""`qrag index` as a library call: corpus -> chunks -> shards of embeddings -> index files -> ANN -> manifest.

Bounded memory: chunks are read as a stream and embedded and written one shard (`shard_chunks`
chunks) at a time; the data files are then concatenated from the shards and the ANN index is built
from the memory-mapped vectors. Nothing grows with the corpus but the ANN library's own graph.

Atomic and resumable: everything is written into the hidden sibling folder `.NAME.building`, locked
by `.NAME.lock` (a second build of the same output refuses at once); the manifest is written last and
the folder renamed into place only when complete. A finished shard is never redone: after Ctrl-C,
a full disk or `kill -9`, the same command with `--resume` checks that the corpus still gives the
same chunks (a digest per shard) and the same settings, verifies the shards' checksums, and goes on
from the first unfinished shard. Embedding groups never cross a shard boundary, so a resumed build
computes exactly the vectors of an uninterrupted one.

Append (`--append DIR`): the new documents are embedded into shards the same way (positions and
document count continue the index's), then the index's files and the new shards are concatenated
into a new folder that replaces DIR only when complete; the ANN graph is loaded from DIR and only the
new vectors are added to it (hnswlib, usearch), so an append costs the new documents, not the corpus.
"""

from __future__ import annotations

import errno
import itertools
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_json_atomic
from .build_types import BuildProgress, BuildReport
from .build_checks import AppendBase, append_settings, check_out, differences, read_json, remove_stale_partials
from .corpus.chunking import iter_chunks
from .corpus.readers import Corpus, open_corpus
from .embed.encoder import Encoder, load_encoder
from .embed.models import resolve_roles
from .embed.shard_embedder import Encoded, LocalEmbedder, ShardEmbedder
from .errors import InputError, StorageError
from .search.compact import write_compact
from .search.registry import build_ann, check_name
from .settings import IndexSettings, to_dict
from .store.bm25 import write_index_bm25
from .store.checksums import file_digest
from .store.generations import finished_in, install, recover
from .store.lock import FolderLock
from .store.manifest import (
    CHUNKS,
    MANIFEST,
    SETTINGS,
    VECTORS,
    check_model,
    new_manifest,
)
from .store.reader import IndexReader
from .store.shards import RowDigest, ShardInfo, ShardStore, assemble
from .store.writer import IndexWriter

DEFAULT_HOME = Path("indexes")
BUILDING = ".building"
BUILD_JSON = "build.json"
GENERATION = "generation"  # the folder in `.NAME.building` that becomes the index's next generation
BUILD_FORMAT = "qrag-build"
BUILD_FORMAT_VERSION = 1
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                  errno.ENOTDIR, errno.EEXIST}
#: settings that may differ between an interrupted build and its --resume
RESUME_FREE = ("resume", "overwrite", "threads", "ray", "workers", "bm25", "add_bm25")  # --ray gives the same files; BM25 is written after the shards


def default_out(corpus_name: str) -> Path:
    return DEFAULT_HOME / corpus_name


def work_folder(out: Path) -> Path:
    """Where a build of `out` writes until it is complete."""
    return out.parent / f".{out.name}{BUILDING}"


def build_index(
    settings: IndexSettings,
    *,
    progress: Callable[[BuildProgress], None] | None = None,
    warn: Callable[[str], None] | None = None,
    encoder: Encoder | None = None,
) -> BuildReport:
    """Build (or extend, or resume) an index as `settings` say. Raises QragError subclasses."""
    if settings.add_bm25:
        raise InputError("add_bm25 is not a build: call api.add_bm25(path) (`qrag index --add-bm25 DIR`)")
    settings.chunker.validate()
    check_name(settings.ann.backend)  # before any work, not after the embedding
    if settings.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if settings.shard_chunks < 1 or settings.embed_group < 1:
        raise InputError("--shard-chunks and --embed-group must be at least 1")
    if settings.append and settings.overwrite:
        raise InputError("--append and --overwrite do not go together")
    if settings.workers < 0:
        raise InputError("--workers must be 0 (one per CPU) or more")
    if settings.workers and not settings.ray:
        raise InputError("--workers goes with --ray (auto or a cluster address)")
    if settings.ray:
        from .distributed.cluster import require_ray

        require_ray()  # before any work: the one-line error saying what to install
    corpus = open_corpus(settings.corpus, on_warning=warn)
    out = Path(settings.append or settings.out) if (settings.append or settings.out) else default_out(corpus.name)
    real = out.resolve() if out.is_symlink() else out  # a symlinked index folder stays a symlink
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        with FolderLock(real):
            if recover(real, work_folder(real)):
                done = _recovered(settings, out, real, warn)
                if done is not None:
                    return done
            base = None
            if settings.append:
                settings, base = append_settings(settings)
            else:
                check_out(out, real, settings)
            spec = encoder.spec if encoder is not None else resolve_roles(settings.model)[1]  # chunks: action side
            if base is not None:
                check_model(base.manifest, spec.describe(), base.folder)
            emb = _embedder(settings, spec, encoder)
            try:
                remove_stale_partials(real)
                report = _Build(settings, corpus, real, emb, base, progress, warn).run()
            finally:
                emb.close()
            return replace(report, out=out)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise StorageError(_storage_message(exc, real)) from exc
        raise


def _embedder(settings: IndexSettings, spec: Any, encoder: Encoder | None) -> ShardEmbedder:
    """Ray actors with --ray (the encoder is loaded in each of them), else one encoder here."""
    if settings.ray:
        if encoder is not None:
            raise InputError("--ray loads the encoder in each Ray worker: pass the model by name, not an encoder")
        from .distributed.ray_build import RayShardEmbedder

        return RayShardEmbedder(settings, spec)
    enc = encoder or load_encoder(spec, max_tokens=settings.max_tokens, batch_size=settings.batch_size,
                                  threads=settings.threads, bulk=True)
    return LocalEmbedder(enc, settings.embed_group)


def _recovered(settings: IndexSettings, out: Path, real: Path, warn: Callable[[str], None] | None) -> BuildReport | None:
    """After an interrupted build's finished index was installed: its report for --resume, else go on."""
    m = IndexReader(real)
    m.close()
    c = m.manifest["corpus"]
    if settings.resume:
        if warn:
            warn(f"the interrupted build of {out} had finished: it is installed now")
        appended = c.get("appended") or [{}]
        return BuildReport(out, int(c["documents"]), int(c["chunks"]), int(c["tokens"]), 0.0, 0.0, 0.0,
                           int(m.manifest.get("build", {}).get("shards", 0)), 0,
                           int(appended[-1].get("chunks", 0)) if settings.append else 0, 0)
    if settings.append:
        raise InputError(f"an interrupted append to {out} had finished and is installed now ({c['chunks']} chunks): "
                         "check the index before appending again")
    if warn:
        warn(f"an interrupted build of {out} had finished and is installed now")
    return None


def _storage_message(exc: OSError, out: Path) -> str:
    work = work_folder(out)
    kept = ShardStore(work).count()
    where = exc.filename or out
    msg = f"cannot write {where}: {exc.strerror or exc}"
    if kept:
        msg += f"; {kept} finished shard(s) are kept in {work}: fix this and run the same command with --resume"
    return msg


class _Build:
    """One run of a build: prepare the work folder, write the missing shards, assemble, install."""

    def __init__(self, settings: IndexSettings, corpus: Corpus, out: Path, enc: ShardEmbedder, base: AppendBase | None,
                 progress: Callable[[BuildProgress], None] | None, warn: Callable[[str], None] | None) -> None:
        self.s, self.corpus, self.out, self.enc, self.base = settings, corpus, out, enc, base
        self.progress, self.warn = progress, warn
        self.work = work_folder(out)
        self.store = ShardStore(self.work)
        self.state = BuildProgress("embed", bytes_total=corpus.bytes_total)
        self.resumed_tokens = 0

    def run(self) -> BuildReport:
        t0 = time.perf_counter()
        shards = self._prepare()
        try:
            shards = self._embed(shards)
            t_embed = time.perf_counter()
            report = self._finish(shards, t0, t_embed)
        except BaseException as exc:
            kept = self.store.count()
            if finished_in(self.work) is not None or not (self.work / BUILD_JSON).exists():
                pass  # a finished index, or its install under way: the next run finishes it
            elif kept == 0:
                shutil.rmtree(self.work, ignore_errors=True)
            elif self.warn and isinstance(exc, KeyboardInterrupt):
                self.warn(f"interrupted: {kept} finished shard(s) are kept in {self.work}; run the same command "
                          "with --resume to continue")
            raise
        return report

    def _key(self) -> dict[str, Any]:
        settings = {k: v for k, v in to_dict(self.s).items() if k not in RESUME_FREE}
        base = None
        if self.base is not None:
            base = {k: self.base.manifest["files"][k] for k in (CHUNKS, VECTORS)}
        return {"format": BUILD_FORMAT, "format_version": BUILD_FORMAT_VERSION, "settings": settings,
                "model": self.enc.spec.describe(), "base": base}

    def _prepare(self) -> list[ShardInfo]:
        """Create the work folder, or check and reuse an interrupted one (--resume); the finished shards."""
        key = self._key()
        if self.work.exists():
            finished = self.store.count()
            if self.s.resume and (self.work / BUILD_JSON).is_file():
                before = read_json(self.work / BUILD_JSON)
                if before != key:
                    diff = differences(before, key)
                    raise InputError(
                        f"the interrupted build in {self.work} was made with other settings ({diff}): repeat its "
                        "command with --resume, or pass --overwrite instead to start over"
                    )
                shards = self.store.finished()
                self.state.shards_resumed = len(shards)
                return shards
            if finished and not self.s.overwrite:
                raise InputError(
                    f"an interrupted build of {self.out} is in {self.work} ({finished} finished shard(s)): "
                    "pass --resume to continue it, or --overwrite to discard it"
                )
            shutil.rmtree(self.work)
        elif self.s.resume and self.warn:
            self.warn(f"no interrupted build of {self.out} to resume: building from the start")
        self.store.dir.mkdir(parents=True)
        write_json_atomic(self.work / BUILD_JSON, key)
        return []

    def _chunks(self) -> Iterator:
        first = self.base.rows if self.base else 0
        return iter_chunks(self.corpus, self.s.chunker, first_position=first)

    def _embed(self, shards: list[ShardInfo]) -> list[ShardInfo]:
        chunks = self._chunks()
        last_doc = self.base.last_doc if self.base else None
        st = self.state
        for info in shards:  # skip what is done, checking the corpus still gives the same chunks
            digest = RowDigest()
            part = list(itertools.islice(chunks, info.rows))
            digest.update(part)
            if len(part) != info.rows or digest.hexdigest() != info.text_digest:
                raise InputError(
                    f"the corpus {self.s.corpus} no longer gives the chunks of shard {info.number} of the "
                    f"interrupted build in {self.work}: pass --overwrite instead of --resume to start over"
                )
            last_doc = info.last_doc
            st.chunks += info.rows
            st.chunks_read += info.rows
            st.resumed_chunks += info.rows
            st.tokens += info.tokens
            st.shards_done += 1
            self.resumed_tokens += info.tokens
        def parts() -> Iterator[tuple[int, list]]:  # read lazily: the embedder may read ahead
            number = len(shards)
            while part := list(itertools.islice(chunks, self.s.shard_chunks)):
                st.chunks_read += len(part)
                st.bytes_read = self.corpus.bytes_read
                st.corpus_done = len(part) < self.s.shard_chunks
                yield number, part
                number += 1

        self._report()  # the embedding starts (after the resumed shards)
        for number, part, encoded in self.enc.shards(parts(), self._batch_done, self._group_started):
            info = self._write_shard(number, part, last_doc, encoded)
            shards.append(info)
            last_doc = info.last_doc
            st.shards_done += 1
            self._report()
        if not shards:
            raise InputError(f"empty corpus: no text to index in {self.s.corpus}")
        return shards

    def _write_shard(self, number: int, part: list, last_doc: str | None, encoded: Iterable[Encoded]) -> ShardInfo:
        arrow, npy, _ = self.store.names(number)
        writer = IndexWriter(self.store.dir, self.enc.spec.dim, chunks_name=arrow, vectors_name=npy,
                             last_doc=last_doc)
        digest = RowDigest()
        start = self.state.chunks  # chunks counted before this shard
        try:
            group = self.s.embed_group  # sorted by length per call: 8,192 pads less than 1,024 (+19% tokens/s)
            for lo, (vectors, tokens) in zip(range(0, len(part), group), encoded, strict=True):
                chunks = part[lo : lo + group]
                missing = start + lo + len(chunks) - self.state.chunks
                if missing > 0:  # an embedder that does not report per batch (Ray): count the group now
                    self._batch_done(missing, sum(tokens[-missing:]))
                writer.add(chunks, vectors, tokens)
                digest.update(chunks)
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        info = ShardInfo(number, writer.rows, writer.tokens, writer.documents, writer.last_doc,
                         digest.hexdigest(), files)
        self.store.finish(info)
        return info

    def _batch_done(self, rows: int, tokens: int) -> None:
        """The encoder's per-batch callback: count the batch's chunks and tokens, report."""
        self.state.chunks += rows
        self.state.tokens += tokens
        self.state.pending_chunks = max(0, self.state.pending_chunks - rows)
        self.state.pending_tokens = max(0, self.state.pending_tokens - tokens)
        self._report()

    def _group_started(self, rows: int, tokens: int) -> None:
        """A group is tokenized: its word pieces are work ahead (the ETA counts tokens, not chunks, as
        batches go from the shortest chunks to the longest)."""
        self.state.pending_chunks += rows
        self.state.pending_tokens += tokens
        self._report()

    def _report(self) -> None:
        if self.progress:
            self.progress(self.state)

    def _finish(self, shards: list[ShardInfo], t0: float, t_embed: float) -> BuildReport:
        s, base, dim = self.s, self.base, self.enc.spec.dim
        work = self.work / GENERATION  # the new generation, complete once its manifest is written
        shutil.rmtree(work, ignore_errors=True)  # a partial one of an interrupted run
        work.mkdir()
        new_rows = sum(i.rows for i in shards)
        rows = new_rows + (base.rows if base else 0)
        tokens = sum(i.tokens for i in shards) + (base.tokens if base else 0)
        documents = sum(i.documents for i in shards) + (base.documents if base else 0)
        parts = [(base.folder / CHUNKS, base.folder / VECTORS)] if base else []
        parts += [i.paths(self.work) for i in shards]
        assemble(parts, work / CHUNKS, work / VECTORS, rows, dim)
        vectors_mm = np.load(work / VECTORS, mmap_mode="r")
        self.state.phase, self.state.ann_total = "ann", rows

        def ann_progress(done: int, total: int) -> None:
            self.state.ann_done, self.state.ann_total = done, total
            self._report()

        base_files = base.manifest["ann"].get("files", []) if base else []  # checked by IndexReader at open
        ann_info = build_ann(s.ann.backend, vectors_mm, work, s.ann, seed=s.seed, threads=s.threads,
                             progress=ann_progress, extend=base.folder / base_files[0] if base_files else None)
        if base_files:
            ann_info["extended_from_rows"] = base.rows
        del vectors_mm
        t_ann = time.perf_counter()
        write_json_atomic(work / SETTINGS, to_dict(s))
        corpus = {"name": self.corpus.name, "source": str(s.corpus), "documents": documents, "chunks": rows,
                  "tokens": tokens}
        if base is not None:
            bc = base.manifest["corpus"]
            corpus.update(name=bc["name"], source=bc["source"],
                          appended=[*bc.get("appended", []), {"source": str(s.corpus), "chunks": new_rows}])
        compact = write_compact(work, np.load(work / VECTORS, mmap_mode="r"))  # int8 copy: the exact positional scan
        files = {f: file_digest(work / f)
                 for f in (CHUNKS, VECTORS, compact["data"], compact["meta"], *ann_info.get("files", []))}
        lexical: dict[str, Any] = {}  # BM25 (--bm25; an append keeps the index's): over all chunks (global idf)
        if s.bm25 or (base is not None and "bm25" in base.manifest):
            t_bm25 = time.perf_counter()
            lexical["bm25"], bm25_files = write_index_bm25(work, CHUNKS)
            lexical["bm25"]["seconds"] = round(time.perf_counter() - t_bm25, 3)
            files.update(bm25_files)
        manifest = new_manifest(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seed=s.seed,
            model={**self.enc.spec.describe(), "ref": s.model, "max_tokens": self.enc.max_tokens},
            corpus=corpus,
            chunker=to_dict(s.chunker),
            ann={**to_dict(s.ann), **ann_info},
            store={"chunks": CHUNKS, "vectors": VECTORS, "vector_dtype": "float16"},
            files=files,
            compact=compact,
            **lexical,
            build={"seconds": round(t_ann - t0, 3), "embed_engine": self.enc.engine, "shards": len(shards),
                   "shard_chunks": s.shard_chunks, "shards_resumed": self.state.shards_resumed,
                   **self.enc.record()},
        )
        write_json_atomic(work / MANIFEST, manifest)
        install(work, self.work, self.out)
        return BuildReport(self.out, documents, rows, tokens, t_ann - t0, t_embed - t0, t_ann - t_embed,
                           len(shards), self.state.shards_resumed, new_rows if base else 0,
                           self.state.tokens - self.resumed_tokens)
