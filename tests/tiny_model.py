"""A tiny, randomly initialised BERT with the real MiniLM tokenizer: fast CLI and bad-input tests.

Real transformers code path, 2 layers of width 32, seeded so its weights (and checksum) are stable.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def make_tiny_model(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    from qrag_cli.embed.models import default_model_path

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512,
    )
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    shutil.copy(default_model_path() / "tokenizer.json", folder / "tokenizer.json")
    return folder
