"""`qrag bench` per-sample rows: they agree with the aggregate figures, and `--show-misses` prints the
missed ones (from a run, or from an existing results folder without running again)."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from qrag_cli.bench.per_sample import load_results, misses, render_misses
from qrag_cli.bench.report import write_results
from qrag_cli.bench.runner import run_bench
from qrag_cli.cli import app
from qrag_cli.errors import InputError
from qrag_cli.settings import BenchSettings
from tests.test_bench import HEADER, tiny_samples, write_lines

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A small run with one step and k = 1, so some samples are missed."""
    tmp = tmp_path_factory.mktemp("bench-samples")
    data = write_lines(tmp / "tiny.jsonl", [HEADER, *tiny_samples()])
    res = run_bench(BenchSettings(data=str(data), trained="", steps=1, k_dense=1, threads=1,
                                  cache=str(tmp / "cache")))
    out = tmp / "out"
    write_results(out, res, plot=False)
    return res, out


def _prf(kept: list[int], support: list[int]) -> tuple[float, float, float]:
    hit = len(set(kept) & set(support))
    p = hit / len(set(kept)) if kept else 0.0
    r = hit / len(set(support))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def test_rows_recompute_the_aggregates(tiny_run):
    res, _ = tiny_run
    rows = res["samples"]
    assert len(rows) == 3 * len(res["methods"])
    assert [r["id"] for r in rows if r["method"] == "dense-topk"] == ["t0", "t1", "t2"]
    for agg in res["results"]:
        sel = [r for r in rows if (r["method"], r["task"], r["length"]) == (agg["method"], agg["task"], agg["length"])]
        assert len(sel) == agg["n"] == 3
        cov, prec, rec, f1 = [], [], [], []
        for r in sel:
            positions = [x["position"] for x in r["retrieved"]]
            assert r["found"] == [s for s in r["support"] if s in positions]
            assert set(r["kept"]) <= set(positions)
            assert all(isinstance(x["score"], float) for x in r["retrieved"])
            cov.append(1.0 if set(r["support"]) <= set(positions) else 0.0)
            p, rc, f = _prf(r["kept"], r["support"])
            prec.append(p), rec.append(rc), f1.append(f)
        assert agg["coverage"] == round(statistics.mean(cov), 4)
        assert agg["precision"] == round(statistics.mean(prec), 4)
        assert agg["recall"] == round(statistics.mean(rec), 4)
        assert agg["fact_f1"] == round(statistics.mean(f1), 4)
        assert agg["kept_mean"] == round(statistics.mean(len(r["kept"]) for r in sel), 3)
        assert agg["retrieved_mean"] == round(statistics.mean(len(r["retrieved"]) for r in sel), 3)
        assert agg["latency_ms_median"] == pytest.approx(statistics.median(r["latency_ms"] for r in sel), abs=2e-3)
        assert agg["build_ms_mean"] == pytest.approx(statistics.mean(r["build_ms"] for r in sel), abs=2e-3)


def test_dense_scores_are_in_retrieval_order(tiny_run):
    res, _ = tiny_run
    for r in res["samples"]:
        assert len(r["retrieved"]) == 1  # one step, k = 1
        if r["method"] == "multistep-base":
            assert r["kept"] == ([r["retrieved"][0]["position"]] if r["retrieved"][0]["score"] >= 0.5 else [])


def test_missed_rows_carry_their_texts(tiny_run):
    res, _ = tiny_run
    missed = misses(res)
    assert missed, "one step of k = 1 should miss some of the tiny samples"
    assert missed == [r for r in res["samples"] if r["found"] != r["support"]]
    samples = {s["id"]: s for s in tiny_samples()}
    for r in missed:
        ctx = samples[r["id"]]["context"]
        assert r["missing"] == [{"position": s, "text": ctx[s]} for s in r["support"] if s not in r["found"]]
        assert all(x["text"] == ctx[x["position"]] for x in r["retrieved"])
    found = [r for r in res["samples"] if r["coverage"] == 1.0]
    assert all("missing" not in r and all("text" not in x for x in r["retrieved"]) for r in found)
    text = "\n".join(render_misses(missed, "text"))
    assert f"[{missed[0]['id']}] {missed[0]['method']}" in text and missed[0]["missing"][0]["text"] in text
    assert "missed      chunk" in text


def test_show_misses_on_an_existing_folder_reads_without_running(tiny_run, monkeypatch):
    res, out = tiny_run
    import qrag_cli.bench.runner as runner_mod

    monkeypatch.setattr(runner_mod, "run_bench", lambda *a, **k: pytest.fail("ran the benchmark again"))
    cli = runner.invoke(app, ["bench", "--show-misses", "--out", str(out)])
    assert cli.exit_code == 0, cli.stderr
    lines = [json.loads(x) for x in cli.stdout.splitlines()]  # piped: JSON Lines, nothing else
    assert lines == misses(res) and "missed of" in cli.stderr


def test_show_misses_refuses_a_folder_without_results(tmp_path):
    (tmp_path / "results.json").write_text('{"format": "qrag-bench-results", "results": []}')
    with pytest.raises(InputError, match="older qrag"):
        load_results(tmp_path)
    cli = runner.invoke(app, ["bench", "--show-misses", "--out", str(tmp_path)])
    assert cli.exit_code == 2 and "older qrag" in cli.stderr and cli.stdout == ""
