"""`qrag bench --data`: the file's own figures (n, seed, split, lengths) everywhere the run reports them,
and files refused with their line: unknown header fields or background kinds, a length the samples do
not have."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qrag_cli.bench.runner import resolve
from qrag_cli.cli import app
from qrag_cli.data.lengths import TOLERANCE, declared_size
from qrag_cli.errors import InputError
from qrag_cli.settings import BenchSettings, DataSettings
from tests.test_bench import HEADER, tiny_samples, write_lines

runner = CliRunner()


def samples(n: int) -> list[dict]:
    base = tiny_samples()
    return [{**base[i % 3], "id": f"s{i}"} for i in range(n)]


def test_a_37_sample_file_reports_n_37_everywhere(tmp_path):
    header = {**HEADER, "n": 37, "seed": 5, "split": "train"}
    data = write_lines(tmp_path / "mine.jsonl", [header, *samples(37)])
    out = tmp_path / "out"
    res = runner.invoke(app, ["bench", "--data", str(data), "--methods", "bm25-topk", "--out", str(out),
                              "--cache", str(tmp_path / "cache")])  # BM25 only: no model to load
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    settings = json.loads((out / "settings.json").read_text())
    for s in (settings, results["settings"]):
        assert (s["n"], s["seed"], s["split"], s["lengths"], s["tasks"]) == (37, 5, "train", "12", "qa1")
    assert [r["n"] for r in results["results"]] == [37] and len(results["samples"]) == 37
    assert results["lengths"] == ["12"] and results["data"]["header"]["n"] == 37
    assert "n=37," in (out / "results.md").read_text() and "n=37," in res.stdout
    assert "n=100" not in res.stdout


def test_resolve_takes_the_files_figures(tmp_path):
    data = write_lines(tmp_path / "d.jsonl", [{**HEADER, "seed": 9}, *tiny_samples()])
    plan = resolve(BenchSettings(data=str(data), n=100, seed=0, split="test"))
    assert (plan.settings.n, plan.settings.seed, plan.settings.split) == (3, 9, "test")
    assert plan.lengths == ["12"] and plan.tasks == ["qa1"]


@pytest.mark.parametrize(
    "header, bad_sample, where, message",
    [
        ({**HEADER, "lenght": "4K"}, None, ":1", "unknown header field(s) 'lenght'"),
        ({**HEADER, "background": {"kind": "novels", "per_sample": True}}, None, ":1", "unknown background kind 'novels'"),
        (HEADER, {"background": {"kind": "ocean", "n_sentences": 10}, "facts": []}, ":3", "unknown background kind 'ocean'"),
        ({**HEADER, "length": "1K"}, None, ":2", "declares length '1K' (50 background sentences)"),
    ],
)
def test_bad_files_are_refused_with_file_and_line(tmp_path, header, bad_sample, where, message):
    rows = tiny_samples()
    if bad_sample is not None:
        rows[1] = {k: v for k, v in rows[1].items() if k != "context"} | bad_sample
        rows[1]["support"] = []
    path = write_lines(tmp_path / "bad.jsonl", [header, *rows])
    with pytest.raises(InputError) as exc:
        resolve(BenchSettings(data=str(path)))
    assert f"{path}{where}:" in str(exc.value) and message in str(exc.value)
    cli = runner.invoke(app, ["bench", "--data", str(path), "--out", str(tmp_path / "o")])
    assert cli.exit_code == 2 and message in cli.stderr and cli.stdout == ""


def test_declared_sizes():
    assert declared_size("babilong", "1K") == (50, "background sentences")
    assert declared_size("babilong", "12") == (12, "background sentences")
    assert declared_size("ruler", "16K") == (16384, "tokens")
    assert declared_size("prose", "book") is None and declared_size("ruler", "12") is None


def test_generated_ruler_file_passes_and_a_wrong_length_is_refused(tmp_path):
    from qrag_cli.data.generate import generate
    from qrag_cli.data.ruler import count_tokens
    from qrag_cli.data.samples import write_samples

    header, rows = generate(DataSettings(benchmark="ruler", task="niah_single", length="4K", n=2, haystack="noise"))
    good = tmp_path / "good.jsonl"
    write_samples(good, header, rows)
    assert resolve(BenchSettings(data=str(good))).settings.n == 2
    real = sum(count_tokens(rows[0]["context"]))
    assert abs(real - 4096) <= TOLERANCE * 4096  # what the check measures: within the tolerance
    wrong = tmp_path / "wrong.jsonl"
    write_samples(wrong, {**header, "length": "16K"}, rows)
    with pytest.raises(InputError, match=r"wrong.jsonl:2: the header declares length '16K' \(16384 tokens\)"):
        resolve(BenchSettings(data=str(wrong)))


def test_generated_babilong_file_passes(tmp_path):
    from qrag_cli.data.generate import generate
    from qrag_cli.data.samples import write_samples
    from tests.test_bench import novels_or_skip

    novels_or_skip()
    for length in ("1K", "32K"):
        header, rows = generate(DataSettings(benchmark="babilong", task="qa2", length=length, n=2))
        path = tmp_path / f"{length}.jsonl"
        write_samples(path, header, rows)
        assert resolve(BenchSettings(data=str(path))).lengths == [length]
