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


CHUNKERS = ("sentences", "lines", "paragraphs", "tokens")


@dataclass(frozen=True)
class ChunkerSettings:
    """How a corpus is cut into chunks."""

    kind: str = _f("sentences", "Chunker: 'sentences' (rule-based splitter that keeps record lines apart), "
                                "'lines' (one chunk per non-blank line), 'paragraphs' (blank-line separated) "
                                "or 'tokens' (fixed windows).")
    max_sentence_tokens: int = _f(
        128, "Sentence, line and paragraph chunkers: a longer chunk is split at this many word/punctuation tokens."
    )
    window: int = _f(64, "Token chunker: window size in word/punctuation tokens.")
    overlap: int = _f(16, "Token chunker: tokens shared by consecutive windows (< window).")

    def validate(self) -> None:
        from .errors import InputError

        if self.kind not in CHUNKERS:
            raise InputError(f"unknown chunker {self.kind!r}: use one of {', '.join(CHUNKERS)}")
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
    overwrite: bool = _f(False, "Replace an existing index at --out (or discard an interrupted build of it).")
    resume: bool = _f(False, "Continue an interrupted build of --out (run the same command again with --resume).")
    append: str = _f("", "Add the corpus's documents to this existing index (its own model and chunking are used).")
    model: str = _f("default", "Embedder: 'default' (all-MiniLM-L6-v2) or a model folder.")
    chunker: ChunkerSettings = field(default_factory=ChunkerSettings)
    ann: AnnSettings = field(default_factory=AnnSettings)
    batch_size: int = _f(64, "Chunks embedded per batch.")
    shard_chunks: int = _f(16384, "Chunks per shard: the unit of work a resumed build does not redo.")
    embed_group: int = _f(8192, "Chunks per encoder call, sorted by length before batching (a wide sort pads less).")
    max_tokens: int = _f(128, "Embedder token cap per chunk (longer chunks are truncated when embedded).")
    bm25: bool = _f(True, "Also write a BM25 index of the chunks (bm25s; for `qrag query --retriever bm25|hybrid`). "
                          "Under 1% of the build time (docs/benchmarks.md); --no-bm25 skips it.")
    add_bm25: str = _f("", "Add the BM25 index to this existing index (a new generation; nothing is re-embedded) "
                           "instead of building one.")
    threads: int = _f(0, "CPU threads for embedding and index build (0: all cores).")
    seed: int = _f(
        0, "Seed of the HNSW build where the library takes one (hnswlib). A rebuild is byte-identical only with "
        "--threads 1; with more threads the graph depends on scheduling (results are re-scored exactly either way)."
    )
    ray: str = _f(
        "", "Embed the shards on a Ray cluster (needs `pip install 'qrag-cli[ray]'`): 'auto' starts or joins a local "
        "one, an address (host:port or ray://host:10001) joins a running one. Same files as without it."
    )
    workers: int = _f(0, "With --ray: embedding actors, one encoder each (0: one per CPU of the cluster).")


@dataclass(frozen=True)
class QuerySettings:
    """Settings of `qrag query`."""

    index: str = _f("", "Index folder built by `qrag index`.")
    model: str = _f("", "Embedder or policy: 'policy:default' (the shipped trained policy), 'default' (the "
                        "untrained base model), a policy or model folder. Default: policy:default on an index "
                        "built with the base model, else the index's own model.")
    steps: int = _f(4, "Retrieval steps (the method's max_steps).")
    k: int = _f(1, "Chunks taken per step (--steps 1 --k K is classic top-k).")
    stop_threshold: float | None = _f(
        None, "Q-threshold stop rule: keep chunks retrieved before the first step whose score < T."
    )
    piece_tokens: int = _f(64, "Per-piece token cap of the state text (question and each chunk).")
    backend: str = _f("", "Search backend override: 'exact', 'hnswlib' or 'usearch' (default: manifest).")
    ef: int = _f(0, "HNSW ef override (0: the value in the manifest).")
    positional: str = _f(
        "auto", "Search for models with rotary positions: 'exact' (range by range over all vectors, int8 copy "
        "first), 'approx' (ANN candidates per range, re-scored exactly; may miss the best chunk) or 'auto' (exact)."
    )
    candidates: int = _f(64, "Approximate positional search: ANN candidates fetched per position range.")
    retriever: str = _f("dense", "What picks the chunks of each step: 'dense' (the policy), 'bm25' (BM25 of the "
                                 "state text: the question and the chunks retrieved so far) or 'hybrid' (both "
                                 "lists fused, see --fusion). Scores (Q values, --stop-threshold) stay the "
                                 "policy's. bm25 and hybrid need an index with BM25 (qrag index --bm25).")
    fusion: str = _f("rrf", "Hybrid fusion: 'rrf' (reciprocal rank, k = 60) or 'score' (scores min-max normalised "
                            "per step over each candidate list, then weighted: see --fusion-weight).")
    fusion_weight: float = _f(0.5, "Score fusion: weight of the dense score (BM25 gets 1 - weight).")
    fusion_candidates: int = _f(100, "Hybrid: candidates taken from each list (dense, BM25) before fusing.")
    threads: int = _f(0, "CPU threads (0: all cores).")
    ray: str = _f(
        "", "Answer the questions on a Ray cluster (needs `pip install 'qrag-cli[ray]'`): 'auto' starts or joins a "
        "local one, an address joins a running one; every worker opens the index, so it must see the index folder."
    )
    workers: int = _f(0, "With --ray: query actors, each with the index open (0: one per CPU of the cluster).")

    def validate(self) -> None:
        from .errors import InputError
        from .search.hybrid import check

        check(self.retriever, self.fusion, self.fusion_weight, self.fusion_candidates)

        if self.workers < 0:
            raise InputError("--workers must be 0 (one per CPU) or more")
        if self.workers and not self.ray:
            raise InputError("--workers goes with --ray (auto or a cluster address)")
        if self.steps < 1:
            raise InputError("--steps must be at least 1")
        if self.k < 1:
            raise InputError("--k must be at least 1")
        if self.piece_tokens < 4:
            raise InputError("--piece-tokens must be at least 4")


