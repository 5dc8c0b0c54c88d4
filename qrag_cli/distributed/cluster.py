"""Starting or joining a Ray cluster, and how many actors of how many CPUs it runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import ClusterError, MissingExtraError, QragError

INSTALL = "pip install 'qrag-cli[ray]'"


def require_ray() -> Any:
    """The `ray` module, or the one-line error saying what to install."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError(f"--ray needs Ray, which is not installed: {INSTALL}") from exc
    return ray


@dataclass(frozen=True)
class Plan:
    """`workers` actors of `cpus` CPUs each (a Ray resource request), each running `threads` threads."""

    workers: int
    cpus: float
    threads: int


def plan(ray: Any, workers: int) -> Plan:
    """One actor per CPU of the cluster by default; `workers` actors share the CPUs otherwise."""
    total = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n = workers or total
    cpus = total / n if n > total else float(total // n)
    return Plan(n, cpus, max(1, int(cpus)))


@contextmanager
def connected(address: str, workers: int = 0) -> Iterator[Any]:
    """Ray, initialised: 'auto' joins the local cluster (`ray start --head`) or starts one of this
    machine's CPUs; any other address joins that cluster. A Ray already initialised in this process
    (a script's own `ray.init(...)`) is used as it is. Disconnects at the end if it connected."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **quiet)
            except ConnectionError:  # no cluster running here: start one for this command
                ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except QragError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises several types for an unreachable cluster
        raise ClusterError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def unwrap(exc: BaseException, what: str) -> BaseException:
    """A Ray failure as qrag's error: the worker's own QragError (a model that does not load, an index
    it cannot open, ...) as it was raised there; anything else as a one-line ClusterError naming `what`."""
    cause = getattr(exc, "cause", None)  # RayTaskError: the exception raised in the task
    if isinstance(cause, QragError):
        return cause
    if isinstance(cause, BaseException):
        detail = f"{type(cause).__name__}: {cause}"
    else:  # an actor that died beyond its restarts, a lost node, ...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return ClusterError(f"{what} failed on the Ray cluster: {' '.join(detail.split())[:400]}")


class Deferred:
    """An actor's failure to start (a QragError in its constructor), kept to be raised by its first task:
    a task's exception comes back as itself, a constructor's only as a message in a dead actor's error."""

    def __init__(self) -> None:
        self.error: QragError | None = None

    def check(self) -> None:
        if self.error is not None:
            raise self.error
