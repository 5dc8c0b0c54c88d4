"""Index generations: the files of one version of an index in their own folder, and one atomic pointer.

    NAME/CURRENT           one line, the name of the current generation ("gen-000003"); replaced
                           atomically (temporary file, fsync, rename), never edited in place
    NAME/gen-000003/       manifest.json (written last), settings.json, chunks.arrow, vectors.npy, ...

A reader resolves `CURRENT` once, takes a shared lock (portalocker: `flock` on POSIX, `LockFileEx` on Windows) on the generation's `manifest.json` and
keeps it while the index is open; a writer adds the complete generation `gen-(N+1)` with one rename,
switches `CURRENT` with a second one, then removes every older generation that no reader holds (one
still held is removed by a later write). So a reader always opens one complete generation, and a
crash at any instant leaves the old or the new generation current; `recover()`, run under the write
lock before every write, finishes an interrupted install (a finished generation still in the build
folder, or one newer than `CURRENT`) and removes what an install left behind.

The folder `NAME` itself is created once and never moved or deleted (a symlinked index folder stays
a symlink). An index written before generations (format version 1: the files directly in `NAME`) is
still opened; the first write into it adds `gen-000001` and then removes the old top-level files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

import portalocker

from ..atomic import write_bytes_atomic
from ..errors import CorruptIndexError, IndexNotFoundError

POINTER = "CURRENT"
MANIFEST = "manifest.json"
GEN_RE = re.compile(r"^gen-(\d{6,})$")
#: the files of an index of format version 1, directly in the index folder
LEGACY_FILES = ("settings.json", "chunks.arrow", "vectors.npy", "usearch.index", "hnsw.bin", "vectors_i8.npy",
                "vectors_i8.json")
#: names an index folder may hold besides generations (temporary files of atomic writes end in .tmp)
INDEX_NAMES = frozenset({POINTER, MANIFEST, *LEGACY_FILES})
RETRIES = 20


def gen_name(number: int) -> str:
    return f"gen-{number:06d}"


def generations(root: Path) -> dict[int, Path]:
    """The generation folders in `root`, by number."""
    found: dict[int, Path] = {}
    if root.is_dir():
        for p in root.iterdir():
            m = GEN_RE.match(p.name)
            if m and p.is_dir() and not p.is_symlink():
                found[int(m.group(1))] = p
    return found


def read_pointer(root: Path) -> str | None:
    """The generation `CURRENT` names, None without one; a damaged pointer is CorruptIndexError."""
    path = root / POINTER
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path} is unreadable ({exc}): the index is damaged") from exc
    if not GEN_RE.match(text):
        raise CorruptIndexError(f"{path} does not name a generation (gen-NNNNNN): the index is damaged")
    return text


def write_pointer(root: Path, name: str) -> None:
    write_bytes_atomic(root / POINTER, f"{name}\n".encode())


def current_number(root: Path) -> int:
    """The number of the current generation: 0 for an index of format version 1 (or none)."""
    name = read_pointer(root)
    return int(GEN_RE.match(name).group(1)) if name else 0


def current_folder(root: Path) -> Path:
    """The folder of the current generation of `root` (`root` itself for format version 1), unlocked."""
    name = read_pointer(root)
    return root / name if name else root


def is_index_folder(root: Path) -> bool:
    """True if `root` holds only what a qrag index holds (its pointer, generations, manifest, data files).

    An empty folder counts too (nothing in it can be lost); any other file or folder makes it not an index."""
    if not root.is_dir():
        return False
    names = set()
    for p in root.iterdir():
        if not (p.name in INDEX_NAMES or GEN_RE.match(p.name) or (p.name.startswith(".") and p.name.endswith(".tmp"))):
            return False
        names.add(p.name)
    if names & set(LEGACY_FILES) or MANIFEST in names:  # files of that name must be an index's
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a damaged index still has its data files
            return bool(names & {"chunks.arrow", "vectors.npy"})
        if not isinstance(manifest, dict) or manifest.get("format") != "qrag-index":
            return False
    return True


class OpenGeneration:
    """The data folder of the current generation of `root`, held by a shared lock until `close()`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise IndexNotFoundError(f"no index at {root}: build one with `qrag index CORPUS --out {root}`")
        for _ in range(RETRIES):
            name = read_pointer(self.root)
            folder = self.root / name if name else self.root
            if name is None and not (folder / MANIFEST).is_file():
                raise IndexNotFoundError(f"{root} is not a qrag index (no {POINTER} or {MANIFEST}): give the folder "
                                         "of an index, or build one into a new folder with `qrag index CORPUS --out NEW`")
            fh = self._lock(folder / MANIFEST)
            if fh is not None:
                self.folder, self._fh = folder, fh
                return
        raise CorruptIndexError(f"{root / POINTER} names {name}, which has no {MANIFEST}: the index is damaged")

    @staticmethod
    def _lock(path: Path) -> IO[bytes] | None:
        """A shared lock on `path`, or None if it was removed meanwhile (then resolve the pointer again)."""
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return None
        portalocker.lock(fh, portalocker.LOCK_SH)  # waits while a writer removes this generation
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            fh.close()
            return None
        return fh

    def close(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()  # closing the file releases the lock
            self._fh = None

    def __del__(self) -> None:
        self.close()


def install(gen: Path, work: Path, root: Path) -> None:
    """Make the complete generation folder `gen` (inside the build folder `work`) current in `root`.

    Called under the write lock. Whatever else `work` holds is discarded first; `root` is created by
    renaming `work` itself if it does not exist yet. Otherwise the emptied `work` is removed last: it
    marks an install that has moved its generation but may not have finished. Every step leaves a state
    that `recover()` finishes."""
    for p in list(work.iterdir()):
        if p != gen and p.name != POINTER and not GEN_RE.match(p.name):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if not root.exists():
        name = gen_name(1)
        if gen.name != name:
            os.replace(gen, work / name)
        write_pointer(work, name)
        os.replace(work, root)
        return
    name = gen_name(max([current_number(root), *generations(root)], default=0) + 1)
    os.replace(gen, root / name)
    _finish(root, work)


def _finish(root: Path, work: Path) -> None:
    """Point `root` at its newest complete generation, remove the old ones, then the emptied `work`."""
    newer = {n: p for n, p in generations(root).items() if n > current_number(root) and (p / MANIFEST).is_file()}
    if newer:
        write_pointer(root, max(newer.items())[1].name)
    collect(root)
    for p in list(work.iterdir()) if work.is_dir() else []:  # only a pointer file a crash left
        p.unlink()
    if work.is_dir():
        work.rmdir()


def finished_in(work: Path) -> Path | None:
    """A complete generation left in a build folder (its manifest is written last), if any."""
    if not work.is_dir():
        return None
    done = [p for p in work.iterdir() if p.is_dir() and (p / MANIFEST).is_file()
            and (GEN_RE.match(p.name) or p.name == "generation")]
    return max(done, key=lambda p: p.name) if done else None


def recover(root: Path, work: Path) -> bool:
    """Finish an interrupted install of `root` (under the write lock). True if one was finished."""
    gen = finished_in(work)
    if gen is not None:
        install(gen, work, root)
        return True
    if not root.is_dir():
        return False
    interrupted = work.is_dir() and all(p.name == POINTER or p.name.endswith(".tmp") for p in work.iterdir())
    newer = any(n > current_number(root) and (p / MANIFEST).is_file() for n, p in generations(root).items())
    if interrupted or newer:
        _finish(root, work)
        return True
    collect(root)
    return False


def collect(root: Path) -> None:
    """Remove generations older than the current one, and a version-1 index's files once a generation
    is current, unless a reader holds them (they are removed by a later write then)."""
    current = current_number(root)
    if current == 0:
        return
    for number, folder in sorted(generations(root).items()):
        if number < current:
            _remove_unheld(folder / MANIFEST, lambda f=folder: shutil.rmtree(f))
        elif number > current and not (folder / MANIFEST).is_file():
            shutil.rmtree(folder)  # cannot come from an install (those are complete): a stray copy
    if any((root / f).exists() for f in (MANIFEST, *LEGACY_FILES)):  # the manifest goes first
        _remove_unheld(root / MANIFEST, lambda: [(root / f).unlink(missing_ok=True) for f in LEGACY_FILES])


def _remove_unheld(manifest: Path, remove_rest: Callable[[], object]) -> None:
    """Remove `manifest` (first) and then the rest, if no reader holds a shared lock on it.

    The lock is portalocker's (flock on POSIX, LockFileEx on Windows). Windows refuses to delete a
    file that any process has open, so there the probe is closed first and a refused delete means
    a reader still has the generation open (it is removed by a later write)."""
    try:
        fh = open(manifest, "rb")
    except FileNotFoundError:
        remove_rest()
        return
    try:
        try:
            portalocker.lock(fh, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.LockException:
            return  # a reader has it open
        if os.name == "nt":
            fh.close()
            try:
                manifest.unlink()
            except PermissionError:
                return
        else:
            manifest.unlink()
        remove_rest()
    finally:
        fh.close()
