"""Differential test of the int8 embedder: `quantize_int8` against the fp32 ONNX export on real novel text.

The acceptance figures are measured on 10k sentences by ``benchmarks/embed.py`` (mean cosine 0.998,
top-10 overlap 0.92); here 1000 sentences keep the test quick, with a margin below those figures.
"""

from __future__ import annotations

import lzma
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

N_SENTENCES = 1000
MIN_MEAN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.90


def _shared_dir() -> Path:
    env = os.environ.get("QRAG_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def _novel_sentences(limit: int) -> list[str]:
    """`limit` sentences (5..128 word-piece-ish words) taken round-robin from the first novels."""
    from qrag_cli.corpus.sentences import split_sentences

    folder = _shared_dir() / "data" / "gutenberg"
    files = sorted(folder.glob("*.txt.xz")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared Gutenberg novels not found under {folder} (set QRAG_SHARED)")
    per_file: list[list[str]] = []
    for path in files[:8]:
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
        per_file.append([t for _, _, t in split_sentences([text]) if 5 <= len(t.split()) <= 100])
    out: list[str] = []
    for i in range(max(map(len, per_file))):
        out.extend(sents[i] for sents in per_file if i < len(sents))
        if len(out) >= limit:
            break
    return out[:limit]


@pytest.fixture(scope="session")
def fp32_export():
    """The fp32 ONNX export of the default model, in $QRAG_CACHE (else a shared temp cache)."""
    from qrag_cli.embed.models import resolve_model
    from qrag_cli.errors import ModelLoadError

    cache = os.environ.get("QRAG_CACHE") or str(Path(tempfile.gettempdir()) / "qrag-test-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QRAG_CACHE", cache)
        try:
            return resolve_model("default")
        except (ModelLoadError, ImportError) as exc:  # no bundled model / no torch to export it
            pytest.skip(f"default model unavailable: {exc}")


def _embed(path: Path, ids: list[list[int]], batch: int = 64) -> np.ndarray:
    import onnxruntime as ort

    from qrag_cli.embed.encoder import padded_batches

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out: np.ndarray | None = None
    for rows, input_ids, mask in padded_batches(ids, batch):
        emb = session.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]
        if out is None:
            out = np.empty((len(ids), emb.shape[1]), np.float32)
        out[rows] = emb
    assert out is not None
    return out


def _top10(vectors: np.ndarray) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argpartition(-sims, 10, axis=1)[:, :10]


def test_int8_matches_fp32_on_novel_sentences(fp32_export, tmp_path):
    from tokenizers import Tokenizer

    from qrag_cli.embed.quantize import quantize_int8

    sentences = _novel_sentences(N_SENTENCES)
    tokenizer = fp32_export.path / "tokenizer.json"
    int8 = tmp_path / "model.int8.onnx"
    recipe = quantize_int8(fp32_export.weights, int8, [], tokenizer=tokenizer)
    assert int8.is_file() and "int8" in recipe

    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    tok.enable_truncation(max_length=128)
    ids = [e.ids for e in tok.encode_batch(sentences)]
    ref = _embed(fp32_export.weights, ids)
    got = _embed(int8, ids)

    cosine = np.sum(ref * got, 1) / np.linalg.norm(got, axis=1)  # ref rows are unit length
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_top10(ref), _top10(got))])
    print(f"int8 vs fp32 on {len(ids)} sentences: mean cosine {cosine.mean():.4f} (min {cosine.min():.4f}), "
          f"top-10 overlap {overlap:.3f}; {recipe}")
    assert cosine.mean() >= MIN_MEAN_COSINE, f"mean cosine {cosine.mean():.4f} (min {cosine.min():.4f})"
    assert overlap >= MIN_TOP10_OVERLAP, f"top-10 overlap {overlap:.3f}"


def test_int8_rejects_a_broken_graph(tmp_path):
    from qrag_cli.embed.quantize import quantize_int8
    from qrag_cli.errors import ModelLoadError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match="int8 quantisation"):
        quantize_int8(bad, tmp_path / "out.onnx", [], tokenizer=tmp_path / "tokenizer.json")
    assert not (tmp_path / "out.onnx").exists()
