"""PyTorch engine of the encoder (Hugging Face BERT-family weights). torch is imported here only."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelLoadError
from .encoder import Encoder
from .models import ModelSpec


class TorchEncoder(Encoder):
    engine = "torch"

    def __init__(self, spec: ModelSpec, *, max_tokens: int = 128, batch_size: int = 64, threads: int = 0) -> None:
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        try:
            self.model = AutoModel.from_pretrained(str(spec.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the model in {spec.path}: {exc}") from exc
        self.model.eval()
        self._torch = torch

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids)
            mask = torch.from_numpy(attention_mask)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled.numpy().astype(np.float32, copy=False)
