"""`qrag index` and `qrag query` through Typer's CliRunner, with a tiny real model (fast)."""

from __future__ import annotations

import gzip
import json
import lzma

import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.store.generations import current_folder

runner = CliRunner()

TEXT = (
    "The ship left the harbour at dawn. Mr. Grey stood at the rail.\n"
    "He watched the town grow small.\n\n"
    "\"Will we come back?\" asked the boy. Nobody answered him.\n\n"
    "Mary took the football there. Mary went to the garden. The wind rose in the evening.\n"
)


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def build(tiny_model, corpus, out, *extra, input=None):
    res = invoke("index", corpus, "--out", out, "--model", tiny_model, *extra, input=input)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def query_jsonl(index, *args, input=None):
    res = invoke("query", "--index", index, "--format", "jsonl", *args, input=input)
    assert res.exit_code == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_index_text_then_query_by_argument(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(TEXT)
    summary = build(tiny_model, corpus, tmp_path / "ix")
    assert summary["chunks"] == 8 and summary["documents"] == 1 and summary["tokens"] > 30
    manifest = json.loads((current_folder(tmp_path / "ix") / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["corpus"]["chunks"] == 8
    assert manifest["model"]["dim"] == 32 and len(manifest["model"]["checksum"]) == 64
    assert (current_folder(tmp_path / "ix") / "settings.json").is_file()

    [r] = query_jsonl(tmp_path / "ix", "--steps", "3", "Where is the football?")
    assert r["id"] == "1" and r["question"] == "Where is the football?"
    assert [x["step"] for x in r["retrieved"]] == [1, 2, 3]
    positions = [x["chunk"] for x in r["retrieved"]]
    assert len(set(positions)) == 3 and all(0 <= p < 8 for p in positions)
    for x in r["retrieved"]:
        assert TEXT.replace("\n", " ")[x["start"] : x["end"]].split() == x["text"].split()
        assert x["doc"] == "story"
    assert r["kept"] == positions


def test_index_jsonl_gz_and_query_from_stdin(tmp_path, tiny_model):
    corpus = tmp_path / "docs.jsonl.gz"
    with gzip.open(corpus, "wt") as f:
        for i, doc in enumerate(["Alpha is here. Beta is there.", "Gamma went home.", "Delta stayed."]):
            f.write(json.dumps({"id": f"doc{i}", "text": doc}) + "\n")
    summary = build(tiny_model, corpus, tmp_path / "ix")
    assert summary["documents"] == 3 and summary["chunks"] == 4
    lines = "Where is Alpha?\n" + json.dumps({"id": "q9", "question": "Who went home?"}) + "\n\n"
    results = query_jsonl(tmp_path / "ix", "--steps", "1", "--k", "2", input=lines)
    assert [r["id"] for r in results] == ["1", "q9"]
    assert all(len(r["retrieved"]) == 2 and {x["step"] for x in r["retrieved"]} == {1} for r in results)
    docs = {x["doc"] for r in results for x in r["retrieved"]}
    assert docs <= {"doc0", "doc1", "doc2"}


def test_index_stdin_and_xz_default_out(isolated_home, tiny_model):
    res = invoke("index", "-", "--model", tiny_model, input=TEXT)
    assert res.exit_code == 0, res.stderr
    assert (current_folder(isolated_home / "indexes" / "stdin") / "manifest.json").is_file()
    p = isolated_home / "story.txt.xz"
    with lzma.open(p, "wt") as f:
        f.write(TEXT)
    res = invoke("index", p, "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["index"].endswith("indexes/story")


def test_same_seed_same_results_and_backends_agree(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    places = ["kitchen", "garden", "hallway", "office", "bedroom", "cellar", "attic", "harbour"]
    corpus.write_text(TEXT + " ".join(f"Visitor {i} waited in the {places[i % 8]} until {i % 12} o'clock."
                                      for i in range(40)))  # distinct sentences: no ties between backends
    runs = []
    for name, backend in (("a", "usearch"), ("b", "usearch"), ("c", "hnswlib"), ("d", "exact")):
        build(tiny_model, corpus, tmp_path / name, "--backend", backend, "--seed", "7")
        runs.append(query_jsonl(tmp_path / name, "--steps", "4", "Where is the football?", "Who asked?"))
    assert runs[0] == runs[1]  # rebuilt with the same seed: identical output
    for other in runs[2:]:  # tiny corpus: approximate search is exact here
        assert [[x["chunk"] for x in r["retrieved"]] for r in other] == [
            [x["chunk"] for x in r["retrieved"]] for r in runs[0]
        ]


def test_stop_threshold_keeps_prefix(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(TEXT)
    build(tiny_model, corpus, tmp_path / "ix")
    [r] = query_jsonl(tmp_path / "ix", "--steps", "4", "Where is the football?")
    scores = [x["score"] for x in r["retrieved"]]
    t = sorted(scores)[len(scores) // 2] + 1e-9
    [r2] = query_jsonl(tmp_path / "ix", "--steps", "4", "--stop-threshold", str(t), "Where is the football?")
    first_below = next(i for i, s in enumerate(scores) if s < t)
    assert r2["kept"] == [x["chunk"] for x in r["retrieved"][:first_below]]
    [r3] = query_jsonl(tmp_path / "ix", "--steps", "4", "--stop-threshold", "-1e9", "Where is the football?")
    assert r3["kept"] == [x["chunk"] for x in r["retrieved"]]


def test_text_and_trec_formats(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(TEXT)
    build(tiny_model, corpus, tmp_path / "ix")
    res = invoke("query", "--index", tmp_path / "ix", "--steps", "2", "--format", "trec", "Where is Mary?")
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in rows] == [("1", "Q0", "1", "2", "qrag"), ("1", "Q0", "2", "1", "qrag")]
    res = invoke("query", "--index", tmp_path / "ix", "--steps", "2", "--format", "text", "Where is Mary?")
    assert res.exit_code == 0 and res.stdout.startswith("[1] Where is Mary?") and "kept:" in res.stdout


def test_piped_output_defaults_to_jsonl(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(TEXT)
    build(tiny_model, corpus, tmp_path / "ix")
    res = invoke("query", "--index", tmp_path / "ix", "Where is Mary?")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["question"] == "Where is Mary?"
    assert res.stderr == ""  # nothing but data, and no noise


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_bad_steps_is_a_usage_error(tmp_path, tiny_model, steps):
    corpus = tmp_path / "story.txt"
    corpus.write_text(TEXT)
    build(tiny_model, corpus, tmp_path / "ix")
    res = invoke("query", "--index", tmp_path / "ix", "--steps", steps, "q?")
    assert res.exit_code == 2 and "--steps must be at least 1" in res.stderr


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.startswith("qrag ")
