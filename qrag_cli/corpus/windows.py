"""Fixed token windows: the simple chunker (``--chunker tokens``).

Tokens are `sentences.TOKEN` matches (``\\w+|[^\\w\\s]``). Each window holds `window` tokens and
the next one starts `window - overlap` tokens later; the last window may be shorter (it is
emitted only when it holds tokens that no earlier window covered). A window's offsets span its
first token's start to its last token's end. A token longer than `MAX_TOKEN_CHARS` characters
(a run of letters without spaces) counts as several tokens of at most that many characters, so
memory stays bounded on any input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .sentences import TOKEN, blocks_then_end, normalise

MAX_TOKEN_CHARS = 1024
"""A longer run of word characters is cut into tokens of this many characters."""


def split_windows(blocks: Iterable[str], window: int = 64, overlap: int = 16) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, text)`` per token window of the concatenation of `blocks`.

    Offsets are character offsets into the concatenated text; `text` is ``full[start:end]``
    with whitespace normalised. Streaming: only the open windows' text is buffered.
    """
    if window < 1 or not 0 <= overlap < window:
        raise ValueError("need window >= 1 and 0 <= overlap < window")
    stride = window - overlap
    cap = MAX_TOKEN_CHARS
    buf = ""
    base = 0  # offset of buf[0] in the whole text
    pos = 0  # where tokenising resumes in buf
    toks: list[tuple[int, int]] = []  # global spans of the tokens not yet out of every window
    emitted = False
    for block, final in blocks_then_end(blocks):
        buf += block
        n = len(buf)
        pos_set = False
        for m in TOKEN.finditer(buf, pos):
            s, e = m.span()
            while e - s > cap:
                toks.append((base + s, base + s + cap))
                s += cap
            if e == n and not final:  # the token may go on in the next block
                pos, pos_set = s, True
                break
            toks.append((base + s, base + e))
        if not pos_set:
            pos = n
        i = 0
        while len(toks) - i >= window:
            s, e = toks[i][0], toks[i + window - 1][1]
            yield s, e, normalise(buf[s - base : e - base])
            emitted = True
            i += stride
        if final and len(toks) - i > 0 and (not emitted or len(toks) - i > overlap):
            s, e = toks[i][0], toks[-1][1]
            yield s, e, normalise(buf[s - base : e - base])
        del toks[:i]
        keep = min(toks[0][0] - base if toks else pos, pos)
        if keep > 0 and (keep > 65536 or keep * 2 > n):
            buf = buf[keep:]
            base += keep
            pos -= keep
