"""The two value types of the corpus layer: a streamed `Document` and the `Chunk`s cut from it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable unit of text.

    `start`/`end` are character offsets into the document's decoded, line-ending-normalised text
    (see `qrag_cli.corpus.readers`); `doc_text[start:end]` with whitespace runs collapsed to one
    space equals `text`.
    """

    doc: str
    """Document id."""
    position: int
    """Global 0-based ordinal of the chunk in the whole corpus, in reading order."""
    start: int
    """Character offset of the chunk's first character in its document's text."""
    end: int
    """Exclusive character offset of the chunk's end."""
    text: str
    """The chunk text, whitespace normalised (line wraps and whitespace runs become one space)."""


@dataclass
class Document:
    """One document of a corpus, its text streamed in blocks (their concatenation is the text)."""

    id: str
    blocks: Iterator[str]
