"""The jitted train and eval steps (the modern pjit: `jax.jit` with in/out shardings).

Both are pure functions of a parameter tree (pure dict, f32) built from an NNX graph
definition, so one compiled step serves every run with the same architecture, batch shape,
mesh and optimizer hyper-parameters (`compiled_steps` caches them per process).

Loss: token-weighted mean cross-entropy in nats/token over the global batch,
`sum(w * nll) / sum(w)`; with gradient accumulation the micro-batch sums are accumulated and
divided once, so the update equals the one without accumulation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import multiscale.train.optim as optim
from multiscale.models import sharding as msharding
from multiscale.models.config import ModelConfig
from multiscale.models.decoder import Decoder

TRAIN_KEYS = ("inputs", "targets", "segment_ids", "positions", "weights")


class TrainState(NamedTuple):
    """Everything a checkpoint holds besides the data iterator."""

    params: Any      # pure dict of f32 arrays
    opt_state: Any   # optax state
    step: jax.Array  # int32 scalar: optimizer steps taken


def token_nll(graphdef, params, batch) -> tuple[jax.Array, jax.Array]:
    """Per-token negative log-likelihood [B, L] (nats) and weights [B, L] (f32)."""
    model = nnx.merge(graphdef, params)
    logits_BxLxV = model(batch["inputs"], positions_BxL=batch["positions"],
                         segment_ids_BxL=batch["segment_ids"])
    logz_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    # Select the target logit with a one-hot product: its gradient is elementwise, where
    # take_along_axis's is a scatter.
    onehot_BxLxV = jax.nn.one_hot(batch["targets"], logits_BxLxV.shape[-1], dtype=jnp.float32)
    target_logit_BxL = jnp.sum(logits_BxLxV * onehot_BxLxV, axis=-1)
    weights_BxL = batch["weights"].astype(jnp.float32)
    return (logz_BxL - target_logit_BxL) * weights_BxL, weights_BxL


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """Hyper-parameters baked into the compiled step (the schedule is traced, not baked)."""

    b1: float
    b2: float
    eps: float
    weight_decay: float
    clip: float
    grad_accum: int


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
    """The jitted functions and shardings of one (model, mesh, batch, optimizer)."""

    graphdef: Any
    mesh: Mesh
    param_shardings: Any
    state_shardings: TrainState
    batch_sharding: NamedSharding
    init: Any        # (seed int32) -> TrainState
    train: Any       # (state, batch, sched) -> (state, metrics)
    eval: Any        # (params, batch) -> (nll_sum_B, tokens_B)
    optimizer: optax.GradientTransformation


def _train_step(graphdef, optimizer, grad_accum, mesh, state: TrainState, batch, sched):
    with msharding.activation_sharding(mesh):
        def loss_sums(params, micro):
            nll_BxL, w_BxL = token_nll(graphdef, params, micro)
            return jnp.sum(nll_BxL), jnp.sum(w_BxL)

        grad_fn = jax.value_and_grad(loss_sums, has_aux=True)
        if grad_accum == 1:
            (nll_sum, w_sum), grads = grad_fn(state.params, batch)
        else:
            def split(x):  # [B, ...] -> [A, B/A, ...], micro-batch a = rows a, a+A, ...
                return jnp.swapaxes(x.reshape((x.shape[0] // grad_accum, grad_accum) + x.shape[1:]),
                                    0, 1)
            micro_batches = jax.tree.map(split, batch)

            def body(carry, micro):
                (nll_sum, w_sum), grads = grad_fn(state.params, micro)
                acc_nll, acc_w, acc_g = carry
                return (acc_nll + nll_sum, acc_w + w_sum, jax.tree.map(jnp.add, acc_g, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (nll_sum, w_sum, grads), _ = jax.lax.scan(
                body, (jnp.float32(0), jnp.float32(0), zeros), micro_batches)
        denom = jnp.maximum(w_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        loss = nll_sum / denom
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        lr = optim.learning_rate(state.step, sched)
        params = jax.tree.map(lambda p, u: p - lr * u, state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr, "tokens": w_sum}
        return TrainState(params, opt_state, state.step + 1), metrics


def _eval_step(graphdef, mesh, params, batch):
    with msharding.activation_sharding(mesh):
        nll_BxL, w_BxL = token_nll(graphdef, params, batch)
    return jnp.sum(nll_BxL, axis=1), jnp.sum(w_BxL, axis=1)


def _init(model_cfg: ModelConfig, optimizer, seed):
    model = Decoder(model_cfg, rngs=nnx.Rngs(params=jax.random.key(seed)))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


@functools.lru_cache(maxsize=32)
def compiled_steps(model_cfg: ModelConfig, mesh_shape: tuple[tuple[str, int], ...],
                   opt: OptimizerSpec) -> CompiledSteps:
    """Build (once per process and key) the sharded, jitted init/train/eval functions."""
    mesh = msharding.make_mesh(dict(mesh_shape))
    optimizer = optim.make_optimizer(b1=opt.b1, b2=opt.b2, eps=opt.eps,
                                     weight_decay=opt.weight_decay, clip=opt.clip)
    abstract = nnx.eval_shape(lambda: Decoder(model_cfg, rngs=nnx.Rngs(params=0)))
    graphdef, abstract_state = nnx.split(abstract, nnx.Param)
    param_sh = msharding.param_shardings(abstract_state, mesh)

    replicated = NamedSharding(mesh, PartitionSpec())
    abstract_train = jax.eval_shape(functools.partial(_init, model_cfg, optimizer), 0)
    # Optimizer moments follow their parameters; counters are replicated.
    opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, abstract_train.opt_state,
                                   param_sh, transform_non_params=lambda _: replicated)
    state_sh = TrainState(param_sh, opt_sh, replicated)
    batch_sh = msharding.batch_sharding(mesh)

    init = jax.jit(functools.partial(_init, model_cfg, optimizer), out_shardings=state_sh)
    train = jax.jit(
        functools.partial(_train_step, graphdef, optimizer, opt.grad_accum, mesh),
        in_shardings=(state_sh, batch_sh, replicated),
        out_shardings=(state_sh, replicated),
        donate_argnums=(0,))
    # Per-row sums come back replicated: every host reads all rows (the eval set is the same on
    # every host), which a data-sharded output would not allow on several hosts.
    evaluate = jax.jit(functools.partial(_eval_step, graphdef, mesh),
                       in_shardings=(param_sh, batch_sh), out_shardings=(replicated, replicated))
    return CompiledSteps(graphdef, mesh, param_sh, state_sh, batch_sh, init, train, evaluate,
                         optimizer)
