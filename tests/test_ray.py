"""`--ray`: builds and batch queries on a local Ray cluster started by the tests (2 CPUs, tiny model).

A Ray build writes the same chunks and vectors as a single-process build, also when a worker dies
mid-shard or when it resumes an interrupted build; batch answers come in the input order and equal
the single-process ones; without Ray, `--ray` is a one-line error saying what to install.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qrag_cli.api import Question, ask_batches
from qrag_cli.build import build_index
from qrag_cli.cli import app
from qrag_cli.settings import QuerySettings
from qrag_cli.store.generations import current_folder
from tests.test_resume import corpus_text, data_files, interrupt_when, settings

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module, shut down at its end."""
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed: pip install 'qrag-cli[ray]' (or '.[test,ray]') to run these tests")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()
    for s, h in handlers.items():  # Ray's handlers would be inherited (as ignored signals) by later test subprocesses
        signal.signal(s, h)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model):
    """The corpus (480 chunks, 5 shards of 100) and its single-process index."""
    tmp = tmp_path_factory.mktemp("single")
    corpus = tmp / "c.txt"
    corpus.write_text(corpus_text())
    out = tmp / "single"
    report = build_index(settings(corpus, out, tiny_model))
    assert report.shards == 5 and report.chunks == 480
    return corpus, out


def chunk_rows(folder: Path) -> bytes:
    return (current_folder(folder) / "chunks.arrow").read_bytes()


def vectors(folder: Path) -> bytes:
    return (current_folder(folder) / "vectors.npy").read_bytes()


def test_a_ray_build_equals_a_single_process_build(cluster, single, tiny_model, tmp_path):
    corpus, clean = single
    out = tmp_path / "ray"
    report = build_index(settings(corpus, out, tiny_model, ray="auto", workers=2))
    assert report.shards == 5 and report.chunks == 480 and report.shards_resumed == 0
    assert chunk_rows(out) == chunk_rows(clean) and vectors(out) == vectors(clean)  # byte-identical
    assert data_files(out) == data_files(clean)
    build = json.loads((current_folder(out) / "manifest.json").read_text())["build"]
    assert build["ray"]["workers"] == 2 and build["ray"]["shards_embedded"] == 5
    assert not (tmp_path / ".ray.building").exists()  # the work folder is gone


def test_a_worker_killed_mid_shard_is_retried_and_the_result_is_unchanged(cluster, single, tiny_model, tmp_path,
                                                                          monkeypatch):
    corpus, clean = single
    marker = tmp_path / "crashed"
    monkeypatch.setenv("QRAG_TEST_CRASH_ONCE", str(marker))
    out = tmp_path / "ray"
    report = build_index(settings(corpus, out, tiny_model, ray="auto", workers=2))  # groups of 64: exits mid-shard
    assert marker.exists(), "no worker exited: the crash hook did not run"
    assert report.shards == 5 and data_files(out) == data_files(clean)


def test_resume_with_ray_after_the_driver_was_interrupted(cluster, single, tiny_model, tmp_path):
    corpus, clean = single
    out = tmp_path / "ix"
    with pytest.raises(KeyboardInterrupt):  # the driver stops after two shards (Ctrl-C, SIGTERM)
        build_index(settings(corpus, out, tiny_model, ray="auto", workers=2),
                    progress=interrupt_when(lambda p: p.shards_done == 2))
    shards = tmp_path / ".ix.building" / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["000000.json", "000001.json"]
    report = build_index(settings(corpus, out, tiny_model, ray="auto", workers=2, resume=True))
    assert report.shards_resumed == 2 and report.shards == 5
    assert data_files(out) == data_files(clean)


def test_a_local_build_resumes_with_ray(cluster, single, tiny_model, tmp_path):
    corpus, clean = single
    out = tmp_path / "ix"
    with pytest.raises(KeyboardInterrupt):
        build_index(settings(corpus, out, tiny_model), progress=interrupt_when(lambda p: p.shards_done == 3))
    report = build_index(settings(corpus, out, tiny_model, ray="auto", resume=True))
    assert report.shards_resumed == 3 and data_files(out) == data_files(clean)


def questions(n: int) -> list[Question]:
    people, rooms = ("Mary", "John", "Sandra", "Daniel", "Emma"), ("garden", "attic", "cellar", "office")
    return [Question(f"q{i}", f"Where did {people[i % 5]} go after the {rooms[i % 4]}? ({i})") for i in range(n)]


def test_batch_query_order_and_answers_equal_the_single_process_path(cluster, single, tmp_path):
    _, index = single
    asked = questions(150)  # three batches of 64, 64 and 22
    qs = QuerySettings(index=str(index), steps=2, k=2, threads=1)
    local = [a for batch in ask_batches(qs, asked) for a in batch]
    on_ray = [a for batch in ask_batches(replace(qs, ray="auto", workers=2), asked) for a in batch]
    assert [a["id"] for a in on_ray] == [q.id for q in asked]
    assert on_ray == local
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q.id}\t{q.text}\n" for q in asked))
    res = runner.invoke(app, ["query", "--index", str(index), "--steps", "2", "--k", "2", "--threads", "1",
                              "--topics", str(topics), "--ray", "auto", "--workers", "2", "--format", "jsonl"])
    assert res.exit_code == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == local


def test_without_ray_installed_ray_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(1))
    res = runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "ix"), "--ray", "auto"])
    assert res.exit_code == 1, res.stderr
    assert res.stderr.count("\n") == 1 and "pip install 'qrag-cli[ray]'" in res.stderr
    assert not (tmp_path / "ix").exists() and not list(tmp_path.glob(".ix*"))  # not even the lock
    res = runner.invoke(app, ["query", "--index", str(tmp_path / "ix"), "--ray", "auto", "Where?"])
    assert res.exit_code == 1 and "pip install 'qrag-cli[ray]'" in res.stderr and res.stderr.count("\n") == 1


def test_workers_needs_ray(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(1))
    res = runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "ix"), "--workers", "2"])
    assert res.exit_code == 2 and "--workers goes with --ray" in res.stderr


def test_the_core_does_not_import_ray():
    code = ("import sys, qrag_cli.build, qrag_cli.api, qrag_cli.cli, qrag_cli.distributed; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
