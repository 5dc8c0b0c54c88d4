"""Progress a person can trust: counted per embedding batch, plain periodic lines without a terminal,
nothing with --quiet, and the one-time export of the default model announced."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qrag_cli import api
from qrag_cli.cli import app
from qrag_cli.cli_progress import INTERVAL_ENV, ProgressView, interval_from_env
from qrag_cli.settings import IndexSettings
from tests.conftest import shared_dir
from tests.test_subprocess import qrag_cmd

SENTENCES = ["Mary took the football there.", "John went to the office.", "Sandra moved to the kitchen.",
             "Daniel journeyed to the hallway.", "The rain fell on the quiet town.", "A dog barked twice."]
EMBED_LINE = re.compile(r"^embed: ([\d,]+)/([\d,]+) chunks")
ANSI = "\x1b["


def corpus(tmp_path: Path, n: int = 60) -> Path:
    path = tmp_path / "story.txt"
    path.write_text(" ".join(f"{SENTENCES[i % len(SENTENCES)][:-1]} number {i}." for i in range(n)) + "\n")
    return path


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_build_reports_every_embedding_batch(tmp_path, tiny_model):
    """One encoder call (--embed-group larger than the corpus) still reports after every batch of
    --batch-size chunks: the count is of chunks embedded, not read, and rises to the total."""
    seen = []
    settings = IndexSettings(corpus=str(corpus(tmp_path)), out=str(tmp_path / "ix"), model=str(tiny_model),
                             batch_size=8, threads=1)
    report = api.index(settings, progress=lambda p: seen.append((p.phase, p.chunks, p.tokens, p.chunks_expected)))
    embed = [s for s in seen if s[0] == "embed"]
    counts = [c for _, c, _, _ in embed]
    assert report.chunks >= 40
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == report.chunks
    batches = sorted(set(counts) - {0})
    assert len(batches) >= report.chunks // 8  # one report per batch of 8 (the last one smaller)
    assert all(b - a <= 8 for a, b in zip([0, *batches], batches))
    assert embed[-1][2] == report.tokens and embed[-1][3] == report.chunks  # the corpus read: the total is exact
    assert seen[-1][0] == "ann"


def test_cli_index_without_a_terminal_prints_plain_counts_per_batch(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.000001")  # a line for every report
    res = CliRunner().invoke(app, ["index", str(corpus(tmp_path)), "--out", str(tmp_path / "ix"), "--model",
                                   str(tiny_model), "--batch-size", "8", "--threads", "1"])
    assert res.exit_code == 0, res.stderr
    total = json.loads(res.stdout)["chunks"]
    counts = [number(m.group(1)) for m in map(EMBED_LINE.match, res.stderr.splitlines()) if m]
    assert counts == sorted(counts) and counts[-1] == total and len(set(counts)) >= total // 8
    assert re.search(rf"^embed: done, {total:,} chunks in \d+s", res.stderr, re.M), res.stderr
    assert "chunks/s" in res.stderr and "tokens/s" in res.stderr and ANSI not in res.stderr


def test_plain_lines_come_at_the_interval_even_without_reports():
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=200), terminal=False, interval=0.05)
    with view:
        view.update("slow step", 1, 4, unit="items")
        time.sleep(0.5)  # nothing reported meanwhile: the heartbeat still writes lines
        for i in range(2, 5):
            view.update("slow step", i, 4, unit="items")  # within the interval: no line each
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("slow step: 1/4 items (25%)")
    assert sum(line.startswith("slow step: 1/4") for line in lines) >= 4, lines
    assert lines[-1].startswith("slow step: done, 4 items in ") and ANSI not in out.getvalue()
    quiet = io.StringIO()
    with ProgressView(Console(file=quiet), terminal=False, quiet=True, interval=0.01) as view:
        view.update("x", 1, 2)
        view.info("an info line")
        view.warn("a warning")
    assert quiet.getvalue().strip() == "warning: a warning"


def test_interval_variable(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert interval_from_env() == 2.5
    for bad in ("", "soon", "0", "-1"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        assert interval_from_env() == 10.0


def test_the_default_models_export_is_announced_with_its_duration(tmp_path, monkeypatch, caplog):
    """An empty cache: default_export says that it exports (once) and how long it took; the CLI's view
    prints that logger's INFO lines and --quiet silences them."""
    from qrag_cli.embed import export, models

    made = models.cache_root() / "models" / f"{models.DEFAULT_MODEL_NAME}-fp32"
    if not (made / "manifest.json").is_file():
        pytest.skip(f"no cached export of the default model in {made} to stand in for a new one")
    monkeypatch.setenv("QRAG_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_export(spec, folder, **kw):  # the real export takes a minute: copy the cached one
        calls.append(folder)
        shutil.copytree(made, folder)
        return folder

    monkeypatch.setattr(export, "export_onnx", fake_export)
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="qrag_cli"), ProgressView(Console(file=out), terminal=False):
        spec = models.default_export("fp32")
    assert calls and spec.engine == "onnx"
    text = out.getvalue()
    assert "exporting the default model all-MiniLM-L6-v2 to ONNX (fp32)" in text and "(once" in text
    assert re.search(r"exported the default model \(fp32\) in \d+ s", text), text
    quiet = io.StringIO()
    shutil.rmtree(tmp_path / "cache")
    with ProgressView(Console(file=quiet), terminal=False, quiet=True):
        models.default_export("fp32")
    assert len(calls) == 2 and quiet.getvalue() == ""


