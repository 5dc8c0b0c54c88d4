"""The Q-function: separate state and action encoders, twin halves, rotary positions on the action side.

    Q(s, a; p) = q1 + q2,  q1 = <s[:D/2], (R(p) a)[:D/2]>,  q2 = <s[D/2:], (R(p) a)[D/2:]>

Embeddings are the attention-masked mean of the last hidden states divided by a fixed scale (no L2
norm, no head). The rotation `rotate_t` is the torch twin of `search.positions.rotate` (interleaved
pairs of each half, angle p * 10000^(-2k/d_half)), so a trained policy is served exactly by the
inference loop. Tokenisation and the state layout `[CLS] q [SEP] c1 [SEP] ...` (each piece capped)
are the inference encoder's (`embed.encoder.Encoder`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..embed.encoder import Encoder, TokenLayout
from ..embed.models import ModelSpec, Pooling
from ..errors import InputError, ModelLoadError
from ..search.positions import BASE


def rotate_t(x: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """R(p) x for x (..., D) and p broadcastable to x.shape[:-1]; matches `search.positions.rotate`."""
    dim = x.shape[-1]
    if dim % 4:
        raise ValueError(f"rotary positions need a dimension divisible by 4, got {dim}")
    half = dim // 2
    freqs = BASE ** (-2.0 * torch.arange(half // 2, dtype=torch.float64) / half)
    p = torch.as_tensor(p, dtype=torch.float64).broadcast_to(x.shape[:-1])
    ang = p[..., None] * freqs
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    out = []
    for h in (0, half):
        part = x[..., h : h + half]
        even, odd = part[..., 0::2], part[..., 1::2]
        out.append(torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


def twin_q(s: torch.Tensor, ra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q1, q2) of state embeddings s (..., D) and already-rotated action embeddings ra (..., D)."""
    h = s.shape[-1] // 2
    return (s[..., :h] * ra[..., :h]).sum(-1), (s[..., h:] * ra[..., h:]).sum(-1)


class Tokens(TokenLayout):
    """The inference encoder's tokenisation and state layout, without an engine (ids only)."""


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows as padded (ids, attention mask) tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def by_length(rows: Sequence[Sequence[int]], batch: int) -> tuple[list[list[int]], torch.Tensor]:
    """Batches of row indices in length order (less padding), and the permutation that puts the
    concatenated batch outputs back in row order."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return [order[a : a + batch] for a in range(0, len(order), batch)], inverse


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor, scale: float, normalize: bool = False) -> torch.Tensor:
    """Masked mean of hidden states (L2-normalised if asked) / scale, float32."""
    hidden = hidden.float()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    out = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if normalize:
        out = F.normalize(out, dim=-1, eps=1e-12)
    return out / scale


def pooled(model: nn.Module, rows: list[list[int]], pad_id: int, pooling: Pooling, bf16: bool) -> torch.Tensor:
    """Pooled last hidden states, float32 (len(rows), D); grads follow the caller."""
    ids, mask = pad_rows(rows, pad_id)
    with _autocast(bf16):
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return mean_pool(hidden, mask, pooling.scale, pooling.normalize)


class _Given(nn.Module):
    """Stands in for a model's embedding layer: returns hidden states computed before."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.hidden


@contextlib.contextmanager
def partial_model(model: nn.Module, layers: slice, given: torch.Tensor | None = None):
    """`model` running only `layers` of its encoder, from `given` hidden states instead of its embeddings.

    The model still builds its own attention mask, so this holds across transformers versions.
    """
    encoder, all_layers, embeddings = model.encoder, model.encoder.layer, model.embeddings
    encoder.layer = nn.ModuleList(list(all_layers)[layers])
    if given is not None:
        model.embeddings = _Given(given)
    try:
        yield model
    finally:
        encoder.layer = all_layers
        model.embeddings = embeddings


