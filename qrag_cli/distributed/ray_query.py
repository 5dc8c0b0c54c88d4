"""`qrag query --ray`: batches of questions answered by Ray actors, each with the index open.

Every actor opens the index (memory-mapped, so the actors on one node share its pages in the page
cache) and the query encoder once; the questions are cut into the same batches as a single-process
run (64 questions) and handed to the least busy actor, at most two batches per actor in flight; the
answers come back through the object store and are given out in the input order. The index folder
must be readable by every worker at the same path (a shared file system, or a copy on each node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import QragError
from ..settings import QuerySettings
from .cluster import Deferred, connected, plan, unwrap
from .ray_build import IN_FLIGHT, RETRIES, model_ref


class QueryWorker(Deferred):
    """The body of a Ray actor: one open query session (index, encoder, search backend)."""

    def __init__(self, settings: QuerySettings) -> None:
        from ..api import QuerySession

        super().__init__()
        try:
            self.session = QuerySession(settings)
        except QragError as exc:  # e.g. no index at this path on this node
            self.error = exc

    def ask(self, questions: list[Any]) -> list[dict[str, Any]]:
        self.check()
        return self.session.ask(questions)


def ask_on_ray(settings: QuerySettings, questions: Sequence[Any], *, batch: int = 64,
               announce: Callable[[str], None] | None = None,
               warn: Callable[[str], None] | None = None) -> Iterator[list[dict[str, Any]]]:
    """The answers to `questions` (api.Question), batch by batch in the input order."""
    from ..api import capped_steps, default_query_model
    from ..embed.models import resolve_roles
    from ..store.reader import IndexReader

    reader = IndexReader(Path(settings.index))  # its errors (no index, corrupt files) come here, once
    reader.close()
    settings = capped_steps(settings, len(reader), warn)
    model = settings.model or default_query_model(reader.manifest)
    resolve_roles(model, announce)  # a policy's first-use export happens here, not in every actor at once
    batches = [list(questions[i : i + batch]) for i in range(0, len(questions), batch)]
    with connected(settings.ray, settings.workers) as ray:
        p = plan(ray, settings.workers)
        worker_settings = replace(settings, ray="", workers=0, index=str(Path(settings.index).resolve()),
                                  model=model_ref(model), threads=p.threads)
        cls = ray.remote(QueryWorker).options(num_cpus=p.cpus, max_restarts=RETRIES, max_task_retries=RETRIES)
        actors = [cls.remote(worker_settings) for _ in range(min(p.workers, len(batches)))]
        load = [0] * len(actors)
        window: deque[tuple[Any, int]] = deque()
        todo = iter(batches)

        def submit() -> None:
            part = next(todo, None)
            if part is not None:
                i = min(range(len(load)), key=load.__getitem__)
                window.append((actors[i].ask.remote(part), i))
                load[i] += 1

        try:
            for _ in range(IN_FLIGHT * len(actors)):
                submit()
            n = 0
            while window:
                ref, i = window.popleft()
                try:
                    answers = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise unwrap(exc, f"question batch {n + 1}") from None
                load[i] -= 1
                n += 1
                submit()
                yield answers
        finally:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - best effort: the cluster may be gone already
                    pass
