"""Point fit: Hoffmann et al. (2022) approach 3 for every law, multi-start L-BFGS in jax.

Minimize, per family (or jointly when exponents are shared),

    sum_rows Huber_delta( law.log_loss(row) - log L ),   delta = 1e-3,

with L-BFGS (`multiscale.laws.lbfgs`) from every start the law supplies, and keep the start with
the lowest objective (`multiscale.laws.forms.log_loss`; for multilingual the log-loss is
``LSE(a - alpha log N, b - beta log D, e) - gamma log p`` with ``A = exp(a)``, ``B = exp(b)``,
``E = exp(e)``).

Starts (`law_starts`): a law without a `base` starts from the Cartesian grid
`multiscale.laws.forms.GRID` of its raw names (9,000 starts per family for multilingual; the
grid of Hoffmann et al. for chinchilla); a law with a base starts from its base law's fit on the
same table (full grid), crossed with `EXTRA_STARTS` of the parameters it adds: tau = 0 (and no
repetition) is the base law, so the base's optimum is the natural origin. A repetition law's
base is fitted on the table with each row's ratio replaced by its effective ratio at every start
R* (`effective_ratio_data`): at a fixed R* the law is its base at the effective ratios, while the
base fitted on the raw ratios bends its D exponent (beta < 0) to follow a loss that rises with D.

Speed: all problems -- one per family, or one joint problem when exponents are shared -- run
side by side in one small compiled L-BFGS program, the starts on the arrays' last axis and in
chunks of CHUNK per problem that stay in cache; the table's rows are grouped in blocks sharing
(family, N, D), so the scale part is computed once per block; a separable law's rows are summed
one block at a time with their gradient written out (`_separable_rows_fn`). By default every
start first gets SCREEN_ITERS evaluations and only the KEEP best per problem run on to
convergence, each continuing its own trajectory (a common multi-start strategy); ``keep=None``
runs every start to convergence, and tests/test_laws_point.py checks on realistic tables that
both keep the same optimum. `fit_point_leave_out` refits a table less a few rows from only the
starts that went past the screen on the whole table, with no screen.
Converged starts are dropped every ROUND evaluations. log N and log D are centred internally (an
exact reparameterization, see `fit_arrays`). Every start runs in float64.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

import multiscale.laws.lbfgs as lbfgs
from multiscale.errors import InputError
from multiscale.laws.data import FitData, prepare
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import (
    EXTRA_STARTS,
    GRID,
    Law,
    get_law,
    log_effective_own_ratio,
    log_loss_at_scale,
    log_scale,
    natural_from_raw,
    offdiag_mask,
)
from multiscale.laws.identifiability import refuse_unidentified, unidentified
from multiscale.laws.lbfgs import FTOL, GRAD_TOL, MEMORY, LBFGSState

HUBER_DELTA = 1e-3
SCREEN_ITERS = 10  # evaluations every start gets before only the best KEEP per problem go on
KEEP = 256
CONSENSUS = 3  # fewer kept starts than this at the best optimum: rerun with every start
CHUNK = 64  # starts per problem per compiled call (a working set that stays in cache)
ROUND = 50  # evaluations between dropping the starts that have finished
# L-BFGS settings (GRAD_TOL, MEMORY, FTOL) are `multiscale.laws.lbfgs`'s defaults.


def start_grid(law: Law, grid: dict | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(raw names, G x K array of starts): the Cartesian product of `GRID` (entries replaced
    by `grid`'s) for the law's raw names."""
    names = law.raw_names
    g = {**GRID, **(grid or {})}
    unknown = set(grid or {}) - set(GRID)
    if unknown:
        raise InputError(f"grid: unknown start parameters {sorted(unknown)}; known {sorted(GRID)}")
    pts = np.array(list(itertools.product(*[np.atleast_1d(g[n]) for n in names])), dtype=np.float64)
    return names, pts


