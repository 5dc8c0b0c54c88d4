"""Index generations: --overwrite safety, crash at every file operation of an install, queries during
writes, old-format indexes, symlinked index folders, damaged manifests."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import qrag_cli.build as build_mod
from qrag_cli.api import Question, QuerySession
from qrag_cli.build import build_index
from qrag_cli.cli import app
from qrag_cli.embed.encoder import load_encoder
from qrag_cli.embed.models import resolve_model
from qrag_cli.errors import IndexNotFoundError, InputError, OutputExistsError
from qrag_cli.settings import QuerySettings
from qrag_cli.store.generations import POINTER, current_folder, generations
from tests.test_resume import corpus_text, settings

runner = CliRunner()
OPS = ("replace", "rename", "unlink", "rmdir")


class Crash(BaseException):
    """The process 'dies' here: this and every later file operation fails."""


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(resolve_model(str(tiny_model)), threads=1)


def corpora(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a" / "a.txt", tmp_path / "b" / "b.txt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text(corpus_text(2))
    b.write_text(corpus_text(1).replace("went", "ran"))
    return a, b


def ask(folder: Path, encoder) -> int:
    """Open the index as `qrag query` does and ask one question: the number of chunks it has."""
    session = QuerySession(QuerySettings(index=str(folder), steps=2), encoder=encoder)
    assert len(session.ask([Question("1", "Where did Mary go?")])[0]["retrieved"]) == 2
    session.index.close()
    return len(session.index)


def flatten_to_format_1(folder: Path) -> None:
    """Turn an index into the layout of format version 1 (files directly in the folder)."""
    gen = current_folder(folder)
    for p in gen.iterdir():
        os.replace(p, folder / p.name)
    gen.rmdir()
    (folder / POINTER).unlink()


def leftovers(folder: Path) -> list[str]:
    found = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")
             and not p.name.endswith((".lock", ".lock.pid"))]  # the write lock and its holder's pid stay
    if folder.is_dir() and (folder / POINTER).exists():
        found += [p.name for p in generations(folder).values() if p != current_folder(folder)]
        found += [n for n in ("manifest.json", "vectors.npy") if (folder / n).exists()]
    return sorted(found)


# --- --overwrite replaces only an index ---------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_an_index_and_the_corpus_folder(tmp_path, tiny_model):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes\n")
    a, _ = corpora(tmp_path)
    res = runner.invoke(app, ["index", str(a), "--out", str(notes), "--overwrite", "--model", str(tiny_model)])
    assert res.exit_code == 2 and "is not a qrag index" in res.stderr and res.stderr.count("\n") == 1
    assert (notes / "todo.txt").read_text() == "my notes\n" and sorted(os.listdir(notes)) == ["todo.txt"]
    books = a.parent  # `qrag index books/ --out books/ --overwrite`
    res = runner.invoke(app, ["index", str(books), "--out", str(books), "--overwrite", "--model", str(tiny_model)])
    assert res.exit_code == 2 and "not a qrag index" in res.stderr
    assert sorted(os.listdir(books)) == ["a.txt"] and a.read_text() == corpus_text(2)
    ix = tmp_path / "ix"  # an index whose corpus was later moved into it is not replaced by its own corpus
    build_index(settings(a, ix, tiny_model))
    shutil.copy(a, ix / "a.txt")
    with pytest.raises(OutputExistsError, match="is not a qrag index"):
        build_index(settings(ix / "a.txt", ix, tiny_model, overwrite=True))
    (ix / "a.txt").unlink()
    with pytest.raises(InputError, match="exists: choose another --out, pass --overwrite"):
        build_index(settings(a, ix, tiny_model))


def test_overwrite_replaces_an_index_and_accepts_an_empty_folder(tmp_path, tiny_model, encoder):
    a, b = corpora(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_index(settings(a, empty, tiny_model, overwrite=True)).chunks == 80
    assert build_index(settings(b, empty, tiny_model, overwrite=True)).chunks == 40
    assert ask(empty, encoder) == 40 and leftovers(empty) == []
    assert sorted(os.listdir(empty)) == [POINTER, "gen-000002"]


# --- format version 1 ----------------------------------------------------------------------------


def test_an_index_of_format_1_opens_and_is_converted_by_the_next_write(tmp_path, tiny_model, encoder):
    a, b = corpora(tmp_path)
    ix = tmp_path / "ix"
    build_index(settings(a, ix, tiny_model, bm25=False))  # format 1 predates the BM25 files
    flatten_to_format_1(ix)
    assert ask(ix, encoder) == 80
    build_index(settings(b, ix, tiny_model, append=str(ix)))
    assert ask(ix, encoder) == 120 and leftovers(ix) == []
    assert sorted(os.listdir(ix)) == [POINTER, "gen-000001"]


# --- symlinked index folders ----------------------------------------------------------------------


def test_a_symlinked_index_folder_stays_a_symlink(tmp_path, tiny_model, encoder):
    a, b = corpora(tmp_path)
    (tmp_path / "disk").mkdir()
    real = tmp_path / "disk" / "ix"
    build_index(settings(a, real, tiny_model))
    link = tmp_path / "ix"
    link.symlink_to(real, target_is_directory=True)
    build_index(settings(b, link, tiny_model, append=str(link)))
    assert link.is_symlink() and ask(link, encoder) == 120
    build_index(settings(b, link, tiny_model, overwrite=True))
    assert link.is_symlink() and ask(link, encoder) == 40
    assert leftovers(real) == [] and leftovers(link) == []


# --- a crash at every file operation of an install -----------------------------------------------


class Injector:
    """Counts the file operations (rename, replace, unlink, rmdir) of `install`, or crashes at one of them."""

    def __init__(self, monkeypatch, crash_at: int | None) -> None:
        self.crash_at, self.count, self.armed, self.dead = crash_at, 0, False, False
        for name in OPS:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))
        real_install = build_mod.install

        def install(*args, **kwargs):
            self.armed = True
            return real_install(*args, **kwargs)

        monkeypatch.setattr(build_mod, "install", install)

    def _wrap(self, real):
        def op(*args, **kwargs):
            if self.dead:
                raise Crash("dead")
            if self.armed:
                if self.count == self.crash_at:
                    self.dead = True
                    raise Crash(f"crash at operation {self.count}")
                self.count += 1
            return real(*args, **kwargs)
        return op


def _scenarios(tmp_path: Path, tiny_model: Path):
    """(name, prepare() -> (out, chunks before or None), settings of the write, chunks after)."""
    a, b = corpora(tmp_path)

    def fresh():
        return tmp_path / "ix", None

    def existing(fmt1=False):
        def prepare():
            ix = tmp_path / "ix"
            build_index(settings(a, ix, tiny_model))
            if fmt1:
                flatten_to_format_1(ix)
            return ix, 80
        return prepare

    ix = tmp_path / "ix"
    return [
        ("build", fresh, settings(a, ix, tiny_model), 80),
        ("append", existing(), settings(b, ix, tiny_model, append=str(ix)), 120),
        ("overwrite", existing(), settings(b, ix, tiny_model, overwrite=True), 40),
        ("append-format-1", existing(fmt1=True), settings(b, ix, tiny_model, append=str(ix)), 120),
    ]


def test_a_crash_at_every_file_operation_of_an_install_loses_nothing(tmp_path, tiny_model, encoder, monkeypatch,
                                                                       capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    points = {}
    for name, prepare, write, after in _scenarios(tmp_path, tiny_model):
        with monkeypatch.context() as m:  # a dry run counts the operations
            out, before = prepare()
            counter = Injector(m, None)
            build_index(write)
            points[name] = counter.count
        assert ask(out, encoder) == after
        shutil.rmtree(out)
        for point in range(points[name]):
            out, before = prepare()
            with monkeypatch.context() as m:
                Injector(m, point)
                with pytest.raises(Crash):
                    build_index(write)
            try:  # a query now opens the old index or the new one, complete
                served = ask(out, encoder)
            except IndexNotFoundError:
                served = None
            assert served in ({before, after} - {None} if before else {None, after}), (name, point, served)
            report = build_index(replace(write, resume=True))  # the next run finishes the install
            assert report.chunks == after and ask(out, encoder) == after, (name, point)
            assert leftovers(out) == [], (name, point, leftovers(out))
            assert notes.read_text() == "mine\n"
            assert all(p.read_text().startswith("Sentence 0") for p in tmp_path.glob("[ab]/*.txt"))
            shutil.rmtree(out)
    with capsys.disabled():
        print(f"\ninjection points per install: {points}, {sum(points.values())} in all")
    assert points["build"] >= 5 and points["append"] >= 8 and points["overwrite"] >= 8


# --- queries while writes install ------------------------------------------------------------------


def test_queries_during_append_and_overwrite_never_fail(tmp_path, tiny_model, encoder):
    a, b = corpora(tmp_path)
    ix = tmp_path / "ix"
    build_index(settings(a, ix, tiny_model))
    seen, failures, done = [], [], threading.Event()

    def query_loop():
        while not done.is_set() or len(seen) < 200:
            try:
                seen.append(ask(ix, encoder))
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                failures.append(repr(exc))

    reader = threading.Thread(target=query_loop)
    reader.start()
    installs = 0
    try:
        while len(seen) < 200 or installs < 6:
            build_index(settings(b, ix, tiny_model, append=str(ix)))
            build_index(settings(a, ix, tiny_model, overwrite=True))
            installs += 2
    finally:
        done.set()
        reader.join()
    assert failures == [] and len(seen) >= 200
    assert {80, 120} <= set(seen) <= {80, 120}  # both generations were served, nothing else
    build_index(settings(a, ix, tiny_model, overwrite=True))  # removes a generation a query held at the last write
    assert leftovers(ix) == []


# --- damaged manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(files="x"), "'files' is str"),
    (lambda m: m.pop("store"), "'store' is NoneType"),
    (lambda m: m.update(model=None), "'model' is NoneType"),
    (lambda m: m["store"].update(vectors="../../elsewhere.npy"), "not a plain name"),
    (lambda m: m["files"]["vectors.npy"].pop("xxh3_128"), "lacks its size or checksum"),
])
def test_a_damaged_manifest_is_exit_3_naming_the_file(tmp_path, tiny_model, edit, fragment):
    a, _ = corpora(tmp_path)
    ix = tmp_path / "ix"
    build_index(settings(a, ix, tiny_model))
    path = current_folder(ix) / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    res = runner.invoke(app, ["query", "--index", str(ix), "--model", str(tiny_model), "q?"])
    assert res.exit_code == 3, (res.exit_code, res.stderr)
    assert str(path) in res.stderr and fragment in res.stderr and res.stderr.count("\n") == 1


def test_overwrite_refuses_a_folder_of_files_that_only_look_like_an_index(tmp_path, tiny_model):
    a, _ = corpora(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "settings.json").write_text('{"theme": "dark"}')
    (mine / "manifest.json").write_text('{"name": "my app"}')
    with pytest.raises(OutputExistsError, match="is not a qrag index"):
        build_index(settings(a, mine, tiny_model, overwrite=True))
    assert sorted(os.listdir(mine)) == ["manifest.json", "settings.json"]
