"""The decoder's typed, frozen configuration.

A `ModelConfig` fixes the architecture completely; the model, the parameter counts and the
FLOPs estimate are all derived from it. Presets (`presets.py`) are named `ModelConfig`s.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from multiscale.errors import InputError

_ACCELERATORS = ("gpu", "tpu", "cuda", "rocm")


def resolve_compute_dtype(name: str) -> jnp.dtype:
    """'auto' means bf16 on an accelerator and f32 on CPU; parameters always stay f32, only the
    activations and matmul inputs use this dtype."""
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in _ACCELERATORS else jnp.float32
    if name in ("float32", "f32"):
        return jnp.float32
    if name in ("bfloat16", "bf16"):
        return jnp.bfloat16
    raise InputError(f"compute_dtype must be 'auto', 'float32' or 'bfloat16', got {name!r}")


def check_compute_dtype(name: str) -> None:
    """Validate a compute_dtype name without resolving it: resolving 'auto' asks jax for the
    backend, which must not happen before `jax.distributed.initialize()` (presets are built at
    import time)."""
    if name not in ("auto", "float32", "f32", "bfloat16", "bf16"):
        resolve_compute_dtype(name)  # raises the error that names the value


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A pre-norm decoder-only transformer (RMSNorm, rotary positions, SwiGLU MLP): width D =
    `d_model`, H = `num_heads` dividing D (head size K = D / H, even), MLP width F = `d_ff`;
    `compute_dtype` 'auto' is bf16 on GPU/TPU and f32 on CPU; `init_std` is the normal
    initializer's standard deviation for the matrices."""

    vocab_size: int = 259
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 2
    d_ff: int = 176
    tie_embeddings: bool = False
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6
    compute_dtype: str = "auto"
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InputError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise InputError(
                f"ModelConfig.d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise InputError(f"head size d_model/num_heads={self.head_dim} must be even for rotary")
        check_compute_dtype(self.compute_dtype)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def dtype(self) -> jnp.dtype:
        return resolve_compute_dtype(self.compute_dtype)
