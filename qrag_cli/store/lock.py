"""An exclusive, non-blocking lock on an index folder while something writes it.

`filelock.FileLock` on a hidden file beside the folder (`.NAME.lock`): an OS lock (flock on POSIX,
msvcrt on Windows) that the system releases when the holder exits, even by `kill -9`, so a stale
lock never needs cleaning. The holder's pid goes to `.NAME.lock.pid` for the message (read only
while the lock is held by someone else, so a stale pid file is harmless).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from ..errors import BusyError


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


class FolderLock:
    """`with FolderLock(out):` holds the write lock of `out` or raises BusyError at once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = lock_path(out)
        self.pid_path = self.path.with_name(self.path.name + ".pid")
        self._lock = FileLock(self.path, timeout=0, thread_local=False)

    def __enter__(self) -> FolderLock:
        try:
            self._lock.acquire()
        except Timeout:
            try:
                holder = self.pid_path.read_text(encoding="utf-8").strip() or "?"
            except OSError:
                holder = "?"
            raise BusyError(
                f"another qrag process (pid {holder}) is writing {self.out}: wait for it to finish or stop it"
            ) from None
        self.pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._lock.is_locked:
            self._lock.release()
