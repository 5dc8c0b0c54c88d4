"""The byte side of reading a corpus: one input's decompressed stream, its head, its decoding.

`Input` wraps a file (``.gz`` / ``.xz`` decompressed on the fly) or stdin with a peekable head (the
binary check and the stdin format sniff read it) and the raw on-disk position (progress).
`decode_bytes` and `Utf8Decoder` decode UTF-8, replacing and counting invalid bytes;
`normalise_newlines` turns ``\r\n`` and a lone ``\r`` into ``\n``.
"""

from __future__ import annotations

import codecs
import lzma
import sys
import threading
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

HEAD_BYTES = 8192
BOM = b"\xef\xbb\xbf"
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class _BadBytes(threading.local):
    """Per-thread count of the undecodable bytes seen by the current decode call."""

    n: int = 0


_BAD = _BadBytes()
_ERRORS = "qrag-count-replace"


def _count_replace(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: like ``replace`` but counts the replaced bytes in `_BAD`."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _BAD.n += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(_ERRORS, _count_replace)


def decode_bytes(data: bytes) -> tuple[str, int]:
    """`data` decoded as UTF-8 with replacement, and how many bytes were replaced."""
    _BAD.n = 0
    text = data.decode("utf-8", _ERRORS)
    return text, _BAD.n


class Utf8Decoder:
    """Incremental UTF-8 (a leading BOM dropped); invalid bytes replaced with U+FFFD and counted."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors=_ERRORS)

    def decode(self, data: bytes, final: bool) -> tuple[str, int]:
        _BAD.n = 0
        text = self._decoder.decode(data, final)
        return text, _BAD.n


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


class Input:
    """The decompressed byte stream of one input, with a peekable head and raw progress."""

    def __init__(self, display: str, stream: BinaryIO, raw: BinaryIO | None) -> None:
        self.display = display
        self._stream = stream
        self._raw = raw  # the on-disk file under a decompressor (None: stdin)
        self._head = b""
        self._eof = False
        self.consumed = 0  # bytes read from `stream` (used as progress for stdin)

    def _read(self, n: int) -> bytes:
        if self._eof:
            return b""
        try:
            data = self._stream.read(n)
        except READ_ERRORS as exc:
            raise InputError(f"{self.display}: cannot read (corrupt or truncated file?): {exc}") from exc
        if not data:
            self._eof = True
        self.consumed += len(data)
        return data

    def peek(self, n: int) -> bytes:
        """At least `n` bytes from the current position (fewer only at the end), not consumed."""
        while len(self._head) < n:
            data = self._read(n - len(self._head))
            if not data:
                break
            self._head += data
        return self._head

    def check_binary(self) -> None:
        """Raise `InputError` when a NUL byte appears in the first 8 KiB."""
        if b"\x00" in self.peek(HEAD_BYTES)[:HEAD_BYTES]:
            raise InputError(f"{self.display} looks binary (NUL bytes); qrag reads UTF-8 text")

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (maybe fewer); ``b""`` at the end."""
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._read(n - len(data))
            return data
        return self._read(n)

    def raw_position(self) -> int:
        """On-disk bytes consumed so far (compressed bytes for .gz/.xz)."""
        if self._raw is None:
            return self.consumed
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        for f in (self._stream, self._raw):
            if f is not None and f is not getattr(sys.stdin, "buffer", None):
                try:
                    f.close()
                except READ_ERRORS:
                    pass


def open_file(path: Path, display: str) -> Input:
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by Input.close
    except OSError as exc:
        raise InputError(f"cannot open {display}: {exc.strerror or exc}") from exc
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return Input(display, gzip.GzipFile(fileobj=raw, mode="rb"), raw)  # type: ignore[arg-type]
    if name.endswith(".xz"):
        return Input(display, lzma.LZMAFile(raw, mode="rb"), raw)  # type: ignore[arg-type]
    return Input(display, raw, raw)
