"""Every command's --help (examples, panels, nothing cut off), shell completion, TREC output rules."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.errors import InputError
from qrag_cli.output import check_trec, render

runner = CliRunner()
COMMANDS = ["index", "query", "export", "data", "bench", "train"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_examples(command):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"}, prog_name="qrag")
    assert res.exit_code == 0
    tail = res.stdout[res.stdout.index("Examples:"):]
    examples = [line.strip() for line in tail.splitlines()[1:] if line.strip().startswith("qrag ")]
    assert 2 <= len(examples) <= 4 and all(e.startswith(f"qrag {command}") for e in examples)


def test_train_help_is_grouped_and_bench_has_no_benchmark_option():
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).stdout
    for panel in ("Task and data", "Run", "Optimisation", "Reinforcement learning", "Model"):
        assert f"─ {panel} ─" in train
    bench = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "80"}).stdout
    assert "--benchmark" not in bench and "─ Reader (optional) ─" in bench
    assert "…" not in bench and "default: 0.5" in bench  # nothing cut off at 80 columns


def test_install_completion_writes_the_shell_rc(tmp_path):
    res = runner.invoke(app, ["--install-completion", "bash"], env={"HOME": str(tmp_path), "SHELL": "/bin/bash"},
                        prog_name="qrag")
    assert res.exit_code == 0, res.output
    rc = (tmp_path / ".bashrc").read_text()
    script = tmp_path / ".bash_completions" / "qrag.sh"
    assert str(script) in rc or ".bash_completions/qrag.sh" in rc
    assert "_QRAG_COMPLETE" in script.read_text()
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="qrag")
    assert shown.exit_code == 0 and "complete" in shown.stdout


def test_trec_rejects_whitespace_ids_and_tags():
    result = {"id": "q 1", "retrieved": [{"chunk": 3}]}
    with pytest.raises(InputError, match="whitespace"):
        list(render([result], "trec"))
    with pytest.raises(InputError, match="run tag"):
        check_trec(["q1"], "my run")
    with pytest.raises(InputError, match="non-empty"):
        check_trec([""], "run")
    lines = list(render([{"id": "q-1/é", "retrieved": [{"chunk": 3}, {"chunk": 9}]}], "trec", "mine"))
    assert [line.split() for line in lines] == [["q-1/é", "Q0", "3", "1", "2", "mine"],
                                                 ["q-1/é", "Q0", "9", "2", "1", "mine"]]


def test_tab_separated_topics_are_parsed():
    from qrag_cli.api import parse_questions

    qs = parse_questions(["301\tWhere is the football?\n", "302\tWho went home?\n", "plain question\n"])
    assert [(q.id, q.text) for q in qs] == [("301", "Where is the football?"), ("302", "Who went home?"),
                                            ("3", "plain question")]
    with pytest.raises(InputError, match="qid<TAB>text"):
        parse_questions(["\tno id\n"])


def test_query_topics_file_to_trec_with_run_tag(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text("Mary took the football there. Mary went to the garden. John went home.\n")
    res = runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "ix"), "--model", str(tiny_model)])
    assert res.exit_code == 0, res.output
    topics = tmp_path / "topics.tsv"
    topics.write_text("301\tWhere is the football?\nq-302\tWho went home?\n")
    res = runner.invoke(app, ["query", "--index", str(tmp_path / "ix"), "--topics", str(topics), "--steps", "2",
                              "--format", "trec", "--run-tag", "mine"])
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [(r[0], r[3], r[5]) for r in rows] == [("301", "1", "mine"), ("301", "2", "mine"),
                                                  ("q-302", "1", "mine"), ("q-302", "2", "mine")]
    assert all(len(r) == 6 for r in rows)
    spaced = '{"id": "q 1", "question": "Where is Mary?"}\n'
    res = runner.invoke(app, ["query", "--index", str(tmp_path / "ix"), "--format", "trec"], input=spaced)
    assert res.exit_code == 2 and "whitespace" in res.stderr and res.stdout == ""
