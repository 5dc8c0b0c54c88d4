"""Lambda-returns, the completion reward and the soft value of the method (method.md, "learning").

Written with an explicit V(s_{t+1}) per step, so the last step of a rollout bootstraps from the
state that really follows it (the reference uses the wrong state there).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch


def lambda_returns(rewards: np.ndarray, dones: np.ndarray, next_values: np.ndarray,
                   gamma: float, lam: float) -> np.ndarray:
    """G over a rollout of T steps (arrays of shape (T,) or (T, E), time first).

    `next_values[t]` is V(s_{t+1}), the soft value of the state that follows step t; `dones[t]` is 1
    when step t ends its episode (time-limit truncation included), which makes G_t = r_t.

        G_T = r_T + gamma * m_T * V(s_{T+1})
        G_t = r_t + gamma * m_t * ((1 - lam) * V(s_{t+1}) + lam * G_{t+1}),   m_t = 1 - done_t
    """
    r = np.asarray(rewards, dtype=np.float64)
    m = 1.0 - np.asarray(dones, dtype=np.float64)
    v = np.asarray(next_values, dtype=np.float64)
    g = np.empty_like(r)
    g[-1] = r[-1] + gamma * m[-1] * v[-1]
    for t in range(len(r) - 2, -1, -1):
        g[t] = r[t] + gamma * m[t] * ((1.0 - lam) * v[t] + lam * g[t + 1])
    return g


def completion_reward(retrieved: Sequence[int], support: Collection[int]) -> float:
    """Reward of the step that retrieved `retrieved[-1]`: paid once, when the set first holds all support.

    r = 0.5 + 0.5 * n_support / n_retrieved_so_far (1.0 when found in the minimum number of steps), else 0.
    """
    need = set(support)
    if not retrieved or not need <= set(retrieved) or need <= set(retrieved[:-1]):
        return 0.0
    return 0.5 + 0.5 * len(need) / len(retrieved)


def soft_value(q: torch.Tensor, available: torch.Tensor, alpha: float, top: int = 5) -> torch.Tensor:
    """alpha * logsumexp(q / alpha) over the `top` best *available* actions, per row.

    q: (..., n) Q-values of one head; available: bool (..., n). Masking comes first, then the top-k:
    taking the top-k first (as the reference does) can leave no available action at all. A row with
    no available action has value 0.
    """
    masked = q.masked_fill(~available, float("-inf"))
    k = min(top, q.shape[-1])
    best = masked.topk(k, dim=-1).values
    value = alpha * torch.logsumexp(best / alpha, dim=-1)
    return torch.where(available.any(-1), value, torch.zeros_like(value))
