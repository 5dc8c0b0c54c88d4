"""An exclusive, non-blocking lock on an index folder while something writes it.

`fcntl.flock` on a hidden file beside the folder (`.NAME.lock`): the kernel releases it when the
holder exits, even by `kill -9`, so a stale lock never needs cleaning. The file itself stays (removing
it could let two writers lock two different files); it holds the holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import BusyError


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


class FolderLock:
    """`with FolderLock(out):` holds the write lock of `out` or raises BusyError at once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = lock_path(out)
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BusyError(
                f"another qrag process (pid {holder}) is writing {self.out}: wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
