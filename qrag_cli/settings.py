"""One frozen dataclass of settings per command.

Every field is typed, defaulted and documented (the `help` metadata is what the CLI shows).
The resolved settings are written next to every index and report (`settings.json`).
Nothing here reads files: resolution happens in the API layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ChunkerSettings:
    """How a corpus is cut into chunks."""

    kind: str = _f("sentences", "Chunker: 'sentences' (rule-based splitter) or 'tokens' (fixed windows).")
    max_sentence_tokens: int = _f(
        128, "Sentence chunker: a longer sentence is split at this many word/punctuation tokens."
    )
    window: int = _f(64, "Token chunker: window size in word/punctuation tokens.")
    overlap: int = _f(16, "Token chunker: tokens shared by consecutive windows (< window).")

    def validate(self) -> None:
        from .errors import InputError

        if self.kind not in ("sentences", "tokens"):
            raise InputError(f"unknown chunker {self.kind!r}: use 'sentences' or 'tokens'")
        if self.max_sentence_tokens < 8:
            raise InputError("--max-sentence-tokens must be at least 8")
        if self.window < 1:
            raise InputError("--window must be at least 1")
        if not 0 <= self.overlap < self.window:
            raise InputError("--overlap must be >= 0 and smaller than --window")


@dataclass(frozen=True)
class AnnSettings:
    """Parameters of the approximate nearest-neighbour index."""

    backend: str = _f("usearch", "Search backend: 'usearch' (memory-mapped HNSW), 'hnswlib' or 'exact'.")
    m: int = _f(16, "HNSW graph degree (M / connectivity).")
    ef_construction: int = _f(100, "HNSW build-time candidate list size.")
    ef: int = _f(128, "HNSW query-time candidate list size (stored in the manifest, overridable).")


@dataclass(frozen=True)
class IndexSettings:
    """Settings of `qrag index`."""

    corpus: str = _f("", "Corpus: a .txt/.jsonl file (optionally .gz/.xz), a folder of .txt files, or '-'.")
    out: str = _f("", "Output folder (default indexes/<corpus-name>).")
    overwrite: bool = _f(False, "Replace an existing index at --out.")
    model: str = _f("default", "Embedder: 'default' (all-MiniLM-L6-v2) or a model folder.")
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    ann: AnnSettings = field(default_factory=AnnSettings)
    batch_size: int = _f(64, "Chunks embedded per batch.")
    max_tokens: int = _f(128, "Embedder token cap per chunk (longer chunks are truncated when embedded).")
    threads: int = _f(0, "CPU threads for embedding and index build (0: all cores).")
    seed: int = _f(
        0, "Seed of the HNSW build where the library takes one (hnswlib). A rebuild is byte-identical only with "
        "--threads 1; with more threads the graph depends on scheduling (results are re-scored exactly either way)."
    )


@dataclass(frozen=True)
class QuerySettings:
    """Settings of `qrag query`."""

    index: str = _f("", "Index folder built by `qrag index`.")
    model: str = _f("", "Embedder override (default: the model recorded in the index manifest).")
    steps: int = _f(4, "Retrieval steps (the method's max_steps).")
    k: int = _f(1, "Chunks taken per step (--steps 1 --k K is classic top-k).")
    stop_threshold: float | None = _f(
        None, "Q-threshold stop rule: keep chunks retrieved before the first step whose score < T."
    )
    piece_tokens: int = _f(64, "Per-piece token cap of the state text (question and each chunk).")
    backend: str = _f("", "Search backend override: 'exact', 'hnswlib' or 'usearch' (default: manifest).")
    ef: int = _f(0, "HNSW ef override (0: the value in the manifest).")
    threads: int = _f(0, "CPU threads (0: all cores).")

    def validate(self) -> None:
        from .errors import InputError

        if self.steps < 1:
            raise InputError("--steps must be at least 1")
        if self.k < 1:
            raise InputError("--k must be at least 1")
        if self.piece_tokens < 4:
            raise InputError("--piece-tokens must be at least 4")


@dataclass(frozen=True)
class ExportSettings:
    """Settings of `qrag export`."""

    model: str = _f("default", "Model to export: 'default' (all-MiniLM-L6-v2) or a PyTorch model folder.")
    out: str = _f("", "Output folder of the ONNX model (required).")
    int8: bool = _f(False, "Quantise to int8 (faster on CPU; see the README's speed and quality table).")
    calibration: str = _f("", "Text corpus whose sentences calibrate the int8 quantisation (default: built-in).")
    calibration_sentences: int = _f(512, "How many calibration sentences to read from --calibration.")
    overwrite: bool = _f(False, "Replace an existing folder at --out.")


@dataclass(frozen=True)
class DataSettings:
    """Settings of `qrag data` (BabiLong- and RULER-style sample generation)."""

    benchmark: str = _f("babilong", "Benchmark family: 'babilong' or 'ruler'.")
    task: str = _f("qa1", "babilong: qa1..qa5; ruler: niah_single, niah_multikey, niah_multivalue, niah_multiquery, vt.")
    length: str = _f(
        "1K", "Context length: babilong 1K, 4K, 32K, 128K, 1M, 10M or a sentence count; ruler 4K, 16K, 32K, 128K, 1M."
    )
    n: int = _f(100, "Number of samples.")
    seed: int = _f(0, "Seed of the generator (stories, haystack placement).")
    split: str = _f("test", "'train' (training novels and story seeds) or 'test' (held-out ones).")
    haystack: str = _f("novel", "ruler haystack: 'noise', 'novel' or 'needle'.")
    values: str = _f("numbers", "ruler needle values: 'numbers' (7 digits), 'uuids' or 'words'.")
    hops: int = _f(4, "ruler vt: number of variable-assignment hops.")
    out: str = _f("", "Output JSON Lines file ('-' or empty: stdout).")


@dataclass(frozen=True)
class BenchSettings:
    """Settings of `qrag bench` (retrieval benchmark: qrag and its baselines on generated samples)."""

    benchmark: str = _f("babilong", "Benchmark family: 'babilong' or 'ruler'.")
    tasks: str = _f(
        "qa1,qa2,qa3,qa4,qa5",
        "Comma-separated tasks (babilong qa1..qa5; ruler niah_single, niah_multikey, niah_multivalue, "
        "niah_multiquery, vt). With --benchmark ruler the babilong default means all five ruler tasks.",
    )
    lengths: str = _f(
        "1K,4K,32K",
        "Comma-separated context lengths (babilong 1K, 4K, 32K, 128K, 1M, 10M or a sentence count; "
        "ruler 4K, 16K, 32K, 128K, 1M). With --benchmark ruler the babilong default means 4K,16K,32K.",
    )
    n: int = _f(100, "Samples per task and length.")
    seed: int = _f(0, "Seed of the sample generator.")
    split: str = _f("test", "Novels and story seeds: 'test' (held out) or 'train'.")
    model: str = _f("default", "Base embedder of the dense baselines: 'default' (all-MiniLM-L6-v2) or a folder.")
    trained: str = _f("", "A trained qrag model folder, evaluated as method 'qrag-trained' (empty: none).")
    steps: int = _f(0, "Retrieval steps of the multi-step methods (0: the task default, 6 babilong, 5 ruler).")
    k_dense: int = _f(0, "k of the single-step dense and BM25 top-k baselines (0: the number of steps).")
    stop_threshold: float = _f(0.5, "Q-threshold stop rule of the multi-step methods (fact F1, chunks kept).")
    data: str = _f("", "A samples file from `qrag data` to evaluate instead of generating (overrides "
                       "--benchmark, --tasks and --lengths).")
    out: str = _f("", "Output folder of results.json, settings.json and coverage.png.")
    cache: str = _f("", "Folder of the background-embedding cache (default: $QRAG_CACHE/bench).")
    reader_url: str = _f("", "OpenAI-compatible server answering from the kept chunks, e.g. "
                             "http://127.0.0.1:8000 (empty: no reader, retrieval metrics only).")
    reader_model: str = _f("", "Model name sent to the reader server.")
    reader_timeout: float = _f(30.0, "Seconds to wait for one reader answer.")
    threads: int = _f(0, "CPU threads for embedding (0: all cores).")


def to_dict(settings: Any) -> dict[str, Any]:
    """The settings as plain JSON-able data (nested dataclasses become dicts)."""
    return asdict(settings)


def field_help(cls: type) -> dict[str, str]:
    """Map of field name to its documented help text (used by the CLI)."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}
