"""The `qrag` command: Typer wiring only. Options map onto the settings dataclasses; errors map to
one-line messages and exit codes here and nowhere else; stdout carries data, stderr everything else."""

from __future__ import annotations

import inspect
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .cli_errors import err, guarded, terminate, write_failed
from .cli_errors import state as _state
from .cli_help import EXAMPLES, TRAIN_PANELS, options_from, quiet_option
from .cli_progress import ProgressView, index_callback, train_callback
from .errors import OutputExistsError
from .output import FORMATS, render, resolve_format
from .settings import (
    AnnSettings,
    BenchSettings,
    ChunkerSettings,
    DataSettings,
    ExportSettings,
    IndexSettings,
    QuerySettings,
    TrainSettings,
    field_help,
)

app = typer.Typer(
    name="qrag",
    help="Multi-step retrieval over very long texts (Q-RAG).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
H_INDEX, H_QUERY = field_help(IndexSettings), field_help(QuerySettings)
H_CHUNK, H_ANN = field_help(ChunkerSettings), field_help(AnnSettings)
D_INDEX, D_QUERY, D_CHUNK, D_ANN = IndexSettings(), QuerySettings(), ChunkerSettings(), AnnSettings()
H_EXPORT, D_EXPORT = field_help(ExportSettings), ExportSettings()
H_DATA, D_DATA = field_help(DataSettings), DataSettings()
H_BENCH, D_BENCH = field_help(BenchSettings), BenchSettings()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qrag {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug


@app.command("index", epilog=EXAMPLES["index"])
@guarded
def index_cmd(
    corpus: Optional[str] = typer.Argument(None, help=H_INDEX["corpus"] + " Required unless --add-bm25."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=H_INDEX["out"]),
    overwrite: bool = typer.Option(D_INDEX.overwrite, "--overwrite", help=H_INDEX["overwrite"]),
    resume: bool = typer.Option(D_INDEX.resume, "--resume", help=H_INDEX["resume"]),
    append: Optional[Path] = typer.Option(None, "--append", help=H_INDEX["append"]),
    model: str = typer.Option(D_INDEX.model, "--model", help=H_INDEX["model"]),
    chunker: str = typer.Option(D_CHUNK.kind, "--chunker", help=H_CHUNK["kind"]),
    max_sentence_tokens: int = typer.Option(D_CHUNK.max_sentence_tokens, help=H_CHUNK["max_sentence_tokens"]),
    window: int = typer.Option(D_CHUNK.window, help=H_CHUNK["window"]),
    overlap: int = typer.Option(D_CHUNK.overlap, help=H_CHUNK["overlap"]),
    backend: str = typer.Option(D_ANN.backend, "--backend", help=H_ANN["backend"]),
    m: int = typer.Option(D_ANN.m, "--hnsw-m", help=H_ANN["m"]),
    ef_construction: int = typer.Option(D_ANN.ef_construction, help=H_ANN["ef_construction"]),
    ef: int = typer.Option(D_ANN.ef, "--ef", help=H_ANN["ef"]),
    batch_size: int = typer.Option(D_INDEX.batch_size, help=H_INDEX["batch_size"]),
    shard_chunks: int = typer.Option(D_INDEX.shard_chunks, help=H_INDEX["shard_chunks"]),
    embed_group: int = typer.Option(D_INDEX.embed_group, help=H_INDEX["embed_group"]),
    max_tokens: int = typer.Option(D_INDEX.max_tokens, help=H_INDEX["max_tokens"]),
    threads: int = typer.Option(D_INDEX.threads, help=H_INDEX["threads"]),
    seed: int = typer.Option(D_INDEX.seed, help=H_INDEX["seed"]),
    ray: str = typer.Option(D_INDEX.ray, "--ray", help=H_INDEX["ray"]),
    workers: int = typer.Option(D_INDEX.workers, "--workers", help=H_INDEX["workers"]),
    bm25: bool = typer.Option(D_INDEX.bm25, "--bm25/--no-bm25", help=H_INDEX["bm25"]),
    add_bm25: Optional[Path] = typer.Option(None, "--add-bm25", help=H_INDEX["add_bm25"]),
    quiet: bool = quiet_option(),
) -> None:
    """Chunk a corpus, embed it and write an on-disk index."""
    from .api import index
    from .errors import InputError

    if add_bm25 is not None:
        if corpus:
            raise InputError("--add-bm25 adds BM25 to an existing index: give no CORPUS")
        from .api import add_bm25 as add

        with err.status("adding the BM25 index"):
            _emit_summary(add(add_bm25))
        return
    if not corpus:
        raise InputError("missing CORPUS: give a file, a folder or '-' (or --add-bm25 DIR)")

    settings = IndexSettings(
        corpus=corpus, out=str(out) if out else "", overwrite=overwrite, resume=resume,
        append=str(append) if append else "", model=model,
        chunker=ChunkerSettings(chunker, max_sentence_tokens, window, overlap),
        ann=AnnSettings(backend, m, ef_construction, ef),
        batch_size=batch_size, shard_chunks=shard_chunks, embed_group=embed_group, max_tokens=max_tokens,
        threads=threads, seed=seed, ray=ray, workers=workers, bm25=bm25,
    )
    with ProgressView(err, quiet=quiet) as view:
        report = index(settings, progress=index_callback(view), warn=view.warn)
    summary = {
        "index": str(report.out), "documents": report.documents, "chunks": report.chunks, "tokens": report.tokens,
        "seconds": round(report.seconds, 2), "tokens_per_s": round(report.embedded_tokens / max(report.embed_seconds, 1e-9)),
        "shards": report.shards, "shards_resumed": report.shards_resumed,
    }
    if append:
        summary["appended_chunks"] = report.appended_chunks
    _emit_summary(summary)


def _emit_summary(summary: dict[str, Any]) -> None:
    if sys.stdout.isatty():
        table = Table(show_header=False)
        for k, v in summary.items():
            table.add_row(k, str(v))
        Console().print(table)
    else:
        typer.echo(json.dumps(summary))


@app.command("query", epilog=EXAMPLES["query"])
@guarded
def query_cmd(
    questions: Optional[list[str]] = typer.Argument(None, help="Questions (default: read stdin, one per line or JSONL)."),
    index_dir: Path = typer.Option(..., "--index", "-i", help=H_QUERY["index"]),
    steps: int = typer.Option(D_QUERY.steps, "--steps", "-s", help=H_QUERY["steps"]),
    k: int = typer.Option(D_QUERY.k, "--k", "-k", help=H_QUERY["k"]),
    stop_threshold: Optional[float] = typer.Option(None, "--stop-threshold", help=H_QUERY["stop_threshold"]),
    model: str = typer.Option(D_QUERY.model, "--model", help=H_QUERY["model"]),
    piece_tokens: int = typer.Option(D_QUERY.piece_tokens, help=H_QUERY["piece_tokens"]),
    backend: str = typer.Option(D_QUERY.backend, "--backend", help=H_QUERY["backend"]),
    ef: int = typer.Option(D_QUERY.ef, "--ef", help=H_QUERY["ef"]),
    positional: str = typer.Option(D_QUERY.positional, "--positional", help=H_QUERY["positional"]),
    candidates: int = typer.Option(D_QUERY.candidates, "--candidates", help=H_QUERY["candidates"]),
    retriever: str = typer.Option(D_QUERY.retriever, "--retriever", help=H_QUERY["retriever"]),
    fusion: str = typer.Option(D_QUERY.fusion, "--fusion", help=H_QUERY["fusion"]),
    fusion_weight: float = typer.Option(D_QUERY.fusion_weight, "--fusion-weight", help=H_QUERY["fusion_weight"]),
    fusion_candidates: int = typer.Option(D_QUERY.fusion_candidates, "--fusion-candidates",
                                          help=H_QUERY["fusion_candidates"]),
    threads: int = typer.Option(D_QUERY.threads, help=H_QUERY["threads"]),
    fmt: str = typer.Option("auto", "--format", "-f", help=f"Output format: {', '.join(FORMATS)}."),
    topics: Optional[Path] = typer.Option(None, "--topics", help="Read the questions from this file: one per line, "
                                          "JSON Lines, or Pyserini topics (qid<TAB>text, e.g. topics.tsv)."),
    run_tag: str = typer.Option("qrag", "--run-tag", help="Run tag (6th column) of --format trec."),
    ray: str = typer.Option(D_QUERY.ray, "--ray", help=H_QUERY["ray"]),
    workers: int = typer.Option(D_QUERY.workers, "--workers", help=H_QUERY["workers"]),
    quiet: bool = quiet_option(),
) -> None:
    """Multi-step retrieval: print the chunks retrieved for each question."""
    from .api import Question, ask_batches, parse_questions
    from .errors import InputError

    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    settings = QuerySettings(
        index=str(index_dir), model=model, steps=steps, k=k, stop_threshold=stop_threshold,
        piece_tokens=piece_tokens, backend=backend, ef=ef, positional=positional, candidates=candidates,
        retriever=retriever, fusion=fusion, fusion_weight=fusion_weight, fusion_candidates=fusion_candidates,
        threads=threads, ray=ray, workers=workers,
    )
    if topics is not None:
        if questions:
            raise InputError("give questions as arguments or with --topics, not both")
        try:
            with topics.open(encoding="utf-8") as fh:
                asked = parse_questions(fh)
        except OSError as exc:
            raise InputError(f"cannot read --topics {topics}: {exc.strerror or exc}") from exc
    elif questions:
        asked = [Question(str(i), q) for i, q in enumerate(questions, 1)]
    elif sys.stdin is None or sys.stdin.isatty():
        raise InputError("no question: give questions as arguments or on stdin")
    else:
        asked = parse_questions(sys.stdin)
    if not asked:
        raise InputError("no question: " + ("the topics file" if topics is not None else "stdin") + " was empty")
    empty = [q.id for q in asked if not q.text.strip()]
    if empty:
        raise InputError(f"empty question (id {', '.join(empty[:5])}): every question needs some text")
    fmt = resolve_format(fmt, sys.stdout.isatty())
    if fmt == "trec":  # before any work: a bad id would break the six columns
        from .output import check_trec

        check_trec([q.id for q in asked], run_tag)
    with ProgressView(err, quiet=quiet) as view:  # one-time exports on first use are announced
        for answers in ask_batches(settings, asked, announce=view.info, warn=view.warn):
            for line in render(answers, fmt, run_tag):
                try:
                    typer.echo(line)
                except BrokenPipeError:
                    raise
                except OSError as exc:
                    raise write_failed(exc, "stdout") from None


@app.command("export", epilog=EXAMPLES["export"])
@guarded
def export_cmd(
    model: str = typer.Argument(D_EXPORT.model, help=H_EXPORT["model"]),
    out: Path = typer.Option(..., "--out", "-o", help=H_EXPORT["out"]),
    int8: bool = typer.Option(D_EXPORT.int8, "--int8", help=H_EXPORT["int8"]),
    calibration: str = typer.Option(D_EXPORT.calibration, "--calibration", help=H_EXPORT["calibration"]),
    calibration_sentences: int = typer.Option(D_EXPORT.calibration_sentences, help=H_EXPORT["calibration_sentences"]),
    overwrite: bool = typer.Option(D_EXPORT.overwrite, "--overwrite", help=H_EXPORT["overwrite"]),
    compact: bool = typer.Option(D_EXPORT.compact, "--compact", help=H_EXPORT["compact"]),
    quiet: bool = quiet_option(),
) -> None:
    """Export an embedder or policy to ONNX (fp32 or int8), or a training checkpoint to a compact policy."""
    from .api import export

    settings = ExportSettings(model=model, out=str(out), int8=int8, calibration=calibration,
                              calibration_sentences=calibration_sentences, overwrite=overwrite, compact=compact)
    doing = "writing the compact policy" if compact else "exporting to ONNX" + (" and quantising to int8" if int8 else "")
    with ProgressView(err, quiet=quiet) as view:
        if view.terminal and not quiet:
            with err.status(doing):
                folder = export(settings)
        else:
            view.info(f"{doing} ...")
            t0 = time.perf_counter()
            folder = export(settings)
            view.info(f"done in {time.perf_counter() - t0:.0f} s")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if compact:
        delta = manifest["state"]["delta"]
        _emit_summary({"policy": str(folder), "layers": manifest["state"]["layers"], "bytes": delta["bytes"],
                       "sha256": delta["sha256"], "updates": manifest["updates"]})
        return
    if "onnx" not in manifest:  # a policy: describe its state side
        manifest = json.loads((folder / "state" / "manifest.json").read_text(encoding="utf-8"))
    _emit_summary({"model": str(folder), "source": manifest["source"]["name"], "dim": manifest["dim"],
                   "quantization": manifest["quantization"], "bytes": manifest["onnx"]["bytes"]})


@app.command("data", epilog=EXAMPLES["data"])
@guarded
def data_cmd(
    benchmark: str = typer.Argument(..., help=H_DATA["benchmark"]),
    task: str = typer.Option(D_DATA.task, "--task", help=H_DATA["task"]),
    length: str = typer.Option(D_DATA.length, "--length", help=H_DATA["length"]),
    n: int = typer.Option(D_DATA.n, "--n", help=H_DATA["n"]),
    seed: int = typer.Option(D_DATA.seed, "--seed", help=H_DATA["seed"]),
    split: str = typer.Option(D_DATA.split, "--split", help=H_DATA["split"]),
    haystack: str = typer.Option(D_DATA.haystack, "--haystack", help=H_DATA["haystack"]),
    values: str = typer.Option(D_DATA.values, "--values", help=H_DATA["values"]),
    hops: int = typer.Option(D_DATA.hops, "--hops", help=H_DATA["hops"]),
    hard_negatives: float = typer.Option(D_DATA.hard_negatives, "--hard-negatives", help=H_DATA["hard_negatives"]),
    background_pool: int = typer.Option(D_DATA.background_pool, "--background-pool", help=H_DATA["background_pool"]),
    out: str = typer.Option(D_DATA.out, "--out", "-o", help=H_DATA["out"]),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    keys: str = typer.Option(D_DATA.keys, "--keys", help=H_DATA["keys"]),
    per_sample: bool = typer.Option(D_DATA.per_sample, "--per-sample-haystack/--shared-haystack",
                                    help=H_DATA["per_sample"]),
    vt_example: bool = typer.Option(D_DATA.vt_example, "--vt-example/--no-vt-example", help=H_DATA["vt_example"]),
) -> None:
    """Generate BabiLong- or RULER-style samples (JSON Lines, format qrag-samples v1)."""
    if out and Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --overwrite to replace it")
    if out and Path(out).is_dir():
        raise OutputExistsError(f"{out} is a folder: --out takes a file name")
    from .data.generate import generate
    from .data.samples import write_samples

    settings = DataSettings(benchmark, task, length, n, seed, split, haystack, values, hops, hard_negatives,
                            background_pool, out, keys=keys, per_sample=per_sample, vt_example=vt_example)
    with ProgressView(err), err.status(f"generating {benchmark} {task} {length}"):  # one-time work is announced
        header, samples = generate(settings)
    try:
        write_samples(out or "-", header, samples)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise write_failed(exc, out or "stdout") from None
    if out:
        err.print(f"wrote {len(samples)} samples to {escape(out)}", soft_wrap=True)


@app.command("bench", epilog=EXAMPLES["bench"])
@guarded
def bench_cmd(
    benchmark: str = typer.Argument(D_BENCH.benchmark, help=H_BENCH["benchmark"]),
    tasks: str = typer.Option(D_BENCH.tasks, "--tasks", help=H_BENCH["tasks"]),
    lengths: str = typer.Option(D_BENCH.lengths, "--lengths", help=H_BENCH["lengths"]),
    n: int = typer.Option(D_BENCH.n, "--n", help=H_BENCH["n"]),
    seed: int = typer.Option(D_BENCH.seed, "--seed", help=H_BENCH["seed"]),
    split: str = typer.Option(D_BENCH.split, "--split", help=H_BENCH["split"]),
    model: str = typer.Option(D_BENCH.model, "--model", help=H_BENCH["model"]),
    trained: str = typer.Option(D_BENCH.trained, "--trained", help=H_BENCH["trained"]),
    methods: str = typer.Option(D_BENCH.methods, "--methods", help=H_BENCH["methods"]),
    fusion: str = typer.Option(D_BENCH.fusion, "--fusion", help=H_BENCH["fusion"]),
    steps: int = typer.Option(D_BENCH.steps, "--steps", help=H_BENCH["steps"]),
    k_dense: int = typer.Option(D_BENCH.k_dense, "--k-dense", help=H_BENCH["k_dense"]),
    stop_threshold: float = typer.Option(D_BENCH.stop_threshold, "--stop-threshold", help=H_BENCH["stop_threshold"]),
    data: str = typer.Option(D_BENCH.data, "--data", help=H_BENCH["data"]),
    out: str = typer.Option(D_BENCH.out, "--out", "-o", help=H_BENCH["out"] + " Default: bench-out/BENCHMARK-TIME."),
    cache: str = typer.Option(D_BENCH.cache, "--cache", help=H_BENCH["cache"]),
    reader_url: str = typer.Option(D_BENCH.reader_url, "--reader-url", help=H_BENCH["reader_url"], rich_help_panel="Reader (optional)"),
    reader_model: str = typer.Option(D_BENCH.reader_model, "--reader-model", help=H_BENCH["reader_model"], rich_help_panel="Reader (optional)"),
    reader_timeout: float = typer.Option(D_BENCH.reader_timeout, "--reader-timeout", help=H_BENCH["reader_timeout"], rich_help_panel="Reader (optional)"),
    threads: int = typer.Option(D_BENCH.threads, "--threads", help=H_BENCH["threads"]),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results in an existing --out folder."),
    show_misses: bool = typer.Option(
        False, "--show-misses", help="Print the missed samples (a supporting chunk not retrieved) on stdout "
        "instead of the tables: JSON Lines when piped, text on a terminal. With --out naming a finished "
        "run (and no --overwrite), read its results.json without running again."),
    quiet: bool = quiet_option(),
) -> None:
    """Benchmark retrieval (BabiLong / RULER / a samples file) against dense, BM25 and untrained baselines."""
    from .bench.report import write_results
    from .bench.runner import run_bench

    if show_misses and out and not overwrite and (Path(out) / "results.json").is_file():
        _print_misses(out, None)
        return
    out = out or f"bench-out/{'data' if data else benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"
    if Path(out).exists() and not overwrite and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise OutputExistsError(f"{out} exists: choose another --out or pass --overwrite to replace its results")
    settings = BenchSettings(
        benchmark=benchmark, tasks=tasks, lengths=lengths, n=n, seed=seed, split=split, model=model, trained=trained,
        methods=methods, fusion=fusion,
        steps=steps, k_dense=k_dense, stop_threshold=stop_threshold, data=data, out=out, cache=cache,
        reader_url=reader_url, reader_model=reader_model, reader_timeout=reader_timeout, threads=threads,
    )
    with ProgressView(err, quiet=quiet) as view:
        results = run_bench(settings, lambda stage, done, total: view.update(stage, done, total))
    table = write_results(out, results)
    view.info(f"results in {out} (results.json, results.md, coverage.png)")
    if show_misses:
        _print_misses(out, results)
    else:
        typer.echo(table)


def _print_misses(out: str, results: dict[str, Any] | None) -> None:
    """The missed samples of a run (or of the results.json in `out`) on stdout; a count on stderr."""
    from .bench.per_sample import load_results, misses, render_misses

    if results is None:
        err.print(f"reading {escape(out)}/results.json (no new run: pass --overwrite to run again)", soft_wrap=True)
        results = load_results(out)
    missed = misses(results)
    for line in render_misses(missed, resolve_format("auto", sys.stdout.isatty())):
        typer.echo(line)
    err.print(f"{len(missed)} missed of {len(results['samples'])} sample runs", soft_wrap=True)


@guarded
def train_cmd(quiet: bool = False, **values: Any) -> None:
    """Train the embedders with Q-RAG reinforcement learning (see `--preset cpu` for 2-core machines)."""
    from .rl.trainer import train

    settings = TrainSettings(**values)
    with ProgressView(err, quiet=quiet) as view:
        summary = train(settings, train_callback(view), stage=lambda name, done, total: view.update(name, done, total))
    _emit_summary(summary)


_train_options = options_from(TrainSettings, panels=TRAIN_PANELS)
train_cmd.__signature__ = _train_options.replace(parameters=[  # type: ignore[attr-defined]
    *_train_options.parameters.values(),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=quiet_option("Run"), annotation=bool)])
app.command("train", epilog=EXAMPLES["train"])(train_cmd)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, terminate)
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. during imports)
        err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
