"""Tests of qrag_cli.corpus.readers: every input kind, every input error, decoding rules."""

from __future__ import annotations

import gzip
import io
import lzma
import sys
import types
from pathlib import Path

import pytest

from qrag_cli.corpus.readers import open_corpus
from qrag_cli.errors import InputError


def read_all(source, **kw) -> list[tuple[str, str]]:
    """(id, full text) of every document of `source`."""
    corpus = open_corpus(source, **kw)
    return [(d.id, "".join(d.blocks)) for d in corpus.documents()]


def fake_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))


# --- plain text -------------------------------------------------------------------------------


def test_txt_one_document_named_by_stem(tmp_path: Path) -> None:
    p = tmp_path / "my.novel.txt"
    p.write_text("Hello.\nWorld.\n", encoding="utf-8")
    corpus = open_corpus(p)
    assert corpus.name == "my.novel"
    assert corpus.bytes_total == p.stat().st_size
    assert corpus.bytes_read == 0
    assert [(d.id, "".join(d.blocks)) for d in corpus.documents()] == [("my.novel", "Hello.\nWorld.\n")]
    assert corpus.bytes_read == p.stat().st_size


def test_txt_streams_in_blocks(tmp_path: Path) -> None:
    text = "".join(f"Line {i} of the text.\n" for i in range(2000))
    p = tmp_path / "big.txt"
    p.write_text(text, encoding="utf-8")
    docs = open_corpus(p, block_chars=1000).documents()
    doc = next(docs)
    blocks = list(doc.blocks)
    assert len(blocks) > 30
    assert max(len(b) for b in blocks) <= 1001
    assert "".join(blocks) == text


def test_unknown_suffix_is_plain_text(tmp_path: Path) -> None:
    p = tmp_path / "notes.md"
    p.write_text("# Title\n\nSome text.", encoding="utf-8")
    assert read_all(p) == [("notes", "# Title\n\nSome text.")]


def test_bom_stripped_and_line_endings_normalised(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfOne.\r\nTwo.\rThree.\r\n\r\nFour.\r")
    assert read_all(p) == [("a", "One.\nTwo.\nThree.\n\nFour.\n")]


@pytest.mark.parametrize("block", [1, 2, 3, 5])
def test_crlf_split_across_blocks(tmp_path: Path, block: int) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"ab\r\ncd\r\r\nef\r")
    assert read_all(p, block_chars=block) == [("a", "ab\ncd\n\nef\n")]


def test_invalid_utf8_replaced_with_warning(tmp_path: Path) -> None:
    p = tmp_path / "latin.txt"
    p.write_bytes("Caf\xe9 cr\xe8me. Na\xefve.".encode("latin-1"))
    seen: list[str] = []
    docs = read_all(p, on_warning=seen.append)
    assert docs == [("latin", "Caf\ufffd cr\ufffdme. Na\ufffdve.")]
    assert seen == [f"{p}: 3 bytes were not valid UTF-8 and were replaced with U+FFFD"]


def test_invalid_utf8_split_across_blocks_counts_once(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes("é ok ".encode() * 50 + b"\xff" + "é".encode() * 50)
    seen: list[str] = []
    (doc,) = read_all(p, block_chars=7, on_warning=seen.append)
    assert doc[1] == "é ok " * 50 + "\ufffd" + "é" * 50
    assert seen == [f"{p}: 1 bytes were not valid UTF-8 and were replaced with U+FFFD"]


def test_default_warning_is_warnings_warn(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"bad \xff byte")
    with pytest.warns(UserWarning, match="1 bytes were not valid UTF-8"):
        read_all(p)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="^no such file or folder: ") as err:
        open_corpus(missing)
    assert str(err.value) == f"no such file or folder: {missing}"