def _make_objective(law: Law, layout):
    """objective(x_KxPxG, rows) -> f_PxG: the Huber objective of P problems x G starts at once.

    x_KxPxG: flat parameter vectors laid out by `layout` (name -> (offset, size), size F per
      family or 1 shared; a matrix parameter M, one per mixture family), the starts on the LAST
      axis, so that every operation is elementwise across starts and vectorizes on CPU.
    rows: (famB_BxFxPx1, logN_BxPx1, logD_BxPx1, logDraw_BxPx1, logp_BxRxPx1, logL, w, logU,
      P_MxBxRxPx1, offdiag_MxBx1xPx1): each problem's table rows in B blocks of R rows that share
      one family, N and D (see `_problem_blocks`; padding rows weigh 0). The scale part is
      computed once per block (log N, log D centred) and broadcast over its rows: no gather or
      scatter anywhere. famB is the blocks' family one-hot (F = 1 when each family is its own
      problem).
    """
    import jax.numpy as jnp

    separable_rows = _separable_rows_fn() if law.separable else None

    def pick(v_FxPxG, famB):  # -> BxPxG (or 1xPxG for one value)
        if v_FxPxG.shape[0] == 1:
            return v_FxPxG
        return jnp.sum(famB * v_FxPxG[None], axis=1)

    def objective(x, rows):
        famB, logN_B, logD_B, logDraw_B, logp, logL, w, logU, P, off = rows
        th = {n: x[o:o + s] for n, (o, s) in layout.items()}
        th_B = {n: pick(th[n], famB) for n in law.raw_names}
        scale_B = log_scale(law, th_B, logN_B, logD_B, jnp)
        if law.separable:
            gamma_B = th_B["gamma"] if law.uses_ratio else jnp.zeros_like(scale_B[:1])
            return separable_rows(scale_B, gamma_B, logp, logL, w)
        th_R = {n: v[:, None] for n, v in th_B.items()} | {m: th[m][:, None, None] for m in law.raw_matrix}
        r = log_loss_at_scale(law, th_R, scale_B[:, None], logDraw_B[:, None], logp, logU, P, off, jnp) - logL
        return jnp.sum(w * _huber(r, jnp), axis=(0, 1))

    return objective


def _huber(r, xp):
    a = xp.abs(r)
    return xp.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


def _separable_rows_fn():
    """``f(scale_BxPxG, gamma_(B|1)xPxG, logp, logL, w) -> f_PxG``: the Huber objective of a separable
    law's rows, ``sum_rows w Huber(scale - gamma log p - log L)``, with its gradient, one block at a
    time (`jax.lax.map`): the rows x starts arrays of a block stay in cache, where those of the whole
    table (autodiff's residuals between the passes) would not, and moving them costs most of a fit
    of a large table. Value and gradient come from one pass (L-BFGS always asks for both)."""
    import jax
    import jax.numpy as jnp

    def block(args):  # one block: scale, gamma P x G; logp, logL, w R x P x 1
        scale, gamma, logp, logL, w = args
        r = scale[None] - gamma[None] * logp - logL
        d = w * jnp.where(jnp.abs(r) <= HUBER_DELTA, r, HUBER_DELTA * jnp.sign(r))  # w Huber'(r)
        return jnp.sum(w * _huber(r, jnp), axis=0), jnp.sum(d, axis=0), -jnp.sum(d * logp, axis=0)

    def value_and_parts(scale_B, gamma_B, logp, logL, w):
        gam = jnp.broadcast_to(gamma_B, scale_B.shape)
        f_B, g_scale_B, g_gamma_B = jax.lax.map(block, (scale_B, gam, logp, logL, w))
        if gamma_B.shape[0] == 1:
            g_gamma_B = jnp.sum(g_gamma_B, axis=0, keepdims=True)
        return jnp.sum(f_B, axis=0), (g_scale_B, g_gamma_B)

    @jax.custom_vjp
    def rows_objective(scale_B, gamma_B, logp, logL, w):
        return value_and_parts(scale_B, gamma_B, logp, logL, w)[0]

    def fwd(scale_B, gamma_B, logp, logL, w):
        f, grads = value_and_parts(scale_B, gamma_B, logp, logL, w)
        return f, (grads, logp, logL, w)

    def bwd(res, ct_PxG):
        (g_scale_B, g_gamma_B), logp, logL, w = res
        return (g_scale_B * ct_PxG, g_gamma_B * ct_PxG, jnp.zeros_like(logp), jnp.zeros_like(logL),
                jnp.zeros_like(w))

    rows_objective.defvjp(fwd, bwd)
    return rows_objective


def _cell_groups(fam, logN, logD) -> list[np.ndarray]:
    """Row indices of each distinct (family, N, D) cell."""
    keys = np.stack([np.asarray(fam, float), logN, logD], axis=1)
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return [np.flatnonzero(inv == c) for c in range(inv.max() + 1)]


