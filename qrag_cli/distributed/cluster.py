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


def unwrap(ray: Any, exc: BaseException, what: str) -> BaseException:
    """A Ray failure as qrag's error: the worker's own QragError (a model that does not load, ...) as it
    was raised there, anything else as a ClusterError naming `what` failed."""
    cause = getattr(exc, "cause", None)
    seen = 0
    while cause is not None and not isinstance(cause, QragError) and seen < 4:  # an actor's failed __init__
        cause, seen = getattr(cause, "cause", None), seen + 1
    if isinstance(cause, QragError):
        return cause
    first = str(exc).strip().splitlines()
    return ClusterError(f"{what} failed on the Ray cluster: {type(exc).__name__}: {first[-1] if first else ''}")
