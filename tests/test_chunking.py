"""Tests of token windows (qrag_cli.corpus.windows) and whole-corpus chunking."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from qrag_cli.corpus.chunking import iter_chunks
from qrag_cli.corpus.readers import open_corpus
from qrag_cli.corpus.sentences import TOKEN
from qrag_cli.corpus.types import Chunk
from qrag_cli.corpus.windows import MAX_TOKEN_CHARS, split_windows
from qrag_cli.errors import InputError
from qrag_cli.settings import ChunkerSettings


def blocks_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


# --- windows ----------------------------------------------------------------------------------


def test_windows_with_overlap() -> None:
    text = words(10)
    out = list(split_windows([text], window=4, overlap=1))
    assert [t for _, _, t in out] == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    for s, e, t in out:
        assert text[s:e] == t


def test_windows_last_window_shorter_and_never_redundant() -> None:
    assert [t for _, _, t in split_windows([words(11)], 4, 1)][-1] == "w9 w10"
    assert [t for _, _, t in split_windows([words(3)], 4, 1)] == ["w0 w1 w2"]
    assert len(list(split_windows([words(100)], 64, 16))) == 2
    assert len(list(split_windows([words(64)], 64, 16))) == 1
    assert [t for _, _, t in split_windows([words(6)], 3, 0)] == ["w0 w1 w2", "w3 w4 w5"]


def test_windows_tokens_and_offsets() -> None:
    text = "  Hello,\n  world!  It's   fine.\n"
    expected = [(2, 16, "Hello, world"), (11, 21, "world! It"), (19, 23, "It's"), (22, 31, "s fine.")]
    for size in (1, 2, 5, 100):
        assert list(split_windows(blocks_of(text, size), window=3, overlap=1)) == expected
    for s, e, t in expected:
        assert " ".join(text[s:e].split()) == t


@pytest.mark.parametrize("size", [1, 3, 50, 10**6])
def test_windows_block_independent(size: int) -> None:
    text = ("It was the best of times, it was the worst of times.\n" * 40) + "x" * 3000 + " end"
    whole = list(split_windows([text], 16, 4))
    assert list(split_windows(blocks_of(text, size), 16, 4)) == whole
    for s, e, t in whole:
        assert " ".join(text[s:e].split()) == t
        assert len(TOKEN.findall(t)) <= 16 + 3  # a cut giant token re-tokenises as one


def test_windows_giant_token_is_cut() -> None:
    text = "a" * (MAX_TOKEN_CHARS * 5 + 10)
    out = list(split_windows(blocks_of(text, 700), window=2, overlap=0))
    assert [(e - s) for s, e, _ in out] == [2 * MAX_TOKEN_CHARS, 2 * MAX_TOKEN_CHARS, MAX_TOKEN_CHARS + 10]


def test_windows_whitespace_only() -> None:
    assert list(split_windows(["   \n\n "])) == []
    assert list(split_windows([])) == []


def test_windows_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(split_windows(["x"], window=4, overlap=4))


# --- iter_chunks ------------------------------------------------------------------------------


def write_jsonl(path: Path, docs: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs), encoding="utf-8")


def check_offsets(chunks: list[Chunk], texts: dict[str, str]) -> None:
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert " ".join(texts[c.doc][c.start : c.end].split()) == c.text


def test_sentence_chunks_across_documents(tmp_path: Path) -> None:
    docs = [
        ("d1", 'CHAPTER I.\n\n"I am here," said he. "Come in!" He came.'),
        ("d2", ""),
        ("d3", "Mr. Smith\nwent home. The end."),
    ]
    p = tmp_path / "c.jsonl"
    write_jsonl(p, docs)
    chunks = list(iter_chunks(open_corpus(p), ChunkerSettings()))
    assert [(c.doc, c.text) for c in chunks] == [
        ("d1", "CHAPTER I."),
        ("d1", '"I am here," said he.'),
        ("d1", '"Come in!"'),
        ("d1", "He came."),
        ("d3", "Mr. Smith went home."),
        ("d3", "The end."),
    ]
    check_offsets(chunks, dict(docs))


def test_token_chunks_across_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbf" + words(10).encode() + b"\r\n")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(words(5).encode()))
    settings = ChunkerSettings(kind="tokens", window=4, overlap=2)
    chunks = list(iter_chunks(open_corpus(tmp_path, block_chars=3), settings))
    assert [(c.doc, c.text) for c in chunks] == [
        ("a.txt", "w0 w1 w2 w3"),
        ("a.txt", "w2 w3 w4 w5"),
        ("a.txt", "w4 w5 w6 w7"),
        ("a.txt", "w6 w7 w8 w9"),
        ("b.txt", "w0 w1 w2 w3"),
        ("b.txt", "w2 w3 w4"),
    ]
    check_offsets(chunks, {"a.txt": words(10) + "\n", "b.txt": words(5)})


def test_max_sentence_tokens_setting(tmp_path: Path) -> None:
    p = tmp_path / "long.txt"
    text = "Start " + words(50) + " end."
    p.write_text(text, encoding="utf-8")
    chunks = list(iter_chunks(open_corpus(p), ChunkerSettings(max_sentence_tokens=8)))
    assert [len(TOKEN.findall(c.text)) for c in chunks] == [8] * 6 + [5]  # 53 tokens
    check_offsets(chunks, {"long": text})


def test_empty_corpus_yields_nothing(tmp_path: Path) -> None:
    p = tmp_path / "empty.txt"
    p.write_text("  \n\n ", encoding="utf-8")
    assert list(iter_chunks(open_corpus(p), ChunkerSettings())) == []
    q = tmp_path / "empty.jsonl"
    q.write_text("\n", encoding="utf-8")
    assert list(iter_chunks(open_corpus(q), ChunkerSettings(kind="tokens"))) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ChunkerSettings(kind="words"), "unknown chunker"),
        (ChunkerSettings(max_sentence_tokens=4), "--max-sentence-tokens"),
        (ChunkerSettings(kind="tokens", window=0), "--window"),
        (ChunkerSettings(kind="tokens", window=8, overlap=8), "--overlap"),
    ],
)
def test_settings_validated_before_reading(tmp_path: Path, settings: ChunkerSettings, message: str) -> None:
    p = tmp_path / "a.txt"
    p.write_text("Text.", encoding="utf-8")
    corpus = open_corpus(p)
    with pytest.raises(InputError, match=message):
        iter_chunks(corpus, settings)
    assert corpus.bytes_read == 0


# --- lines and paragraphs -------------------------------------------------------------------------

RECORD_TEXT = ("  first line  \nsecond line, wrapped\n\n \t\nthird\r\n" + "w " * 40 + "\n\nlast para\nends here")


def test_lines_and_paragraphs_chunkers(tmp_path: Path) -> None:
    p = tmp_path / "r.txt"
    p.write_text(RECORD_TEXT, encoding="utf-8")
    lines = list(iter_chunks(open_corpus(p, block_chars=3), ChunkerSettings(kind="lines", max_sentence_tokens=16)))
    assert [c.text for c in lines] == ["first line", "second line, wrapped", "third", " ".join(["w"] * 16),
                                       " ".join(["w"] * 16), " ".join(["w"] * 8), "last para", "ends here"]
    check_offsets(lines, {"r": RECORD_TEXT.replace("\r\n", "\n")})  # the reader reads \r\n as \n
    paras = list(iter_chunks(open_corpus(p), ChunkerSettings(kind="paragraphs")))
    assert [c.text for c in paras] == ["first line second line, wrapped", "third " + " ".join(["w"] * 40),
                                       "last para ends here"]
    check_offsets(paras, {"r": RECORD_TEXT.replace("\r\n", "\n")})


@pytest.mark.parametrize("paragraphs", [False, True])
@pytest.mark.parametrize("size", [1, 2, 7, 100, 10**6])
def test_records_block_independent(size: int, paragraphs: bool) -> None:
    from qrag_cli.corpus.records import split_records

    text = (RECORD_TEXT + "\n" + "x" * 300 + " y\n\n\n") * 4
    whole = list(split_records([text], 16, paragraphs))
    assert list(split_records(blocks_of(text, size), 16, paragraphs)) == whole
    for s, e, t in whole:
        assert text[s:e] == text[s:e].strip() and " ".join(text[s:e].split()) == t
        assert len(TOKEN.findall(t)) <= 16 and len(t) <= 128
