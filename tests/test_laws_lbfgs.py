"""The batched L-BFGS (multiscale.laws.lbfgs) on problems with known minima."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multiscale.errors import InputError
from multiscale.laws import lbfgs


def test_quadratics_side_by_side_reach_their_minima():
    """f_j(x) = 0.5 (x - m_j)' A_j (x - m_j): a batch of 8 ill-conditioned quadratics with
    different centres and curvatures, each minimized in its own column."""
    rng = np.random.default_rng(0)
    K, B = 4, 8
    m = rng.normal(size=(K, B))
    scales = np.stack([np.geomspace(1.0, 10.0 ** (1 + j % 3), K) for j in range(B)], axis=1)

    def objective(x):
        r = x - m
        return 0.5 * jnp.sum(scales * r * r, axis=0)

    with jax.enable_x64(True):
        res = lbfgs.minimize(objective, np.zeros((K, B)), max_evals=400)
    assert isinstance(res, lbfgs.LBFGSResult)
    assert res.x.shape == (K, B) and res.f.shape == (B,) and res.evaluations.shape == (B,)
    np.testing.assert_allclose(res.x, m, atol=1e-8)
    assert np.all(res.f < 1e-14)
    assert np.all(res.done) and np.all(res.evaluations < 400)
    assert np.all(res.grad_norm < 1e-6)


def test_rosenbrock_from_several_starts():
    """The Rosenbrock valley (minimum 0 at (1, 1)) from four starts, one of them the classic
    (-1.2, 1)."""
    x0 = np.array([[-1.2, 0.0, 2.0, -0.5], [1.0, 0.0, 2.0, 1.5]])

    def rosen(x):
        return (1 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    with jax.enable_x64(True):
        res = lbfgs.minimize(rosen, x0, max_evals=2000)
    np.testing.assert_allclose(res.x, np.ones_like(x0), atol=1e-6)
    assert np.all(res.f < 1e-12)
    # L-BFGS needs several accepted steps here (a trial step is not always accepted)
    assert np.all(res.iterations >= 10) and np.all(res.evaluations >= res.iterations)


def test_budget_and_continuation():
    """`run` stops at the evaluation budget and continues from its state: two calls of 5 + 195
    evaluations end where one call of 200 does."""

    def rosen(x):
        return (1 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    with jax.enable_x64(True):
        vg = lbfgs.batched_value_and_grad(rosen)
        x0 = jnp.asarray(np.array([[-1.2], [1.0]]))
        st = lbfgs.init_state(vg, x0)
        assert isinstance(st, lbfgs.LBFGSState)
        run = jax.jit(lambda state, k_end: lbfgs.run(vg, state, k_end))  # one compilation for all three
        short = run(st, 5)
        assert int(short.k[0]) == 5 and not bool(short.done[0])
        two = run(short, 200)
        one = run(st, 200)
        np.testing.assert_array_equal(np.asarray(two.x), np.asarray(one.x))
        assert int(two.k[0]) == int(one.k[0])


def test_state_map_selects_entries():
    with jax.enable_x64(True):
        vg = lbfgs.batched_value_and_grad(lambda x: jnp.sum(x * x, axis=0))
        st = lbfgs.init_state(vg, jnp.asarray(np.arange(6.0).reshape(2, 3)), memory=3)
    picked = st.map(lambda v: np.asarray(v)[..., [2]])
    assert picked.x.shape == (2, 1) and picked.S.shape == (3, 2, 1)
    np.testing.assert_array_equal(picked.x[:, 0], [2.0, 5.0])
    np.testing.assert_array_equal(picked.f, [29.0])


def test_refuses_a_bad_budget():
    with pytest.raises(InputError, match="max_evals must be a positive integer"):
        lbfgs.minimize(lambda x: jnp.sum(x * x, axis=0), np.zeros((1, 1)), max_evals=0)