@dataclass
class StateBatch:
    """Tokenised states and, when the lower state layers are frozen, their output (computed once).

    Frozen lower layers are shared by the online and the target state encoder (they are never
    trained, so Polyak averaging leaves them equal) and by the loss of the update, which therefore
    runs only the trained top layers. The frozen layers run without dropout.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    lower: torch.Tensor | None = None

    @staticmethod
    def cat(batches: Sequence[StateBatch]) -> StateBatch:
        width = max(b.ids.shape[1] for b in batches)

        def pad(x: torch.Tensor) -> torch.Tensor:
            return F.pad(x, (0, 0, 0, width - x.shape[1])) if x.dim() == 3 else F.pad(x, (0, width - x.shape[1]))

        lower = None if batches[0].lower is None else torch.cat([pad(b.lower) for b in batches])
        return StateBatch(torch.cat([pad(b.ids) for b in batches]), torch.cat([pad(b.mask) for b in batches]), lower)


@dataclass
class ChunkLower:
    """A context's chunks through the frozen lower action layers: token ids and hidden states per chunk.

    Computed once per training context (those layers are never trained, and Polyak averaging leaves
    the target's equal to them), so an update re-embeds the context through the trained top layers only.
    """

    rows: list[list[int]]
    lower: list[torch.Tensor]  # chunk i: (len(rows[i]), D)

    def take(self, which: Sequence[int]) -> ChunkLower:
        return ChunkLower([self.rows[i] for i in which], [self.lower[i] for i in which])


def _layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise InputError(f"cannot freeze layers of {type(model).__name__}: no encoder.layer list (BERT-family only)")
    return layers


class QNet(nn.Module):
    """State and action encoders of one base model, with the method's pooling and Q heads."""

    def __init__(self, base: Path, *, scale: float, positions: str, piece_tokens: int, max_tokens: int = 128,
                 train_state_layers: int = 0, freeze_action: bool = False, bf16: bool = False,
                 train_action_layers: int = 0) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from ..embed.models import _resolve_hf

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.base = Path(base)
        self.spec = _resolve_hf(self.base, self.base.name)
        try:
            self.state = AutoModel.from_pretrained(str(base), local_files_only=True)
            self.action = AutoModel.from_pretrained(str(base), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the base model in {base}: {exc}") from exc
        self.dim = int(self.state.config.hidden_size)
        if self.dim % 4:
            raise InputError(f"the base model's dimension {self.dim} is not divisible by 4 (twin rotary halves)")
        self.scale, self.positions, self.piece_tokens = float(scale), positions, piece_tokens
        self.freeze_action, self.bf16 = freeze_action, bf16
        # State side: masked mean / scale. Action side: the same, except that a frozen action encoder
        # keeps the base model's own pooling (mean + L2 norm for a sentence-transformers folder), so its
        # chunk vectors are exactly those of an index built with the base model.
        self.state_pooling = Pooling("mean", False, self.scale, positions)
        base_pool = self.spec.pooling
        self.action_pooling = (Pooling(base_pool.kind, base_pool.normalize, base_pool.scale, positions)
                               if freeze_action else self.state_pooling)
        self.tokens = Tokens(self.spec, max_tokens)
        for model in (self.state, self.action):
            if hasattr(model, "pooler") and model.pooler is not None:  # unused by mean pooling
                model.pooler.requires_grad_(False)
        self.frozen_layers = 0  # lower state layers never trained
        if train_state_layers and train_state_layers < len(_layers(self.state)):
            layers = _layers(self.state)
            self.frozen_layers = len(layers) - train_state_layers
            self.state.embeddings.requires_grad_(False)
            for layer in layers[: self.frozen_layers]:
                layer.requires_grad_(False)
        if freeze_action:
            self.action.requires_grad_(False)
        self.action_frozen_layers = 0  # lower action layers never trained (a trained action encoder only)
        if not freeze_action and train_action_layers and train_action_layers < len(_layers(self.action)):
            layers = _layers(self.action)
            self.action_frozen_layers = len(layers) - train_action_layers
            self.action.embeddings.requires_grad_(False)
            for layer in layers[: self.action_frozen_layers]:
                layer.requires_grad_(False)

    def embed_states(self, states: Sequence[Sequence[str]], model: nn.Module | None = None) -> torch.Tensor:
        rows = self.tokens.state_rows(states, self.piece_tokens)
        return pooled(model or self.state, rows, self.tokens.pad_id, self.state_pooling, self.bf16)

    def state_batch(self, states: Sequence[Sequence[str]]) -> StateBatch:
        """Tokenised states, with the output of the frozen lower layers when there are any."""
        ids, mask = pad_rows(self.tokens.state_rows(states, self.piece_tokens), self.tokens.pad_id)
        if not self.frozen_layers:
            return StateBatch(ids, mask)
        was_training = self.state.training
        self.state.eval()
        with torch.no_grad(), _autocast(self.bf16), partial_model(self.state, slice(0, self.frozen_layers)) as m:
            lower = m(input_ids=ids, attention_mask=mask).last_hidden_state
        self.state.train(was_training)
        return StateBatch(ids, mask, lower)

    def embed_state_batch(self, batch: StateBatch, model: nn.Module | None = None) -> torch.Tensor:
        """State embeddings of a StateBatch (the online encoder by default); grads follow the caller."""
        model = model or self.state
        with _autocast(self.bf16):
            if batch.lower is None:
                hidden = model(input_ids=batch.ids, attention_mask=batch.mask).last_hidden_state
            else:
                with partial_model(model, slice(self.frozen_layers, None), batch.lower) as m:
                    hidden = m(input_ids=batch.ids, attention_mask=batch.mask).last_hidden_state
        return mean_pool(hidden, batch.mask, self.scale)  # the state pooling: mean / scale

    def embed_chunks(self, texts: Sequence[str], model: nn.Module | None = None, batch: int = 64) -> torch.Tensor:
        """Chunk embeddings, in length-sorted batches (grads follow the caller)."""
        rows = self.tokens.chunk_rows(texts)
        batches, inverse = by_length(rows, batch)
        parts = [pooled(model or self.action, [rows[i] for i in idx], self.tokens.pad_id, self.action_pooling,
                        self.bf16) for idx in batches]
        return torch.cat(parts)[inverse]

    def chunk_lower(self, texts: Sequence[str], batch: int = 64) -> ChunkLower:
        """The chunks through the frozen lower action layers (no dropout); stored in bf16 when autocast is on."""
        rows = self.tokens.chunk_rows(texts)
        lower: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        was_training = self.action.training
        self.action.eval()
        with torch.no_grad(), _autocast(self.bf16), \
                partial_model(self.action, slice(0, self.action_frozen_layers)) as m:
            for idx in by_length(rows, batch)[0]:
                ids, mask = pad_rows([rows[i] for i in idx], self.tokens.pad_id)
                hidden = m(input_ids=ids, attention_mask=mask).last_hidden_state
                hidden = hidden.to(torch.bfloat16) if self.bf16 else hidden
                for j, i in enumerate(idx):
                    lower[i] = hidden[j, : len(rows[i])].clone()
        self.action.train(was_training)
        return ChunkLower(rows, lower)

    def embed_lower(self, chunks: ChunkLower, model: nn.Module | None = None, batch: int = 64) -> torch.Tensor:
        """Action embeddings from `chunk_lower` output through the top layers (the online encoder by default),
        in length-sorted batches; grads follow the caller."""
        model, pool = model or self.action, self.action_pooling
        batches, inverse = by_length(chunks.rows, batch)
        parts = []
        for idx in batches:
            ids, mask = pad_rows([chunks.rows[i] for i in idx], self.tokens.pad_id)
            given = nn.utils.rnn.pad_sequence([chunks.lower[i] for i in idx], batch_first=True)
            with _autocast(self.bf16), partial_model(model, slice(self.action_frozen_layers, None), given) as m:
                hidden = m(input_ids=ids, attention_mask=mask).last_hidden_state
            parts.append(mean_pool(hidden, mask, pool.scale, pool.normalize))
        return torch.cat(parts)[inverse]

    def make_target(self) -> nn.ModuleDict:
        """Target copies of both encoders (the action one shared when it is frozen), never trained."""
        state = copy.deepcopy(self.state).requires_grad_(False)
        action = self.action if self.freeze_action else copy.deepcopy(self.action).requires_grad_(False)
        return nn.ModuleDict({"state": state, "action": action})

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def save_policy_side(self, folder: Path, side: str) -> None:
        """One encoder as a Hugging Face model folder + tokenizer.json + qrag_pooling.json."""
        model = self.state if side == "state" else self.action
        if side == "action" and self.freeze_action:  # the base weights, byte for byte (same checksum)
            shutil.copy(self.spec.weights, folder / self.spec.weights.name)
            shutil.copy(self.base / "config.json", folder / "config.json")
        else:
            model.save_pretrained(str(folder), safe_serialization=True)
        shutil.copy(self.base / "tokenizer.json", folder / "tokenizer.json")
        pool = self.state_pooling if side == "state" else self.action_pooling
        (folder / "qrag_pooling.json").write_text(json.dumps(
            {"kind": pool.kind, "normalize": pool.normalize, "scale": pool.scale, "positions": pool.positions}),
            encoding="utf-8")


def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, parameters and floating buffers."""
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, tau)
        for t, o in zip(target.buffers(), online.buffers()):
            if t.is_floating_point():
                t.lerp_(o, tau)


class PolicyEncoder(Encoder):
    """An inference `Encoder` over one of QNet's torch encoders: what `MultiStepRetriever` runs in validation."""

    engine = "torch"

    def __init__(self, net: QNet, side: str = "state") -> None:
        pooling = net.state_pooling if side == "state" else net.action_pooling
        spec = ModelSpec(f"qrag-training-{side}", net.base, net.spec.weights, "training", net.dim, pooling)
        super().__init__(spec, max_tokens=net.tokens.max_tokens)
        self.net, self.side = net, side

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        model = self.net.state if self.side == "state" else self.net.action
        mask = torch.from_numpy(attention_mask)
        with torch.no_grad(), _autocast(self.net.bf16):
            hidden = model(input_ids=torch.from_numpy(input_ids), attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask, 1.0).numpy()  # `Encoder._post` normalises and scales

