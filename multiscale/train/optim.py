"""AdamW with linear warm-up and cosine decay, and global-norm clipping.

The learning rate is computed inside the jitted step from *traced* schedule scalars (peak,
warm-up steps, total steps, floor), so runs that differ only in D or the learning rate reuse one
compiled step. The update equals optax's
`chain(clip_by_global_norm, adamw(schedule, b1, b2, eps, weight_decay, mask=matrices))`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def schedule_scalars(peak_lr: float, warmup: int, total: int, min_ratio: float) -> jax.Array:
    """The f32 vector [peak, warmup, total, min_ratio] that `learning_rate` reads."""
    return jnp.asarray([peak_lr, warmup, total, min_ratio], jnp.float32)


def learning_rate(step: jax.Array, sched: jax.Array) -> jax.Array:
    """Learning rate at optimizer step `step` (0-based): linear warm-up to the peak over
    `warmup` steps, then cosine decay to `min_ratio * peak` at `total` steps."""
    peak, warmup, total, min_ratio = sched[0], sched[1], sched[2], sched[3]
    step = step.astype(jnp.float32)
    warm = peak * (step + 1.0) / jnp.maximum(warmup, 1.0)
    frac = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    cosine = peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)))
    return jnp.where(step < warmup, warm, cosine)


def make_optimizer(*, b1: float, b2: float, eps: float, weight_decay: float,
                   clip: float) -> optax.GradientTransformation:
    """Clip, Adam moments and decoupled weight decay; the step multiplies by -lr afterwards."""
    parts = []
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
    if weight_decay > 0:
        # Decay matrices only, not norm scales.
        parts.append(optax.add_decayed_weights(
            weight_decay, mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)))
    return optax.chain(*parts)