@dataclass(frozen=True)
class ExportSettings:
    """Settings of `qrag export`."""

    model: str = _f("default", "Model to export: 'default' (all-MiniLM-L6-v2), a PyTorch model folder, a trained "
                               "policy (RUN/checkpoints/best, a compact policy folder, policy:default).")
    out: str = _f("", "Output folder of the ONNX model (required).")
    compact: bool = _f(False, "Write the compact policy of a training checkpoint (its trained state layers as a "
                              "float16 delta, with a manifest) instead of an ONNX export.")
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
    hard_negatives: float = _f(0.0, "babilong below 1,200 sentences: fraction of each background replaced by novel "
                                    "sentences mined as the nearest to the task's story lines and questions (a "
                                    "training aid; data/negatives.py).")
    background_pool: int = _f(0, "babilong below 1,200 sentences: each context's background is a window of a "
                                 "fixed pool of this many sentences of the split's novels (the hard-negative "
                                 "candidates) instead of its own fresh sentences, so many samples share few "
                                 "distinct sentences (a training aid: see qrag train --background-pool); 0: off.")
    out: str = _f("", "Output JSON Lines file ('-' or empty: stdout).")
    keys: str = _f("words", "ruler needle keys: 'words' (adjective-noun), 'numbers' (7 digits) or 'uuids' "
                            "(RULER's niah_multikey_3).")
    per_sample: bool = _f(False, "ruler from 32K on: every sample gets its own haystack (as RULER builds them) "
                                 "instead of one shared, referenced haystack.")
    vt_example: bool = _f(True, "ruler vt: put RULER's in-context example (its own chain, question and answer "
                                "line) before the haystack.")


@dataclass(frozen=True)
class BenchSettings:
    """Settings of `qrag bench` (retrieval benchmark: qrag and its baselines on generated samples)."""

    benchmark: str = _f("babilong", "Benchmark family: 'babilong' or 'ruler'.")
    tasks: str = _f(
        "qa1,qa2,qa3,qa4,qa5",
        "Comma-separated tasks (babilong qa1..qa5; ruler niah_single, niah_multikey, niah_multivalue, "
        "niah_multiquery, vt). With BENCHMARK ruler the babilong default means all five ruler tasks.",
    )
    lengths: str = _f(
        "1K,4K,32K",
        "Comma-separated context lengths (babilong 1K, 4K, 32K, 128K, 1M, 10M or a sentence count; "
        "ruler 4K, 16K, 32K, 128K, 1M). With BENCHMARK ruler the babilong default means 4K,16K,32K.",
    )
    n: int = _f(100, "Samples per task and length.")
    seed: int = _f(0, "Seed of the sample generator.")
    split: str = _f("test", "Novels and story seeds: 'test' (held out) or 'train'.")
    model: str = _f("default", "Base embedder of the dense baselines: 'default' (all-MiniLM-L6-v2) or a folder.")
    trained: str = _f("policy:default", "The trained policy evaluated as method 'qrag-trained': the shipped "
                                        "policy:default, a compact policy or policy folder ('' : none).")
    methods: str = _f("", "Comma-separated methods to run (empty: the first four): dense-topk, bm25-topk, "
                      "multistep-base, qrag-trained (the --trained policy), hybrid-topk (dense and BM25 fused, "
                      "one step), multistep-hybrid (the untrained loop with hybrid steps). BM25 re-indexes "
                      "every context: slow at 10M.")
    fusion: str = _f("rrf", "Fusion of the hybrid methods: 'rrf' (reciprocal rank) or 'score' (min-max, 0.5 each).")
    steps: int = _f(0, "Retrieval steps of the multi-step methods (0: the task default, 6 babilong, 5 ruler).")
    k_dense: int = _f(0, "k of the single-step dense and BM25 top-k baselines (0: the number of steps).")
    stop_threshold: float = _f(0.5, "Q-threshold stop rule of the multi-step methods (fact F1, chunks kept).")
    data: str = _f("", "A samples file from `qrag data` to evaluate instead of generating (its header "
                       "overrides the BENCHMARK argument, --tasks, --lengths, --n, --seed and --split).")
    out: str = _f("", "Output folder of results.json, settings.json and coverage.png.")
    cache: str = _f("", "Folder of the background-embedding cache (default: $QRAG_CACHE/bench).")
    reader_url: str = _f("", "OpenAI-compatible server answering from the kept chunks, e.g. "
                             "http://127.0.0.1:8000 (empty: no reader, retrieval metrics only).")
    reader_model: str = _f("", "Model name sent to the reader server.")
    reader_timeout: float = _f(30.0, "Seconds to wait for one reader answer.")
    threads: int = _f(0, "CPU threads for embedding (0: all cores).")


