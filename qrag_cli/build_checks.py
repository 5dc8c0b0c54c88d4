"""Checks around a `qrag index` build: what --out may replace, the settings of an --append (the
index's own model, chunking and ANN), the comparison of an interrupted build's settings with a
--resume's, and the removal of partial folders left by builds from before resumable builds."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import InputError, OutputExistsError
from .settings import IndexSettings
from .store.generations import is_index_folder
from .store.manifest import SETTINGS
from .store.reader import IndexReader

PARTIAL = ".partial-"  # folders of builds before resumable builds (removed when found stale)


@dataclass(frozen=True)
class AppendBase:
    """The index an --append extends."""

    folder: Path
    manifest: dict[str, Any]
    rows: int
    tokens: int
    documents: int
    last_doc: str | None


def check_out(out: Path, real: Path, settings: IndexSettings) -> None:
    """An existing --out needs --overwrite, and --overwrite replaces only a qrag index, never the corpus."""
    if not real.exists():
        return
    if not settings.overwrite:
        raise OutputExistsError(f"{out} exists: choose another --out, pass --overwrite (it replaces only a qrag "
                                "index), or --append to it")
    if not is_index_folder(real):
        raise OutputExistsError(f"{out} exists and is not a qrag index: --overwrite replaces only an index "
                                "(or an empty folder), never another folder; choose another --out")
    if settings.corpus != "-":
        source, target = Path(settings.corpus).resolve(), real.resolve()
        if source == target or target in source.parents:
            raise InputError(f"the corpus {settings.corpus} is inside --out {out}: the index cannot replace its "
                             "own corpus; choose another --out")


def append_settings(settings: IndexSettings) -> tuple[IndexSettings, AppendBase]:
    """The settings of an --append: the index's own model, chunking, token cap and ANN; its folder as --out."""
    folder = Path(settings.append)
    if settings.out and Path(settings.out).resolve() != folder.resolve():
        raise InputError("--append writes into the index it extends: leave out --out")
    reader = IndexReader(folder)
    reader.close()  # the write lock is held: no other writer removes this generation
    m = reader.manifest
    recorded = read_json(reader.folder / SETTINGS)
    if settings.model not in ("default", m["model"].get("ref")):
        raise InputError(f"--append uses the index's own model ({m['model'].get('ref')}): leave out --model")
    from .settings import AnnSettings, ChunkerSettings

    merged = replace(
        settings, out=str(folder), model=m["model"].get("ref", "default"),
        chunker=ChunkerSettings(**m["chunker"]),
        ann=AnnSettings(**{k: recorded["ann"][k] for k in AnnSettings.__dataclass_fields__}),
        max_tokens=int(m["model"].get("max_tokens", settings.max_tokens)),
        batch_size=int(recorded.get("batch_size", settings.batch_size)),
        embed_group=int(recorded.get("embed_group", settings.embed_group)),
    )
    n = len(reader)
    base = AppendBase(reader.folder, m, n, int(m["corpus"]["tokens"]), int(m["corpus"]["documents"]),
                 reader.chunk(n - 1).doc if n else None)
    return merged, base


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is unreadable ({exc}): pass --overwrite to start over") from exc


def differences(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        found = [differences(a.get(k), b.get(k), f"{prefix}{k}.") for k in keys if a.get(k) != b.get(k)]
        return ", ".join(found)
    return f"{prefix.rstrip('.')}: {a!r} then, {b!r} now"


def remove_stale_partials(out: Path) -> None:
    """Remove partial folders of builds from before resumable builds whose process is gone."""
    for p in out.parent.glob(f".{out.name}{PARTIAL}*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
