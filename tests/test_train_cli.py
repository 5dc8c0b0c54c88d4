"""`qrag train` through the CLI, and a trained policy used by index, query and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from tests.conftest import shared_dir

runner = CliRunner()
pytestmark = pytest.mark.skipif(not (shared_dir() / "data" / "gutenberg").is_dir(),
                                reason="shared Gutenberg novels absent (training samples come from them)")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def policy(tmp_path_factory, tiny_model):
    run = tmp_path_factory.mktemp("train") / "run"
    res = invoke("train", "--task", "babilong:qa1", "--model", tiny_model, "--steps", "4", "--n-train", "8",
                 "--n-val", "4", "--val-every", "2", "--preset", "cpu", "--threads", "1", "--out", run)
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["updates"] == 4
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_coverage" in r for r in rows) and (run / "settings.json").is_file()
    return run / "checkpoints" / "best"


def test_refusals(policy, tiny_model):
    run = policy.parent.parent
    res = invoke("train", "--model", tiny_model, "--out", run)
    assert res.exit_code == 2 and "--resume" in res.stderr
    res = invoke("train", "--task", "ruler:vt", "--length", "1M", "--out", run.parent / "other")
    assert res.exit_code == 2 and "ruler training length" in res.stderr
    res = invoke("train", "--task", "babilong:qa9", "--out", run.parent / "other")
    assert res.exit_code == 2
    res = invoke("train", "--preset", "reference", "--mined-negatives", "10", "--out", run.parent / "other")
    assert res.exit_code == 2 and "frozen action encoder" in res.stderr
    res = invoke("train", "--background-pool", "10", "--n-train", "2", "--n-val", "1", "--out", run.parent / "other")
    assert res.exit_code == 2 and "pool of 100..40000" in res.stderr and not (run.parent / "other").exists()


def test_policy_queries_a_base_built_index_and_its_onnx_export_agrees(policy, tiny_model, tmp_path):
    demo = tmp_path / "demo.txt"
    demo.write_text("Mary took the football there. John went to the office. Mary went to the garden. "
                    "Sandra journeyed to the kitchen. Daniel moved to the hallway.")
    # frozen action encoder = the base model: an index built with the base model serves the policy
    assert invoke("index", demo, "--out", tmp_path / "base-ix", "--model", tiny_model).exit_code == 0
    outs = []
    for model in (policy, tmp_path / "exported"):
        if model != policy:
            res = invoke("export", policy, "--out", model)
            assert res.exit_code == 0, res.stderr
            assert (model / "state" / "model.onnx").is_file() and (model / "action" / "model.onnx").is_file()
        res = invoke("query", "--index", tmp_path / "base-ix", "--model", model, "--steps", "3", "--format", "jsonl",
                     "Where is the football?")
        assert res.exit_code == 0, res.stderr
        outs.append([(x["chunk"], round(x["score"], 3)) for x in json.loads(res.stdout)["retrieved"]])
    assert outs[0] == outs[1] and len(outs[0]) == 3
    # an exported policy cannot start a training run (--init wants the run's PyTorch checkpoint)
    res = invoke("train", "--model", tiny_model, "--init", tmp_path / "exported", "--out", tmp_path / "run2",
                 "--steps", "1", "--n-train", "4", "--n-val", "2", "--preset", "cpu", "--threads", "1")
    assert res.exit_code == 2 and "exported (ONNX) policy" in res.stderr, res.stderr
    # the policy's state encoder is not the model the index was built with: naming that side alone is refused
    res = invoke("query", "--index", tmp_path / "base-ix", "--model", policy / "state", "q?")
    assert res.exit_code == 3


def test_bench_evaluates_a_policy_folder_with_its_two_encoders(policy, tmp_path):
    """`qrag bench --trained RUN/checkpoints/best`: states by the state encoder, chunks by the action encoder."""
    from tests.test_bench import HEADER, tiny_samples, write_lines

    data = write_lines(tmp_path / "tiny.jsonl", [HEADER, *tiny_samples()])
    out = tmp_path / "bench"
    res = invoke("bench", "--data", data, "--trained", policy, "--methods", "qrag-trained", "--steps", "2",
                 "--threads", "1", "--cache", tmp_path / "cache", "--out", out)
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    [row] = results["results"]
    assert row["method"] == "qrag-trained" and row["n"] == 3 and row["retrieved_mean"] == 2
    assert results["models"]["trained"]["path"].endswith("action")
    assert results["models"]["trained_state"]["path"].endswith("state")


def test_resume_takes_the_runs_own_settings(policy, tmp_path):
    """`qrag train --out RUN --resume --steps N` continues with the run's settings (README's example)."""
    import shutil

    run = Path(shutil.copytree(policy.parent.parent, tmp_path / "run"))
    res = invoke("train", "--out", run, "--resume", "--steps", "6", "--lr", "0.5")
    assert res.exit_code == 2 and "lr (" in res.stderr and "0.5 now" in res.stderr
    res = invoke("train", "--out", run, "--resume", "--steps", "6")
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["update"] == 6
    assert json.loads((run / "settings.json").read_text())["model"] != "default"  # the run's model, kept