# --- real processes, stderr redirected to a file ---------------------------------------------------
def run_logged(tmp_path: Path, *args, interval: str = "0.000001") -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.log"
    env = {**os.environ, INTERVAL_ENV: interval}
    with log.open("w") as fh:
        proc = subprocess.run([*qrag_cmd(), *map(str, args)], stdout=subprocess.PIPE, stderr=fh, text=True,
                              env=env, timeout=1200)  # generous: a loaded machine
    return proc, log.read_text()


def test_subprocess_index_logs_plain_progress_and_quiet_logs_nothing(tmp_path, tiny_model):
    text = corpus(tmp_path)
    proc, err = run_logged(tmp_path, "index", text, "--out", tmp_path / "ix", "--model", tiny_model,
                           "--batch-size", "8", "--threads", "1")
    assert proc.returncode == 0, err
    total = json.loads(proc.stdout)["chunks"]
    counts = [number(m.group(1)) for m in map(EMBED_LINE.match, err.splitlines()) if m]
    assert len(counts) >= 3 and counts[-1] == total and ANSI not in err
    assert re.search(r"^ann index: .*vectors", err, re.M), err
    proc, err = run_logged(tmp_path, "index", text, "--out", tmp_path / "ix", "--model", tiny_model, "--overwrite",
                           "--batch-size", "8", "--threads", "1", "--quiet")
    assert proc.returncode == 0 and err == ""
    proc, err = run_logged(tmp_path, "index", text, "--out", tmp_path / "ix", "--model", tiny_model, "-q")
    assert proc.returncode == 2 and err.startswith("error:") and "exists" in err  # errors still print


def test_subprocess_bench_logs_plain_progress(tmp_path, tiny_model):
    from tests.test_bench import HEADER, tiny_samples, write_lines

    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    args = ["bench", "--data", data, "--model", tiny_model, "--methods", "dense-topk,bm25-topk", "--steps", "2",
            "--threads", "1", "--cache", tmp_path / "cache"]
    proc, err = run_logged(tmp_path, *args, "--out", tmp_path / "b1")
    assert proc.returncode == 0, err
    assert re.search(r"^qa1 12 \(1/1\): 1/3 \(33%\)", err, re.M) and "qa1 12 (1/1): done, 3 in" in err, err
    assert ANSI not in err and "results in" in err
    proc, err = run_logged(tmp_path, *args, "--out", tmp_path / "b2", "--quiet")
    assert proc.returncode == 0 and err == ""


@pytest.mark.skipif(not (shared_dir() / "data" / "gutenberg").is_dir(),
                    reason="shared Gutenberg novels absent (training samples come from them)")
