"""Reading qrag's versioned JSON artefacts: `{"format": NAME, "format_version": N, ...}`.

Index manifests, model and policy manifests and build shards all start with the same two fields;
this is the one reader that checks them, raising the caller's error type with the caller's fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import __version__
from .errors import QragError


def read_versioned(path: Path, fmt: str, version: int | tuple[int, ...], error: type[QragError],
                   fix: str = "") -> dict[str, Any]:
    """The JSON object in `path` if its format is `fmt` at `version` (or one of several); else `error` naming
    the file and `fix`."""
    versions = version if isinstance(version, tuple) else (version,)
    tail = f": {fix}" if fix else ""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path} is missing or unreadable ({exc}){tail}") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path} is not a {fmt} manifest{tail}")
    if data.get("format_version") not in versions or isinstance(data.get("format_version"), bool):
        raise error(f"{path} has {fmt} format version {data.get('format_version')}; this qrag ({__version__}) "
                    f"reads version {' or '.join(map(str, versions))}{tail}")
    return data


def read_json_object(path: Path, error: type[QragError], fix: str = "") -> dict[str, Any]:
    """The JSON object in `path`, or `error` naming the file (unreadable, not JSON, not an object)."""
    tail = f": {fix}" if fix else ""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path} is missing or unreadable ({exc}){tail}") from exc
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object{tail}")
    return data
