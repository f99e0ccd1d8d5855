"""The jitted train step: loss units, gradient accumulation, the schedule, the optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.models.presets import get_preset
from multiscale.train import optim
from multiscale.train.step import OptimizerSpec, compiled_steps

MESH1 = (("data", 1), ("fsdp", 1), ("tensor", 1))
CFG = get_preset("cpu-100k", compute_dtype="float32")


def _batch(seq_len=32, batch=8, index=0):
    data = SyntheticData().run_data({"germanic": 0.5, "romance": 0.5}, seq_len=seq_len)
    it = data.make_train_iterator(batch, 0, 1)
    it.set_state({"index": index})
    return {k: v for k, v in next(it).items() if k != "family_ids"}


def _spec(accum):
    return OptimizerSpec(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, grad_accum=accum)


def test_initial_loss_is_log_vocab_in_nats():
    steps = compiled_steps(CFG, MESH1, _spec(1))
    state = steps.init(0)
    sched = optim.schedule_scalars(1e-3, 1, 10, 0.1)
    _, metrics = steps.train(state, _batch(), sched)
    assert abs(float(metrics["loss"]) - np.log(259)) < 0.1
    batch = _batch()
    assert float(metrics["tokens"]) == batch["weights"].sum()


def test_gradient_accumulation_matches_one_big_batch():
    sched = optim.schedule_scalars(3e-3, 2, 10, 0.1)
    results = []
    for accum in (1, 4):
        steps = compiled_steps(CFG, MESH1, _spec(accum))
        state = steps.init(0)
        losses, norms = [], []
        for i in range(4):
            state, m = steps.train(state, _batch(index=i), sched)
            losses.append(float(m["loss"]))
            norms.append(float(m["grad_norm"]))
        results.append((losses, norms))
    # Same loss (hence same parameters feeding it) and same gradient at every step; only the
    # summation order differs. (Parameters themselves are not compared elementwise: Adam divides
    # by sqrt(v), so a near-zero gradient's rounding difference shows up as ~1e-6 in that weight.)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_update_equals_optax_adamw_with_clipping():
    peak, warmup, total = 2e-3, 3, 20
    steps = compiled_steps(CFG, MESH1, _spec(1))
    state = steps.init(0)
    params0 = jax.device_get(state.params)
    sched = optim.schedule_scalars(peak, warmup, total, 0.1)
    batch = _batch()

    def schedule(count):
        return optim.learning_rate(jnp.asarray(count), sched)

    reference = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                    mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)))
    ref_state = reference.init(params0)
    from multiscale.train.step import token_nll

    def loss(p):
        nll, w = token_nll(steps.graphdef, p, batch)
        return nll.sum() / w.sum()

    @jax.jit
    def reference_step(params, opt_state):
        updates, opt_state = reference.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    ref_params = params0
    for _ in range(2):
        ref_params, ref_state = reference_step(ref_params, ref_state)
        state, _ = steps.train(state, batch, sched)
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_schedule_warmup_then_cosine_to_floor():
    sched = optim.schedule_scalars(1.0, 4, 14, 0.1)
    lr = [float(optim.learning_rate(jnp.asarray(s), sched)) for s in range(15)]
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    assert lr[4] == pytest.approx(1.0)
    assert lr[9] == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)  # halfway through the decay
    assert lr[14] == pytest.approx(0.1, rel=1e-5)
    assert all(a >= b for a, b in zip(lr[4:], lr[5:]))


def test_compiled_steps_are_cached():
    assert compiled_steps(CFG, MESH1, _spec(1)) is compiled_steps(CFG, MESH1, _spec(1))
