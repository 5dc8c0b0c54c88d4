"""A user's own training samples (`qrag train --data FILE [--val-data FILE]`).

The file is a `qrag-samples` file (`data/samples.py`: a header line, then one sample per line), the
format `qrag bench --data` reads. For training every sample must carry its whole context inline:
``context`` (the chunk texts, in order) and ``support`` (the indices of the chunks that answer the
question). Every problem is reported with the file and line it is on.
"""

from __future__ import annotations

from pathlib import Path

from ..data.samples import read_numbered_samples
from ..errors import InputError

#: Supports per question a training episode can complete within its steps (the episode's max_steps).
MAX_SUPPORT = 6


def read_training_file(path: str) -> list[dict]:
    """The validated samples of a training file, each tagged `train_task` = 'data'; InputError naming
    FILE:LINE for the first unusable sample."""
    if not Path(path).is_file():
        raise InputError(f"training data file not found: {path}")
    header, samples = read_numbered_samples(path)
    out: list[dict] = []
    for lineno, x in samples:
        where = f"{path}:{lineno}"
        if "context" not in x:
            raise InputError(f"{where}: a training sample needs its context inline ('context': the chunk texts); "
                             "this one references a shared background")
        if not x["context"]:
            raise InputError(f"{where}: 'context' is empty")
        if not x["support"]:
            raise InputError(f"{where}: 'support' is empty: name the chunk(s) that answer the question")
        if len(set(x["support"])) > MAX_SUPPORT:
            raise InputError(f"{where}: {len(set(x['support']))} supporting chunks: an episode of at most "
                             f"{MAX_SUPPORT} steps cannot complete it")
        if not x["question"].strip():
            raise InputError(f"{where}: 'question' is empty")
        x = {**x, "train_task": "data", "benchmark": header.get("benchmark", "")}
        out.append(x)
    if not out:
        raise InputError(f"{path}: the file holds no samples")
    return out
