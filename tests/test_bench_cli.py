"""`qrag bench` through the CLI: the table on stdout, the files in --out, bad options."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from tests.conftest import shared_dir

runner = CliRunner()


@pytest.mark.skipif(not (shared_dir() / "data" / "gutenberg").is_dir(), reason="shared Gutenberg novels absent")
def test_bench_writes_results_and_prints_the_table(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["bench", "babilong", "--tasks", "qa1", "--lengths", "1K", "--n", "2",
                              "--threads", "1", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    assert "| qa1 | 1K |" in res.stdout and "multistep-base" in res.stdout
    results = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in results["results"]}
    assert methods == {"dense-topk", "bm25-topk", "multistep-base", "qrag-trained"}  # the shipped policy by default
    assert all(0.0 <= r["coverage"] <= 1.0 and r["n"] == 2 for r in results["results"])
    assert (out / "coverage.png").stat().st_size > 1000 and (out / "settings.json").is_file()


def test_bench_bad_data_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something-else", "format_version": 1}\n')
    res = runner.invoke(app, ["bench", "--data", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bad.jsonl" in res.stderr and res.stdout == ""
