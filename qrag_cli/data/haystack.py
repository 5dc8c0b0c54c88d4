"""Background ("haystack") sentences from the shared Gutenberg novels, and the train/test split.

Shared data: ``$QRAG_SHARED/data/gutenberg/*.txt.xz``, else ``<project root>/../shared/...``. It is
read in place and never copied into the repository.

Novel split (fixed once, reproducible, independent of seeds): every novel name (the file name
without ``.txt.xz``) is hashed, ``sha256("qrag-novel-split-v1:" + name)``; the novels sorted by that
digest are split so the first quarter (20 of the 80) is ``test`` and the rest (60) ``train``. Adding
or removing a novel moves at most the novels at the quarter boundary. `novel_split()` returns both
lists (each sorted by name). Story seeds are kept apart too: see `story_seed`.

Sentences: each novel is split with the project's rule-based splitter
(`qrag_cli.corpus.sentences.split_sentences`, 128-token cap), once per process and only when the
novel is first needed (memoised per novel; the whole corpus, 417k sentences, takes about 5 s).

Background draw (`BackgroundStream`): the novels of one split are cut into runs of up to 100
consecutive sentences (a random phase per novel, so runs start at random places). Repeatedly a
novel of the split is chosen uniformly, then one of its unused runs uniformly, and the run is
appended, until the wanted number of sentences. Runs are drawn without replacement; only when every
novel of the split is used up are all runs made available again, with new phases. The 20 test
novels hold 130k sentences (the 60 train novels 287k), so a 10M test background (400k sentences)
holds every test sentence about three times; 1M (40k) and smaller repeat nothing. The draw depends only
on (split, seed), so a shorter background is a prefix of a longer one with the same seed.
`background()` caches streams in memory per process.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import random
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

SPLITS = ("train", "test")
SPLIT_SALT = "qrag-novel-split-v1:"
TEST_FRACTION = 0.25
RUN = 100
MAX_SENTENCE_TOKENS = 128
BABILONG_SENTENCES = {"1K": 50, "4K": 160, "32K": 1200, "128K": 4600, "1M": 40000, "10M": 400000}
"""BabiLong context sizes in background sentences, as the Q-RAG paper counts them."""


def shared_root() -> Path:
    """The shared folder: $QRAG_SHARED, else ``<project root>/../shared``."""
    env = os.environ.get("QRAG_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


def novels_dir() -> Path:
    """Folder of the Gutenberg novels (``<shared>/data/gutenberg``)."""
    return shared_root() / "data" / "gutenberg"


def _novel_files() -> dict[str, Path]:
    folder = novels_dir()
    files = sorted(folder.glob("*.txt.xz")) if folder.is_dir() else []
    if not files:
        raise InputError(f"no novels (*.txt.xz) under {folder}: set QRAG_SHARED to the shared folder")
    return {p.name[: -len(".txt.xz")]: p for p in files}


def story_seed(split: str, seed: int) -> int:
    """The seed of the bAbI story generator: ``2*seed`` for train, ``2*seed + 1`` for test.

    So no story seed is ever used by both splits, whatever seeds the two are generated with.
    """
    check_split(split)
    return 2 * int(seed) + (1 if split == "test" else 0)


def check_split(split: str) -> None:
    """Raise InputError unless `split` is 'train' or 'test'."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use 'train' or 'test'")


@lru_cache(maxsize=1)
def _split_for(names: tuple[str, ...]) -> dict[str, list[str]]:
    ranked = sorted(names, key=lambda n: hashlib.sha256((SPLIT_SALT + n).encode("utf-8")).hexdigest())
    n_test = round(len(ranked) * TEST_FRACTION)
    return {"train": sorted(ranked[n_test:]), "test": sorted(ranked[:n_test])}


def novel_split() -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}``: novel names (file names without .txt.xz), disjoint."""
    out = _split_for(tuple(_novel_files()))
    return {k: list(v) for k, v in out.items()}


@lru_cache(maxsize=None)
def novel_sentences(name: str) -> tuple[str, ...]:
    """All sentences of one novel (memoised per process)."""
    from ..corpus.sentences import split_sentences

    path = _novel_files().get(name)
    if path is None:
        raise InputError(f"no novel named {name!r} under {novels_dir()}")
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    return tuple(s for _, _, s in split_sentences([text], MAX_SENTENCE_TOKENS))


class BackgroundStream:
    """The background sentence sequence of one (split, seed), produced on demand (see module doc)."""

    def __init__(self, split: str, seed: int | str) -> None:
        check_split(split)
        self.split = split
        self.names = novel_split()[split]
        self.rng = random.Random(f"qrag-background:{split}:{seed}")
        self.sentences: list[str] = []
        self.used: list[tuple[str, int, int]] = []  # (novel, start, end) of every run drawn, in order
        self._fresh()

    def _fresh(self) -> None:
        self.active = list(self.names)  # novels that may still have unused runs
        self.runs: dict[str, list[tuple[int, int]]] = {}

    def _runs_of(self, name: str) -> list[tuple[int, int]]:
        n = len(novel_sentences(name))
        phase = self.rng.randrange(RUN)
        cuts = sorted({0, n, *range(phase, n, RUN)})
        return list(zip(cuts[:-1], cuts[1:]))

    def extend_to(self, n: int) -> list[str]:
        """Draw runs until at least `n` sentences exist; returns the first `n`."""
        while len(self.sentences) < n:
            if not self.active:
                self._fresh()
            name = self.active[self.rng.randrange(len(self.active))]
            if name not in self.runs:
                self.runs[name] = self._runs_of(name)
            runs = self.runs[name]
            if not runs:
                self.active.remove(name)
                continue
            k = self.rng.randrange(len(runs))
            runs[k], runs[-1] = runs[-1], runs[k]
            s, e = runs.pop()
            self.used.append((name, s, e))
            self.sentences.extend(novel_sentences(name)[s:e])
        return self.sentences[:n]


_STREAMS: dict[tuple[str, int | str], BackgroundStream] = {}


def background(split: str, n_sentences: int, seed: int | str, cache: bool = True) -> list[str]:
    """`n_sentences` background sentences of `split` for `seed` (cached per process unless told)."""
    if n_sentences < 0:
        raise InputError("the number of background sentences must be >= 0")
    key = (split, seed)
    stream = _STREAMS.get(key) if cache else None
    if stream is None:
        stream = BackgroundStream(split, seed)
        if cache:
            _STREAMS[key] = stream
    return stream.extend_to(n_sentences)


def clear_cache() -> None:
    """Forget the cached background streams (the per-novel sentences stay memoised)."""
    _STREAMS.clear()
