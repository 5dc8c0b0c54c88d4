"""`qrag export`: a PyTorch embedder to an ONNX model folder (needs torch; run once per model).

The graph takes `input_ids` and `attention_mask` (int64, batch x tokens, both axes dynamic) and
returns `embedding` (float32, batch x dim): the final pooled embedding, i.e. masked mean pooling,
then the L2 normalisation and the scale of the model's pooling. Positions (a trained model's rotary
encoding) are applied outside the graph, per retrieval step.

The folder holds `model.onnx`, `tokenizer.json` and `manifest.json` (format `qrag-onnx-model`).
It is written to a temporary sibling and renamed into place, like an index.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..atomic import build_folder, install_folder, write_json_atomic
from ..errors import InputError, OutputExistsError
from .models import ONNX_FILE, ONNX_FORMAT, ONNX_FORMAT_VERSION, ModelSpec, file_sha256

OPSET = 17


def export_policy(folder: Path, out: Path, *, overwrite: bool = False, int8: bool = False,
                  calibration: list[str] | None = None) -> Path:
    """Export both sides of a trained policy into OUT/state and OUT/action, with the policy manifest."""
    from .models import resolve_model

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --overwrite")

    def fill(tmp: Path) -> None:
        for side in ("state", "action"):
            export_onnx(resolve_model(folder / side), tmp / side, int8=int8, calibration=calibration)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest.pop("files", None)  # the checkpoint's files and checksums, not the export's
        write_json_atomic(tmp / "manifest.json", {**manifest, "engine": "onnx", "exported_from": str(folder)})

    return build_folder(out, fill)


def export_policy_with_base_action(folder: Path, out: Path, *, int8: bool = False) -> Path:
    """Export a policy whose action encoder is the frozen base model: the state side is exported, the
    action side is the default model's own (cached) export with the policy's pooling (its rotary
    positions are applied outside the graph), so it is not exported twice."""
    from .models import WEIGHT_FILES, default_export, default_model_path, resolve_model

    state, action = resolve_model(folder / "state"), resolve_model(folder / "action")
    if file_sha256(default_model_path() / WEIGHT_FILES[0]) != action.checksum:  # another base model
        return export_policy(folder, out, overwrite=True, int8=int8)
    base = default_export("int8" if int8 else "fp32")

    def fill(tmp: Path) -> None:
        export_onnx(state, tmp / "state", int8=int8)
        (tmp / "action").mkdir()
        for name in (ONNX_FILE, "tokenizer.json"):
            shutil.copy(base.path / name, tmp / "action" / name)
        m = json.loads((base.path / "manifest.json").read_text(encoding="utf-8"))
        write_json_atomic(tmp / "action" / "manifest.json", {**m, "pooling": asdict(action.pooling)})
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        write_json_atomic(tmp / "manifest.json", {**manifest, "engine": "onnx", "exported_from": str(folder)})

    return build_folder(out, fill)


def export_onnx(spec: ModelSpec, out: Path, *, overwrite: bool = False, int8: bool = False,
                calibration: list[str] | None = None) -> Path:
    """Export `spec` (a PyTorch model folder) to an ONNX model folder at `out`; returns `out`."""
    out = Path(out)
    if spec.engine != "torch":
        raise InputError(f"{spec.path} is already an exported ONNX model: export its PyTorch source folder")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists: choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fp32 = tmp / ONNX_FILE
        _export_fp32(spec, fp32)
        quantization = "none"
        if int8:
            from .quantize import quantize_int8

            q = tmp / "model.int8.onnx"
            quantization = quantize_int8(fp32, q, calibration or [], tokenizer=spec.path / "tokenizer.json")
            os.replace(q, fp32)
        shutil.copy(spec.path / "tokenizer.json", tmp / "tokenizer.json")
        write_json_atomic(tmp / "manifest.json", {
            "format": ONNX_FORMAT,
            "format_version": ONNX_FORMAT_VERSION,
            "qrag_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {"name": spec.name, "path": str(spec.path), "checksum": spec.checksum,
                       "bytes": spec.weights.stat().st_size, "mtime_ns": spec.weights.stat().st_mtime_ns},
            "name": spec.name,
            "dim": spec.dim,
            "pooling": asdict(spec.pooling),
            "quantization": quantization,
            "onnx": {"file": ONNX_FILE, "opset": OPSET, "bytes": fp32.stat().st_size, "sha256": file_sha256(fp32)},
            "inputs": ["input_ids", "attention_mask"],
            "output": "embedding",
        })
        install_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _export_fp32(spec: ModelSpec, path: Path) -> None:
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(spec.path), local_files_only=True).eval()
    pooling = spec.pooling

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            if pooling.normalize:
                pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            return pooled / pooling.scale

    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
            output_names=["embedding"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
        )