#: Values of the preset-dependent training settings (a field left at None takes its preset's value).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "reference": {"freeze_action": False, "train_state_layers": 0, "piece_tokens": 64, "scale": 10.0,
                  "bf16": False, "batch_size": 64, "n_envs": 8, "warmup_updates": 1000, "lr": 5e-5},
    "cpu": {"freeze_action": True, "train_state_layers": 2, "piece_tokens": 32, "scale": 4.0,
            "bf16": "auto", "batch_size": 32, "n_envs": 4, "warmup_updates": 50, "lr": 1e-4},
}


@dataclass(frozen=True)
class TrainSettings:
    """Settings of `qrag train` (Q-RAG policy training: PQN-style soft Q(lambda), method.md).

    Defaults are the reference's. The fields of TRAIN_PRESETS default to None, "the preset's value":
    `resolve_preset` fills them in, so a value given explicitly always wins over the preset.
    """

    task: str = _f("", "Training tasks, comma-separated: babilong:qa1..babilong:qa5, ruler:niah_multivalue, "
                       "ruler:vt, or 'all' (every one); one policy learns the mixture. Default: babilong:qa1, "
                       "or only the --data file when one is given.")
    task_weights: str = _f("", "Mixing weights, comma-separated, one per task in --task order (then one for "
                               "--data): each new episode draws its task with probability weight / sum. "
                               "Default: equal.")
    data: str = _f("", "A qrag-samples file (JSON Lines, as `qrag data` and `qrag bench --data` read) of your own "
                       "training samples, each with inline 'context' (chunk texts) and 'support' (their indices); "
                       "one more task of the mixture, named 'data'.")
    val_data: str = _f("", "Validation samples of the --data task (same format; default: the last 10% of --data).")
    out: str = _f("", "Run folder (default runs/<task>): settings.json, metrics.jsonl, checkpoints/.")
    steps: int = _f(1000, "Optimiser updates to run in total (a resumed run continues to this count).")
    seed: int = _f(0, "Seed of the training samples, the episodes, the behaviour policy and torch.")
    resume: bool = _f(False, "Continue the run in --out from checkpoints/last.")
    overwrite: bool = _f(False, "Replace an existing run folder at --out.")
    init: str = _f("", "Start the encoders from another run's checkpoint folder (RUN/checkpoints/last or best, same "
                       "base model), a compact policy folder or policy:NAME (e.g. policy:default) instead of the "
                       "base model: a second learning-rate cycle, fine-tuning. The optimiser, the "
                       "schedule and the counters start fresh; a frozen action encoder stays the base model's.")
    preset: str = _f("reference", "'reference' (the paper's settings) or 'cpu' (frozen action encoder, top-2 "
                                  "state layers trained, 32-token pieces, scale 4, bf16, batch 32 of 4 envs).")
    model: str = _f("default", "Base model: 'default' (all-MiniLM-L6-v2) or a PyTorch (Hugging Face) folder.")
    length: str = _f("100", "Training context length: babilong, a length name or a number of background sentences; "
                            "ruler, 4K (used when this is left at 100).")
    n_train: int = _f(1000, "Training samples generated (split 'train').")
    task_n_train: str = _f("", "Training samples per built-in task, comma-separated in --task order (default: "
                               "--n-train each); e.g. fewer for ruler tasks, whose 4K contexts are embedded per "
                               "sample, than for babilong tasks drawn from --background-pool.")
    n_val: int = _f(100, "Validation samples, carved from the training split (never test data).")
    hard_negatives: float = _f(0.0, "babilong: fraction of each training and validation context's background "
                                    "replaced by hard negatives (novel sentences nearest to the task's story "
                                    "lines and questions).")
    background_pool: int = _f(0, "babilong: training and validation backgrounds are windows of a fixed pool of "
                                 "this many training-novel sentences (at most 40,000; their frozen action vectors "
                                 "cached once), so --n-train can be large (many distinct stories) at no "
                                 "embedding cost; 0: fresh sentences per sample.")
    mined_negatives: int = _f(0, "babilong, frozen action encoder: novel sentences of each new training episode "
                                 "swapped for those of the training novels that the current state encoder scores "
                                 "highest for its question, and for the question with each supporting line "
                                 "(policy-mined negatives, rl/mining.py); 0: none.")
    max_steps: int = _f(0, "Steps per episode (0: the task default, 6 babilong, 5 ruler).")
    batch_size: int | None = _f(None, "Transitions per update (each rollout: ceil(batch/envs) steps of every env); "
                                       "preset: reference 64, cpu 32.")
    n_envs: int | None = _f(None, "Episodes stepped in parallel; preset: reference 8, cpu 4.")
    lr: float | None = _f(None, "AdamW peak learning rate; preset: reference 5e-5, cpu 1e-4.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.98, "AdamW beta2.")
    adam_eps: float = _f(1e-6, "AdamW epsilon.")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    clip: float = _f(2.0, "Gradient norm clip.")
    warmup_updates: int | None = _f(None, "Linear learning-rate warm-up updates, then linear decay to 0 at --steps; "
                                           "preset: reference 1000, cpu 50.")
    tau: float = _f(0.1, "Polyak rate of both target encoders, after every optimiser step.")
    gamma: float = _f(0.99, "Discount.")
    lam: float = _f(0.65, "lambda of the lambda-returns.")
    alpha: float = _f(0.01, "Peak temperature of the soft value and of the behaviour softmax.")
    alpha_schedule: str = _f("constant", "'constant' (recommended) or 'lr': alpha follows the lr schedule as in the "
                                         "reference (so it is ~0 during warm-up).")
    rollout_dropout: bool = _f(False, "Keep dropout on while acting and computing targets (the reference does; "
                                      "recommended off).")
    soft_top: int = _f(5, "The soft value and the behaviour softmax use the top-k available chunks.")
    warmup_transitions: int = _f(400, "Transitions acted uniformly at random before the softmax policy.")
    scale: float | None = _f(None, "Embeddings are the mean-pooled hidden states divided by this; preset: "
                                  "reference 10, cpu 4 (raw MiniLM vectors have norm ~4.2).")
    positions: str = _f("int", "Rotary positions of the action side: 'int' (reference buckets) or 'float'.")
    piece_tokens: int | None = _f(None, "Per-piece token cap of the state text; preset: reference 64, cpu 32.")
    max_tokens: int = _f(128, "Token cap of a chunk embedding.")
    train_state_layers: int | None = _f(None, "Train only the top N layers of the state encoder (0: all); the frozen "
                                               "lower layers run once per state, without dropout, shared by the online "
                                               "and target encoders and the update. Preset: reference 0, cpu 2.")
    freeze_action: bool | None = _f(None, "Freeze the action encoder: it keeps the base model's pooling (mean + L2 "
                                           "norm for MiniLM), chunk embeddings are computed once, and an index built "
                                           "with the base model serves the policy without re-indexing; "
                                           "preset: reference no, cpu yes.")
    train_action_layers: int = _f(0, "With a trained action encoder (--no-freeze-action): train only its top N "
                                     "layers (0: all). The frozen lower layers run once per training context "
                                     "(cached, bf16 with --bf16), so an update re-embeds the context's chunks "
                                     "through the top N layers only.")
    bf16: bool | None = _f(None, "bfloat16 autocast of the encoders' forward passes; preset: reference no, cpu yes "
                                 "where the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16), else no (on an "
                                 "AVX2-only CPU a bfloat16 matrix product measured 22x slower than float32).")
    val_every: int = _f(50, "Validate (greedy coverage) and checkpoint every K updates.")
    threads: int = _f(0, "CPU threads (0: all cores).")

    def resolve_preset(self) -> TrainSettings:
        """The settings with every field left at None set to its preset's value (TRAIN_PRESETS)."""
        from dataclasses import replace

        from .errors import InputError

        if self.preset not in TRAIN_PRESETS:
            raise InputError(f"unknown preset {self.preset!r}: use 'reference' or 'cpu'")
        preset = TRAIN_PRESETS[self.preset]
        return replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})

def to_dict(settings: Any) -> dict[str, Any]:
    """The settings as plain JSON-able data (nested dataclasses become dicts)."""
    return asdict(settings)


def field_help(cls: type) -> dict[str, str]:
    """Map of field name to its documented help text (used by the CLI)."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}
