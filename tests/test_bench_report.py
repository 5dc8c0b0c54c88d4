"""The bench report's confidence intervals and plot (synthetic results; no model)."""

from __future__ import annotations

import math
import struct

import pytest

from qrag_cli.bench.aggregate import Acc, aggregate_row, averages
from qrag_cli.bench.metrics import wilson_interval
from qrag_cli.bench.report import markdown_table, plot_coverage


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (1, 1), (249, 300), (234, 300), (37, 200)])
def test_wilson_bounds_solve_the_score_equation(k, n):
    """Each bound p of the Wilson interval satisfies |k/n - p| = z * sqrt(p(1-p)/n) (or sits at 0 / 1)."""
    lo, hi = wilson_interval(k, n)
    z, phat = 1.959964, k / n
    for p in (lo, hi):
        if p in (0.0, 1.0) or abs(p) < 1e-12 or abs(p - 1) < 1e-12:
            assert phat in (0.0, 1.0)
            continue
        assert abs(abs(phat - p) - z * math.sqrt(p * (1 - p) / n)) < 1e-9
    assert lo <= phat <= hi


def test_wilson_known_values_and_empty():
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(3, 0) is None
    a, b = wilson_interval(249, 300), wilson_interval(234, 300)  # 0.83 vs 0.78 at n = 300
    assert a[0] < b[1]  # the intervals overlap: not told apart at this n


def _results(lengths: list[str], tasks: list[str], methods: list[str]) -> dict:
    rows = []
    for m_i, m in enumerate(methods):
        for t_i, t in enumerate(tasks):
            for length in lengths:
                acc = Acc()
                acc.coverage = [1.0 if (j + m_i + t_i) % 4 else 0.0 for j in range(40)]
                acc.f1, acc.kept, acc.retrieved = [0.5] * 40, [2] * 40, [5] * 40
                acc.precision = acc.recall = acc.support_recall = [0.5] * 40
                acc.latency, acc.build = [0.01] * 40, [0.0] * 40
                rows.append(aggregate_row(m, t, length, acc, [], False, False))
    return {"benchmark": "babilong", "methods": methods, "lengths": lengths, "tasks": tasks,
            "results": rows, "averages": averages(rows, methods, lengths), "steps": 5, "k": 5,
            "stop_threshold": 0.5, "settings": {"n": 40}, "wall_s": 1.0}


def test_rows_and_averages_carry_intervals_and_the_table_shows_them():
    res = _results(["1K", "4K"], ["qa1", "qa2"], ["dense-topk", "multistep-base"])
    row = res["results"][0]
    assert row["coverage"] == 0.75 and row["coverage_ci95"] == [round(x, 4) for x in wilson_interval(30, 40)]
    avg = res["averages"][0]
    hits = sum(r["coverage"] * r["n"] for r in res["results"] if r["method"] == avg["method"] and r["length"] == avg["length"])
    assert avg["coverage_ci95"] == [round(x, 4) for x in wilson_interval(round(hits), 80)]
    table = markdown_table(res)
    lo, hi = row["coverage_ci95"]
    assert "95% Wilson interval" in table and f"{lo:.2f}–{hi:.2f}" in table and "| **all** | 1K |" in table


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_one_length_is_drawn_as_bars_several_as_panels(tmp_path):
    methods = ["dense-topk", "bm25-topk", "multistep-base", "qrag-trained"]
    one = plot_coverage(_results(["32K"], ["qa1", "qa2", "qa3"], methods), tmp_path / "one.png")
    many = plot_coverage(_results(["1K", "4K", "32K"], ["qa1", "qa2", "qa3"], methods), tmp_path / "many.png")
    w1, h1 = _png_size(one)
    w2, h2 = _png_size(many)
    assert h1 < h2  # one row of grouped bars, against two rows of line panels (3 tasks + average)
    assert w1 > 5.0 * 110 * 0.9  # widened with the number of bars
