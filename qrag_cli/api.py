"""The thin high-level API the CLI (and users' scripts) call: build an index, open it, query it.

With plain strings, in three lines::

    from qrag_cli import api
    index = api.build(["Mary took the football there.", "Mary went to the garden."], out="indexes/demo")
    result = index.search("Where is the football?", steps=2)   # a Result; a list of questions gives a list

`build`, `open_index` and `Index.search` are the plain-string layer; `index`, `open_session` and
`QuerySession` take the settings dataclasses (the CLI calls those, and they share one result type).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embed.encoder import Encoder, load_encoder
from .embed.models import resolve_model, resolve_roles
from .errors import IncompatibleError, InputError
from .policy.loop import MultiStepRetriever, Trajectory
from .search.registry import open_backend
from .settings import ExportSettings, IndexSettings, QuerySettings
from .store.manifest import check_model
from .store.reader import IndexReader

if TYPE_CHECKING:  # the build pipeline is imported only by index(): queries start faster without it
    from .build import BuildProgress, BuildReport

__all__ = ["Hit", "Index", "Question", "QuerySession", "Result", "add_bm25", "ask_batches", "build", "export",
           "index", "open_index", "open_session", "parse_questions"]


def index(
    settings: IndexSettings,
    *,
    progress: Callable[[BuildProgress], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build an on-disk index (see `qrag_cli.build`)."""
    from .build import build_index

    return build_index(settings, progress=progress, warn=warn)


def export(settings: ExportSettings) -> Path:
    """Export a PyTorch embedder to an ONNX model folder (`qrag export`)."""
    from .embed.export import export_onnx, export_policy
    from .embed.models import policy_folder
    from .errors import OutputExistsError

    if not settings.out:
        raise InputError("--out is required")
    from .policy.artefact import export_policy_with_base_action, materialise, split_name, training_record, write_compact

    if settings.compact:
        if policy_folder(settings.model) is None:
            raise InputError(f"--compact needs a training checkpoint (RUN/checkpoints/best), not {settings.model}")
        training, validation = training_record(Path(settings.model))
        return write_compact(Path(settings.model), Path(settings.out), overwrite=settings.overwrite,
                             training=training, validation=validation)
    compact = split_name(settings.model)
    if compact is not None:  # a compact policy: its full folder (cached), exported like any policy
        if Path(settings.out).exists() and not settings.overwrite:
            raise OutputExistsError(f"{settings.out} exists: choose another --out or pass --overwrite")
        return export_policy_with_base_action(materialise(compact[0]), Path(settings.out), int8=settings.int8)
    source = "default:torch" if settings.model in ("", "default", "default:torch") else settings.model
    calibration: list[str] = []
    if settings.calibration:
        from .corpus.chunking import iter_chunks
        from .corpus.readers import open_corpus
        from .settings import ChunkerSettings

        chunks = iter_chunks(open_corpus(settings.calibration), ChunkerSettings())
        calibration = [c.text for c, _ in zip(chunks, range(settings.calibration_sentences))]
    policy = policy_folder(source) if source != "default:torch" else None
    if policy is not None:
        return export_policy(policy, Path(settings.out), overwrite=settings.overwrite, int8=settings.int8,
                             calibration=calibration)
    return export_onnx(resolve_model(source), Path(settings.out), overwrite=settings.overwrite,
                       int8=settings.int8, calibration=calibration)


@dataclass(frozen=True)
class Question:
    id: str
    text: str


