"""The decoder-only transformer, in Flax NNX.

Pre-norm blocks (RMSNorm), rotary positions taken from the batch's `positions`, causal
attention restricted to the same packed document (`segment_ids`) -- through
`jax.nn.dot_product_attention` on GPU (the fused cuDNN kernel when it applies), heads-first
einsums elsewhere (faster on XLA:CPU) --, and a gated SwiGLU MLP. Parameters are f32 and carry
*logical* axis names in their `out_sharding` metadata; `multiscale.models.sharding` maps those
to mesh axes, so this file knows nothing about meshes. Activations use `cfg.dtype` (bf16 on accelerators, f32 on CPU).

Shape suffixes: B batch, L length, D d_model, H heads, K head size, F d_ff, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from multiscale.models.config import ModelConfig
from multiscale.models.sharding import constrain

_RESIDUAL = ("batch", "length", "act_embed")
# Vocabularies up to this size embed by one-hot matmul rather than a gather.
ONE_HOT_MAX_VOCAB = 4096


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...],
           std: float) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
    """Root-mean-square normalisation with a learned scale (computed in f32)."""

    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",),
                               eager_sharding=False)
        self.eps = eps

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x32 = x_BxLxD.astype(jnp.float32)
        inv_rms = jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * inv_rms * self.scale[...]).astype(x_BxLxD.dtype)


def rotary_tables(positions_BxL: jax.Array, head_dim: int, base: float,
                  heads_first: bool = False):
    """(cos, sin) of angle position * base^(-2i/K), computed once per forward: [B, L, 1, K/2]
    for [B, L, H, K] activations, or [B, 1, L, K/2] for heads-first [B, H, L, K] ones."""
    inv_freq_K2 = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angle_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_K2
    axis = 1 if heads_first else 2
    return (jnp.expand_dims(jnp.cos(angle_BxLxK2), axis),
            jnp.expand_dims(jnp.sin(angle_BxLxK2), axis))


def use_fused_attention() -> bool:
    """Whether attention goes through `jax.nn.dot_product_attention` ([B, L, H, K] layout, the
    fused cuDNN kernel on GPU) rather than heads-first einsums (faster on XLA:CPU and TPU: no
    transposes; benchmarks/RESULTS.md)."""
    return jax.default_backend() == "gpu"


def heads_first_attention(q_BxHxLxK: jax.Array, k_BxHxLxK: jax.Array, v_BxHxLxK: jax.Array,
                          mask_Bx1xLxL: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(K) masked) v on [B, H, L, K] operands; scores and softmax in f32."""
    dtype = q_BxHxLxK.dtype
    scale = q_BxHxLxK.shape[-1] ** -0.5
    scores_BxHxLxL = jnp.einsum("bhqk,bhsk->bhqs", q_BxHxLxK * jnp.asarray(scale, dtype),
                                k_BxHxLxK, preferred_element_type=jnp.float32)
    # Every query sees at least itself, so no row is fully masked.
    scores_BxHxLxL = jnp.where(mask_Bx1xLxL, scores_BxHxLxL, jnp.finfo(jnp.float32).min)
    probs_BxHxLxL = jax.nn.softmax(scores_BxHxLxL, axis=-1).astype(dtype)
    return jnp.einsum("bhqs,bhsk->bhqk", probs_BxHxLxL, v_BxHxLxK)


def rotary(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, base: float,
           tables=None) -> jax.Array:
    """Rotate feature pairs (i, i + K/2) by angle position * base^(-2i/K)."""
    if tables is None:
        tables = rotary_tables(positions_BxL, x_BxLxHxK.shape[-1], base)
    cos_BxLx1xK2, sin_BxLx1xK2 = tables
    x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos_BxLx1xK2 - x2 * sin_BxLx1xK2,
                           x2 * cos_BxLx1xK2 + x1 * sin_BxLx1xK2], axis=-1)
    return out.astype(x_BxLxHxK.dtype)


def attention_mask(segment_ids_BxL: jax.Array) -> jax.Array:
    """Boolean [B, 1, L, L]: query i sees key j iff j <= i and both lie in the same document."""
    length = segment_ids_BxL.shape[1]
    causal_LxL = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
    same_doc_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return (causal_LxL[None] & same_doc_BxLxL)[:, None]


