"""One error mapper: closed pipes, full devices, read-only disks, SIGTERM, and the smaller input checks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_bad_input import index_dir, invoke, one_line_error  # noqa: F401  (index_dir: a fixture)

ROOT = Path(__file__).resolve().parents[1]


def popen(*args, **kwargs) -> subprocess.Popen:
    """`python -m qrag_cli.cli ARGS` of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "qrag_cli.cli", *map(str, args)], env=env, **kwargs)


def test_a_closed_stdout_ends_quietly(index_dir, tiny_model):
    questions = "".join(f"Where did Mary go, time {i}?\n" for i in range(400)).encode()
    proc = popen("query", "--index", index_dir, "--model", tiny_model, "--steps", "3", "--format", "jsonl",
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(questions)
    proc.stdin.close()
    first = proc.stdout.readline()  # `| head -n1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) in (0, 141) and stderr == "", stderr
    assert json.loads(first)["id"] == "1"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_stdout_on_a_full_device_is_a_one_line_error(index_dir, tiny_model):
    with open("/dev/full", "wb") as full:
        proc = popen("query", "--index", index_dir, "--model", tiny_model, "--steps", "2", "Where is Mary?", stdout=full,
                     stderr=subprocess.PIPE)
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert stderr == "error: cannot write stdout: No space left on device\n", stderr


def test_sigterm_is_handled_like_ctrl_c_and_the_build_resumes(tmp_path, tiny_model):
    corpus = tmp_path / "big.txt"
    corpus.write_text("The rain fell on the quiet town. A dog barked twice and then was still.\n" * 3000)
    args = ["--out", tmp_path / "ix", "--model", tiny_model, "--shard-chunks", "500", "--threads", "1"]
    proc = popen("index", corpus, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shard = tmp_path / ".ix.building" / "shards" / "000000.json"
    deadline = time.monotonic() + 240
    while not shard.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before SIGTERM"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    stderr = proc.stderr.read().decode()
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr, stderr
    assert shard.exists() and not (tmp_path / "ix").exists()
    resumed = popen("index", corpus, *args, "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert json.loads(out)["shards_resumed"] >= 1


def test_an_empty_question_is_refused(index_dir, tiny_model):
    one_line_error(invoke("query", "--index", index_dir, "--model", tiny_model, "  "), 2, "empty question")
    res = invoke("query", "--index", index_dir, "--model", tiny_model, input='{"id": "a", "question": ""}\n')
    one_line_error(res, 2, "empty question (id a)")


def test_steps_above_the_number_of_chunks_are_capped_with_a_warning(index_dir, tiny_model):
    res = invoke("query", "--index", index_dir, "--model", tiny_model, "--steps", "10", "--format", "jsonl",
                 "Where is Mary?")
    assert res.exit_code == 0, res.stderr
    assert "capped at 3" in res.stderr and len(json.loads(res.stdout)["retrieved"]) == 3


def test_text_output_strips_terminal_escape_sequences(tmp_path, tiny_model):
    corpus = tmp_path / "evil.txt"
    corpus.write_text("Mary went to the \x1b[2J\x1b]0;owned\x07garden. John took the \x1b[31mball\x1b[0m.\n")
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    res = invoke("query", "--index", tmp_path / "ix", "--model", tiny_model, "--format", "text", "--steps", "2",
                 "Where is \x1b[5mMary?")
    assert res.exit_code == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "garden" in res.stdout and "ball" in res.stdout and "Where is Mary?" in res.stdout


def test_a_read_only_output_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    import qrag_cli.data.samples as samples

    target = tmp_path / "ro" / "qa1.jsonl"

    def read_only(path, header, rows):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(samples, "write_samples", read_only)
    res = invoke("data", "babilong", "--task", "qa1", "--length", "1K", "--n", "1", "--out", target)
    one_line_error(res, 1, f"cannot write {target}: Read-only file system")


def test_data_and_bench_refuse_to_replace_results_without_overwrite(tmp_path):
    samples = tmp_path / "qa1.jsonl"
    samples.write_text("mine\n")
    res = invoke("data", "babilong", "--task", "qa1", "--length", "1K", "--n", "1", "--out", samples)
    one_line_error(res, 2, "exists: choose another --out or pass --overwrite")
    results = tmp_path / "bench"
    results.mkdir()
    (results / "results.json").write_text("{}")
    res = invoke("bench", "--data", samples, "--out", results)
    one_line_error(res, 2, "exists: choose another --out or pass --overwrite")
    assert samples.read_text() == "mine\n" and (results / "results.json").read_text() == "{}"
