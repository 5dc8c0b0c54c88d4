"""The index write lock (filelock): exclusive across processes, free again after kill -9, no fcntl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import qrag_cli
from qrag_cli.errors import BusyError
from qrag_cli.store.lock import FolderLock

HOLD = "import sys, time\nfrom pathlib import Path\nfrom qrag_cli.store.lock import FolderLock\n" \
       "with FolderLock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n"


def test_lock_is_exclusive_across_processes_and_freed_by_kill(tmp_path):
    out = tmp_path / "ix"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(qrag_cli.__file__).parents[1])
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"pid {child.pid}\) is writing"):
            with FolderLock(out):
                pass
    finally:
        child.kill()
        child.wait()
    with FolderLock(out):  # released by the system when the holder died
        pass


def test_index_path_has_no_posix_only_lock():
    root = Path(qrag_cli.__file__).parent
    for name in ("store/lock.py", "build.py", "api.py", "store/reader.py"):
        assert "fcntl" not in (root / name).read_text(encoding="utf-8"), name
