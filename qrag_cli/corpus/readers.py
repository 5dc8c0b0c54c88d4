"""Open a corpus (a file, a folder or stdin) and stream its documents in bounded memory.

Inputs
    * ``X.txt`` (or any file with an unknown suffix): one document, id = the file name stem.
    * ``X.jsonl``: one document per non-blank line ``{"id": ..., "text": ...}``; the id is any
      JSON scalar turned into a string (missing or null: the 0-based line number).
    * a folder: every ``*.txt`` / ``*.jsonl`` file in it (also ``.gz`` / ``.xz``), recursively,
      sorted by relative path; a ``.txt`` document's id is its relative path without the
      compression suffix (``sub/book.txt``); JSONL files keep the ids of their lines.
    * ``-``: stdin, read as JSONL when its first non-blank byte is ``{``, else as one text
      document with id ``stdin``.
    * ``.gz`` / ``.xz`` files are decompressed on the fly.

Decisions
    * Text is decoded as UTF-8; a leading BOM is dropped. Bytes that are not valid UTF-8 are NOT
      an error: they are replaced with U+FFFD (as ``errors="replace"`` does) and counted, and when
      the document (for JSONL: the file) ends, ``on_warning`` gets
      ``"PATH: N bytes were not valid UTF-8 and were replaced with U+FFFD"``. Old Latin-1 texts
      thus index with a warning instead of failing.
    * A NUL byte in the first 8 KiB of an input means binary data: `InputError`.
    * Line endings are normalised BEFORE anything else sees the text: ``\\r\\n`` and a lone ``\\r``
      become ``\\n``. All chunk offsets are offsets into this decoded, normalised text.
    * Nothing holds a whole file: text files are read in blocks of ``block_chars`` bytes (one
      block decodes to at most that many characters); JSONL holds one line at a time.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError
from .inputs import (
    BOM,
    HEAD_BYTES,
    Input,
    Utf8Decoder,
    decode_bytes,
    normalise_newlines,
    open_file,
)
from .types import Document

_TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.xz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.xz")
_COMPRESSION_SUFFIXES = (".gz", ".xz")

Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=2)


def _text_blocks(src: Input, block_bytes: int, on_warning: Warn) -> Iterator[str]:
    """The decoded, newline-normalised text of `src` in blocks; warns about replaced bytes."""
    src.check_binary()
    decoder = Utf8Decoder()
    bad = 0
    carry = ""  # a trailing "\r" waits for the next block (it may be half of "\r\n")
    while True:
        data = src.read(block_bytes)
        final = not data
        text, replaced = decoder.decode(data, final)
        bad += replaced
        if carry:
            text, carry = carry + text, ""
        if not final and text.endswith("\r"):
            text, carry = text[:-1], "\r"
        text = normalise_newlines(text)
        if text:
            yield text
        if final:
            break
    if bad:
        on_warning(f"{src.display}: {bad} bytes were not valid UTF-8 and were replaced with U+FFFD")


def _lines(src: Input, block_bytes: int) -> Iterator[bytes]:
    """The lines of `src` (without the newline); one line is held at a time."""
    parts: list[bytes] = []
    while True:
        data = src.read(block_bytes)
        if not data:
            break
        pos = 0
        while True:
            i = data.find(b"\n", pos)
            if i < 0:
                parts.append(data[pos:])
                break
            parts.append(data[pos:i])
            yield b"".join(parts)
            parts = []
            pos = i + 1
    if any(parts):
        yield b"".join(parts)


def _jsonl_documents(src: Input, block_chars: int, on_warning: Warn) -> Iterator[Document]:
    """One document per non-blank JSONL line of `src`."""
    src.check_binary()
    bad = 0
    seen: dict[str, int] = {}  # id -> line: a repeated id would merge two documents' chunks
    for lineno, line in enumerate(_lines(src, block_chars)):
        if lineno == 0 and line.startswith(BOM):
            line = line[len(BOM) :]
        text_line, n = decode_bytes(line)
        bad += n
        if not text_line.strip():
            continue
        where = f"{src.display} line {lineno + 1}"
        try:
            obj = json.loads(text_line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: bad JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputError(f'{where}: expected a JSON object like {{"id": ..., "text": ...}}')
        text = obj.get("text")
        if not isinstance(text, str):
            raise InputError(f'{where}: "text" is missing or not a string')
        doc_id = obj.get("id")
        if doc_id is None:
            doc_id = str(lineno)
        elif isinstance(doc_id, (bool, int, float)):
            doc_id = json.dumps(doc_id)
        elif not isinstance(doc_id, str):
            raise InputError(f'{where}: "id" must be a string or a number')
        if doc_id in seen:
            raise InputError(f"{where}: duplicate document id {doc_id} (also on line {seen[doc_id]}; the number 1 "
                             'and the string "1" are the same id): give every document its own id')
        seen[doc_id] = lineno + 1
        yield Document(doc_id, _slices(normalise_newlines(text), block_chars))
    if bad:
        on_warning(f"{src.display}: {bad} bytes were not valid UTF-8 and were replaced with U+FFFD")


def _slices(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def _strip_suffixes(name: str, suffixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for suf in suffixes:
            if name.lower().endswith(suf) and len(name) > len(suf):
                name, changed = name[: -len(suf)], True
    return name


def _is_jsonl(name: str) -> bool:
    return name.lower().endswith(_JSONL_SUFFIXES)


class Corpus:
    """A corpus opened by `open_corpus`: its name, its size and a single pass over its documents."""

    def __init__(
        self,
        name: str,
        files: list[tuple[Path, str, str]] | None,
        block_chars: int,
        on_warning: Warn,
    ) -> None:
        self.name = name
        """Short name for a default output folder (file name without suffixes, folder, 'stdin')."""
        self._files = files  # (path, path for messages, id of a text document); None: stdin
        self._block = block_chars
        self._warn = on_warning
        self._current: Input | None = None
        self._done_bytes = 0
        self._started = False
        self.bytes_total: int | None = None
        """Sum of the on-disk sizes of the input files (None for stdin)."""
        if files is not None:
            total = 0
            for path, _, _ in files:
                try:
                    total += path.stat().st_size
                except OSError:
                    pass
            self.bytes_total = total

    @property
    def bytes_read(self) -> int:
        """On-disk bytes consumed so far (compressed bytes for .gz/.xz), for a progress bar."""
        cur = self._current
        return self._done_bytes + (cur.raw_position() if cur is not None else 0)

    def documents(self) -> Iterator[Document]:
        """The documents in reading order. Single pass: a second call raises `InputError`.

        Read a document's `blocks` before asking for the next document: moving on closes them.
        """
        if self._started:
            raise InputError(f"corpus {self.name!r} can be read only once")
        self._started = True
        if self._files is None:
            yield from self._stdin_documents()
            return
        for path, display, doc_id in self._files:
            src = open_file(path, display)
            self._current = src
            try:
                if _is_jsonl(path.name):
                    yield from self._drain(_jsonl_documents(src, self._block, self._warn))
                else:
                    yield from self._drain(iter([Document(doc_id, _text_blocks(src, self._block, self._warn))]))
            finally:
                src.close()
                self._current = None
            try:
                self._done_bytes += path.stat().st_size
            except OSError:
                pass

    def _stdin_documents(self) -> Iterator[Document]:
        stream = sys.stdin.buffer
        src = Input("stdin", stream, None)
        self._current = src
        try:
            want = HEAD_BYTES
            while True:  # look ahead (boundedly) for the first non-blank byte
                head = src.peek(want)
                body = head[len(BOM) :] if head.startswith(BOM) else head
                if body.lstrip() or len(head) < want or want >= (1 << 20):
                    break
                want *= 2
            if body.lstrip().startswith(b"{"):
                yield from self._drain(_jsonl_documents(src, self._block, self._warn))
            else:
                yield from self._drain(iter([Document("stdin", _text_blocks(src, self._block, self._warn))]))
        finally:
            self._done_bytes = src.consumed
            self._current = None

    @staticmethod
    def _drain(docs: Iterator[Document]) -> Iterator[Document]:
        """Yield `docs`, closing each document's block stream once the caller moves on."""
        for doc in docs:
            yield doc
            close = getattr(doc.blocks, "close", None)
            if close is not None:
                close()


