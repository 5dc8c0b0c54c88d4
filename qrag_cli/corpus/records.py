"""Line and paragraph chunkers (``--chunker lines`` / ``--chunker paragraphs``), streamed.

`lines`: every non-blank line is a chunk. `paragraphs`: every run of non-blank lines between blank
lines (lines holding only whitespace) is a chunk. A chunk longer than `max_tokens` word/punctuation
tokens (or ``8 * max_tokens`` characters) is cut into pieces exactly like a long sentence
(`sentences._pieces`). Offsets and the result do not depend on how the text is cut into blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .sentences import _NONSPACE, _pieces, blocks_then_end, normalise

_LINE = re.compile(r"\n")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")


def split_records(blocks: Iterable[str], max_tokens: int = 128,
                  paragraphs: bool = False) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, text)`` per line (or paragraph) of the concatenation of `blocks`."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    sep = _PARAGRAPH if paragraphs else _LINE
    max_chars = 8 * max_tokens
    buf, base, start, scan = "", 0, 0, 0  # start: where the pending record begins in buf

    def cut(s: int, e: int) -> list[tuple[int, int]]:
        m = _NONSPACE.search(buf, s, e)
        return _pieces(buf, m.start(), e, max_tokens, max_chars) if m else []

    for block, final in blocks_then_end(blocks):
        buf += block
        n = len(buf)
        out: list[tuple[int, int]] = []
        while True:
            m = sep.search(buf, scan)
            if m is None:
                if final:
                    out.extend(cut(start, n))
                    start = scan = n
                elif paragraphs:  # a blank line may begin at the last newline
                    nl = buf.rfind("\n", scan)
                    scan = nl if nl >= 0 and _NONSPACE.search(buf, nl) is None else n
                else:
                    scan = n
                break
            out.extend(cut(start, m.start()))
            start = scan = m.end()
        first = _NONSPACE.search(buf, start, scan)
        if first is not None and scan - first.start() > max_chars:
            # a long record: emit the finished pieces, keep the last one open
            pieces = _pieces(buf, first.start(), scan, max_tokens, max_chars)
            if len(pieces) > 1:
                out.extend(pieces[:-1])
                start = pieces[-1][0]
        for s, e in out:
            yield base + s, base + e, normalise(buf[s:e])
        keep = min(start, scan)
        if keep > 0 and (keep > 65536 or keep * 2 > n):
            buf = buf[keep:]
            base += keep
            scan -= keep
            start -= keep
