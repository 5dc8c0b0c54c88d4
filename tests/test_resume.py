"""Sharded builds: resume after an interruption, append, the write lock, checksums, storage faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qrag_cli.build import build_index
from qrag_cli.cli import app
from qrag_cli.errors import BusyError, CorruptIndexError, InputError, StorageError
from qrag_cli.settings import AnnSettings, IndexSettings
from qrag_cli.store.lock import FolderLock
from qrag_cli.store.reader import IndexReader
from qrag_cli.store.writer import IndexWriter
from qrag_cli.store.generations import current_folder
from tests.test_subprocess import qrag_cmd, run

runner = CliRunner()
PAIRS = [(w, r) for w in ("Mary", "John", "Sandra", "Daniel", "Emma")
         for r in ("garden", "office", "kitchen", "hallway", "bedroom", "bathroom", "cellar", "attic")]
QUESTIONS = ["Where did Mary go?", "Who went to the attic?", "Sentence 17"]


def corpus_text(repeat: int = 12) -> str:
    """40 one-sentence lines per round."""
    return "\n".join(f"Sentence {i} of round {k} tells that {w} went to the {r}."
                     for k in range(repeat) for i, (w, r) in enumerate(PAIRS)) + "\n"


def settings(corpus: Path, out: Path, model: Path, **kw) -> IndexSettings:
    base = IndexSettings(corpus=str(corpus), out=str(out), model=str(model), shard_chunks=100, batch_size=4,
                         embed_group=64, threads=1, ann=AnnSettings(backend="usearch"))
    return replace(base, **kw)


def data_files(folder: Path) -> dict:
    m = json.loads((current_folder(folder) / "manifest.json").read_text())
    return {k: v for k, v in m["files"].items() if k in ("chunks.arrow", "vectors.npy")}


def answers(folder: Path) -> list:
    res = runner.invoke(app, ["query", "--index", str(folder), "--steps", "3", *QUESTIONS])
    assert res.exit_code == 0, res.stderr
    return [[(r["chunk"], r["doc"], r["text"], round(r["score"], 5)) for r in json.loads(line)["retrieved"]]
            for line in res.stdout.splitlines()]


class Stop(Exception):
    """Raised from the progress callback to interrupt a build at a chosen point."""


def interrupt_when(predicate, exc=KeyboardInterrupt):
    def progress(p):
        if p.phase == "embed" and predicate(p):
            raise exc()
    return progress


@pytest.fixture()
def clean(tmp_path, tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text())
    out = tmp_path / "clean"
    report = build_index(settings(corpus, out, tiny_model))
    assert report.shards == 5 and report.chunks == 480
    return corpus, out


@pytest.mark.parametrize("where", ["boundary", "mid-shard"])
def test_resume_after_interruption_equals_a_clean_build(tmp_path, tiny_model, clean, where):
    corpus, clean_out = clean
    out = tmp_path / "ix"
    if where == "boundary":  # right after shard 2 is finished
        stop = interrupt_when(lambda p: p.shards_done == 2)
    else:  # in the middle of shard 3 (groups of 64 chunks)
        stop = interrupt_when(lambda p: p.chunks == 2 * 100 + 64)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings(corpus, out, tiny_model), progress=stop)
    shards = tmp_path / ".ix.building" / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["000000.json", "000001.json"]
    report = build_index(settings(corpus, out, tiny_model, resume=True))
    assert report.shards_resumed == 2 and report.shards == 5 and report.chunks == 480
    assert data_files(out) == data_files(clean_out)  # byte-identical chunks and vectors
    assert answers(out) == answers(clean_out)
    assert not (tmp_path / ".ix.building").exists()


def test_kill_9_at_a_shard_boundary_and_mid_shard_then_resume(tmp_path, tiny_model):
    corpus = tmp_path / "big.txt"
    corpus.write_text("The rain fell on the quiet town. A dog barked twice and then was still.\n" * 20_000)
    args = ["--model", str(tiny_model), "--shard-chunks", "1000", "--threads", "1"]
    clean = run("index", corpus, "--out", tmp_path / "clean", *args)
    assert clean.returncode == 0, clean.stderr
    for name, wait_for in (("a", "000002.json"), ("b", "000003.npy")):
        out = tmp_path / name
        shards = tmp_path / f".{name}.building" / "shards"
        proc = subprocess.Popen([*qrag_cmd(), "index", str(corpus), "--out", str(out), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (shards / wait_for).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the build ended before the kill"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        resumed = run("index", corpus, "--out", out, *args, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["shards_resumed"] >= 2
        assert data_files(out) == data_files(tmp_path / "clean")
        assert answers(out) == answers(tmp_path / "clean")


def test_resume_refuses_other_settings_a_changed_corpus_and_a_damaged_shard(tmp_path, tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text())
    out = tmp_path / "ix"
    with pytest.raises(KeyboardInterrupt):
        build_index(settings(corpus, out, tiny_model), progress=interrupt_when(lambda p: p.shards_done == 2))
    with pytest.raises(InputError, match="other settings.*shard_chunks: 100 then, 50 now"):
        build_index(settings(corpus, out, tiny_model, resume=True, shard_chunks=50))
    with pytest.raises(InputError, match="interrupted build .* pass --resume"):
        build_index(settings(corpus, out, tiny_model))
    shard = tmp_path / ".ix.building" / "shards" / "000001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match="000001.npy does not match its checksum"):
        build_index(settings(corpus, out, tiny_model, resume=True))
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    corpus.write_text(corpus_text().replace("of round 3 tells", "of round three tells"))
    with pytest.raises(InputError, match="no longer gives the chunks of shard 1"):
        build_index(settings(corpus, out, tiny_model, resume=True))
    report = build_index(settings(corpus, out, tiny_model, overwrite=True))
    assert report.shards_resumed == 0 and report.chunks == 480


def test_append_then_query_equals_a_full_rebuild(tmp_path, tiny_model):
    a, b = tmp_path / "docs" / "a.txt", tmp_path / "docs" / "b.txt"
    a.parent.mkdir()
    a.write_text(corpus_text(6))
    b.write_text(corpus_text(4).replace("went", "ran"))
    full = tmp_path / "full"
    build_index(settings(a.parent, full, tiny_model))
    for name, doc in (("first", a), ("second", b)):  # folders, so document ids are "a.txt", "b.txt" as in docs/
        (tmp_path / name).mkdir()
        os.replace(doc, tmp_path / name / doc.name)
    part = tmp_path / "part"
    build_index(settings(tmp_path / "first", part, tiny_model))
    before = answers(part)
    b = tmp_path / "second"
    res = runner.invoke(app, ["index", str(b), "--append", str(part), "--threads", "1"])
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["appended_chunks"] == 160 and summary["chunks"] == 400 and summary["documents"] == 2
    assert data_files(part)["vectors.npy"] == data_files(full)["vectors.npy"]
    appended, rebuilt = IndexReader(part), IndexReader(full)
    assert [appended.chunk(i) for i in range(400)] == [rebuilt.chunk(i) for i in range(400)]
    assert answers(part) == answers(full) != before
    m = json.loads((current_folder(part) / "manifest.json").read_text())
    assert m["corpus"]["appended"] == [{"source": str(b), "chunks": 160}]
    assert m["ann"]["extended_from_rows"] == 240 and m["ann"]["count"] == 400  # the graph grew, not rebuilt


def test_append_refuses_another_model_and_a_missing_index(tmp_path, tiny_model, other_tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(2))
    out = tmp_path / "ix"
    build_index(settings(corpus, out, tiny_model))
    with pytest.raises(InputError, match="index's own model"):
        build_index(IndexSettings(corpus=str(corpus), append=str(out), model=str(other_tiny_model)))
    res = runner.invoke(app, ["index", str(corpus), "--append", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no index at" in res.stderr
    # the index is untouched by the refused appends
    assert IndexReader(out).manifest["corpus"]["chunks"] == 80


def test_a_second_build_into_the_same_folder_refuses(tmp_path, tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(2))
    out = tmp_path / "ix"
    with FolderLock(out):  # another build holds the lock
        with pytest.raises(BusyError, match="another qrag process .* is writing"):
            build_index(settings(corpus, out, tiny_model))
        res = runner.invoke(app, ["index", str(corpus), "--out", str(out), "--model", str(tiny_model)])
        assert res.exit_code == 1 and "is writing" in res.stderr and res.stderr.count("\n") == 1
    assert not out.exists()
    build_index(settings(corpus, out, tiny_model))  # the lock is free again


def test_disk_full_keeps_finished_shards_and_resume_finishes(tmp_path, tiny_model, clean, monkeypatch):
    corpus, clean_out = clean
    out = tmp_path / "ix"
    real_add = IndexWriter.add

    def add(self, chunks, vectors, tokens):
        if chunks[0].position >= 300:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.vectors_path))
        return real_add(self, chunks, vectors, tokens)

    monkeypatch.setattr(IndexWriter, "add", add)
    with pytest.raises(StorageError, match="No space left on device.*3 finished shard.*--resume"):
        build_index(settings(corpus, out, tiny_model))
    assert not out.exists()
    monkeypatch.setattr(IndexWriter, "add", real_add)
    assert build_index(settings(corpus, out, tiny_model, resume=True)).shards_resumed == 3
    assert data_files(out) == data_files(clean_out)


def test_unwritable_output_is_a_one_line_error(tmp_path, tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(1))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["index", str(corpus), "--out", str(blocker / "ix"), "--model", str(tiny_model)])
    assert res.exit_code == 1 and res.stderr.startswith("error: cannot write") and res.stderr.count("\n") == 1


def test_an_edited_vector_file_is_refused_at_open(tmp_path, tiny_model):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(1))
    out = tmp_path / "ix"
    build_index(settings(corpus, out, tiny_model))
    vectors = current_folder(out) / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[200] ^= 0x01  # same size, one bit flipped
    vectors.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match="vectors.npy does not match its checksum"):
        IndexReader(out)
    res = runner.invoke(app, ["query", "--index", str(out), "q?"])
    assert res.exit_code == 3 and "does not match its checksum" in res.stderr