def _block_size(groups_per_problem: list[list[np.ndarray]]) -> int:
    """Rows per block M minimizing the padded work ``max_p(blocks_p) * (M + 8)`` (the 8
    stands for a block's log-sum-exp); a cell larger than M splits into several blocks."""
    sizes = {len(g) for gs in groups_per_problem for g in gs}
    cands = sorted(sizes | {1 << k for k in range(int(max(sizes)).bit_length() + 1)})

    def cost(m):
        return max(sum(-(-len(g) // m) for g in gs) for gs in groups_per_problem) * (m + 8)

    return min(cands, key=cost)


_PROGRAMS: dict = {}


def _programs(law: Law, layout):
    """Jitted ``init(X0_KxPxC, rows) -> state`` and ``run(state, rows, k_end) -> state`` for
    P problems x C starts, cached per law and layout so that every chunk, phase and call
    with the same shapes reuses two small compilations."""
    import jax

    key = (law.name, tuple(sorted(layout.items())))
    if key not in _PROGRAMS:
        objective = _make_objective(law, layout)

        def vg(rows):
            return lbfgs.batched_value_and_grad(lambda x: objective(x, rows))

        init = jax.jit(lambda x0, rows: lbfgs.init_state(vg(rows), x0, tol=GRAD_TOL, memory=MEMORY))
        run = jax.jit(lambda st, rows, k_end: lbfgs.run(vg(rows), st, k_end, tol=GRAD_TOL, memory=MEMORY,
                                                         ftol=FTOL))
        _PROGRAMS[key] = (init, run)
    return _PROGRAMS[key]


def _run_chunks(init, run, state: LBFGSState | None, X0_KxPxG, rows, C: int, idx_PxN,
                k_end: int) -> LBFGSState:
    """Advance the starts idx_PxN (per problem; initialized from X0_KxPxG when `state` is
    None) to `k_end` evaluations, C per problem per call (the last call pads by repeating
    starts; repeats are dropped). Returns the numpy state of the N starts per problem."""
    import jax.numpy as jnp

    N = idx_PxN.shape[1]
    out = None
    for s0 in range(0, N, C):
        cols = np.arange(s0, s0 + C) % N
        m = min(C, N - s0)
        if state is None:
            x0 = np.take_along_axis(X0_KxPxG, idx_PxN[None, :, cols], axis=-1)
            st = init(jnp.asarray(x0), rows)
        else:
            st = state.map(lambda v: jnp.asarray(v[..., cols]))  # noqa: B023 (used at once)
        st = run(st, rows, jnp.asarray(k_end)).map(np.asarray)
        if out is None:
            out = st.map(lambda v: np.zeros(v.shape[:-1] + (N,), v.dtype))
        for dst, v in zip(out, st):
            dst[..., s0:s0 + m] = v[..., :m]
    return out


def _select(state: LBFGSState, idx_PxN: np.ndarray) -> LBFGSState:
    """The starts idx_PxN of every problem (the last axis of every field)."""
    n = idx_PxN.shape[-1]
    return state.map(lambda v: np.take_along_axis(v, np.broadcast_to(idx_PxN, v.shape[:-1] + (n,)), axis=-1))


def _finite_f(state: LBFGSState) -> np.ndarray:
    return np.where(np.isfinite(state.f), state.f, np.inf)


class _Search(NamedTuple):
    """`_solve`'s answer per problem: the best start's index, x (K x P), objective and
    gradient norm; the largest evaluation count; the index and final objective of every start
    that ran on (P x kept)."""

    best: np.ndarray
    x: np.ndarray
    f: np.ndarray
    grad_norm: np.ndarray
    iters: np.ndarray
    f_kept: np.ndarray
    kept: np.ndarray


def _solve(init, run, X0_KxPxG: np.ndarray, rows, n_problems: int, keep: int, n_screen: int,
           max_iters: int) -> _Search:
    """Multi-start L-BFGS for P problems from their G starts X0_KxPxG.

    Starts go through in chunks of CHUNK per problem (one compilation serves every chunk).
    Screening (``keep < G``): every start runs `n_screen` evaluations, then only the `keep`
    starts per problem with the lowest objective go on -- each from its own state, so it
    follows exactly the trajectory it would have followed alone. Exhaustive (``keep >=
    G``): every start goes on. Either way the starts still running are repacked every ROUND
    evaluations, so converged ones stop costing, until all are done or at `max_iters`."""
    G = X0_KxPxG.shape[-1]
    P = n_problems
    C = min(CHUNK, G)
    idx_PxG = np.broadcast_to(np.arange(G), (P, G))
    k_end = min(n_screen if keep < G else ROUND, max_iters)
    state = _run_chunks(init, run, None, X0_KxPxG, rows, C, idx_PxG, k_end)
    if keep < G:
        idx_PxG = np.argsort(_finite_f(state), axis=-1, kind="stable")[:, :keep]
        state = _select(state, idx_PxG)
    while k_end < max_iters:
        act = ~state.done & (state.k < max_iters)
        n_act = int(act.sum(axis=-1).max())
        if n_act == 0:
            break
        k_end = min(k_end + ROUND, max_iters)
        # per problem, its active starts first (stable), padded with finished ones
        order_PxA = np.argsort(~act, axis=-1, kind="stable")[:, :n_act]
        sub = _run_chunks(init, run, _select(state, order_PxA), X0_KxPxG, rows, C,
                          np.broadcast_to(np.arange(n_act), (P, n_act)), k_end)
        for dst, v in zip(state, sub):
            np.put_along_axis(dst, np.broadcast_to(order_PxA, v.shape), v, axis=-1)
    f = _finite_f(state)
    b = np.argmin(f, axis=-1)
    ar = np.arange(P)
    return _Search(best=idx_PxG[ar, b], x=state.x[:, ar, b], f=f[ar, b],
                   grad_norm=np.sqrt(np.sum(state.g[:, ar, b] ** 2, axis=0)),
                   iters=state.k.max(axis=-1), f_kept=f, kept=np.array(idx_PxG))


def _layout(law: Law, shared, n_fam: int, M: int) -> tuple[dict, int]:
    """name -> (offset, size) of the flat parameter vector: per family (`n_fam`, 1 when each
    family is its own problem) or 1 when shared; a matrix parameter M values."""
    layout, off = {}, 0
    sizes = [(n, 1 if n in shared else n_fam) for n in law.raw_names] + [(m, M) for m in law.raw_matrix]
    for n, size in sizes:
        layout[n] = (off, size)
        off += size
    return layout, off


def _centre(layout: dict, X, lN0: float, lD0: float, sign: float) -> np.ndarray:
    """a -> a - alpha lN0 and b -> b - beta lD0 on flat vectors (sign -1: back)."""
    X = np.array(X, dtype=np.float64)
    if "a" in layout:
        for raw, expo, l0 in (("a", "alpha", lN0), ("b", "beta", lD0)):
            (o, s), (oe, se) = layout[raw], layout[expo]
            X[o:o + s] -= sign * X[oe:oe + se] * l0
    return X


def _problem_blocks(law: Law, data: FitData, sel, fam_local, n_fam_local: int, groups, R: int, B: int):
    """One problem's part of the `rows` of `_make_objective` for the table rows `sel` (cells
    `groups`, as indices into `sel`), in B blocks of R rows; padding weighs 0."""
    M = len(data.mixture_families) if law.matrix else 1
    famB, logN_B, logD_B = np.zeros((B, n_fam_local)), np.zeros(B), np.zeros(B)
    logp, logL, w, logU = np.zeros((B, R)), np.zeros((B, R)), np.zeros((B, R)), np.full((B, R), np.inf)
    P, off = np.zeros((M, B, R)), np.zeros((M, B, 1))
    k = 0
    for g in groups:
        for s0 in range(0, len(g), R):
            part = sel[g[s0:s0 + R]]
            n = len(part)
            famB[k, fam_local[g[0]]] = 1.0
            logN_B[k], logD_B[k] = data.logN_R[part[0]], data.logD_R[part[0]]
            logp[k, :n], logL[k, :n] = data.logp_R[part], data.logL_R[part]
            w[k, :n] = 1.0 if data.weight_R is None else data.weight_R[part]
            if law.uses_unique_tokens and data.logU_R is not None:
                logU[k, :n] = data.logU_R[part]
            if law.matrix:
                P[:, k, :n] = data.P_RxM[part].T
                off[:, k, 0] = offdiag_mask(data.fam_in_mix_F[data.fam_R[part[:1]]], M)[:, 0]
            k += 1
    return famB, logN_B, logD_B, logp, logL, w, logU, P, off


class _Problems(NamedTuple):
    """The fit as `_solve` sees it: the parameter layout, the number of problems, the `rows` of
    `_make_objective` (numpy, problems on the second-to-last axis) and the centred flat start
    vectors (dim x P x G)."""

    layout: dict
    n_problems: int
    rows: tuple
    X0: np.ndarray


def _problems(law: Law, X_KxFxG: np.ndarray, data: FitData, shared, lN0: float, lD0: float) -> _Problems:
    """One joint problem over all families (shared exponents) or one per family, all padded to
    common shapes (weight 0), with log N, log D centred on lN0, lD0 and the starts mapped to the
    centred parameters."""
    F, M = data.n_families, len(data.mixture_families) if law.matrix else 1
    if shared:
        layout, dim = _layout(law, shared, F, M)
        sels, fams_local, n_local = [np.arange(data.n_rows)], [data.fam_R], F
        X0 = np.zeros((dim, 1, X_KxFxG.shape[-1]))
        for k, n in enumerate(law.raw_names):  # the grid's starts are the same for every family
            o, s = layout[n]
            X0[o:o + s, 0] = X_KxFxG[k, :s]
    else:
        layout, dim = _layout(law, (), 1, M)
        sels = [np.flatnonzero(data.fam_R == j) for j in range(F)]
        fams_local, n_local, X0 = [np.zeros(len(s), np.int32) for s in sels], 1, X_KxFxG
    groups = [_cell_groups(f, data.logN_R[s], data.logD_R[s]) for s, f in zip(sels, fams_local)]
    R = _block_size(groups)
    B = max(sum(-(-len(g) // R) for g in gs) for gs in groups)
    per = [_problem_blocks(law, data, s, f, n_local, gs, R, B) for s, f, gs in zip(sels, fams_local, groups)]
    # problems on the second-to-last axis, a trailing axis of 1 for the starts
    famB, logN, logD, *rest = (np.moveaxis(np.stack(parts), 0, -1)[..., None] for parts in zip(*per))
    rows = (famB, logN - lN0, logD - lD0, logD, *rest)
    return _Problems(layout, len(sels), rows, _centre(layout, X0, lN0, lD0, 1.0))


def _merge(out: _Search, ex: _Search, redo: np.ndarray) -> _Search:
    """`out` with the problems `redo` replaced by the exhaustive search `ex` of them."""
    best, f, gn, iters, x = (a.copy() for a in (out.best, out.f, out.grad_norm, out.iters, out.x))
    best[redo], f[redo], gn[redo], iters[redo] = ex.best, ex.f, ex.grad_norm, ex.iters
    x[:, redo] = ex.x
    return out._replace(best=best, f=f, grad_norm=gn, iters=iters, x=x)


def _search(law: Law, pr: _Problems, G: int, keep: int, n_screen: int,
            max_iters: int) -> tuple[_Search, np.ndarray]:
    """(the search's answer, the problems whose every start ran to the end)."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        init, run = _programs(law, pr.layout)
        rows_j = tuple(jnp.asarray(a) for a in pr.rows)
        out = _solve(init, run, pr.X0, rows_j, pr.n_problems, keep, n_screen, max_iters)
        if keep >= G:
            return out, np.arange(pr.n_problems)
        # Consensus check: on a well-posed problem many kept starts end at the same optimum.
        # Where fewer than CONSENSUS do, the optimum is a rare or flat-valley one that the
        # screen may have cut: those problems rerun with every start (the full procedure).
        # (starts ending within a relative 1e-9 of the best objective)
        best = out.f_kept.min(axis=-1, keepdims=True)
        redo = np.flatnonzero(np.sum(out.f_kept <= best * (1 + 1e-9) + 1e-14, axis=-1) < CONSENSUS)
        if len(redo):
            sub = tuple(jnp.asarray(np.take(a, redo, axis=-2)) for a in pr.rows)
            out = _merge(out, _solve(init, run, pr.X0[:, redo], sub, len(redo), G, n_screen, max_iters), redo)
    return out, redo


def _check_search(keep, n_screen, G: int) -> int:
    """`keep` as the number of starts per problem that go past the screen."""
    if keep is not None and not (isinstance(keep, (int, np.integer)) and keep >= 1):
        raise InputError(f"keep must be a positive integer or None (every start), got {keep!r}")
    if not (isinstance(n_screen, (int, np.integer)) and n_screen >= 1):
        raise InputError(f"n_screen must be a positive integer, got {n_screen!r}")
    return G if keep is None else int(min(keep, G))


@dataclass(frozen=True)
class ArrayFit:
    """The approach-3 fit of prepared arrays (`fit_arrays`), per family (F) where it says _F.

    Attributes:
      raw: raw parameters, ``raw name -> (F,)`` (``a = log A``, ``b = log B``, ``e = log E``,
        exponents; ``logc`` for the ratio law; ...), matrix ones ``(M, F)``.
      best_F: index of each family's winning start.
      objective_F: final Huber objective per family (a shared fit: the joint one, repeated).
      grad_norm_F: gradient norm at the solution per family.
      starts: the starts, K x F x G (`names` along K, matrix ones M values each).
      iters: the most objective evaluations any start used.
      kept: starts per problem that went past the screen (G when none was cut).
      objective_kept: the final objective of every start that went on, problems x kept.
      lead: the starts that went on, K x F x kept (per family; a family rerun with every start
        has its winner in place of the last): where a table changes by a few rows, the starts
        to run without a screen (`fit_point_leave_out`).
      exhaustive_P: the problems (families, or the one joint problem) whose every start ran to
        the end (all of them with ``keep=None``; otherwise those that failed the consensus).
    """

    raw: dict
    best_F: np.ndarray
    objective_F: np.ndarray
    grad_norm_F: np.ndarray
    starts: np.ndarray
    names: tuple
    iters: int
    kept: int
    objective_kept: np.ndarray
    exhaustive_P: np.ndarray
    lead: np.ndarray


def _family_results(law: Law, out: _Search, layout, F: int, shared, lN0: float, lD0: float):
    """(raw params per family in the natural (uncentred) scale, best start, objective and
    gradient norm per family) from the search over problems."""
    if shared:
        x = _centre(layout, out.x[:, :1], lN0, lD0, -1.0)[:, 0]
        raw = {n: np.broadcast_to(x[o:o + s], (F,)).copy() for n, (o, s) in layout.items()}
        return raw, np.full(F, out.best[0]), np.full(F, out.f[0]), np.full(F, out.grad_norm[0])
    x = _centre(layout, out.x, lN0, lD0, -1.0)
    raw = {n: x[o:o + s] if n in law.raw_matrix else x[o] for n, (o, s) in layout.items()}
    return raw, out.best, out.f, out.grad_norm


def effective_ratio_data(data: FitData, lrs: float) -> FitData:
    """The table with each row's ratio replaced by its effective ratio at R* = exp(lrs)."""
    if data.logU_R is None:
        return data
    with np.errstate(over="ignore", invalid="ignore"):
        logp = log_effective_own_ratio(lrs, data.logD_R, data.logp_R, data.logU_R)
    return dataclasses.replace(data, logp_R=np.asarray(logp, dtype=float))


def base_fits(law: Law, data: FitData, lrs_values) -> dict[float, ArrayFit]:
    """lrs -> the base law's fit on `effective_ratio_data` (empty for a law without U, or a
    table where no family repeats)."""
    if not law.uses_unique_tokens or data.logU_R is None or not np.any(data.logp_R + data.logD_R > data.logU_R):
        return {}
    base = get_law(law.base)
    return {float(v): fit_arrays(base, effective_ratio_data(data, float(v))) for v in lrs_values}


def _starts_from_base(law: Law, data: FitData) -> np.ndarray:
    """(K, F, G): the base law's best fit per family crossed with `EXTRA_STARTS` (for the
    repetition laws, fitted on the effective ratios at each start R*: `base_fits`)."""
    at_rs = base_fits(law, data, EXTRA_STARTS["lrs"])
    base = fit_arrays(get_law(law.base), data) if not at_rs else None
    F, M = data.n_families, len(data.mixture_families) if law.matrix else 0
    ybar_F = np.array([data.logL_R[data.fam_R == j].mean() for j in range(F)])
    base_names = get_law(law.base).raw_names
    extra = [n for n in law.raw_names if n in EXTRA_STARTS] + list(law.raw_matrix)
    combos = list(itertools.product(*[EXTRA_STARTS[n] for n in extra])) or [()]
    K = len(law.raw_names)
    X = np.zeros((K + M * len(law.raw_matrix), F, len(combos)))
    for g, combo in enumerate(combos):
        v = dict(zip(extra, combo))
        for k, n in enumerate(law.raw_names):
            X[k, :, g] = (at_rs.get(v.get("lrs"), base).raw[n] if n in base_names
                          else ybar_F + v[n] if n == "lk" else v[n])
        for i, m in enumerate(law.raw_matrix):
            X[K + i * M:K + (i + 1) * M, :, g] = v[m]
    return X


def law_starts(law: Law, data: FitData, grid: dict | None = None, starts=None) -> np.ndarray:
    """The law's starts, K x F x G (module docstring): `starts` when given (G x K, the same for
    every family, or K x F x G), else its base law's fit crossed with `EXTRA_STARTS`, else
    `start_grid` (`grid` replacing entries)."""
    if starts is None and law.base:
        return _starts_from_base(law, data)
    if starts is not None and np.ndim(starts) == 3:
        return np.array(starts, dtype=np.float64)
    G_pts = start_grid(law, grid)[1] if starts is None else np.atleast_2d(np.asarray(starts, dtype=np.float64))
    return np.broadcast_to(G_pts.T[:, None, :], (G_pts.shape[1], data.n_families, G_pts.shape[0])).copy()


def fit_arrays(law: Law, data: FitData, shared=(), *, max_iters: int | None = None,
               starts: np.ndarray | None = None, grid: dict | None = None,
               keep: int | None = KEEP, n_screen: int = SCREEN_ITERS) -> ArrayFit:
    """Approach-3 fit on prepared arrays (see `ArrayFit` for what it returns).

    `starts` (G x K in `law.raw_names` order, the same for every family, or K x F x G, per
    family, e.g. another fit's `ArrayFit.lead`) replaces the law's starts (`law_starts`).
    `max_iters`: objective evaluations per start (None: `law.max_evals`). `keep`: after
    `n_screen` L-BFGS evaluations from every start, only the `keep` best starts per problem run
    on to convergence; ``keep=None`` runs every start to convergence
    (``tests/test_laws_point.py`` checks that both keep the same optimum).

    Internally log N and log D are centred on the table's geometric means (N_ref, D_ref)
    and ``a' = a - alpha log N_ref``, ``b' = b - beta log D_ref`` are optimized: the same
    objective and the same starts (mapped exactly), but far better conditioned for L-BFGS.
    """
    max_iters = law.max_evals if max_iters is None else max_iters
    X = law_starts(law, data, grid, starts)
    G = X.shape[-1]
    keep = _check_search(keep, n_screen, G)
    lN0, lD0 = np.log(data.N_ref), np.log(data.D_ref)
    pr = _problems(law, X, data, shared, lN0, lD0)
    out, exhaustive = _search(law, pr, G, keep, n_screen, max_iters)
    raw, best_F, obj_F, gn_F = _family_results(law, out, pr.layout, data.n_families, shared, lN0, lD0)
    lead_PxN = out.kept.copy()
    won = ~(lead_PxN == out.best[:, None]).any(axis=-1)  # won by a start the screen cut
    lead_PxN[won, -1] = out.best[won]
    lead = np.stack([X[:, j, lead_PxN[0 if shared else j]] for j in range(data.n_families)], axis=1)
    return ArrayFit(raw=raw, best_F=best_F, objective_F=obj_F, grad_norm_F=gn_F, starts=X,
                    names=law.raw_names + law.raw_matrix, iters=int(out.iters.max()), kept=keep,
                    objective_kept=out.f_kept, exhaustive_P=exhaustive, lead=lead)


def _start_of(res: ArrayFit, law: Law, j: int, M: int) -> dict:
    """Family j's winning start as raw name -> value (a matrix parameter: its M values)."""
    x = res.starts[:, j, res.best_F[j]]
    K = len(law.raw_names)
    out = {n: float(x[k]) for k, n in enumerate(law.raw_names)}
    return out | {m: x[K + i * M:K + (i + 1) * M].tolist() for i, m in enumerate(law.raw_matrix)}


def fit_point(df: pd.DataFrame, law: str = "multilingual", shared=(), *,
              max_iters: int | None = None, grid: dict | None = None, keep: int | None = KEEP,
              n_screen: int = SCREEN_ITERS, strict: bool = False) -> PointFit:
    """Fit `law` to a run table by Hoffmann et al. approach 3 (see module docstring).

    Args:
      df: run table (`multiscale.runs` columns; loss in nats/token).
      law: any registered law (`multiscale.laws.forms.LAWS`).
      shared: exponents shared by all families, e.g. ("alpha", "beta") or "alpha,beta".
      max_iters: objective evaluations (L-BFGS trial steps) per start (None: the law's).
      grid: replaces entries of the start grid `GRID` (e.g. ``{"a": [5.0]}``) of a law started
        from the grid; the default is the full grid (docs/design.md).
      keep, n_screen: every start gets `n_screen` evaluations, then the `keep` best per
        family run on to convergence (a family whose kept starts do not agree on the optimum
        reruns with every start); ``keep=None`` runs every start to convergence.
      strict: refuse (`InputError`) a fit whose parameters the table cannot pin down
        (`multiscale.laws.identifiability`) instead of warning (`UnidentifiedWarning`).

    Returns:
      `PointFit` with the best start's parameters per family, and its `identifiability` lines.
    """
    law_obj = get_law(law)
    t0 = time.perf_counter()
    df, data, shared = prepare(df, law_obj, shared)
    res = fit_arrays(law_obj, data, shared, max_iters=max_iters, grid=grid, keep=keep, n_screen=n_screen)
    return _point_fit(law_obj, data, shared, res, max_iters, n_screen, strict, t0)


def fit_point_leave_out(df: pd.DataFrame, leave_out: Mapping[Hashable, np.ndarray], law: str = "multilingual",
                        shared=()) -> tuple[PointFit, dict[Hashable, PointFit]]:
    """`fit_point` of the run table `df`, and of `df` without the rows of each boolean mask (over
    `df`'s rows) in `leave_out`, by key.

    The fit of `df` searches the law's starts as `fit_point` does; each fit without some rows runs
    only the starts that went past that search's screen (`ArrayFit.lead`), each to convergence
    with no screen: a few rows less barely change which starts lead, and the screen of the full
    grid is most of the work of a fit. Every table is fitted as `fit_point` does for a law with a
    base (started from its base law's fit) and where the search on `df` ran every start of some
    family to the end: such an optimum lies in a flat valley that few starts reach, and from the
    lead's starts the fits of the reduced tables stop short of theirs.
    """
    law_obj = get_law(law)
    t0 = time.perf_counter()
    _, data, shared_t = prepare(df, law_obj, shared)
    if not isinstance(leave_out, Mapping):
        raise InputError(f"leave_out must map keys to boolean row masks, got {type(leave_out).__name__}",
                         arg="leave_out")
    masks = {}
    for key, mask in leave_out.items():
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (len(df),):
            raise InputError(f"leave_out[{key!r}] must be a boolean mask over the {len(df)} rows of df, got "
                             f"dtype {m.dtype} and shape {m.shape}", arg="leave_out")
        masks[key] = m
    res = fit_arrays(law_obj, data, shared_t)
    whole = _point_fit(law_obj, data, shared_t, res, None, SCREEN_ITERS, False, t0)
    lead_ok = not (law_obj.base or len(res.exhaustive_P))
    out = {}
    for key, m in masks.items():
        t_m = time.perf_counter()
        _, part, _ = prepare(df[~m], law_obj, shared)
        lead = res.lead[:, [data.families.index(f) for f in part.families]] if lead_ok else None
        fit = fit_arrays(law_obj, part, shared_t, starts=lead)
        out[key] = _point_fit(law_obj, part, shared_t, fit, None, SCREEN_ITERS, False, t_m)
    return whole, out


def _point_fit(law_obj: Law, data: FitData, shared, res: ArrayFit, max_iters, n_screen: int, strict: bool,
               t0: float) -> PointFit:
    """The `PointFit` of the search `res` on `data` (begun at `t0`), its warnings and identifiability."""
    fams = data.families
    slow = [f for f, g in zip(fams, res.grad_norm_F) if not g < 1e-6]
    if slow:
        warnings.warn(f"L-BFGS stopped with gradient norm above 1e-6 for {slow} after "
                      f"{max_iters or law_obj.max_evals} evaluations: raise max_iters, or share exponents if "
                      "the table cannot pin the law down", RuntimeWarning, stacklevel=3)
    M = len(data.mixture_families) if law_obj.matrix else 0
    off = offdiag_mask(data.fam_in_mix_F, M) if law_obj.matrix else None
    draws = {n: np.asarray(v, dtype=float)[None] for n, v in natural_from_raw(law_obj, res.raw, off).items()}
    counts = data.counts_F()
    done = set(res.exhaustive_P.tolist())
    unclear = unidentified(law_obj, data, shared, draws)
    refuse_unidentified(law_obj, unclear, strict)
    fit = PointFit(
        law=law_obj, families=fams, shared=shared, draws=draws, N_ref=data.N_ref,
        D_ref=data.D_ref, n_runs={f: int(counts[j]) for j, f in enumerate(fams)},
        objective={f: float(res.objective_F[j]) for j, f in enumerate(fams)},
        start={f: _start_of(res, law_obj, j, M) for j, f in enumerate(fams)},
        grad_norm={f: float(res.grad_norm_F[j]) for j, f in enumerate(fams)},
        n_starts=int(res.starts.shape[-1]), seconds=time.perf_counter() - t0,
        search={"screen_iters": int(n_screen), "keep": int(res.kept), "max_evals": int(max_iters or law_obj.max_evals),
                "every_start_to_the_end": [fams[j] for j in range(len(fams)) if (0 if shared else j) in done]},
        mixture_families=tuple(data.mixture_families) if law_obj.matrix else (),
        unique_tokens=data.unique_tokens_F(), identifiability=unclear)
    fit.warn_unidentified()
    return fit