def test_binary_file_rejected(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_bytes(b"text\x00\x01\x02 more")
    with pytest.raises(InputError) as err:
        read_all(p)
    assert str(err.value) == f"{p} looks binary (NUL bytes); qrag reads UTF-8 text"


def test_nul_after_8k_is_not_binary(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_bytes(b"a" * 9000 + b"\x00")
    assert read_all(p)[0][1] == "a" * 9000 + "\x00"


# --- compressed -------------------------------------------------------------------------------


def test_gz_and_xz(tmp_path: Path) -> None:
    text = "Compressed text.\n" * 1000
    gz = tmp_path / "book.txt.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    xz = tmp_path / "book2.txt.xz"
    xz.write_bytes(lzma.compress(text.encode()))
    for path, doc_id in ((gz, "book"), (xz, "book2")):
        corpus = open_corpus(path, block_chars=512)
        assert corpus.name == doc_id
        assert [(d.id, "".join(d.blocks)) for d in corpus.documents()] == [(doc_id, text)]
        assert corpus.bytes_total == path.stat().st_size
        assert corpus.bytes_read == path.stat().st_size


def test_bytes_read_counts_compressed_bytes(tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) + str(rng.random()) for _ in range(60000))
    path = tmp_path / "big.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    corpus = open_corpus(path, block_chars=4096)
    docs = corpus.documents()
    doc = next(docs)
    seen = []
    for _ in doc.blocks:
        seen.append(corpus.bytes_read)
    assert seen == sorted(seen)
    assert 0 < seen[len(seen) // 2] < path.stat().st_size  # partway, in compressed bytes
    assert max(seen) <= path.stat().st_size


@pytest.mark.parametrize("suffix", [".txt.gz", ".txt.xz", ".jsonl.gz"])
def test_corrupt_compressed_file(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"bad{suffix}"
    good = gzip.compress(b"x" * 100) if suffix.endswith(".gz") else lzma.compress(b"x" * 100)
    p.write_bytes(good[:10] + b"garbage garbage garbage")
    with pytest.raises(InputError, match=str(p).replace("\\", "\\\\")):
        read_all(p)
    p.write_bytes(b"not compressed at all")
    with pytest.raises(InputError, match="cannot read"):
        read_all(p)


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_documents(tmp_path: Path) -> None:
    p = tmp_path / "docs.jsonl"
    p.write_text(
        '{"id": "a", "text": "First doc.\\r\\nLine two."}\n'
        "\n"
        '{"id": 7, "text": "Int id."}\n'
        '   \n'
        '{"text": "No id."}\n'
        '{"id": null, "text": "Null id."}\n'
        '{"id": 1.5, "text": ""}\n'
        '{"id": true, "text": "Bool id.", "extra": [1, 2]}',
        encoding="utf-8",
    )
    corpus = open_corpus(p)
    assert corpus.name == "docs"
    docs = [(d.id, "".join(d.blocks)) for d in corpus.documents()]
    assert docs == [
        ("a", "First doc.\nLine two."),
        ("7", "Int id."),
        ("4", "No id."),
        ("5", "Null id."),
        ("1.5", ""),
        ("true", "Bool id."),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json}", "bad JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('"text"', "expected a JSON object"),
        ('{"id": "x"}', '"text" is missing or not a string'),
        ('{"id": "x", "text": 5}', '"text" is missing or not a string'),
        ('{"id": ["x"], "text": "t"}', '"id" must be a string or a number'),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1, "text": "ok"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_all(p)
    assert str(err.value).startswith(f"{p} line 3: ")
    assert message in str(err.value)


def test_jsonl_bom_and_bad_bytes(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "caf\xe9"}\n{"id": "b", "text": "fine"}\n')
    seen: list[str] = []
    assert read_all(p, on_warning=seen.append) == [("a", "caf\ufffd"), ("b", "fine")]
    assert seen == [f"{p}: 1 bytes were not valid UTF-8 and were replaced with U+FFFD"]


def test_jsonl_binary_rejected(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"text": "a\x00"}\n')
    with pytest.raises(InputError, match="looks binary"):
        read_all(p)


# --- folders ----------------------------------------------------------------------------------


def test_folder_recursive_sorted(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("A text.", encoding="utf-8")
    (root / "b" / "deep" / "c.txt.xz").write_bytes(lzma.compress(b"C text."))
    (root / "b" / "b.txt.gz").write_bytes(gzip.compress(b"B text."))
    (root / "b" / "more.jsonl").write_text('{"id": "j1", "text": "J one."}\n', encoding="utf-8")
    (root / "b" / "skip.md").write_text("ignored", encoding="utf-8")
    (root / "z.json").write_text("{}", encoding="utf-8")
    corpus = open_corpus(root)
    assert corpus.name == "lib"
    assert read_all(root) == [
        ("a.txt", "A text."),
        ("b/b.txt", "B text."),
        ("b/deep/c.txt", "C text."),
        ("j1", "J one."),
    ]
    sizes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".gz", ".xz", ".jsonl"))
    assert corpus.bytes_total == sizes


def test_folder_progress(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text("x" * 100, encoding="utf-8")
    corpus = open_corpus(tmp_path)
    progress = []
    for doc in corpus.documents():
        list(doc.blocks)
        progress.append(corpus.bytes_read)
    assert progress[-1] == corpus.bytes_total == 300
    assert progress == sorted(progress)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no corpus here", encoding="utf-8")
    with pytest.raises(InputError, match="no .txt or .jsonl files"):
        open_corpus(tmp_path)


def test_binary_file_in_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\x00\x00")
    with pytest.raises(InputError, match=r"b\.txt looks binary"):
        read_all(tmp_path)


def test_single_pass(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("x", encoding="utf-8")
    corpus = open_corpus(p)
    list(corpus.documents())
    with pytest.raises(InputError, match="only once"):
        list(corpus.documents())


# --- stdin ------------------------------------------------------------------------------------


def test_stdin_text(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\n\n  Piped text.\r\nMore."
    fake_stdin(monkeypatch, data)
    corpus = open_corpus("-", block_chars=4)
    assert corpus.name == "stdin"
    assert corpus.bytes_total is None
    assert [(d.id, "".join(d.blocks)) for d in corpus.documents()] == [("stdin", "\n\n  Piped text.\nMore.")]
    assert corpus.bytes_read == len(data)


def test_stdin_jsonl(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stdin(monkeypatch, b'\xef\xbb\xbf\n  {"id": "x", "text": "One."}\n{"text": "Two."}\n')
    assert read_all("-") == [("x", "One."), ("2", "Two.")]


def test_stdin_empty_and_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stdin(monkeypatch, b"")
    assert read_all("-") == [("stdin", "")]
    fake_stdin(monkeypatch, b"abc\x00")
    with pytest.raises(InputError, match="^stdin looks binary"):
        read_all("-")


@pytest.mark.parametrize("lines, first, again", [
    (['{"id": "a", "text": "x"}', '{"id": "b", "text": "y"}', '{"id": "a", "text": "z"}'], 1, 3),
    (['{"id": 1, "text": "x"}', '{"id": "1", "text": "y"}'], 1, 2),  # not silently one document
])
def test_jsonl_duplicate_ids_are_refused_with_both_line_numbers(tmp_path: Path, lines, first, again) -> None:
    p = tmp_path / "docs.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"line {again}: duplicate document id .*also on line {first}"):
        read_all(p)
