"""Training of the Q-RAG policy: PQN-style soft Q(lambda) over two embedders (see docs: method.md).

- `returns`: lambda-returns, the completion reward and the masked top-5 soft value.
- `qnet`: the Q-function (state and action encoders, twin halves, rotary positions on the action side).
- `env`: retrieval episodes over training samples.
- `trainer`: the rollout, the targets, the loss, the optimiser and target updates (`train`).
- `checkpoint`: the run folder and the policy folders it writes.
"""