def parse_questions(lines: Iterable[str]) -> list[Question]:
    """Questions from stdin or a topics file: one per line, JSON Lines objects with `id` and `question`,
    or Pyserini-style tab-separated topics (`qid<TAB>text`)."""
    out: list[Question] = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise InputError(f"stdin line {n}: invalid JSON ({exc.args[0]})") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
                raise InputError(f"stdin line {n}: a JSON question needs a string field 'question'")
            out.append(Question(str(obj.get("id", len(out) + 1)), obj["question"]))
        elif "\t" in raw.strip("\r\n"):  # Pyserini-style topics: qid<TAB>text
            qid, text = raw.strip("\r\n").split("\t", 1)
            if not qid.strip() or not text.strip():
                raise InputError(f"line {n}: a tab-separated topic needs an id and a text (qid<TAB>text)")
            out.append(Question(qid.strip(), text.strip()))
        else:
            out.append(Question(str(len(out) + 1), line))
    return out


def default_query_model(manifest: dict[str, Any]) -> str:
    """The model a query uses without --model: the shipped trained policy (`policy:default`) when the index
    was built with the base model it was trained on (its action side *is* that model, so no re-indexing),
    else the model the index was built with. `--model default` runs the untrained base loop."""
    from .policy.artefact import SHIPPED_ROOT, is_compact, read_manifest

    built = manifest["model"]
    ref = built.get("ref", "default")
    folder = SHIPPED_ROOT / "default"
    if not is_compact(folder):
        return ref
    policy = read_manifest(folder)
    base_pooling = {"kind": "mean", "normalize": True, "scale": 1.0}
    pooling = {k: v for k, v in (built.get("pooling") or {}).items() if k != "positions"}
    if built.get("checksum") == policy["base"]["checksum"] and pooling == base_pooling:
        return "policy:default"
    return ref


