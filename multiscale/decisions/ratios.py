"""p* solvers: the per-draw optimal ratios and the robust p* of any law.

Minimize ``sum_i w_i L_i(P)`` (raw) or ``sum_i w_i L_i(P) / L_i(e_i)`` (normalized: each loss
relative to the family's monolingual loss) over the mixture P of the M mixture families, with
``lo_j <= P_j <= hi_j`` and ``sum_j P_j = 1``.

General solver (`solve_coupled`, `solve_coupled_robust`): projected gradient per posterior draw in
jax (jit + vmap, float64) with an adaptive step (`ITERS` iterations; projection on the capped
simplex by `PROJ_STEPS` bisection steps; floors raised to `P_MIN`); the robust p* minimizes the
objective averaged over the draws (`ROBUST_ITERS`). See docs/decisions/2026-11-30-coupled-solver.md.

Separable fast path (`solve_ratios`, `solve_robust`; laws with `separable`): with
``c_i = L_i(N, D, 1)``, the KKT point is ``p_i = clip((w_i gamma_i c_i / lam)^(1/(1 + gamma_i)),
lo_i, hi_i)`` at the one ``lam`` where these sum to 1, found by bisection on log lam for every draw
at once (numpy). The normalized objective leaves ``sum_i w_i p_i^(-gamma_i)``, so p* depends only
on gamma and w (He et al. 2024). See docs/design.md, "Optimal ratios and decisions".
"""

from __future__ import annotations

import math

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.forms import log_loss, mixture_loss, offdiag_mask, raw_from_natural

BISECTION_STEPS = 200


def solve_ratios(gamma_SxF, c_SxF, w_F, lo_F=None, hi_F=None) -> np.ndarray:
    """Exact minimizer of ``sum_i w_i c_i p_i^(-gamma_i)`` on the capped simplex, per draw (c = 1
    for the normalized objective; floors and caps default 0 and 1, ``sum lo <= 1 <= sum hi``).
    Returns P_SxF in float64, each row summing to 1 (to ~1e-15)."""
    g = np.atleast_2d(np.asarray(gamma_SxF, dtype=np.float64))
    c = np.broadcast_to(np.asarray(c_SxF, dtype=np.float64), g.shape)
    S, F = g.shape
    w = np.broadcast_to(np.asarray(w_F, dtype=np.float64), (F,))
    lo = np.zeros(F) if lo_F is None else np.broadcast_to(np.asarray(lo_F, float), (F,))
    hi = np.ones(F) if hi_F is None else np.broadcast_to(np.asarray(hi_F, float), (F,))
    if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12 or np.any(lo > hi):
        raise InputError(f"infeasible bounds: floors sum to {lo.sum():.6g}, caps to {hi.sum():.6g} "
                         "(need floors <= 1 <= caps, each floor <= its cap)")
    k = w * g * c
    active = k > 0
    with np.errstate(divide="ignore"):
        logk = np.where(active, np.log(np.where(active, k, 1.0)), -np.inf)
    expo = 1.0 / (1.0 + g)

    def total(loglam):  # loglam: (S,)
        with np.errstate(over="ignore", under="ignore"):
            p = np.where(active, np.exp((logk - loglam[:, None]) * expo), 0.0)
        return np.clip(p, lo, hi)

    any_active = active.any(axis=1)
    finite_logk = np.where(active, logk, np.nan)
    a = np.where(any_active, np.nanmin(np.where(any_active[:, None], finite_logk, 0.0), axis=1) - 1.0, 0.0)
    b = np.where(any_active, np.nanmax(np.where(any_active[:, None], finite_logk, 0.0), axis=1)
                 + (1.0 + g.max(axis=1)) * 60.0, 1.0)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (a + b)
        over = total(mid).sum(axis=1) > 1.0
        a = np.where(over, mid, a)
        b = np.where(over, b, mid)
    P = total(0.5 * (a + b))
    if not any_active.all():
        # No family's loss depends on its ratio: every mixture is optimal; return the
        # water-filled uniform mixture.
        P[~any_active] = _water_fill_uniform(lo, hi)
    return P


