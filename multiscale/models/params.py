"""Parameter counts and FLOPs per token, computed from a `ModelConfig`.

N, as in He et al. (2024) and Kaplan et al. (2020), counts *non-embedding* parameters:
everything except the token embedding and (when untied) the output projection. Norm scales
are non-embedding. `tests/test_models_params.py` checks these formulas against the
parameters of an instantiated model.
"""

from __future__ import annotations

import dataclasses

from multiscale.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class ParamCount:
    non_embedding: int
    embedding: int


def count_params(cfg: ModelConfig) -> ParamCount:
    d, f = cfg.d_model, cfg.d_ff
    attention = 4 * d * d            # q, k, v, out projections (no biases)
    mlp = 3 * d * f                  # gate, up, down
    norms = 2 * d                    # pre-attention and pre-MLP RMSNorm scales
    per_layer = attention + mlp + norms
    non_embedding = cfg.num_layers * per_layer + d  # + final norm
    embedding = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return ParamCount(non_embedding=non_embedding, embedding=embedding)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6N (N non-embedding) + 12 * layers * d_model * seq_len, the
    attention score/value work, forward and backward (docs/design.md, "Testing and benchmarks")."""
    n = count_params(cfg).non_embedding
    return float(6 * n + 12 * cfg.num_layers * cfg.d_model * seq_len)
