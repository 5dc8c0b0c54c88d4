"""The length a samples file's header declares, checked against each sample's real size.

Sizes are counted the way the generators count them:

- ``babilong`` lengths (1K, 4K, 32K, 128K, 1M, 10M, or a plain number) are numbers of *background
  sentences* (`generate.babilong_sentences`: 1K is 50 sentences). A sample's real count is its chunks
  that are not story lines (``story`` positions; a sample without ``story`` counts every chunk), or
  the ``n_sentences`` of the background it references;
- ``ruler`` lengths (4K ... 1M) are *tokens* of the embedder's tokenizer (`ruler.count_tokens`, word
  pieces without special tokens) over the whole chunk list, facts included.

A sample is refused when its real size is more than `TOLERANCE` (10 %) away from the declared one.
The generators land within a sentence of the target (RULER's vt keeps its question and answer prefix
out of the context, about 60 tokens), so 10 % passes every generated file and catches a file whose
header names another length. Other length labels (the prose file's ``book``, a custom benchmark's
own names) are descriptive and not checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import InputError

TOLERANCE = 0.10


def declared_size(benchmark: str, length: str) -> tuple[int, str] | None:
    """(size, unit) a length label stands for in `benchmark`, or None when it names no size."""
    from . import generate, ruler

    if benchmark == "babilong":
        try:
            return generate.babilong_sentences(length), "background sentences"
        except InputError:
            return None
    if benchmark == "ruler" and length in ruler.RULER_LENGTHS:
        return ruler.RULER_LENGTHS[length], "tokens"
    return None


class LengthChecker:
    """Checks the samples of one file against its header's length (background sizes memoised)."""

    def __init__(self, header: dict[str, Any], name: str) -> None:
        self.header = header
        self.name = name
        self.declared = declared_size(header["benchmark"], header["length"])
        self._bg_tokens: dict[str, int] = {}

    def _tokens(self, texts: list[str]) -> int:
        from .ruler import count_tokens

        return sum(count_tokens(texts)) if texts else 0

    def real_size(self, sample: dict[str, Any]) -> int:
        """The sample's size in the unit of the declared length."""
        from .samples import load_background

        if self.header["benchmark"] == "babilong":
            if "context" in sample:
                return len(sample["context"]) - len(set(sample.get("story", [])))
            return int(sample["background"]["n_sentences"])
        if "context" in sample:
            return self._tokens(list(sample["context"]))
        ref = sample["background"]
        key = json.dumps(ref, sort_keys=True)
        if key not in self._bg_tokens:
            self._bg_tokens[key] = self._tokens(load_background(ref))
        return self._bg_tokens[key] + self._tokens([f["text"] for f in sample["facts"]])

    def check(self, lineno: int, sample: dict[str, Any]) -> None:
        """Raise InputError naming the file and line when the sample's size is off the declared length."""
        if self.declared is None:
            return
        size, unit = self.declared
        real = self.real_size(sample)
        if abs(real - size) > TOLERANCE * size:
            raise InputError(
                f"{self.name}:{lineno}: the header declares length {self.header['length']!r} ({size} {unit}) but "
                f"this sample holds {real} ({(real - size) / size:+.0%}; allowed ±{TOLERANCE:.0%}): fix the "
                "header's length or regenerate the file")


def check_lengths(header: dict[str, Any], numbered: Iterable[tuple[int, dict]], name: str) -> list[dict]:
    """The samples of (line number, sample) pairs, each checked against the header's length."""
    checker = LengthChecker(header, name)
    out = []
    for lineno, sample in numbered:
        checker.check(lineno, sample)
        out.append(sample)
    return out