def _water_fill_uniform(lo, hi) -> np.ndarray:
    a, b = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (a + b)
        if np.clip(mid, lo, hi).sum() > 1:
            b = mid
        else:
            a = mid
    return np.clip(0.5 * (a + b), lo, hi)


ROBUST_OUTER_STEPS = 64  # bisection steps on log lam
ROBUST_NEWTON_STEPS = 30  # Newton steps on log p per family and lam
_LOG_P_MIN = -177.0  # log of the smallest ratio the robust solver represents (~1e-77)


def _log_mean_slope(g, logk, u):
    """log of the mean slope ``mean_s k_s g_s p^(-g_s - 1)`` per family at log p = u (F,), and its
    derivative in u; log-sum-exp throughout, so no draw overflows."""
    t = logk - (g + 1.0) * u[None, :]
    m = np.max(t, axis=0)
    e = np.exp(t - m)
    se = e.sum(axis=0)
    return m + np.log(se / g.shape[0]), -(e * (g + 1.0)).sum(axis=0) / se


def _robust_at(g, logk, loglam, lo, hi):
    """Per family, the p in [lo, hi] where the mean slope equals lam (the slope falls in p).

    log(mean slope) is convex and decreasing in u = log p (a log-sum-exp of lines), so Newton's
    method started left of the root climbs to it monotonically, without overshooting."""
    a = np.log(np.maximum(lo, np.exp(_LOG_P_MIN)))
    b = np.log(hi)
    u = a.copy()
    for _ in range(ROBUST_NEWTON_STEPS):
        f, df = _log_mean_slope(g, logk, u)
        step = np.where(f > loglam, -(f - loglam) / df, 0.0)
        u = np.minimum(u + step, b)
        if np.all(step <= 1e-15 * np.maximum(1.0, np.abs(u))):
            break
    return np.clip(np.exp(u), lo, hi)


def solve_robust(gamma_SxF, c_SxF, w_F, lo_F=None, hi_F=None) -> np.ndarray:
    """The one mixture minimizing the posterior MEAN objective ``sum_i w_i mean_s[c_is p_i^(-gamma_is)]``
    on the capped simplex: the Bayes decision (it minimizes expected regret, see `Recommendation`).

    Separable and convex: bisection on log lam outside, Newton on log p_i inside (`_robust_at`),
    exact up to floating point. Returns (F,), summing to 1 (to ~1e-15).
    """
    g = np.atleast_2d(np.asarray(gamma_SxF, dtype=np.float64))
    c = np.broadcast_to(np.asarray(c_SxF, dtype=np.float64), g.shape)
    F = g.shape[1]
    w = np.broadcast_to(np.asarray(w_F, dtype=np.float64), (F,))
    lo = np.zeros(F) if lo_F is None else np.broadcast_to(np.asarray(lo_F, float), (F,))
    hi = np.ones(F) if hi_F is None else np.broadcast_to(np.asarray(hi_F, float), (F,))
    solve_ratios(g[:1], c[:1], w, lo, hi)  # the same checks of the bounds
    k = w * c
    if np.all(k * g == 0):
        return _water_fill_uniform(lo, hi)
    with np.errstate(divide="ignore"):
        logk = np.log(k * g)
    active = np.any(k * g > 0, axis=0)
    logk[:, ~active] = 0.0  # a family whose loss never depends on its ratio: pinned to its floor below
    slope_1 = _log_mean_slope(g, logk, np.zeros(F))[0][active]
    a = np.min(slope_1) - 1.0  # below every slope at p = 1: each p_i at its cap
    b = np.max(_log_mean_slope(g, logk, np.full(F, np.log(1e-12)))[0][active]) + 1.0  # every p_i < 1e-12
    for _ in range(ROBUST_OUTER_STEPS):
        mid = 0.5 * (a + b)
        over = _robust_p(g, logk, mid, lo, hi, active).sum() > 1.0
        a, b = (mid, b) if over else (a, mid)
    return _robust_p(g, logk, 0.5 * (a + b), lo, hi, active)


