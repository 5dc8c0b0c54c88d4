"""A streaming, rule-based sentence splitter for prose (tuned on Project Gutenberg novels).

A sentence ends
    * at a blank line (a paragraph break), always: a heading like ``CHAPTER I.`` alone in its
      paragraph is a sentence of its own;
    * at a single newline that ends a record (see below); any other single newline is just a
      space (the hard line wraps of Project Gutenberg prose);
    * after terminal punctuation (``. ! ? …`` and runs like ``?!``, ``...``) plus any closing
      quotes/brackets/italics markers (``" ' ” ’ ) ] } » _ *``), when whitespace and then an
      uppercase letter, a digit, an opening quote/bracket, ``_`` (or the end of the text) follow.
      So ``"Stop!" cried Mary.`` stays one sentence (lowercase after the quote).
    * after CJK sentence ends ``。！？`` (and closing brackets such as ``」』）``), with or
      without whitespace after them.

Records. A single newline ends the sentence when the next line starts a new record:
    * the next line starts with a list or table marker (``- `` ``* `` ``• `` ``+ `` ``1. `` ``2) ``
      ``(a) `` ``|``), or it or the line before has the shape ``KEY = value`` / ``VAR KEY = value``
      (code, settings, RULER's variable assignments), whatever the lengths; or
    * the next line starts with anything but a lowercase letter and the line before it is short:
      ``L + 1 + F <= 0.75 * W``, where L is that line's length (trailing spaces excluded), F the
      length of the next line's first word and W the widest of the last 32 non-blank lines, that
      line and the next one (each counted up to 256 characters). A hard-wrapped line is full: its
      next word did not fit (L + 1 + F > the wrap width >= W), so wrapped prose is joined, while
      ``VAR ABCDE = 12345`` before a line of prose, verse, addresses, log lines and table rows are
      kept apart. Text wrapped by hand far below its own widest lines can be cut at a line break
      that starts with a capital; lines that start in lowercase are always joined.
    * never after an abbreviation (``Mr. Dr. St. etc. e.g. p.m.`` ..., see `ABBREVIATIONS`), a
      single capital initial (``J. R. R. Tolkien``; not ``I``), dotted initials (``U.S.A.``) or
      ``No.`` before a number.

A sentence longer than `max_tokens` tokens (``\\w+|[^\\w\\s]``) is cut greedily into pieces of at
most `max_tokens` tokens and at most ``8 * max_tokens`` characters; a longer single token (a run
of letters without spaces) is cut at that many characters.

A run of at least ``8 * max_tokens`` whitespace characters also ends a sentence: no piece could
span it anyway, so the output is unchanged, but the run need not be buffered or rescanned.

Streaming: the text arrives in blocks; a small buffer holds only the undecided tail (the current
sentence, at most about ``8 * max_tokens`` characters, plus one block), and every character is
scanned a bounded number of times, so a 10 MB line without a sentence end runs in linear time
and bounded memory. The result does not depend on how the text is cut into blocks.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator

TOKEN = re.compile(r"\w+|[^\w\s]")
"""A token: a run of word characters or one other non-space character."""

_TERM = ".!?…‽"
_CLOSERS = "\"'”’)]}»_*"
_OPENERS = "\"'“‘([{_«¿¡*"
_CJK_TERM = "。！？"
_CJK_CLOSERS = "」』）〕】》〉”’\"'"
# A candidate end: terminal punctuation and closers followed by whitespace, CJK sentence ends, or a
# newline (a blank line when `blank` matched).
_CAND = re.compile(
    rf"(?P<t>[{re.escape(_TERM)}]+)[{re.escape(_CLOSERS)}]*(?=\s)"
    rf"|(?P<cjk>[{_CJK_TERM}]+)[{re.escape(_CJK_CLOSERS)}]*"
    r"|\n(?P<blank>[^\S\n]*\n)?"
)
_NONSPACE = re.compile(r"\S")
_ASSIGNMENT = r"(?:VAR[^\S\n]+)?[A-Za-z_$][\w.$\[\]-]*[^\S\n]*[-+*/:]?=[^\S\n]"
_RECORD_START = re.compile(r"(?:[-*•+]|\d{1,3}[.)]|\(\w{1,3}\))[^\S\n]|\||" + _ASSIGNMENT)
_RECORD_LINE = re.compile(r"[^\S\n]*" + _ASSIGNMENT)
_LINE_CAP = 256  # line lengths are counted up to this many characters
_SHORT = 0.75  # a line is short when L + 1 + F <= _SHORT * W (see the module docstring)
_WIDTH_LINES = 32  # W looks back over this many non-blank lines
_WORD_BEFORE = re.compile(r"[^\W\d_]+(?:\.[^\W\d_]+)*\Z")
_DOTTED_INITIALS = re.compile(r"[^\W\d_](?:\.[^\W\d_])+\Z")
_TAIL_CHARS = frozenset(_TERM + _CLOSERS + _CJK_TERM + _CJK_CLOSERS)
_TAIL_LIMIT = 4096  # how far back (at least) an unfinished candidate end is looked for

ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st prof rev capt col gen lt sgt hon jr sr mt vs etc cf viz ca esp "
    "fig vol ch pp e.g i.e a.m p.m".split()
)
"""Words (lowercase, without the final period) after which a period never ends a sentence."""


def normalise(text: str) -> str:
    """Runs of whitespace to one space, stripped."""
    return " ".join(text.split())


def blocks_then_end(blocks: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """The non-empty blocks as ``(block, False)``, then ``("", True)``: the streaming splitters' loop."""
    for block in blocks:
        if block:
            yield block, False
    yield "", True


