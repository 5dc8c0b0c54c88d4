"""`qrag index --ray`: a build's shards embedded by Ray actors, written by the driver.

The driver reads and chunks the corpus once, as a stream, into the build's shards; each shard's
texts go to an actor, which holds one encoder (loaded once per actor, from the same model reference,
and checked to be the driver's model) and embeds the shard's groups exactly as a single-process build
does. The vectors come back as float16 through Ray's object store, so workers need not share the
output folder's file system; the driver writes each shard and its commit marker, in order, with
today's shard format. `--resume`, the write lock and the byte-identical output keep their meaning:
the same chunks are embedded in the same groups by the same encoder code. At most two shards per
actor are in flight, so the driver's memory stays bounded while the actors stay busy.

An actor that dies mid-shard (a killed process, a lost node) is restarted by Ray and its unfinished
shard retried (`max_restarts`, `max_task_retries`); the shard is written only once its vectors are back.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..corpus.types import Chunk
from ..embed.models import ModelSpec
from ..embed.shard_embedder import Encoded, Part, groups
from ..errors import ModelMismatchError, QragError
from ..settings import IndexSettings
from .cluster import Deferred, connected, plan, unwrap

RETRIES = 3  # restarts of a dead actor, and retries of the shard it was embedding
IN_FLIGHT = 2  # shards queued per actor
#: test hook: a file path; the first actor to create it exits mid-shard (a worker killed mid-shard)
CRASH_ONCE = "QRAG_TEST_CRASH_ONCE"


def model_ref(model: str) -> str:
    """The model reference as the workers resolve it: a local folder as an absolute path."""
    path = Path(model)
    return str(path.resolve()) if model not in ("", "default") and path.exists() else model


def _same_model(described: dict[str, Any]) -> dict[str, Any]:
    """What must agree between the driver's model and a worker's (not the folder: nodes differ in paths)."""
    return {k: v for k, v in described.items() if k != "path"}


class EmbedWorker(Deferred):
    """The body of a Ray actor: one encoder, loaded once; embeds whole shards."""

    def __init__(self, model: str, described: dict[str, Any], max_tokens: int, batch_size: int, threads: int,
                 crash_once: str = "") -> None:
        from ..embed.encoder import load_encoder
        from ..embed.models import resolve_roles

        super().__init__()
        self.crash_once = crash_once
        try:
            spec = resolve_roles(model)[1]
            if _same_model(spec.describe()) != _same_model(described):
                raise ModelMismatchError(
                    f"the model {model} on Ray node {socket.gethostname()} is not the driver's (checksum "
                    f"{spec.describe().get('checksum')}, driver {described.get('checksum')}): give every node the "
                    "same model files")
            self.encoder = load_encoder(spec, max_tokens=max_tokens, batch_size=batch_size, threads=threads,
                                        bulk=True)
        except QragError as exc:
            self.error = exc

    def embed(self, number: int, texts: list[list[str]]) -> tuple[int, list[tuple[Any, list[int]]], float]:
        """The shard's groups embedded in order: (number, [(float16 vectors, token counts)], seconds)."""
        self.check()
        t0 = time.perf_counter()
        out = []
        for texts_of_group in texts:
            vectors, tokens = self.encoder.encode_texts(texts_of_group)
            out.append((vectors.astype("<f2"), tokens))  # what the shard file stores: half the transfer
            self._maybe_crash()
        return number, out, time.perf_counter() - t0

    def _maybe_crash(self) -> None:
        if not self.crash_once:
            return
        try:
            os.close(os.open(self.crash_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


class RayShardEmbedder:
    """A `ShardEmbedder` whose shards are embedded by Ray actors (see the module's docstring)."""

    def __init__(self, settings: IndexSettings, spec: ModelSpec) -> None:
        self.s, self.spec = settings, spec
        self.engine, self.max_tokens = spec.engine, min(settings.max_tokens, 512)
        self._stack = ExitStack()
        self.ray = self._stack.enter_context(connected(settings.ray, settings.workers))
        self.plan = plan(self.ray, settings.workers)
        self.actors: list[Any] = []
        self.stats = {"shards": 0, "embed_seconds": 0.0, "wait_seconds": 0.0, "vector_bytes": 0}

    def _start(self) -> None:
        if self.actors:
            return
        ray, p = self.ray, self.plan
        actor = ray.remote(EmbedWorker).options(num_cpus=p.cpus, max_restarts=RETRIES, max_task_retries=RETRIES)
        args = (model_ref(self.s.model), self.spec.describe(), self.s.max_tokens, self.s.batch_size, p.threads,
                os.environ.get(CRASH_ONCE, ""))
        self.actors = [actor.remote(*args) for _ in range(p.workers)]

    def shards(self, parts: Iterable[Part], on_batch: Any = None, on_start: Any = None
               ) -> Iterator[tuple[int, list[Chunk], Iterable[Encoded]]]:
        """`on_batch` and `on_start` are not called: the build counts each group as it arrives."""
        ray, it = self.ray, iter(parts)
        window: deque[tuple[int, list[Chunk], Any, int]] = deque()
        load: list[int] = []

        def submit() -> bool:
            part = next(it, None)
            if part is None:
                return False
            self._start()
            if not load:
                load.extend([0] * len(self.actors))
            number, chunks = part
            i = min(range(len(load)), key=load.__getitem__)
            window.append((number, chunks, self.actors[i].embed.remote(number, groups(chunks, self.s.embed_group)), i))
            load[i] += 1
            return True

        while len(window) < IN_FLIGHT * self.plan.workers and submit():
            pass
        while window:
            number, chunks, ref, i = window.popleft()
            t0 = time.perf_counter()
            try:
                done, encoded, seconds = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise unwrap(exc, f"embedding shard {number}") from None
            self.stats["wait_seconds"] += time.perf_counter() - t0
            assert done == number
            load[i] -= 1
            self.stats["shards"] += 1
            self.stats["embed_seconds"] += seconds
            self.stats["vector_bytes"] += sum(v.nbytes for v, _ in encoded)
            submit()  # the next shard is queued before this one is written: the actors stay busy
            yield number, chunks, encoded

    def record(self) -> dict[str, Any]:
        return {"ray": {"workers": self.plan.workers, "cpus_per_worker": self.plan.cpus,
                        "shards_embedded": self.stats["shards"],
                        "worker_embed_seconds": round(self.stats["embed_seconds"], 3),
                        "driver_wait_seconds": round(self.stats["wait_seconds"], 3)}}

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - best effort: the cluster may be gone already
                pass
        self.actors = []
        self._stack.close()