def _robust_p(g, logk, loglam, lo, hi, active):
    return np.where(active, _robust_at(g, logk, loglam, lo, hi), lo)


ITERS = 200
ROBUST_ITERS = 200
PROJ_STEPS = 40
P_MIN = 1e-9


def _project(v, lo, hi):
    import jax
    import jax.numpy as jnp

    a = jnp.min(v - hi) - 1.0
    b = jnp.max(v - lo) + 1.0

    def body(_, ab):
        a, b = ab
        mid = 0.5 * (a + b)
        over = jnp.sum(jnp.clip(v - mid, lo, hi)) > 1.0
        return jnp.where(over, mid, a), jnp.where(over, b, mid)

    a, b = jax.lax.fori_loop(0, PROJ_STEPS, body, (a, b))
    return jnp.clip(v - 0.5 * (a + b), lo, hi)


def _pg(obj, p0, lo, hi, iters: int):
    """Projected gradient from p0 (projected first) for `iters` steps: the step grows by 1.25 after
    an accepted step and halves after a rejected one (sufficient decrease), so the objective never
    rises above its value at the projected p0."""
    import jax
    import jax.numpy as jnp

    def step(_, c):
        p, fp, g, t = c
        q = _project(p - t * g, lo, hi)
        fq, gq = obj(q)
        d = q - p
        ok = jnp.isfinite(fq) & (fq <= fp + jnp.dot(g, d) + jnp.dot(d, d) / (2 * t))
        return (jnp.where(ok, q, p), jnp.where(ok, fq, fp), jnp.where(ok, gq, g),
                jnp.where(ok, 1.25 * t, 0.5 * t))

    p0 = _project(p0, lo, hi)
    f0, g0 = obj(p0)
    return jax.lax.fori_loop(0, iters, step, (p0, f0, g0, jnp.asarray(0.01)))[0]


_PROGRAMS: dict = {}


def _program(law, fam_in_mix: tuple, M: int, normalized: bool, iters: int, robust: bool = False):
    """The jitted solver ``(theta (draws first), log N, log D, log U, w, lo, hi, p0) -> P``,
    compiled once per law, families, objective, iteration count and kind: per draw (P (S, M),
    each draw's optimum from p0) or `robust` (P (M,), the minimizer of the mean over the draws)."""
    import jax
    import jax.numpy as jnp

    key = (law.name, fam_in_mix, M, normalized, iters, robust)
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    F = len(fam_in_mix)
    off = jnp.asarray(offdiag_mask(np.asarray(fam_in_mix), M))
    idx = jnp.asarray(np.asarray(fam_in_mix))
    mono = jnp.asarray(np.eye(M)[np.asarray(fam_in_mix)])  # family i's monolingual mixture

    def losses(th1, P, logN, logD, logU):  # one draw's losses (F,) in nats/token at P (M,)
        return jnp.exp(log_loss(law, th1, logN, logD, jnp.log(P[idx]), logU, P[:, None], off, xp=jnp))

    def reference(th1, logN, logD, logU):
        """Each family's monolingual loss when `normalized` (ones otherwise), once per draw."""
        if not normalized:
            return jnp.ones(F)
        return jax.vmap(lambda Q: losses(th1, Q, logN, logD, logU))(mono)[jnp.arange(F), jnp.arange(F)]

    def objective(th1, ref1, P, logN, logD, logU, w):  # the draw's weighted sum of losses / ref
        return jnp.sum(w * losses(th1, P, logN, logD, logU) / ref1)

    def one(th1, logN, logD, logU, w, lo, hi, p0):
        ref = reference(th1, logN, logD, logU)
        obj = jax.value_and_grad(lambda P: objective(th1, ref, P, logN, logD, logU, w))
        return _pg(obj, p0, lo, hi, iters)

    def mean(th, logN, logD, logU, w, lo, hi, p0):
        ref = jax.vmap(reference, in_axes=(0, None, None, None))(th, logN, logD, logU)
        over = jax.vmap(objective, in_axes=(0, 0) + (None,) * 5)
        obj = jax.value_and_grad(lambda P: jnp.mean(over(th, ref, P, logN, logD, logU, w)))
        return _pg(obj, p0, lo, hi, iters)

    run = mean if robust else jax.vmap(one, in_axes=(0,) + (None,) * 7)
    _PROGRAMS[key] = jax.jit(run)
    return _PROGRAMS[key]