def _is_abbreviation(buf: str, dot: int, nxt: str) -> bool:
    """Whether the period at `buf[dot]` ends an abbreviation (so not the sentence)."""
    if dot == 0 or not buf[dot - 1].isalpha():
        return False
    m = _WORD_BEFORE.search(buf, max(0, dot - 8), dot)
    if m is None:
        return False
    s = m.start()
    if s > 0 and (buf[s - 1].isalnum() or buf[s - 1] == "."):
        return False  # the word is longer than the look-behind window, or like "x.Mr"
    word = m.group()
    low = word.lower()
    if low in ABBREVIATIONS:
        return True
    if low == "no":
        return nxt.isdigit()
    if len(word) == 1:
        return word.isupper() and word != "I"
    return _DOTTED_INITIALS.match(word) is not None


def _starts_sentence(c: str) -> bool:
    return c in _OPENERS or c.isdigit() or (c.isalpha() and not c.islower())


def _pieces(buf: str, s: int, e: int, max_tokens: int, max_chars: int) -> list[tuple[int, int]]:
    """`buf[s:e]` cut greedily into spans of <= max_tokens tokens and <= max_chars characters."""
    n = e - s
    if n <= max_tokens or (n <= max_chars and len(TOKEN.findall(buf, s, e)) <= max_tokens):
        last = e
        while last > s and buf[last - 1].isspace():
            last -= 1
        return [(s, last)] if last > s else []
    out: list[tuple[int, int]] = []
    ps = -1  # start of the piece being built (-1: none)
    count = 0
    last_end = s
    for m in TOKEN.finditer(buf, s, e):
        ts, te = m.span()
        while True:
            if ps < 0:
                ps, count = ts, 0
            if count < max_tokens and te - ps <= max_chars:
                count += 1
                last_end = te
                break
            if count == 0:  # one token longer than max_chars: cut it
                out.append((ps, ps + max_chars))
                ts = ps + max_chars
            else:
                out.append((ps, last_end))
            ps = -1
    if ps >= 0:
        out.append((ps, last_end))
    return out


class _Lines:
    """The widths of the last non-blank lines seen, streamed (offsets are absolute)."""

    def __init__(self) -> None:
        self.widths: deque[int] = deque(maxlen=_WIDTH_LINES)
        self.pos = 0  # every newline before this offset has been seen
        self.line_start = 0  # offset where the current line starts

    def track(self, buf: str, base: int, upto: int) -> None:
        """See every newline of the text before absolute offset `upto` (inside `buf`)."""
        p = buf.find("\n", max(self.pos, base) - base, upto - base)
        while p >= 0:
            width = self.width(buf, base, base + p)
            if width:
                self.widths.append(width)
            self.line_start = base + p + 1
            p = buf.find("\n", p + 1, upto - base)
        self.pos = max(self.pos, upto)

    def width(self, buf: str, base: int, end: int) -> int:
        """The length of the current line up to absolute offset `end`, trailing spaces excluded (capped)."""
        t = end - base
        lo = max(self.line_start - base, 0, t - _LINE_CAP)
        while t > lo and buf[t - 1].isspace():
            t -= 1
        return min(base + t - self.line_start, _LINE_CAP)


def _record_break(lines: _Lines, buf: str, base: int, nl: int, nx: int, eol: int) -> bool:
    """Whether the single newline at `buf[nl]` ends a record (the next line is `buf[nx:eol]`)."""
    if _RECORD_START.match(buf, nx):
        return True
    lines.track(buf, base, base + nl)
    if base + nl - lines.line_start <= _LINE_CAP and _RECORD_LINE.match(buf, lines.line_start - base):
        return True  # the line before is a KEY = value line
    if buf[nx].islower():
        return False
    width = lines.width(buf, base, base + nl)
    nxt = min(eol - nx, _LINE_CAP)
    first = min(len(buf[nx:eol].split(None, 1)[0]), _LINE_CAP)
    wide = max(max(lines.widths, default=0), width, nxt)
    return width + 1 + first <= _SHORT * wide


