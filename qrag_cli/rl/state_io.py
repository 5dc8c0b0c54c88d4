"""The trainer state of a checkpoint without pickle: tensors in safetensors, everything else in JSON.

A state is a tree of dicts, lists, tuples, numbers, strings, None, torch tensors and NumPy arrays
(optimizer and scheduler state, target networks, RNG states, counters, the episode pool). `save_state`
writes the tensors and arrays to `trainer.safetensors` (named t0, t1, ...) and the tree to
`trainer.json`, where a tensor is `{"__tensor__": "t3"}`, an array `{"__ndarray__": "t4"}`, a tuple
`{"__tuple__": [...]}`, a dict with keys that are not strings (or start with "__") `{"__dict__":
[[key, value], ...]}` and a float that JSON cannot hold `{"__float__": "nan"}`. Reading either file
runs no code: safetensors holds raw numbers only, and the JSON is decoded by the rules above alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import write_json_atomic
from ..errors import QragError
from ..versioned import read_versioned

STATE_JSON = "trainer.json"
STATE_TENSORS = "trainer.safetensors"
STATE_FORMAT = "qrag-trainer-state"
STATE_FORMAT_VERSION = 1


def save_state(folder: Path, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    save_file(tensors, str(folder / STATE_TENSORS))
    write_json_atomic(folder / STATE_JSON, {"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION,
                                            "tensors": STATE_TENSORS, "state": tree})


def load_state(folder: Path, error: type[QragError]) -> dict[str, Any]:
    """The state in `folder`; `error` (naming the file) if either file is unreadable or inconsistent."""
    meta = read_versioned(folder / STATE_JSON, STATE_FORMAT, STATE_FORMAT_VERSION, error,
                          "the checkpoint is damaged or from another qrag version")
    path = folder / STATE_TENSORS
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise error(f"{path} is unreadable ({exc}): the checkpoint is damaged") from exc
    try:
        state = _decode(meta["state"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise error(f"{folder / STATE_JSON} is damaged ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise error(f"{folder / STATE_JSON} is damaged (its state is not an object)")
    return state


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), tensors)
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a trainer state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"unexpected {type(obj).__name__}")
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag == "__tensor__":
            return tensors[value]
        if tag == "__ndarray__":
            return tensors[value].numpy()
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in value)
        if tag == "__dict__":
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value}
        if tag == "__float__":
            if value not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad float {value!r}")
            return float(value)
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)) or isinstance(key, torch.Tensor):
        raise TypeError("a dict key that is not a plain value")
    return key
