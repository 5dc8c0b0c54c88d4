"""onnxruntime engine of the encoder: an exported folder, no torch import anywhere on this path."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelLoadError
from .encoder import Encoder
from .models import ModelSpec


class OnnxEncoder(Encoder):
    engine = "onnx"

    def __init__(
        self, spec: ModelSpec, *, max_tokens: int = 128, batch_size: int = 64, threads: int = 0, spin: bool = False
    ) -> None:
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # spinning worker threads busy-wait between calls, stealing cores from everything else: only for
        # bulk embedding (an index build), where the next call follows at once
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(spec.weights), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise ModelLoadError(
                f"{spec.weights} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
                f"re-export it with `qrag export MODEL --out {spec.path} --overwrite`"
            ) from exc
        out = self.session.get_outputs()[0]
        if out.shape[-1] not in (spec.dim, None) and not isinstance(out.shape[-1], str):
            raise ModelLoadError(f"{spec.weights} outputs dimension {out.shape[-1]}, its manifest says {spec.dim}")

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["embedding"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    def _post(self, pooled: np.ndarray) -> np.ndarray:
        return pooled  # normalisation and scale are part of the exported graph