def _run(law, nat: dict, N, D, fam_in_mix, M: int, w_F, lo_M, hi_M, U_F, normalized, iters, robust, p0):
    import jax
    import jax.numpy as jnp

    F = len(fam_in_mix)
    lo = np.maximum(np.asarray(lo_M, float), P_MIN)
    hi = np.asarray(hi_M, float)
    if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12 or np.any(lo > hi):
        raise InputError(f"infeasible bounds: floors sum to {lo.sum():.6g}, caps to {hi.sum():.6g}")
    U = np.full(F, np.inf) if U_F is None else np.asarray(U_F, float)
    p0 = np.full(M, 1.0 / M) if p0 is None else np.asarray(p0, float)
    with jax.enable_x64(True):
        th = {k: jnp.asarray(np.moveaxis(v, 0, 1) if k in law.matrix else v)
              for k, v in raw_from_natural(law, nat).items()}  # draws first everywhere
        run = _program(law, tuple(int(i) for i in fam_in_mix), M, bool(normalized), int(iters), robust)
        args = (math.log(N), math.log(D), np.log(U), np.asarray(w_F, float), lo, hi, p0)
        return np.array(run(th, *(jnp.asarray(a, dtype=jnp.float64) for a in args)))  # a writable copy


def solve_coupled(law, nat: dict, N: float, D: float, fam_in_mix, M: int, w_F, lo_M, hi_M, U_F=None,
                  normalized: bool = False, iters: int = ITERS) -> np.ndarray:
    """p* (S, M) per draw of the natural parameters `nat` (per family (S, F), matrix (S, F, M))."""
    return _run(law, nat, N, D, fam_in_mix, M, w_F, lo_M, hi_M, U_F, normalized, iters, False, None)


def solve_coupled_robust(law, nat: dict, N: float, D: float, fam_in_mix, M: int, w_F, lo_M, hi_M, U_F=None,
                         normalized: bool = False, p0=None, iters: int = ROBUST_ITERS) -> np.ndarray:
    """The robust p* (M,): the one mixture minimizing the MEAN over the draws of `nat` of the
    objective (the Bayes decision, `multiscale.decisions.regret`), by the same projected gradient on
    the draw-averaged objective, started at `p0` (default uniform), whose objective it never
    exceeds. Every draw's objective must be finite near the solution (leave the others out)."""
    return _run(law, nat, N, D, fam_in_mix, M, w_F, lo_M, hi_M, U_F, normalized, iters, True, p0)


def objective_at(law, nat: dict, N: float, D: float, fam_in_mix, P_SxM, w_F, U_F=None,
                 normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(objective per draw (S,), losses (S, F)) at mixtures P ((S, M) or (M,)). A loss that
    overflows is inf, and the draw's objective not finite (the recommendation leaves it out)."""
    fam_in_mix = np.asarray(fam_in_mix)
    with np.errstate(over="ignore", invalid="ignore"):
        L = mixture_loss(law, nat, N, D, P_SxM, fam_in_mix, U_F)
        if not normalized:
            return (np.asarray(w_F) * L).sum(axis=1), L
        M = np.shape(P_SxM)[-1]
        with np.errstate(divide="ignore"):  # the other families' p = 0
            ref = np.stack([mixture_loss(law, nat, N, D, np.eye(M)[m], fam_in_mix, U_F)[:, i]
                            for i, m in enumerate(fam_in_mix)], axis=1)
        return (np.asarray(w_F) * L / ref).sum(axis=1), L


