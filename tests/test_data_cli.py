"""`qrag data` through the CLI: files that read back, stdout, bad options."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.data.babi import replay
from qrag_cli.data.samples import materialise, read_samples
from tests.conftest import shared_dir

runner = CliRunner()
needs_novels = pytest.mark.skipif(not (shared_dir() / "data" / "gutenberg").is_dir(),
                                  reason="shared Gutenberg novels absent (set QRAG_SHARED)")


@needs_novels
@pytest.mark.parametrize("task", ["qa1", "qa2", "qa3", "qa4", "qa5"])
def test_babilong_file_reads_back_and_supports_replay(tmp_path, task):
    out = tmp_path / "s.jsonl"
    res = runner.invoke(app, ["data", "babilong", "--task", task, "--length", "1K", "--n", "5", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    header, samples = read_samples(out)
    samples = list(samples)
    assert header["task"] == task and len(samples) == 5
    for s in samples:
        context = materialise(s, header)
        story = [context[i] for i in sorted(s["support"])]
        assert all(line in context for line in story)
        facts = [c for c in context if c in set(story)]
        assert facts  # the supporting lines are spliced into the novel sentences


@needs_novels
def test_long_context_references_one_background_and_goes_to_stdout():
    res = runner.invoke(app, ["data", "babilong", "--task", "qa1", "--length", "32K", "--n", "3"])
    assert res.exit_code == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["format"] == "qrag-samples" and len(lines) == 4
    assert all("context" not in s and s["background"] == lines[0]["background"] for s in lines[1:])
    for s in lines[1:]:
        for f in s["facts"]:
            assert 0 <= f["position"] < 1200 + len(s["facts"])
        answer, support = replay("qa1", [f["text"] for f in s["facts"]], s["question"])
        assert answer == s["answer"]


@pytest.mark.parametrize("args, fragment", [
    (["babilong", "--task", "qa9"], "unknown babilong task"),
    (["babilong", "--length", "3X"], "length"),
    (["ruler", "--task", "niah_single", "--length", "2K"], "length"),
    (["squad"], "benchmark"),
    (["babilong", "--hard-negatives", "1.5"], "fraction"),
    (["babilong", "--length", "32K", "--hard-negatives", "0.2"], "below 1200"),
    (["ruler", "--task", "niah_single", "--length", "4K", "--hard-negatives", "0.2"], "babilong option"),
    (["babilong", "--length", "100", "--background-pool", "50"], "pool of 100..40000"),
    (["ruler", "--task", "niah_multikey", "--length", "4K", "--keys", "colours"], "unknown needle keys"),
])
def test_bad_options(args, fragment):
    res = runner.invoke(app, ["data", *args, "--n", "1"])
    assert res.exit_code == 2 and fragment in res.stderr and res.stdout == ""


def test_ruler_options_reach_the_generator(tmp_path):
    out = tmp_path / "vt.jsonl"
    res = runner.invoke(app, ["data", "ruler", "--task", "vt", "--length", "4K", "--haystack", "noise", "--n", "1",
                              "--no-vt-example", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    header, samples = read_samples(out)
    assert header["example"] is False and "example" not in next(samples)
    res = runner.invoke(app, ["data", "ruler", "--task", "niah_multikey", "--length", "4K", "--haystack", "noise",
                              "--keys", "uuids", "--n", "1"])
    assert res.exit_code == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["keys"] == "uuids" and len(lines[1]["question"].split(" for ")[1].split()[0]) == 36
