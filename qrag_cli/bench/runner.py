"""`qrag bench`: qrag and its baselines on BabiLong- or RULER-style samples, one results dict.

For each length (outer loop, so a shared background is embedded or loaded once) and task: generate
the samples (`data.generate`, or read them from `--data`), build every sample's context once per
embedder (`contexts.ContextBuilder`: cached background embeddings, facts spliced in), run every
method on it (`baselines`) and aggregate per (method, task, length):

- ``coverage``: mean of 1/0 "every supporting chunk retrieved after the last step";
- ``precision``, ``recall``, ``fact_f1``: of the kept chunks against the support (mean per sample);
- ``kept_mean``, ``retrieved_mean``: chunks kept / retrieved per question;
- ``latency_ms_median``: retrieval time of one question (state encodings + searches; BM25: query
  tokenisation + scoring), median over the samples;
- ``build_ms_mean``: building one context's index (dense: embedding its new sentences and splicing;
  BM25: tokenising and indexing), mean per context; ``sentences_embedded_mean``: new sentences per
  context (sentences already embedded in this run are reused);
- ruler rows: ``string_match`` (RULER's string match all on the kept chunks' text);
- with a reader: ``answer_accuracy`` (over answered calls), ``reader_answered``, ``reader_failures``.

Every (sample, method) also gets a row of its own in ``samples`` (`per_sample`: retrieved positions
and scores, supports found, chunks kept), so failures can be inspected and the aggregates recomputed.
Background embedding is reported separately (``backgrounds``: seconds, sentences embedded, whether it
came from the cache). Settings are validated before any heavy work (InputError listing the choices).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import BenchSettings, DataSettings, to_dict
from . import baselines as bl
from .aggregate import Acc, aggregate_row, averages
from .metrics import string_match_all

Progress = Callable[[str, int, int], None]

BENCHMARKS = ("babilong", "ruler")
DEFAULT_STEPS = {"babilong": 6, "ruler": 5, "prose": 2}  # prose: benchmarks/data/prose-qa.jsonl (one or two supports)
RESULTS_FORMAT = "qrag-bench-results"
RESULTS_FORMAT_VERSION = 1
_DEFAULTS = BenchSettings()
RULER_DEFAULT_LENGTHS = "4K,16K,32K"


def _items(value: str, what: str) -> list[str]:
    items = list(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    if not items:
        raise InputError(f"--{what} is empty: give a comma-separated list")
    return items


@dataclass
class Plan:
    """Resolved, validated settings and what to run."""

    settings: BenchSettings
    benchmark: str
    tasks: list[str]
    lengths: list[str]
    steps: int
    k: int
    cache: Path
    methods: list[str] = field(default_factory=list)
    data: tuple[dict, list[dict]] | None = None  # (header, samples) of --data

    def groups(self) -> list[tuple[str, str]]:
        """(task, length) pairs in run order: lengths outer, so each background is prepared once."""
        return [(t, n) for n in self.lengths for t in self.tasks]


def resolve(settings: BenchSettings) -> Plan:
    """Validate the settings and resolve the defaults (no model loading, no sample generation).

    A `--data` file is read and validated here, completely (each sample's size against the header's
    length too, `data.lengths`): a bad line fails before any heavy work. Its header's benchmark, task,
    length, n, seed and split replace the settings' (what settings.json and results.json report).
    """
    from ..data import babi, ruler
    from ..data import generate as gen
    from ..data import haystack as hs
    from ..embed.models import cache_root

    s = settings
    if s.n < 1:
        raise InputError("--n must be at least 1")
    if s.steps < 0:
        raise InputError("--steps must be >= 0 (0: the task default)")
    if s.k_dense < 0:
        raise InputError("--k-dense must be >= 0 (0: the number of steps)")
    if not isinstance(s.stop_threshold, (int, float)) or not math.isfinite(s.stop_threshold):
        raise InputError(f"--stop-threshold must be a finite number, got {s.stop_threshold!r}")
    if s.threads < 0:
        raise InputError("--threads must be >= 0 (0: all cores)")
    if s.reader_url:
        if not s.reader_url.startswith(("http://", "https://")):
            raise InputError(f"--reader-url must start with http:// or https://, got {s.reader_url!r}")
        if not s.reader_timeout > 0:
            raise InputError("--reader-timeout must be positive")
    hs.check_split(s.split)

    data = None
    if s.data:
        from ..data.lengths import check_lengths
        from ..data.samples import read_numbered_samples

        header, numbered = read_numbered_samples(s.data)
        name = "<stdin>" if s.data == "-" else s.data
        samples = check_lengths(header, numbered, name)  # every line validated now (errors name file and line)
        benchmark = header["benchmark"]
        if benchmark not in BENCHMARKS + ("prose",):  # prose: questions about real novels (benchmarks/data)
            raise InputError(f"{s.data}:1: unknown benchmark {benchmark!r}: use one of {', '.join(BENCHMARKS)}, prose")
        tasks, lengths = [header["task"]], [header["length"]]
        data = (header, samples)
    else:
        benchmark = s.benchmark
        if benchmark not in BENCHMARKS:
            raise InputError(f"unknown benchmark {benchmark!r}: use one of {', '.join(BENCHMARKS)}")
        tasks_s, lengths_s = s.tasks, s.lengths
        if benchmark == "ruler":
            if tasks_s == _DEFAULTS.tasks:
                tasks_s = ",".join(ruler.RULER_TASKS)
            if lengths_s == _DEFAULTS.lengths:
                lengths_s = RULER_DEFAULT_LENGTHS
        tasks, lengths = _items(tasks_s, "tasks"), _items(lengths_s, "lengths")
        valid_tasks = babi.TASKS if benchmark == "babilong" else ruler.RULER_TASKS
        bad = [t for t in tasks if t not in valid_tasks]
        if bad:
            raise InputError(f"unknown {benchmark} task(s) {', '.join(map(repr, bad))}: "
                             f"choose from {', '.join(valid_tasks)}")
        for length in lengths:
            if benchmark == "babilong":
                gen.babilong_sentences(length)
            elif length not in ruler.RULER_LENGTHS:
                raise InputError(f"unknown ruler length {length!r}: choose from {', '.join(ruler.RULER_LENGTHS)}")
        for t in tasks:
            for length in lengths:
                gen.check_settings(_data_settings(s, benchmark, t, length))
    steps = s.steps or DEFAULT_STEPS[benchmark]
    k = s.k_dense or steps
    cache = Path(s.cache).expanduser() if s.cache else cache_root() / "bench"
    methods = _methods(s)
    resolved = replace(s, benchmark=benchmark, tasks=",".join(tasks), lengths=",".join(lengths), steps=steps,
                       k_dense=k, cache=str(cache), methods=",".join(methods))
    if data is not None:  # the file's own figures, never the defaults
        resolved = replace(resolved, n=data[0]["n"], seed=data[0]["seed"], split=data[0]["split"])
    return Plan(resolved, benchmark, tasks, lengths, steps, k, cache, methods, data)


def same_vectors(a: Any, b: Any) -> bool:
    """Whether two model specs embed chunks identically (positions are applied per step, not stored)."""
    def strip(spec: Any) -> dict[str, Any]:
        d = spec.describe()
        return {"checksum": d["checksum"], "engine": d["engine"], "quantization": d["quantization"],
                "pooling": {k: v for k, v in d["pooling"].items() if k != "positions"}}
    return strip(a) == strip(b)


def _methods(s: BenchSettings) -> list[str]:
    known = [*bl.METHODS, *bl.ON_REQUEST]
    if s.fusion not in ("rrf", "score"):
        raise InputError(f"unknown fusion {s.fusion!r}: use rrf or score")
    if not s.methods:
        return known[:4] if s.trained else known[:3]
    chosen = _items(s.methods, "methods")
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}: choose from {', '.join(known)}")
    if bl.TRAINED in chosen and not s.trained:
        raise InputError("method qrag-trained needs --trained MODEL")
    return [m for m in known if m in chosen]


def _data_settings(s: BenchSettings, benchmark: str, task: str, length: str) -> DataSettings:
    return DataSettings(benchmark=benchmark, task=task, length=length, n=s.n, seed=s.seed, split=s.split)


def _versions() -> dict[str, str | None]:
    from .. import __version__

    out: dict[str, str | None] = {"qrag": __version__, "python": platform.python_version()}
    for dist in ("numpy", "onnxruntime", "bm25s", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _machine(threads: int) -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "threads": threads, "python": sys.version.split()[0]}


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark the settings describe; returns the results dict (see module doc).

    `progress(stage, done, total)` is called as samples are evaluated and backgrounds embedded.
    """
    from ..data.generate import generate
    from ..data.samples import materialise
    from ..embed.encoder import load_encoder
    from ..embed.models import resolve_model, resolve_roles
    from .contexts import ContextBuilder
    from .per_sample import sample_row
    from .reader import answer_score

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    plan = resolve(settings)
    s = plan.settings
    report = progress or (lambda stage, done, total: None)
    if plan.data is None:  # generated samples draw their haystack from the novels
        from ..data import haystack as hs

        hs.novel_split()  # the novels are missing: fail now, before loading any model

    methods = plan.methods
    threads = s.threads or os.cpu_count() or 1
    encoders = {}  # chunk (action) encoders, one context builder each
    state_encoders = {}  # the encoder of each method's states
    if {bl.DENSE, bl.MULTISTEP, bl.HYBRID, bl.MULTI_HYBRID} & set(methods):
        encoders["base"] = state_encoders["base"] = load_encoder(resolve_model(s.model), threads=threads)
    if s.trained and bl.TRAINED in methods:
        # a policy folder, or one model for both sides; a compact policy is exported once, on first use
        state_spec, action_spec = resolve_roles(s.trained, lambda msg: report(msg, 0, 1))
        base = encoders.get("base")
        if base is not None and same_vectors(base.spec, action_spec):
            encoders["trained"] = base  # a frozen action side is the base model: its contexts serve both
        else:
            encoders["trained"] = load_encoder(action_spec, threads=threads)
        state_encoders["trained"] = (encoders["trained"] if state_spec == action_spec
                                     else load_encoder(state_spec, threads=threads))
    builders: dict[str, Any] = {}
    for key, enc in encoders.items():
        same = next((b for k, b in builders.items() if encoders[k] is enc), None)
        builders[key] = same or ContextBuilder(enc, plan.cache, report)
    bm25 = bl.Bm25()
    reader = None
    if s.reader_url:
        from .reader import Reader

        reader = Reader(s.reader_url, s.reader_model, s.reader_timeout)
    threshold = float(s.stop_threshold)
    is_ruler = plan.benchmark == "ruler"

    rows: list[dict[str, Any]] = []
    per_sample: list[dict[str, Any]] = []  # one row per (sample, method): per_sample.py
    unique_builders = list({id(b): b for b in builders.values()}.values())
    try:
        groups = plan.groups()
        for gi, (task, length) in enumerate(groups, start=1):
            stage = f"{task} {length} ({gi}/{len(groups)})"
            if plan.data is not None:
                samples = plan.data[1]
            else:
                report(f"generate {task} {length}", 0, s.n)
                _, samples = generate(_data_settings(s, plan.benchmark, task, length))
                report(f"generate {task} {length}", len(samples), s.n)
            accs = {m: Acc() for m in methods}
            # Shared backgrounds first, so their embedding is reported (and timed) on its own.
            for ref in {repr(sorted(x["background"].items())): x["background"] for x in samples if "background" in x}.values():
                for b in {id(b): b for b in builders.values()}.values():
                    b.background(ref)
            for i, sample in enumerate(samples):
                texts = materialise(sample)
                support = list(sample["support"])
                q = sample["question"]
                found: dict[str, bl.MethodResult] = {}
                cost: dict[str, tuple[float, int | None]] = {}  # build seconds, sentences embedded
                built: dict[int, Any] = {}  # a builder shared by two methods builds each context once
                for key, builder in builders.items():
                    if id(builder) not in built:
                        built[id(builder)] = builder.build(sample, texts)
                    ctx, build_s, new = built[id(builder)]
                    retr = bl.retriever_for(state_encoders[key], ctx)
                    if key == "base":
                        if bl.DENSE in methods:
                            found[bl.DENSE] = bl.dense_topk(retr, q, plan.k)
                            cost[bl.DENSE] = (build_s, new)
                        if bl.MULTISTEP in methods:
                            found[bl.MULTISTEP] = bl.multistep(retr, q, plan.steps, threshold)
                            cost[bl.MULTISTEP] = (build_s, new)
                        if bl.HYBRID in methods or bl.MULTI_HYBRID in methods:
                            scorer, bm25_s = bl.bm25_scorer(texts)
                            hyb = bl.retriever_for(state_encoders[key], ctx, scorer, s.fusion)
                            for m in (bl.HYBRID, bl.MULTI_HYBRID):
                                if m in methods:
                                    found[m] = (bl.dense_topk(hyb, q, plan.k) if m == bl.HYBRID
                                                else bl.multistep(hyb, q, plan.steps, threshold))
                                    cost[m] = (build_s + bm25_s, new)
                    else:
                        found[bl.TRAINED] = bl.multistep(retr, q, plan.steps, threshold)
                        cost[bl.TRAINED] = (build_s, new)
                if bl.BM25 in methods:
                    model, build_s = bm25.index(texts)
                    found[bl.BM25] = bm25.topk(model, len(texts), q, plan.k)
                    cost[bl.BM25] = (build_s, None)
                for m in methods:  # rows in the order of the methods
                    r = found[m]
                    accs[m].add(r, support, *cost[m])
                    row = sample_row(sample, task, length, m, r, texts, *cost[m])
                    kept_texts = [texts[p] for p in sorted(r.kept)]
                    if is_ruler:
                        row["string_match"] = string_match_all(" ".join(kept_texts), sample.get("answers") or [sample["answer"]])
                        accs[m].string_match.append(row["string_match"])
                    if reader is not None:
                        output = reader.answer(q, kept_texts)
                        accs[m].outputs.append(output)
                        row["reader_output"] = output
                        row["answer_score"] = None if output is None else answer_score(output, sample)
                    per_sample.append(row)
                report(stage, i + 1, len(samples))
            for m in methods:
                rows.append(aggregate_row(m, task, length, accs[m], samples, is_ruler, reader is not None))
    finally:  # what was embedded is kept, even when the run fails half-way
        for b in unique_builders:
            b.flush()

    unique = {id(b): (key, b) for key, b in reversed(list(builders.items()))}.values()
    backgrounds = [{"model": key, **d} for key, b in unique for d in b.backgrounds]
    models = {key: enc.spec.describe() for key, enc in encoders.items()}
    if "trained" in state_encoders and state_encoders["trained"] is not encoders["trained"]:
        models["trained_state"] = state_encoders["trained"].spec.describe()
    for d in models.values():
        d["path"] = str(d["path"])
    out: dict[str, Any] = {
        "format": RESULTS_FORMAT, "format_version": RESULTS_FORMAT_VERSION,
        "benchmark": plan.benchmark, "tasks": plan.tasks, "lengths": plan.lengths, "methods": methods,
        "steps": plan.steps, "k": plan.k, "stop_threshold": threshold,
        "settings": to_dict(s), "models": models,
        "results": rows, "averages": averages(rows, methods, plan.lengths), "samples": per_sample,
        "backgrounds": backgrounds,
        "sentence_cache": [{"model": key, **d} for key, b in unique if (d := b.describe_sentences()) is not None],
        "background_embed_s": round(sum(b["embed_s"] for b in backgrounds), 3),
        "reader": reader.describe() if reader is not None else None,
        "versions": _versions(), "machine": _machine(threads),
        "started": started, "wall_s": round(time.perf_counter() - t_start, 3),
    }
    if plan.data is not None:
        out["data"] = {"path": s.data, "header": plan.data[0]}
    return out