def test_subprocess_train_logs_its_setup_and_updates(tmp_path, tiny_model):
    args = ["train", "--task", "babilong:qa1", "--model", tiny_model, "--steps", "3", "--n-train", "6",
            "--n-val", "3", "--val-every", "3", "--preset", "cpu", "--no-bf16", "--threads", "1"]
    proc, err = run_logged(tmp_path, *args, "--out", tmp_path / "run")
    assert proc.returncode == 0, err
    assert "generate samples: 9/9" in err and "generate samples: done, 9 in" in err, err
    assert re.search(r"^validate the untrained policy: 3/3", err, re.M), err
    trained = [line for line in err.splitlines() if line.startswith("train: ")]
    assert trained and trained[-1].startswith("train: done, 3 updates in"), err
    assert any(re.match(r"train: 3/3 updates \(100%\), [\d.]+ updates/s", x) for x in trained), err
    assert "val coverage" in err and "validation at update 3: coverage" in err and ANSI not in err
    proc, err = run_logged(tmp_path, *args, "--out", tmp_path / "run2", "--quiet")
    assert proc.returncode == 0 and err == "", err


def test_a_policys_one_time_export_is_announced_with_its_duration(tmp_path, monkeypatch):
    """The first use of a compact policy as ONNX says that it exports (once) and how long it took;
    a second use finds the cached export and says nothing."""
    from qrag_cli.policy import artefact

    monkeypatch.setenv("QRAG_CACHE", str(tmp_path / "cache"))
    made = []

    def fake_export(full, dest, int8=False):  # the real export takes a minute
        dest.mkdir(parents=True)
        (dest / "manifest.json").write_text("{}")
        made.append(dest)
        return dest

    monkeypatch.setattr(artefact, "materialise", lambda folder: tmp_path / "full")
    monkeypatch.setattr(artefact, "export_policy_with_base_action", fake_export)
    said: list[str] = []
    folder = artefact.serving_folder(artefact.shipped("default"), "fp32", announce=said.append)
    assert made == [folder] and len(said) == 2
    assert said[0].startswith("exporting policy default to ONNX (fp32)") and "(once)" in said[0]
    assert re.fullmatch(r"exported policy default \(fp32\) in \d+ s", said[1]), said
    monkeypatch.setattr(artefact, "check_cached_base", lambda m, folder: None)
    again: list[str] = []
    assert artefact.serving_folder(artefact.shipped("default"), "fp32", announce=again.append) == folder
    assert again == [] and len(made) == 1


def test_the_index_eta_extrapolates_word_pieces_not_chunks(monkeypatch):
    """Batches go from the shortest chunks to the longest: half the chunks done is far less than half
    the work. The ETA counts the group's word pieces (told when it is tokenized)."""
    from qrag_cli import cli_progress
    from qrag_cli.build_types import BuildProgress

    p = BuildProgress("embed", bytes_total=1000, bytes_read=1000, chunks_read=100, corpus_done=True)
    assert p.tokens_expected is None
    p.pending_chunks, p.pending_tokens = 100, 10_000  # one group of 100 chunks, tokenized
    assert p.tokens_expected == 10_000
    clock = [0.0]
    monkeypatch.setattr(cli_progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    with ProgressView(Console(file=out), terminal=False, interval=5) as view:
        on = cli_progress.index_callback(view)
        on(p)
        clock[0] = 10.0
        p.chunks, p.tokens = 50, 2_000  # the short half: a fifth of the word pieces
        p.pending_chunks, p.pending_tokens = 50, 8_000
        on(p)
    line = [x for x in out.getvalue().splitlines() if "50/100" in x][0]
    assert "ETA 40s" in line, line  # 8,000 pieces left at 200/s; by chunks it would say 10s


def test_a_partly_read_corpus_scales_the_known_word_pieces():
    from qrag_cli.build_types import BuildProgress

    p = BuildProgress("embed", bytes_total=4000, bytes_read=1000, chunks_read=100, chunks=60, tokens=600,
                      pending_chunks=40, pending_tokens=1400)
    assert p.chunks_expected == 400 and p.tokens_expected == 8000