class Attention(nnx.Module):
    """Multi-head causal self-attention with rotary positions."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim
        out_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        self.wq_DxHxK = _param(rngs, (d, h, k), ("embed", "heads", "kv"), cfg.init_std)
        self.wk_DxHxK = _param(rngs, (d, h, k), ("embed", "heads", "kv"), cfg.init_std)
        self.wv_DxHxK = _param(rngs, (d, h, k), ("embed", "heads", "kv"), cfg.init_std)
        self.wo_HxKxD = _param(rngs, (h, k, d), ("heads", "kv", "embed"), out_std)
        self.rope_base = cfg.rope_base

    def __call__(self, x_BxLxD, positions_BxL, mask_Bx1xLxL, rope=None):
        """`rope` are the tables of `rotary_tables` in the layout `use_fused_attention()` implies."""
        dtype = x_BxLxD.dtype
        wq, wk, wv, wo = (w[...].astype(dtype) for w in
                          (self.wq_DxHxK, self.wk_DxHxK, self.wv_DxHxK, self.wo_HxKxD))
        if use_fused_attention():
            q_BxLxHxK = rotary(jnp.einsum("bld,dhk->blhk", x_BxLxD, wq), positions_BxL,
                               self.rope_base, rope)
            k_BxLxHxK = rotary(jnp.einsum("bld,dhk->blhk", x_BxLxD, wk), positions_BxL,
                               self.rope_base, rope)
            v_BxLxHxK = jnp.einsum("bld,dhk->blhk", x_BxLxD, wv)
            o_BxLxHxK = jax.nn.dot_product_attention(
                q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, mask=mask_Bx1xLxL, implementation=None)
            return jnp.einsum("blhk,hkd->bld", o_BxLxHxK, wo)
        if rope is None:
            rope = rotary_tables(positions_BxL, wq.shape[-1], self.rope_base, heads_first=True)
        q_BxHxLxK = rotary(jnp.einsum("bld,dhk->bhlk", x_BxLxD, wq), positions_BxL,
                           self.rope_base, rope)
        k_BxHxLxK = rotary(jnp.einsum("bld,dhk->bhlk", x_BxLxD, wk), positions_BxL,
                           self.rope_base, rope)
        v_BxHxLxK = jnp.einsum("bld,dhk->bhlk", x_BxLxD, wv)
        o_BxHxLxK = heads_first_attention(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK, mask_Bx1xLxL)
        return jnp.einsum("bhlk,hkd->bld", o_BxHxLxK, wo)


class Mlp(nnx.Module):
    """Gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.d_ff
        out_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        self.w_gate_DxF = _param(rngs, (d, f), ("embed", "mlp"), cfg.init_std)
        self.w_up_DxF = _param(rngs, (d, f), ("embed", "mlp"), cfg.init_std)
        self.w_down_FxD = _param(rngs, (f, d), ("mlp", "embed"), out_std)

    def __call__(self, x_BxLxD):
        dtype = x_BxLxD.dtype
        b, l, d = x_BxLxD.shape
        f = self.w_up_DxF.shape[1]
        # Gate and up as one [B*L, D] x [D, 2F] matmul: on XLA:CPU the fused product and its
        # gradient ran the train step ~10% faster (cpu-800k, side by side in one process).
        w_Dx2F = jnp.concatenate([self.w_gate_DxF[...], self.w_up_DxF[...]], axis=1)
        gate_up_NxF2 = x_BxLxD.reshape(b * l, d) @ w_Dx2F.astype(dtype)
        gate_NxF, up_NxF = gate_up_NxF2[:, :f], gate_up_NxF2[:, f:]
        out_NxD = (jax.nn.silu(gate_NxF) * up_NxF) @ self.w_down_FxD[...].astype(dtype)
        return out_NxD.reshape(b, l, d)


class Block(nnx.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = Mlp(cfg, rngs)

    def __call__(self, x_BxLxD, positions_BxL, mask_Bx1xLxL, rope=None):
        x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), positions_BxL, mask_Bx1xLxL, rope)
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


class Decoder(nnx.Module):
    """Token ids -> next-token logits (f32)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        # Untied: unit-variance embeddings (the pre-norm rescales them). Tied: small, because the
        # same matrix produces the logits.
        embed_std = cfg.init_std if cfg.tie_embeddings else 1.0
        self.embed_VxD = _param(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"),
                                embed_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.unembed_DxV = _param(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"),
                                      cfg.init_std)

    def __call__(self, inputs_BxL: jax.Array, *, positions_BxL: jax.Array | None = None,
                 segment_ids_BxL: jax.Array | None = None) -> jax.Array:
        """Logits [B, L, V] in f32. Without `segment_ids` the row is one document; without
        `positions`, positions are 0..L-1."""
        dtype = self.cfg.dtype
        if positions_BxL is None:
            positions_BxL = jnp.broadcast_to(jnp.arange(inputs_BxL.shape[1]), inputs_BxL.shape)
        if segment_ids_BxL is None:
            segment_ids_BxL = jnp.ones_like(inputs_BxL)
        mask_Bx1xLxL = attention_mask(segment_ids_BxL)
        rope = rotary_tables(positions_BxL, self.cfg.head_dim, self.cfg.rope_base,
                             heads_first=not use_fused_attention())
        # Gather whole rows: the table's `embed` (fsdp) split is undone before the lookup.
        table_VxD = constrain(self.embed_VxD[...], ("act_vocab", None))
        if self.cfg.vocab_size <= ONE_HOT_MAX_VOCAB:
            # A one-hot matmul: its gradient is a matmul too, where a gather's is a scatter-add
            # (slow on CPU). Costs 2*V*D FLOPs per token, small for byte-level vocabularies.
            onehot_BxLxV = jax.nn.one_hot(inputs_BxL, self.cfg.vocab_size, dtype=dtype)
            x_BxLxD = onehot_BxLxV @ table_VxD.astype(dtype)
        else:
            x_BxLxD = jnp.take(table_VxD, inputs_BxL, axis=0).astype(dtype)
        x_BxLxD = constrain(x_BxLxD, _RESIDUAL)
        for block in self.blocks:
            x_BxLxD = constrain(block(x_BxLxD, positions_BxL, mask_Bx1xLxL, rope), _RESIDUAL)
        x_BxLxD = self.final_norm(x_BxLxD)
        if self.cfg.tie_embeddings:
            unembed_DxV = self.embed_VxD[...].T
        else:
            unembed_DxV = self.unembed_DxV[...]
        logits_BxLxV = jnp.dot(x_BxLxD, unembed_DxV.astype(dtype),
                               preferred_element_type=jnp.float32)
        return logits_BxLxV


def build_model(cfg: ModelConfig, seed: int = 0) -> Decoder:
    """A freshly initialised decoder (f32 parameters)."""
    return Decoder(cfg, rngs=nnx.Rngs(params=seed))
