"""Cut a whole corpus into `Chunk`s with the chunker chosen in `ChunkerSettings`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..settings import ChunkerSettings
from .readers import Corpus
from .records import split_records
from .sentences import split_sentences
from .types import Chunk
from .windows import split_windows

Splitter = Callable[[Iterable[str]], Iterator[tuple[int, int, str]]]


def make_splitter(settings: ChunkerSettings) -> Splitter:
    """The span splitter `settings` asks for (validates the settings first)."""
    settings.validate()
    if settings.kind == "tokens":
        return lambda blocks: split_windows(blocks, settings.window, settings.overlap)
    if settings.kind in ("lines", "paragraphs"):
        paragraphs = settings.kind == "paragraphs"
        return lambda blocks: split_records(blocks, settings.max_sentence_tokens, paragraphs)
    return lambda blocks: split_sentences(blocks, settings.max_sentence_tokens)


def iter_chunks(corpus: Corpus, settings: ChunkerSettings, first_position: int = 0) -> Iterator[Chunk]:
    """Every chunk of `corpus`, documents in order, with global positions first_position, +1, +2, ...

    The settings are validated at once (`InputError`), before anything is read. An empty corpus
    yields nothing (the caller decides whether that is an error).
    """
    return _chunks(corpus, make_splitter(settings), first_position)


def _chunks(corpus: Corpus, split: Splitter, position: int) -> Iterator[Chunk]:
    for doc in corpus.documents():
        for start, end, text in split(doc.blocks):
            yield Chunk(doc.id, position, start, end, text)
            position += 1
