"""Bad input: one-line errors, the documented exit codes, and no half-written index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qrag_cli.cli import app
from qrag_cli.store.generations import current_folder

runner = CliRunner()
STORY = "Mary took the football there. Mary went to the garden. John moved to the office.\n"


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_line_error(res, code, fragment):
    assert res.exit_code == code, (res.exit_code, res.stderr, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert fragment in lines[0], lines[0]
    assert res.stdout == ""


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()
                  if ".partial-" in p.name or ".old-" in p.name or p.name.endswith(".building"))


@pytest.fixture()
def index_dir(tmp_path, tiny_model):
    corpus = tmp_path / "story.txt"
    corpus.write_text(STORY)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    return tmp_path / "ix"


def test_missing_corpus(tmp_path, tiny_model):
    res = invoke("index", tmp_path / "nope.txt", "--out", tmp_path / "ix", "--model", tiny_model)
    one_line_error(res, 2, "no such file or folder")
    assert not (tmp_path / "ix").exists()


@pytest.mark.parametrize("content", ["", "   \n\n \t\n"])
def test_empty_corpus(tmp_path, tiny_model, content):
    corpus = tmp_path / "empty.txt"
    corpus.write_text(content)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    one_line_error(res, 2, "empty corpus")
    assert not (tmp_path / "ix").exists() and leftovers(tmp_path) == []


def test_binary_input_is_refused(tmp_path, tiny_model):
    corpus = tmp_path / "image.txt"
    corpus.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    one_line_error(res, 2, "looks binary")
    assert not (tmp_path / "ix").exists() and leftovers(tmp_path) == []


def test_non_utf8_is_replaced_with_a_warning(tmp_path, tiny_model):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("Café au lait. Mary went to the garden.\n".encode("latin-1"))
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    assert "warning:" in res.stderr and "not valid UTF-8" in res.stderr
    [r] = [json.loads(x) for x in invoke("query", "--index", tmp_path / "ix", "--steps", "2", "--format", "jsonl",
                                          "cafe").stdout.splitlines()]
    assert any("\ufffd" in x["text"] for x in r["retrieved"])


def test_a_10mb_line_without_sentence_end(tmp_path, tiny_model):
    corpus = tmp_path / "long.txt"
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 140_000)
    corpus.write_text(words[: 10 * 1024 * 1024])
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model, "--backend", "exact")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["chunks"] > 10 * 1024 * 1024 / (8 * 128)  # cut at the token cap, not kept whole
    from qrag_cli.store.reader import IndexReader

    r = IndexReader(tmp_path / "ix")
    assert max(len(r.chunk(i).text) for i in range(0, len(r), 997)) <= 8 * 128


def test_existing_out_needs_overwrite_and_a_failed_overwrite_keeps_the_old_index(index_dir, tiny_model, tmp_path):
    corpus = tmp_path / "story.txt"
    res = invoke("index", corpus, "--out", index_dir, "--model", tiny_model)
    one_line_error(res, 2, "exists")
    before = (current_folder(index_dir) / "manifest.json").read_text()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    res = invoke("index", empty, "--out", index_dir, "--model", tiny_model, "--overwrite")
    one_line_error(res, 2, "empty corpus")
    assert (current_folder(index_dir) / "manifest.json").read_text() == before and leftovers(tmp_path) == []
    corpus.write_text(STORY * 2)
    res = invoke("index", corpus, "--out", index_dir, "--model", tiny_model, "--overwrite")
    assert res.exit_code == 0 and json.loads(res.stdout)["chunks"] == 6
    assert leftovers(tmp_path) == []


def test_missing_index_and_unfinished_folder(tmp_path):
    one_line_error(invoke("query", "--index", tmp_path / "nope", "q?"), 2, "no index at")
    (tmp_path / "half").mkdir()
    res = invoke("query", "--index", tmp_path / "half", "q?")
    one_line_error(res, 2, "is not a qrag index")
    assert "--overwrite" not in res.stderr  # it would replace a folder that is not an index


def test_incompatible_format_version(index_dir):
    m = json.loads((current_folder(index_dir) / "manifest.json").read_text())
    m["format_version"] = 3
    (current_folder(index_dir) / "manifest.json").write_text(json.dumps(m))
    one_line_error(invoke("query", "--index", index_dir, "q?"), 3, "format version 3")


def test_truncated_vectors(index_dir):
    p = current_folder(index_dir) / "vectors.npy"
    p.write_bytes(p.read_bytes()[:-64])
    one_line_error(invoke("query", "--index", index_dir, "q?"), 3, "truncated or edited")


def test_model_that_does_not_match_the_index(index_dir, other_tiny_model):
    res = invoke("query", "--index", index_dir, "--model", other_tiny_model, "q?")
    one_line_error(res, 3, "is not the model the index")
    res = invoke("query", "--index", index_dir, "--model", "default", "--quiet", "q?")  # no first-use export note
    one_line_error(res, 3, "dimension 384")


def test_missing_model_folder(tmp_path):
    corpus = tmp_path / "story.txt"
    corpus.write_text(STORY)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tmp_path / "no-model")
    one_line_error(res, 1, "model folder not found")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--backend", "faiss"], "unknown search backend"),
        (["--chunker", "words"], "unknown chunker"),
        (["--chunker", "tokens", "--window", "8", "--overlap", "8"], "--overlap"),
    ],
)
def test_bad_options(tmp_path, tiny_model, args, fragment):
    corpus = tmp_path / "story.txt"
    corpus.write_text(STORY)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model, *args)
    one_line_error(res, 2, fragment)
    assert not (tmp_path / "ix").exists() and leftovers(tmp_path) == []


def test_bad_jsonl_line(tmp_path, tiny_model):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": 1, "text": "fine."}\n{"id": 2, "text": \n')
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    one_line_error(res, 2, "line 2")


def test_bad_question_json_on_stdin(index_dir):
    one_line_error(invoke("query", "--index", index_dir, input='{"id": 1, "q": "x"}\n'), 2, "'question'")
    one_line_error(invoke("query", "--index", index_dir, input="\n\n"), 2, "no question")


def test_ctrl_c_during_build_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    from qrag_cli.store import writer

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.IndexWriter, "add", interrupted)
    corpus = tmp_path / "story.txt"
    corpus.write_text(STORY)
    res = invoke("index", corpus, "--out", tmp_path / "ix", "--model", tiny_model)
    assert res.exit_code == 130 and "interrupted" in res.stderr
    assert not (tmp_path / "ix").exists() and leftovers(tmp_path) == []


def test_debug_shows_the_traceback(tmp_path, tiny_model):
    res = invoke("--debug", "index", tmp_path / "nope.txt", "--model", tiny_model)
    assert res.exit_code != 0 and res.exception is not None
    assert type(res.exception).__name__ == "InputError"


def test_rebuild_reads_vectors_it_wrote(index_dir):
    from qrag_cli.store.reader import IndexReader

    r = IndexReader(index_dir)
    assert r.vectors.dtype == np.float16 and len(r) == 3
