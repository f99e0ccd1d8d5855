"""Batched L-BFGS in jax: many independent minimizations side by side, one evaluation per step.

The problems sit on the arrays' trailing axes: an iterate ``x`` is ``K x batch...`` (K
parameters; any batch shape, e.g. problems x starts), the objective returns one value per
batch entry and the gradient has the shape of ``x``. Every operation is elementwise across
the batch, so on a CPU the batch vectorizes.

The method is L-BFGS with the two-loop recursion and a backtracking Armijo line search that
shrinks a rejected trial step by quadratic interpolation (Nocedal & Wright, *Numerical
Optimization*, 2nd ed., algorithm 7.4 and section 3.5). Each step evaluates ONE trial point per
batch entry (accepted: the iterate moves and a new direction starts; rejected: a shorter step is
tried next), so no entry's line search sets the pace of the batch. An entry is *done* (frozen)
when ``|grad| < tol``, when an accepted step lowers the objective by less than ``ftol`` of its
value, or after `MAX_REJECTS` rejected trials in a row.

`init_state` and `run` are the building blocks (jit them; `run` continues with a larger
evaluation budget); `minimize` is the one-call interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from multiscale.errors import InputError

GRAD_TOL = 1e-10
MEMORY = 10  # curvature pairs kept
FTOL = 1e-11  # stop when an accepted step lowers the objective by less than this fraction of it
MAX_REJECTS = 30  # rejected trial steps in a row before an entry gives up
ARMIJO_C1 = 1e-4


class LBFGSState(NamedTuple):
    """The state of every batch entry (a jax pytree; numpy arrays once fetched).

    x, g: iterate and gradient (K x batch); S, Y: the last `memory` steps and gradient changes,
    newest first (memory x K x batch), `valid` which are filled; k: evaluations; it: accepted
    steps; d, gd, t: direction, its slope g.d, trial step; fresh: the next step starts a new
    direction; fails: rejected trials in a row.
    """

    x: Any
    f: Any
    g: Any
    S: Any
    Y: Any
    valid: Any
    k: Any
    it: Any
    done: Any
    d: Any
    gd: Any
    t: Any
    fresh: Any
    fails: Any

    def map(self, fn: Callable) -> LBFGSState:
        """A state with `fn` applied to every field (e.g. to select batch entries)."""
        return LBFGSState(*(fn(v) for v in self))


class LBFGSResult(NamedTuple):
    """What `minimize` returns, one entry per batch element (numpy arrays).

    x: the final iterate (K x batch); f: objective there; grad_norm: |gradient| there;
    evaluations: objective evaluations used; iterations: accepted steps; done: stopped by a
    criterion of the module doc before the evaluation budget ran out.
    """

    x: np.ndarray
    f: np.ndarray
    grad_norm: np.ndarray
    evaluations: np.ndarray
    iterations: np.ndarray
    done: np.ndarray


def _vdot(u, v):
    """Dot product over the parameter axis (first), per batch entry."""
    import jax.numpy as jnp

    return jnp.sum(u * v, axis=0)


def _norm(u):
    import jax.numpy as jnp

    return jnp.sqrt(jnp.sum(u * u, axis=0))


def batched_value_and_grad(objective: Callable) -> Callable:
    """``objective(x) -> f_batch`` turned into ``x -> (f_batch, g)``. The entries are
    independent, so the gradient of the summed objective is every entry's own gradient."""
    import jax

    def total(x):
        f = objective(x)
        return f.sum(), f

    def vg(x):
        (_, f), g = jax.value_and_grad(total, has_aux=True)(x)
        return f, g

    return vg


def init_state(vg: Callable, x0, *, tol: float = GRAD_TOL, memory: int = MEMORY) -> LBFGSState:
    """The state at x0 (K x batch): value, gradient, an empty curvature memory."""
    import jax.numpy as jnp

    f0, g0 = vg(x0)
    batch = f0.shape
    zero = jnp.zeros(batch, jnp.int32)
    return LBFGSState(
        x=x0, f=f0, g=g0, S=jnp.zeros((memory,) + x0.shape), Y=jnp.zeros((memory,) + x0.shape),
        valid=jnp.zeros((memory,) + batch, bool), k=zero, it=zero, done=_norm(g0) < tol,
        d=jnp.zeros_like(x0), gd=jnp.zeros(batch), t=jnp.ones(batch), fresh=jnp.ones(batch, bool),
        fails=zero)


def _two_loop(g, S, Y, valid, memory: int):
    """-H g by the two-loop recursion over the stored pairs (as fori_loops, so the program
    stays small whatever the memory length); H0 = (s.y / y.y) of the newest pair."""
    import jax
    import jax.numpy as jnp

    def rho(i):
        sy = _vdot(S[i], Y[i])
        return jnp.where(valid[i], 1.0 / jnp.where(sy == 0, 1.0, sy), 0.0)

    def newest_first(i, carry):
        q, a_MxB = carry
        a = rho(i) * _vdot(S[i], q)
        return q - a * Y[i], a_MxB.at[i].set(a)

    q, a_MxB = jax.lax.fori_loop(0, memory, newest_first, (g, jnp.zeros(valid.shape, g.dtype)))
    yy = _vdot(Y[0], Y[0])
    h0 = jnp.where(valid[0] & (yy > 0), _vdot(S[0], Y[0]) / jnp.where(yy > 0, yy, 1.0), 1.0)

    def oldest_first(j, r):
        i = memory - 1 - j
        b = rho(i) * _vdot(Y[i], r)
        return r + S[i] * (a_MxB[i] - b)

    return -jax.lax.fori_loop(0, memory, oldest_first, h0 * q)


