"""Writing files and folders so that a reader never sees half of them.

A file is written to a temporary name in its own folder, fsynced, then renamed over the target; a
folder is built under a temporary sibling name and renamed into place, an existing one moved aside
only once the new one is complete. Used by every on-disk artefact (indexes, exports, samples,
benchmark results, caches, checkpoints).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it is fsynced and renamed to `path`, on error removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json_atomic(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> None:
    """JSON (indented, UTF-8, NaN refused) written atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def install_folder(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`; an existing `out` is replaced only after success."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def build_folder(out: Path, fill: Callable[[Path], None]) -> Path:
    """Create `out` by calling `fill(tmp)` on a hidden sibling `.NAME.partial-PID`, then installing it.

    On any error (Ctrl-C included) the partial folder is removed and `out` is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        install_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
