"""Multi-task training (`--task a,b,...`, `--task-weights`), per-task validation and the `best` rule,
and training on a user's own samples file (`--data`, `--val-data`)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.errors import InputError
from qrag_cli.rl import trainer as trainer_mod
from qrag_cli.rl.env import EnvPool
from qrag_cli.rl.tasks import BUILTIN_TASKS, check, command_line, mixture, task_list
from qrag_cli.rl.validation import select_key, summarise
from qrag_cli.settings import TrainSettings
from tests.test_rl import rows, synthetic, tiny_settings

runner = CliRunner()


def tagged(task: str, n: int) -> list[dict]:
    return [{"question": "q?", "context": ["a", "b", "c"], "support": [0], "train_task": task} for _ in range(n)]


def test_the_mixture_draws_each_task_at_its_weight_reproducibly():
    samples = tagged("babilong:qa1", 50) + tagged("babilong:qa2", 7) + tagged("ruler:vt", 300)
    weights = {"babilong:qa1": 0.2, "babilong:qa2": 0.3, "ruler:vt": 0.5}

    def draws(seed: int) -> list[int]:
        pool = EnvPool(samples, 1, 3, np.random.default_rng(seed), weights=weights)
        return [pool.draw() for _ in range(6000)]

    got = draws(0)
    share = Counter(samples[i]["train_task"] for i in got)
    for task, w in weights.items():
        assert share[task] / len(got) == pytest.approx(w, abs=0.025), (task, share)
    assert len({i for i in got if samples[i]["train_task"] == "babilong:qa2"}) == 7  # uniform inside the task
    assert got == draws(0) and got != draws(1)  # seeded
    pool = EnvPool(samples, 2, lambda x: 5 if x["train_task"] == "ruler:vt" else 6, np.random.default_rng(0),
                   weights=weights)
    for ep in pool.episodes:  # each episode's length is its task's
        assert ep.max_steps == min(3, 5 if samples[ep.sample]["train_task"] == "ruler:vt" else 6)


def test_task_lists_weights_and_their_refusals():
    assert task_list(TrainSettings(task="all")) == list(BUILTIN_TASKS)
    assert task_list(TrainSettings(task="babilong:qa3, babilong:qa1,babilong:qa3")) == ["babilong:qa3", "babilong:qa1"]
    assert mixture(TrainSettings(task="babilong:qa1,babilong:qa2", task_weights="1,3")) == {
        "babilong:qa1": 0.25, "babilong:qa2": 0.75}
    assert mixture(TrainSettings(task="babilong:qa1,babilong:qa2")) == {"babilong:qa1": 0.5, "babilong:qa2": 0.5}
    assert mixture(TrainSettings(task="babilong:qa1", data="f.jsonl")) == {"babilong:qa1": 0.5, "data": 0.5}
    for task, weights, message in [("babilong:qa1,babilong:qa7", "", "unknown task 'babilong:qa7'"),
                                   ("babilong:qa1,babilong:qa2", "1,-1", ">= 0"),
                                   ("babilong:qa1,babilong:qa2", "0,0", "not all zero"),
                                   ("babilong:qa1,babilong:qa2", "1", "2 tasks"),
                                   ("babilong:qa1,babilong:qa2", "1,x", "numbers")]:
        with pytest.raises(InputError, match=message):
            check(TrainSettings(task=task, task_weights=weights, out="unused"))
    with pytest.raises(InputError, match="--val-data validates a --data run"):
        check(TrainSettings(val_data="v.jsonl", out="unused"))
    assert check(TrainSettings(out="unused")).task == "babilong:qa1"  # the default without --data
    assert check(TrainSettings(task="ruler:vt,babilong:qa1", out="unused")).length == "100"  # ruler uses 4K apart


def test_per_task_validation_columns_and_the_best_rule():
    row = summarise({"babilong:qa1": (0.9, 1.0), "babilong:qa3": (0.3, 0.6)}, 0.7)
    assert row["val_coverage_max_steps:babilong:qa1"] == 1.0 and row["val_coverage:babilong:qa3"] == 0.3
    assert row["val_coverage_max_steps"] == pytest.approx(0.8) and row["val_worst"] == 0.6
    assert row["val_select"] == pytest.approx(0.7)
    # a policy that gains on the easy task but loses the hard one does not win, though its mean is higher
    other = summarise({"babilong:qa1": (0.9, 1.0), "babilong:qa3": (0.3, 0.5)}, 0.7)
    lopsided = summarise({"babilong:qa1": (1.0, 1.0), "babilong:qa3": (0.3, 0.55)}, 0.7)
    assert select_key(row) > select_key(lopsided) > select_key(other)
    assert select_key(summarise({"t": (0.4, 0.9)}, 0.1)) == (0.9, 0.4)  # one task: its coverage
    assert select_key({"val_coverage_max_steps": 0.5, "val_coverage": 0.2}) == (0.5, 0.2)  # an older run's row


def test_metrics_have_a_column_per_task_and_the_mixture_trains(tmp_path, tiny_model):
    train, val = synthetic(120, 0), synthetic(24, 1)
    for i, x in enumerate(train + val):
        x["train_task"] = "babilong:qa1" if i % 2 else "babilong:qa2"
    s = tiny_settings(tmp_path, tiny_model, task="babilong:qa1,babilong:qa2", task_weights="1,3", steps=8, val_every=4)
    trainer_mod.train(s, samples=(train, val))
    first = rows(tmp_path / "run")[0]
    assert {"val_coverage:babilong:qa1", "val_coverage:babilong:qa2", "val_worst", "val_select"} <= set(first)


def write_samples_file(path, samples, n=None):
    header = {"format": "qrag-samples", "format_version": 1, "benchmark": "custom", "task": "treasure",
              "length": "8", "split": "train", "seed": 0, "n": len(samples) if n is None else n,
              "background": {"kind": "noise", "n_sentences": 0, "per_sample": True}}
    lines = [json.dumps(header)] + [json.dumps({"id": f"s{i}", "task": "treasure", "answer": "here", **x})
                                    for i, x in enumerate(samples)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_on_a_users_samples_file_raises_its_validation_coverage(tmp_path, tiny_model):
    data = write_samples_file(tmp_path / "train.jsonl", synthetic(200, 0))
    val = write_samples_file(tmp_path / "val.jsonl", synthetic(40, 1))
    s = tiny_settings(tmp_path, tiny_model, task="", data=str(data), val_data=str(val), steps=20)
    summary = trainer_mod.train(s)
    metrics = rows(tmp_path / "run")
    untrained = metrics[0]["val_coverage:data"]
    assert summary["best_val_coverage"] > untrained + 0.2, [m.get("val_coverage:data") for m in metrics]
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["data"] == str(data)


@pytest.mark.parametrize("bad, message", [
    ({"question": "q?", "context": ["a", "b"]}, "train.jsonl:3: missing field 'support'"),
    ({"question": "q?", "context": ["a", "b"], "support": [5]}, "train.jsonl:3: support position 5 is out of range"),
    ({"question": "q?", "context": ["a", "b"], "support": []}, "train.jsonl:3: 'support' is empty"),
    ({"question": "q?", "facts": [{"position": 0, "text": "x"}], "support": [0],
      "background": {"kind": "noise", "n_sentences": 3}}, "train.jsonl:3: a training sample needs its context inline"),
])
def test_a_bad_data_file_is_refused_with_its_file_and_line(tmp_path, bad, message):
    good = {"question": "q?", "context": ["a", "b"], "support": [1]}
    path = write_samples_file(tmp_path / "train.jsonl", [good, bad])
    res = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()


def test_the_recorded_command_reproduces_the_settings():
    s = check(TrainSettings(task="babilong:qa1,babilong:qa3", task_weights="1,2", preset="cpu", n_train=500,
                            bf16=False, out="runs/x", threads=2))
    cmd = command_line(json.loads(json.dumps(s.__dict__)))
    assert cmd.startswith("qrag train --preset cpu ")
    assert "--task babilong:qa1,babilong:qa3" in cmd and "--task-weights 1,2" in cmd and "--n-train 500" in cmd
    assert "--no-bf16" in cmd or not s.bf16
    assert "--out" not in cmd and "--threads" not in cmd


def test_per_task_sample_counts_generate_that_many_of_each_task():
    from qrag_cli.rl.tasks import make_samples, task_sizes

    s = check(TrainSettings(task="babilong:qa1,babilong:qa2", n_train=5, task_n_train="3,2", n_val=1, out="unused"))
    assert task_sizes(s) == {"babilong:qa1": 3, "babilong:qa2": 2}
    train, val = make_samples(s)
    assert Counter(x["train_task"] for x in train) == {"babilong:qa1": 3, "babilong:qa2": 2}
    assert Counter(x["train_task"] for x in val) == {"babilong:qa1": 1, "babilong:qa2": 1}
    assert task_sizes(check(TrainSettings(task="babilong:qa1,babilong:qa2", n_train=4, out="unused"))) == {
        "babilong:qa1": 4, "babilong:qa2": 4}
    for sizes, message in [("3", "1 values for 2"), ("3,x", "whole numbers"), ("3,0", "at least 1")]:
        with pytest.raises(InputError, match=message):
            check(TrainSettings(task="babilong:qa1,babilong:qa2", task_n_train=sizes, out="unused"))