def _step(vg: Callable, c: LBFGSState, tol: float, memory: int, ftol: float) -> LBFGSState:
    """One evaluation for every batch entry: try the trial point, accept or shrink."""
    import jax.numpy as jnp

    # The trial: a new L-BFGS direction (steepest descent where it is not a descent direction)
    # after an accepted step, else the current one with its shrunken step.
    dn = _two_loop(c.g, c.S, c.Y, c.valid, memory)
    gdn = _vdot(c.g, dn)
    bad = ~(gdn < 0) | ~jnp.all(jnp.isfinite(dn), axis=0)
    dn = jnp.where(bad, -c.g, dn)
    gdn = jnp.where(bad, -_vdot(c.g, c.g), gdn)
    d = jnp.where(c.fresh, dn, c.d)
    gd = jnp.where(c.fresh, gdn, c.gd)
    t_first = jnp.where(c.it == 0, jnp.minimum(1.0, 1.0 / (_norm(c.g) + 1e-300)), 1.0)
    t = jnp.where(c.fresh, t_first, c.t)

    xt = c.x + t * d
    ft, gt = vg(xt)
    ok = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt), axis=0)
    accept = ok & (ft <= c.f + ARMIJO_C1 * t * gd)
    # Store (s, y) newest first where a step was accepted with s.y > 0.
    sv, yv = xt - c.x, gt - c.g
    push = accept & (_vdot(sv, yv) > 1e-300)
    S = jnp.where(push, jnp.concatenate([sv[None], c.S[:-1]]), c.S)
    Y = jnp.where(push, jnp.concatenate([yv[None], c.Y[:-1]]), c.Y)
    valid = jnp.where(push, jnp.concatenate([jnp.ones_like(push)[None], c.valid[:-1]]), c.valid)
    # A rejected trial's next step: the minimizer of the quadratic through f(x), the slope and
    # f(x + t d), kept within [0.02 t, 0.5 t] (0.02 t when the trial was not finite).
    denom = 2.0 * (ft - c.f - gd * t)
    good = ok & (denom > 0)
    t_next = jnp.clip(jnp.where(good, -gd * t * t / jnp.where(good, denom, 1.0), 0.02 * t),
                      0.02 * t, 0.5 * t)
    done_acc = (_norm(gt) < tol) | (c.f - ft <= ftol * jnp.abs(c.f))
    fails = jnp.where(accept, 0, c.fails + 1)
    return LBFGSState(
        x=jnp.where(accept, xt, c.x), f=jnp.where(accept, ft, c.f), g=jnp.where(accept, gt, c.g),
        S=S, Y=Y, valid=valid, k=c.k + 1, it=c.it + accept.astype(jnp.int32),
        done=jnp.where(accept, done_acc, fails >= MAX_REJECTS), d=d, gd=gd,
        t=t_next, fresh=accept, fails=fails)


def run(vg: Callable, state: LBFGSState, k_end, *, tol: float = GRAD_TOL, memory: int = MEMORY,
        ftol: float = FTOL) -> LBFGSState:
    """Advance every entry until it is done or has used `k_end` evaluations in all (counting
    those of earlier calls: `state.k`). `vg` maps x to (f, g), e.g. `batched_value_and_grad`."""
    import jax
    import jax.numpy as jnp

    def active(c):
        return (c.k < k_end) & ~c.done

    def body(c):
        moving = active(c)
        new = _step(vg, c, tol, memory, ftol)
        return LBFGSState(*(jnp.where(moving, v, old) for v, old in zip(new, c)))

    return jax.lax.while_loop(lambda c: jnp.any(active(c)), body, state)


def minimize(objective: Callable, x0, *, max_evals: int = 600, tol: float = GRAD_TOL,
             memory: int = MEMORY, ftol: float = FTOL) -> LBFGSResult:
    """Minimize ``objective(x) -> f_batch`` (a jax function) from every column of x0
    (K x batch) at once, with at most `max_evals` evaluations per entry. The dtype of x0
    decides the precision (float64 needs ``jax.enable_x64``)."""
    import jax
    import jax.numpy as jnp

    if not (isinstance(max_evals, (int, np.integer)) and max_evals >= 1):
        raise InputError(f"max_evals must be a positive integer, got {max_evals!r}")
    vg = batched_value_and_grad(objective)

    @jax.jit
    def solve(x):
        return run(vg, init_state(vg, x, tol=tol, memory=memory), max_evals, tol=tol, memory=memory,
                   ftol=ftol)

    st = solve(jnp.asarray(x0)).map(np.asarray)
    return LBFGSResult(x=st.x, f=st.f, grad_norm=np.sqrt(np.sum(st.g * st.g, axis=0)), evaluations=st.k,
                       iterations=st.it, done=st.done)
