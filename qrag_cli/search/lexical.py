"""The BM25 index of an index's chunks (the `bm25s` library), its files, and BM25 scoring of a query text.

Tokens are bm25s's own (lower-cased words of two or more letters, English stop words removed, no
stemmer): the same function tokenises chunks at build time and queries at query time. Scoring is
bm25s's Lucene BM25 (k1 1.5, b 0.75), a query's score for a chunk summing its tokens' scores (a word
repeated in the query counts again).

Files, in the generation folder beside the vectors (plain names, listed in the manifest's `files`
with size and checksum like every index file, and named by its `bm25` entry):

- `bm25.data.npy` (float32), `bm25.indices.npy` (int32), `bm25.indptr.npy`: the token-by-chunk score
  matrix in CSC form, written and read by numpy without pickle and opened memory-mapped;
- `bm25.vocab.json` (token -> column) and `bm25.params.json` (k1, b, method, chunk count): JSON.

bm25s writes these itself (`BM25.save`: `np.save(allow_pickle=False)` and JSON) and reads them with
`BM25.load(mmap=True, allow_pickle=False)`; nothing is unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError, InputError

FORMAT_VERSION = 1
NAMES = {"data_name": "bm25.data.npy", "indices_name": "bm25.indices.npy", "indptr_name": "bm25.indptr.npy",
         "vocab_name": "bm25.vocab.json", "params_name": "bm25.params.json"}
FILES = tuple(NAMES.values())
#: Chunk texts tokenised per call at build time.
BATCH = 4096


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """bm25s's tokens of each text (English stop words removed)."""
    import bm25s

    if not texts:
        return []
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def build_model(texts: Iterable[str]) -> Any:
    """A bm25s model over the chunk texts, in order (tokenised in batches into integer ids)."""
    import bm25s

    vocab: dict[str, int] = {}
    docs: list[np.ndarray] = []
    batch: list[str] = []

    def flush() -> None:
        for toks in tokenize(batch):
            docs.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), dtype=np.int32))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= BATCH:
            flush()
    flush()
    model = bm25s.BM25()
    if not docs:
        raise InputError("a BM25 index needs at least one chunk")
    model.index((docs, vocab), show_progress=False)
    return model


def write_bm25(folder: Path, texts: Iterable[str]) -> dict[str, Any]:
    """Build the BM25 index of the chunk texts into `folder` (files fsynced); the manifest's `bm25` entry."""
    folder = Path(folder)
    model = build_model(texts)
    model.save(folder, corpus=None, show_progress=False, **NAMES)
    for name in FILES:
        with open(folder / name, "rb+") as f:
            os.fsync(f.fileno())
    return {"library": "bm25s", "format_version": FORMAT_VERSION, "method": model.method, "k1": model.k1,
            "b": model.b, "stopwords": "en", "chunks": int(model.scores["num_docs"]), "vocab": len(model.vocab_dict),
            "files": list(FILES)}


class Bm25Scorer:
    """BM25 scores of query texts against all chunks (an in-memory model, or an index's files)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.n = int(model.scores["num_docs"])

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Bm25Scorer:
        return cls(build_model(texts))

    def scores(self, text: str) -> np.ndarray:
        """float32 (n,): the BM25 score of every chunk for `text` (all 0 when no token is in the vocabulary)."""
        ids = self.model.get_tokens_ids(tokenize([text])[0]) if text.strip() else []
        if not ids:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32)


def open_bm25(folder: Path, entry: dict[str, Any], chunks: int, fix: str) -> Bm25Scorer:
    """Open the BM25 index named by a manifest's `bm25` entry (files already checksum-verified),
    memory-mapped; CorruptIndexError when it is unreadable or does not fit the index's chunks."""
    import bm25s

    folder = Path(folder)
    if entry.get("format_version") != FORMAT_VERSION or list(entry.get("files", [])) != list(FILES):
        raise CorruptIndexError(f"{folder}: the manifest's bm25 entry is of an unknown version or names other "
                                f"files; {fix}")
    try:
        model = bm25s.BM25.load(folder, mmap=True, allow_pickle=False, load_corpus=False, show_progress=False,
                                **NAMES)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CorruptIndexError(f"{folder / NAMES['params_name']}: the BM25 index is unreadable ({exc}); {fix}") from exc
    s = model.scores
    data, indices, indptr = s["data"], s["indices"], s["indptr"]
    ok = (s.get("num_docs") == chunks and indptr.ndim == data.ndim == indices.ndim == 1
          and len(indptr) == len(model.vocab_dict) - ("" in model.vocab_dict) + 1 and len(data) == len(indices) == int(indptr[-1])
          and model.method not in model.methods_requiring_nonoccurrence)
    if not ok:
        raise CorruptIndexError(f"{folder}: the BM25 index does not fit the index's {chunks} chunks; {fix}")
    return Bm25Scorer(model)