def split_sentences(blocks: Iterable[str], max_tokens: int = 128) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, text)`` per sentence of the concatenation of `blocks`.

    `start`/`end` are character offsets into the concatenated text; ``full[start:end]`` is the
    sentence (stripped) and `text` is it with whitespace normalised. Whitespace-only input
    yields nothing.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    max_chars = 8 * max_tokens
    tail_limit = max(_TAIL_LIMIT, max_chars + 8)
    lines = _Lines()
    buf = ""
    base = 0  # offset of buf[0] in the whole text
    start = -1  # start of the pending sentence in buf (-1: not found yet)
    scan = 0  # where the search for the next candidate end resumes
    for block, final in blocks_then_end(blocks):
        buf += block
        n = len(buf)
        out: list[tuple[int, int]] = []
        while True:
            if start < 0:
                m = _NONSPACE.search(buf, scan)
                if m is None:
                    scan = n
                    break
                start = scan = m.start()
            m = _CAND.search(buf, scan)
            if m is None:
                if final:
                    out.extend(_pieces(buf, start, n, max_tokens, max_chars))
                    start, scan = -1, n
                    break
                t, lim = n, max(scan, n - tail_limit)
                while t > lim and buf[t - 1].isspace():
                    t -= 1
                if n - t >= max_chars:  # a long whitespace run ends the sentence (see above)
                    out.extend(_pieces(buf, start, t, max_tokens, max_chars))
                    start, scan = -1, n
                    break
                # keep an unfinished candidate end at the buffer's end for the next round
                while t > lim and (buf[t - 1] in _TAIL_CHARS or buf[t - 1].isspace()):
                    t -= 1
                scan = max(scan, t)
                break
            if m.group("blank") is not None:  # blank line
                out.extend(_pieces(buf, start, m.start(), max_tokens, max_chars))
                start, scan = -1, m.end()
                continue
            if m.group("t") is None and m.group("cjk") is None:  # a single newline
                nx = _NONSPACE.search(buf, m.end(), m.end() + max_chars)
                if nx is None:
                    if not final and n - m.end() < max_chars:
                        scan = m.start()  # undecided until the next line begins
                        break
                    scan = m.end()  # a long whitespace run: handled as before (not a record end)
                    continue
                eol = buf.find("\n", nx.start(), nx.start() + _LINE_CAP)
                if eol < 0:
                    if not final and n - nx.start() < _LINE_CAP:
                        scan = m.start()  # undecided until the next line is read
                        break
                    eol = min(n, nx.start() + _LINE_CAP)
                if _record_break(lines, buf, base, m.start(), nx.start(), eol):
                    out.extend(_pieces(buf, start, m.start(), max_tokens, max_chars))
                    start = scan = nx.start()
                else:
                    scan = m.end()
                continue
            end = m.end()
            nx = _NONSPACE.search(buf, end)
            gap = (nx.start() if nx is not None else n) - end
            if nx is None and not final and gap < max_chars:
                scan = m.start()  # undecided until a non-space character arrives
                break
            if nx is not None and gap < max_chars and m.group("t") is not None:
                c = buf[nx.start()]
                if buf.count("\n", end, nx.start()) < 2 and not (
                    _starts_sentence(c) and not (m.group("t") == "." and _is_abbreviation(buf, m.start(), c))
                ):
                    scan = end  # not an end: go on after it
                    continue
            out.extend(_pieces(buf, start, end, max_tokens, max_chars))
            if nx is not None:
                start = scan = nx.start()
            else:
                start, scan = -1, end
        if start >= 0 and scan - start > max_chars:
            # a long stretch without an end: emit the finished pieces, keep the last one open
            pieces = _pieces(buf, start, scan, max_tokens, max_chars)
            if len(pieces) > 1:
                out.extend(pieces[:-1])
                start = pieces[-1][0]
        for s, e in out:
            yield base + s, base + e, normalise(buf[s:e])
        keep = (start if start >= 0 else scan) - 32  # a little look-behind for abbreviations
        if keep > 0 and (keep > 65536 or keep * 2 > n):
            lines.track(buf, base, base + keep)
            keep = min(keep, max(lines.line_start - base, keep - _LINE_CAP))  # a short line's start stays
            buf = buf[keep:]
            base += keep
            scan -= keep
            if start >= 0:
                start -= keep
