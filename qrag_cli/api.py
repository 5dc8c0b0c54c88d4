"""The thin high-level API the CLI (and users' scripts) call: build an index, open it, query it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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

__all__ = ["Question", "QuerySession", "export", "index", "open_session", "parse_questions"]


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
    """Questions from stdin: one per line, or JSON Lines objects with `id` and `question`."""
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
        self.retriever = MultiStepRetriever(encoder, self.index, self.backend, piece_tokens=settings.piece_tokens,
                                            positional=settings.positional, candidates=settings.candidates,
                                            threads=settings.threads)

    def ask(self, questions: list[Question]) -> list[dict[str, Any]]:
        """Run the loop for a batch of questions; one result object per question."""
        trajectories = self.retriever.run([q.text for q in questions], steps=self.settings.steps, k=self.settings.k)
        return [self._result(q, t) for q, t in zip(questions, trajectories)]

    def _result(self, q: Question, t: Trajectory) -> dict[str, Any]:
        return {
            "id": q.id,
            "question": q.text,
            "retrieved": [
                {
                    "step": r.step,
                    "chunk": r.chunk.position,
                    "doc": r.chunk.doc,
                    "start": r.chunk.start,
                    "end": r.chunk.end,
                    "score": round(r.score, 6),
                    "text": r.chunk.text,
                }
                for r in t.retrieved
            ],
            "kept": t.kept(self.settings.stop_threshold),
        }


def _ann_settings(ann: dict[str, Any]):
    from .settings import AnnSettings

    return AnnSettings(**{k: ann[k] for k in ("backend", "m", "ef_construction", "ef") if k in ann})


def open_session(settings: QuerySettings, announce: Callable[[str], None] | None = None) -> QuerySession:
    return QuerySession(settings, announce=announce)