class QuerySession:
    """An open index with its checked encoder and search backend, ready for questions.

    `announce(message)` is told about slow one-time work (exporting a policy on its first use)."""

    def __init__(self, settings: QuerySettings, encoder: Encoder | None = None,
                 announce: Callable[[str], None] | None = None) -> None:
        settings.validate()
        if not settings.index:
            raise InputError("--index is required")
        self.settings = settings
        self.index = IndexReader(Path(settings.index))
        manifest = self.index.manifest
        if settings.retriever != "dense":
            self.index.bm25()  # an index without BM25 fails now, before the model loads
        if encoder is None:  # a trained policy: states by its state encoder, the index by its action encoder
            self.model = settings.model or default_query_model(manifest)
            state, action = resolve_roles(self.model, announce)
            check_model(manifest, action.describe(), self.index.folder)
            encoder = load_encoder(state, max_tokens=manifest["model"].get("max_tokens", 128), threads=settings.threads)
        else:
            self.model = encoder.spec.name
            check_model(manifest, encoder.spec.describe(), self.index.folder)
        self.encoder = encoder
        ann = manifest["ann"]
        backend = settings.backend or ann["backend"]
        if backend not in ("exact", ann["backend"]):
            raise IncompatibleError(
                f"{self.index.folder} was built with the {ann['backend']} backend: query it with "
                f"--backend {ann['backend']} or --backend exact, or re-index with --backend {backend}"
            )
        self.backend = open_backend(
            backend, self.index.folder, self.index.vectors, _ann_settings(ann),
            ef=settings.ef or None, threads=settings.threads,
        )
        self.retriever = self._retriever(settings)

    def _retriever(self, s: QuerySettings) -> MultiStepRetriever:
        """The loop for these settings (`retriever` bm25 or hybrid: with the index's BM25, NoBm25Error without)."""
        lexical = self.index.bm25() if s.retriever != "dense" else None
        return MultiStepRetriever(self.encoder, self.index, self.backend, piece_tokens=s.piece_tokens,
                                  positional=s.positional, candidates=s.candidates, threads=s.threads,
                                  lexical=lexical, retriever=s.retriever, fusion=s.fusion,
                                  fusion_weight=s.fusion_weight, fusion_candidates=s.fusion_candidates)

    def ask(self, questions: Sequence[Question | str]) -> list[dict[str, Any]]:
        """Run the loop for a batch of questions (Question objects or plain strings, numbered from 1);
        one JSON-able result object per question (what `qrag query` prints)."""
        return [r.to_dict() for r in self.results(questions)]

    def results(self, questions: Sequence[Question | str], *, steps: int | None = None, k: int | None = None,
                stop_threshold: float | None = None, retriever: str | None = None,
                fusion: str | None = None) -> list[Result]:
        """Typed results; `steps`, `k`, `stop_threshold`, `retriever` and `fusion` override the session's
        settings."""
        asked = _as_questions(questions)
        s = self.settings
        steps, k = s.steps if steps is None else steps, s.k if k is None else k
        threshold = s.stop_threshold if stop_threshold is None else stop_threshold
        run = replace(s, steps=steps, k=k, retriever=retriever or s.retriever, fusion=fusion or s.fusion)
        run.validate()
        loop = self.retriever
        if (run.retriever, run.fusion) != (loop.retriever, loop.fusion):
            loop = self._retriever(run)
        trajectories = loop.run([q.text for q in asked], steps=steps, k=k)
        return [_result(q, t, threshold) for q, t in zip(asked, trajectories)]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: the step that found it, its global position, document and character span."""

    step: int
    chunk: int
    doc: str
    start: int
    end: int
    score: float
    text: str


@dataclass(frozen=True)
class Result:
    """The answer to one question: every chunk retrieved, in order, and `kept` (positions before the
    first step scored under the stop threshold; all of them without one)."""

    id: str
    question: str
    retrieved: tuple[Hit, ...]
    kept: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["retrieved"], d["kept"] = [dict(h) for h in d["retrieved"]], list(d["kept"])
        return d


def _as_questions(questions: Sequence[Question | str]) -> list[Question]:
    if isinstance(questions, str):
        questions = [questions]
    return [q if isinstance(q, Question) else Question(str(i), str(q)) for i, q in enumerate(questions, 1)]


def _result(q: Question, t: Trajectory, stop_threshold: float | None) -> Result:
    hits = tuple(
        Hit(r.step, r.chunk.position, r.chunk.doc, r.chunk.start, r.chunk.end, round(r.score, 6), r.chunk.text)
        for r in t.retrieved
    )
    return Result(q.id, q.text, hits, tuple(t.kept(stop_threshold)))


def _ann_settings(ann: dict[str, Any]):
    from .settings import AnnSettings

    return AnnSettings(**{k: ann[k] for k in ("backend", "m", "ef_construction", "ef") if k in ann})


def add_bm25(path: str | Path) -> dict[str, Any]:
    """Add the BM25 index to an index built without one (`qrag index --add-bm25`); a summary dict."""
    from .store.bm25 import add_bm25 as add

    return add(Path(path))


def open_session(settings: QuerySettings, announce: Callable[[str], None] | None = None) -> QuerySession:
    return QuerySession(settings, announce=announce)


def capped_steps(settings: QuerySettings, chunks: int, warn: Callable[[str], None] | None = None) -> QuerySettings:
    """`settings` with --steps capped at what an index of `chunks` chunks can give (`warn` is told)."""
    most = max(1, chunks // max(settings.k, 1))
    if settings.steps <= most:
        return settings
    if warn:
        warn(f"--steps {settings.steps} retrieves more than the index's {chunks} chunks: capped at {most}")
    return replace(settings, steps=most)


def ask_batches(settings: QuerySettings, questions: Sequence[Question], *, batch: int = 64,
                announce: Callable[[str], None] | None = None,
                warn: Callable[[str], None] | None = None) -> Iterator[list[dict[str, Any]]]:
    """The answers to `questions`, batch by batch in the input order (what `qrag query` prints): in this
    process, or across Ray actors with `settings.ray` (the same batches, so the same answers)."""
    if settings.ray:
        from .distributed.cluster import require_ray
        from .distributed.ray_query import ask_on_ray

        settings.validate()
        require_ray()
        yield from ask_on_ray(settings, questions, batch=batch, announce=announce, warn=warn)
        return
    session = open_session(settings, announce)
    session.settings = capped_steps(session.settings, len(session.index), warn)
    for start in range(0, len(questions), batch):
        yield session.ask(questions[start : start + batch])


class Index:
    """An index opened by `open_index` (or returned by `build`); `search` asks it questions.

    One query session (encoder and search backend) is opened per model on first use and kept."""

    def __init__(self, path: str | Path, *, model: str = "", threads: int = 0) -> None:
        self.path = Path(path)
        self.manifest = IndexReader(self.path).manifest  # opening checks the files: errors come now
        self.model, self.threads = model, threads
        self._sessions: dict[str, QuerySession] = {}

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, chunks={self.manifest['corpus']['chunks']})"

    def session(self, model: str | None = None) -> QuerySession:
        """The query session for `model` ('' or None: the index's default, see `qrag query --help`)."""
        key = self.model if model is None else model
        if key not in self._sessions:
            self._sessions[key] = QuerySession(QuerySettings(index=str(self.path), model=key, threads=self.threads))
        return self._sessions[key]

    def search(self, questions: str | Sequence[str | Question], *, steps: int = 1, k: int = 1,
               model: str | None = None, stop_threshold: float | None = None, retriever: str = "dense",
               fusion: str = "rrf") -> Result | list[Result]:
        """Multi-step retrieval: one question gives a Result, a list of questions a list (run as batches).

        `retriever`: 'dense', 'bm25' or 'hybrid' (`fusion` 'rrf' or 'score'), see `qrag query --help`."""
        one = isinstance(questions, (str, Question))
        asked = _as_questions([questions] if one else list(questions))
        session = self.session(model)
        results: list[Result] = []
        for start in range(0, len(asked), 64):
            results += session.results(asked[start : start + 64], steps=steps, k=k, stop_threshold=stop_threshold,
                                       retriever=retriever, fusion=fusion)
        return results[0] if one else results


def open_index(path: str | Path, *, model: str = "", threads: int = 0) -> Index:
    """Open an index folder built by `build` or `qrag index`."""
    return Index(path, model=model, threads=threads)


def build(
    source: str | Path | Iterable[str | tuple[str, str]],
    out: str | Path = "",
    *,
    model: str = "default",
    overwrite: bool = False,
    progress: Callable[[BuildProgress], None] | None = None,
    warn: Callable[[str], None] | None = None,
    **options: Any,
) -> Index:
    """Build an index and open it. `source` is a corpus path (as `qrag index` takes it) or an iterable
    of texts or of (id, text) pairs (one document each; `out` is then required). `options` are further
    `IndexSettings` fields (`batch_size=`, `threads=`, `chunker=ChunkerSettings(...)`, ...)."""
    if isinstance(source, (str, Path)):
        settings = IndexSettings(corpus=str(source), out=str(out) if out else "", model=model, overwrite=overwrite,
                                 **options)
        return open_index(index(settings, progress=progress, warn=warn).out)
    if not out:
        raise InputError("build(texts, out=...): an index built from texts needs an output folder")
    with tempfile.TemporaryDirectory(prefix="qrag-texts-") as tmp:
        corpus = Path(tmp) / "texts.jsonl"
        _write_documents(source, corpus)
        settings = IndexSettings(corpus=str(corpus), out=str(out), model=model, overwrite=overwrite, **options)
        report = index(settings, progress=progress, warn=warn)
    return open_index(report.out)


def _write_documents(source: Iterable[str | tuple[str, str]], path: Path) -> None:
    """Texts or (id, text) pairs as a JSON Lines corpus (ids default to 1, 2, ...)."""
    with path.open("w", encoding="utf-8") as fh:
        for n, item in enumerate(source, 1):
            if isinstance(item, str):
                doc_id, text = str(n), item
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
                doc_id, text = str(item[0]), item[1]
            else:
                raise InputError(f"build(): item {n} is neither a text nor an (id, text) pair: {type(item).__name__}")
            fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
