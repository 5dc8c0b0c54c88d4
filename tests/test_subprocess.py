"""Real `qrag` processes: the console script end to end, Ctrl-C and kill -9 during a build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STORY = "Mary took the football there. Mary went to the garden. John moved to the office.\n\n"


def qrag_cmd() -> list[str]:
    script = Path(sys.executable).with_name("qrag")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "qrag_cli.cli"]


def run(*args, input=None, cwd=None):
    return subprocess.run([*qrag_cmd(), *map(str, args)], input=input, capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_console_script_index_and_query(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(STORY * 3)
    built = run("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["chunks"] == 9
    asked = run("query", "--index", tmp_path / "ix", "--steps", "2", input="Where is the football?\nWhere is John?\n")
    assert asked.returncode == 0, asked.stderr
    results = [json.loads(line) for line in asked.stdout.splitlines()]  # piped: JSON Lines, nothing else
    assert [r["id"] for r in results] == ["1", "2"] and all(len(r["retrieved"]) == 2 for r in results)
    assert "Traceback" not in asked.stderr
    bad = run("query", "--index", tmp_path / "nope", "q?")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stdout == ""


def _start_build(tmp_path, tiny_model, *extra):
    corpus = tmp_path / "big.txt"
    corpus.write_text("The rain fell on the quiet town. A dog barked twice and then was still.\n" * 60_000)
    out = tmp_path / "ix"
    proc = subprocess.Popen([*qrag_cmd(), "index", str(corpus), "--out", str(out), "--model", str(tiny_model),
                             "--shard-chunks", "4000", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C as a shell gives it
    deadline = time.monotonic() + 120
    while not (tmp_path / ".ix.building" / "shards" / "000001.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the build did not start: {proc.communicate()}")
        time.sleep(0.01)
    return proc, out, corpus


def test_ctrl_c_mid_build_keeps_finished_shards_for_resume(tmp_path, tiny_model):
    proc, out, corpus = _start_build(tmp_path, tiny_model)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr and stdout == ""
    assert not out.exists()
    kept = sorted(p.name for p in (tmp_path / ".ix.building" / "shards").glob("*.json"))
    assert len(kept) >= 2
    resumed = run("index", corpus, "--out", out, "--model", tiny_model, "--shard-chunks", "4000", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["shards_resumed"] >= 2 and summary["chunks"] == 120_000
    assert not (tmp_path / ".ix.building").exists()


def test_kill_9_mid_build_leaves_nothing_query_would_open(tmp_path, tiny_model):
    proc, out, _ = _start_build(tmp_path, tiny_model)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists() and (tmp_path / ".ix.building").is_dir()
    asked = run("query", "--index", out, "q?")
    assert asked.returncode == 2 and "no index at" in asked.stderr
    # a new build of the same output refuses to throw the finished shards away unless told
    small = tmp_path / "small.txt"
    small.write_text(STORY)
    refused = run("index", small, "--out", out, "--model", tiny_model)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--overwrite" in refused.stderr
    rebuilt = run("index", small, "--out", out, "--model", tiny_model, "--overwrite")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not (tmp_path / ".ix.building").exists()