def open_corpus(
    source: str | os.PathLike[str],
    *,
    block_chars: int = 1 << 20,
    on_warning: Warn | None = None,
) -> Corpus:
    """Open `source` (a .txt/.jsonl file, maybe .gz/.xz, a folder, or '-' for stdin).

    Only the existence of the path and the folder listing are checked here; content errors
    (binary data, bad JSON, corrupt compression) raise `InputError` while documents are read.
    """
    warn = on_warning or _default_warn
    if block_chars < 1:
        raise InputError("block_chars must be at least 1")
    text = os.fspath(source)
    if text == "-":
        return Corpus("stdin", None, block_chars, warn)
    path = Path(text)
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise InputError(f"no .txt or .jsonl files (also .gz/.xz) in folder: {text}")
        name = path.resolve().name or "corpus"
        return Corpus(name, files, block_chars, warn)
    if not path.exists():
        raise InputError(f"no such file or folder: {text}")
    base = _strip_suffixes(path.name, _COMPRESSION_SUFFIXES)
    if base.lower().endswith((".txt", ".jsonl")):
        doc_id = base.rsplit(".", 1)[0]
    else:
        doc_id = Path(base).stem or base
    name = _strip_suffixes(path.name, _COMPRESSION_SUFFIXES + (".txt", ".jsonl"))
    return Corpus(name or "corpus", [(path, text, doc_id)], block_chars, warn)


def _folder_files(root: Path) -> list[tuple[Path, str, str]]:
    """Every text/JSONL file under `root` as (path, path for messages, id), by relative path."""
    found: list[tuple[str, Path]] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for fn in filenames:
            if fn.lower().endswith(_TEXT_SUFFIXES + _JSONL_SUFFIXES):
                full = Path(dirpath) / fn
                found.append((full.relative_to(root).as_posix(), full))
    found.sort()
    out = []
    for rel, full in found:
        doc_id = rel[:-3] if rel.lower().endswith(_COMPRESSION_SUFFIXES) else rel
        out.append((full, str(full), doc_id))
    return out
