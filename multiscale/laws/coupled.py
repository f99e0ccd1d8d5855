"""Optimal ratios p* for any law, the coupled ones included: projected gradient on the simplex.

Minimize ``sum_i w_i L_i(P)`` (raw) or ``sum_i w_i L_i(P) / L_i(e_i)`` (normalized: each loss
relative to the family's monolingual loss, the whole budget on it) over the mixture P of the M
mixture families, with ``lo_j <= P_j <= hi_j`` and ``sum_j P_j = 1``. For the seed laws this is
exactly `multiscale.laws.optimal.solve_ratios`'s problem (``L_i(e_i) = c_i``), and both solvers
agree there (tests/test_laws_coupled.py); the seed laws keep the exact separable solver.

Method, per posterior draw, in jax (jit + vmap over the draws, float64): projected gradient
with a per-draw step that grows by 1.25 after an accepted step and halves after a rejected one
(sufficient decrease ``f(q) <= f(p) + g.(q - p) + |q - p|^2 / (2 t)``), a fixed number of
iterations (`ITERS`). The projection on the capped simplex is ``clip(v - lam, lo, hi)`` with lam
found by `PROJ_STEPS` bisection steps. Floors are raised to `P_MIN` (the seed's law is infinite
at p = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.fits import LOSS_UNITS
from multiscale.laws.mixture_forms import log_loss, offdiag_mask, raw_from_natural
from multiscale.laws.summary import interval

ITERS = 200
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


def _losses_fn(law, fam_in_mix, M: int):
    """(theta of one draw, P (M,), log N, log D, log U (F,)) -> losses (F,) in nats/token."""
    import jax.numpy as jnp

    off = jnp.asarray(offdiag_mask(fam_in_mix, M))
    idx = jnp.asarray(fam_in_mix)

    def losses(th, P, logN, logD, logU):
        return jnp.exp(log_loss(law, th, logN, logD, jnp.log(P[idx]), logU, P[:, None], off, xp=jnp))

    return losses


_PROGRAMS: dict = {}


def _program(law, fam_in_mix: tuple, M: int, normalized: bool, iters: int):
    """The jitted solver ``(theta (draws first), log N, log D, log U, w, lo, hi) -> P (S, M)``,
    compiled once per law, families, objective and iteration count."""
    import jax
    import jax.numpy as jnp

    key = (law.name, fam_in_mix, M, normalized, iters)
    if key in _PROGRAMS:
        return _PROGRAMS[key]
    F = len(fam_in_mix)
    losses = _losses_fn(law, np.asarray(fam_in_mix), M)
    mono = np.eye(M)[np.asarray(fam_in_mix)]  # family i's monolingual mixture

    def one(th1, logN, logD, logU, w, lo, hi):
        def f(P):
            return losses(th1, P, logN, logD, logU)

        ref = jax.vmap(f)(jnp.asarray(mono))[jnp.arange(F), jnp.arange(F)] if normalized else jnp.ones(F)
        obj = jax.value_and_grad(lambda P: jnp.sum(w * f(P) / ref))

        def step(_, c):
            p, fp, g, t = c
            q = _project(p - t * g, lo, hi)
            fq, gq = obj(q)
            d = q - p
            ok = jnp.isfinite(fq) & (fq <= fp + jnp.dot(g, d) + jnp.dot(d, d) / (2 * t))
            return (jnp.where(ok, q, p), jnp.where(ok, fq, fp), jnp.where(ok, gq, g),
                    jnp.where(ok, 1.25 * t, 0.5 * t))

        p0 = _project(jnp.full(M, 1.0 / M), lo, hi)
        f0, g0 = obj(p0)
        return jax.lax.fori_loop(0, iters, step, (p0, f0, g0, jnp.asarray(0.01)))[0]

    _PROGRAMS[key] = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None, None, None)))
    return _PROGRAMS[key]


def solve_coupled(law, nat: dict, N: float, D: float, fam_in_mix, M: int, w_F, lo_M, hi_M, U_F=None,
                  normalized: bool = False, iters: int = ITERS) -> np.ndarray:
    """p* (S, M) per draw of the natural parameters `nat` (per family (S, F), matrix (S, F, M))."""
    import jax
    import jax.numpy as jnp

    F = len(fam_in_mix)
    lo = np.maximum(np.asarray(lo_M, float), P_MIN)
    hi = np.asarray(hi_M, float)
    if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12 or np.any(lo > hi):
        raise InputError(f"infeasible bounds: floors sum to {lo.sum():.6g}, caps to {hi.sum():.6g}")
    U = np.full(F, np.inf) if U_F is None else np.asarray(U_F, float)
    with jax.enable_x64(True):
        th = {k: jnp.asarray(np.moveaxis(v, 0, 1) if k in law.matrix else v)
              for k, v in raw_from_natural(law, nat).items()}  # draws first everywhere
        run = _program(law, tuple(int(i) for i in fam_in_mix), M, bool(normalized), int(iters))
        args = (math.log(N), math.log(D), np.log(U), np.asarray(w_F, float), lo, hi)
        return np.asarray(run(th, *(jnp.asarray(a, dtype=jnp.float64) for a in args)))


def objective_at(law, nat: dict, N: float, D: float, fam_in_mix, P_SxM, w_F, U_F=None,
                 normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(objective per draw (S,), losses (S, F)) at mixtures P ((S, M) or (M,))."""
    from multiscale.laws.mixture_forms import mixture_loss

    fam_in_mix = np.asarray(fam_in_mix)
    L = mixture_loss(law, nat, N, D, P_SxM, fam_in_mix, U_F)
    if normalized:
        M = np.shape(P_SxM)[-1]
        with np.errstate(divide="ignore"):  # the other families' p = 0
            ref = np.stack([mixture_loss(law, nat, N, D, np.eye(M)[m], fam_in_mix, U_F)[:, i]
                            for i, m in enumerate(fam_in_mix)], axis=1)
        return (np.asarray(w_F) * L / ref).sum(axis=1), L
    return (np.asarray(w_F) * L).sum(axis=1), L


@dataclass
class CoupledRecommendation:
    """p* of a law of the whole mixture at (N, D): draws over the mixture families (S, M), each
    evaluated family's loss at p* (S, F), the objective per draw, the baselines' objectives."""

    law: str
    method: str
    N: float
    D: float
    objective: str
    mixture_families: tuple[str, ...]
    families: tuple[str, ...]
    p_star: np.ndarray
    loss_star: np.ndarray
    objective_star: np.ndarray
    unique_tokens: dict[str, float]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # per evaluated family, summing to 1

    @property
    def ratios(self) -> dict[str, float]:
        """The recommended mixture: per-family medians of p*, renormalized."""
        med = np.nanmedian(self.p_star, axis=0) if np.isfinite(self.p_star).any() else np.full(
            self.p_star.shape[1], np.nan)
        return dict(zip(self.mixture_families, (med / med.sum()).tolist()))

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "method": self.method, "N": self.N, "D": self.D, "objective": self.objective,
                "solver": "coupled (projected gradient)", "loss_units": LOSS_UNITS, "weights": dict(self.weights),
                "ratios": self.ratios,
                "p_star": {f: interval(self.p_star[:, m]) for m, f in enumerate(self.mixture_families)},
                "loss_at_p_star": {f: interval(self.loss_star[:, j]) for j, f in enumerate(self.families)},
                "objective_at_p_star": interval(self.objective_star), "unique_tokens": self.unique_tokens,
                "baselines": {k: {"ratios": b["ratios"], "objective": interval(b["objective"]),
                                  "minus_p_star": interval(b["objective"] - self.objective_star)}
                              for k, b in self.baselines.items()},
                "n_draws": int(self.p_star.shape[0]), "notes": list(self.notes)}

    def __str__(self) -> str:
        lines = [f"optimal ratios at N = {self.N:.3g}, D = {self.D:.3g} ({self.objective} objective, law "
                 f"{self.law}, {self.method}, coupled solver, {self.p_star.shape[0]} draws); loss in {LOSS_UNITS}",
                 f"{'family':16s}{'p* median':>10s}{'90% interval':>22s}"]
        for m, f in enumerate(self.mixture_families):
            q = interval(self.p_star[:, m])
            iv = f"[{q['q05']:.4f}, {q['q95']:.4f}]"
            lines.append(f"{f[:16]:16s}{q['median']:10.4f}{iv:>22s}")
        o = interval(self.objective_star)
        lines.append(f"objective at p*: {o['median']:.5f} [{o['q05']:.5f}, {o['q95']:.5f}]")
        for k, b in self.baselines.items():
            d = interval(b["objective"] - self.objective_star)
            lines.append(f"  {k:18s} minus p*: {d['median']:+.5f} [{d['q05']:+.5f}, {d['q95']:+.5f}]")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def decision_families(fit) -> tuple[str, ...]:
    """The families p* is over: the fit's mixture families for a matrix law, else its families."""
    return tuple(fit.mixture_families) if fit.law.matrix else tuple(fit.families)


def _unique(fit, unique_tokens) -> tuple[np.ndarray, dict[str, float]]:
    from multiscale.laws.optimal import family_values

    given = dict(fit.unique_tokens)
    if unique_tokens is not None:
        from multiscale.mixture import parse_pairs

        pairs = parse_pairs(unique_tokens, what="unique_tokens", known=fit.families)
        family_values(pairs, fit.families, what="unique_tokens", default=np.inf, positive=True)
        given.update(pairs)
    U = np.array([given.get(f, np.inf) for f in fit.families], dtype=float)
    return U, {f: float(u) for f, u in zip(fit.families, U) if np.isfinite(u)}


def recommend_coupled(fit, N: float, D: float, *, objective: str = "normalized", weights=None, floor=None,
                      caps=None, available_tokens=None, epochs=None, unique_tokens=None,
                      baselines: bool = True) -> CoupledRecommendation:
    """p* of any law with the coupled solver (see the module docstring). `unique_tokens`
    (family -> U, or 'FAM=U,...') sets the target's unique tokens for the laws that read U
    (default: the U the fit saw). The other arguments are those of
    `multiscale.laws.optimal.optimal_ratios`; floors, caps and available tokens are over
    `decision_families(fit)`, weights over the fit's families."""
    from multiscale.laws.optimal import DEFAULT_EPOCHS, _bounds, _check_target, _scalar, _tokens, family_values
    from multiscale.mixture import all_baselines

    _check_target(fit, objective, N, D)
    epochs = DEFAULT_EPOCHS if epochs is None else _scalar(epochs, "epochs")
    mix = decision_families(fit)
    fam_in_mix = np.array([mix.index(f) for f in fit.families])
    tokens = _tokens(available_tokens, mix)
    _, lo, hi = _bounds(mix, None, floor, caps, tokens, epochs, D)
    w = family_values(weights, fit.families, what="weights", default=1.0)
    if w.sum() <= 0:
        raise InputError("weights must not all be zero")
    w = w / w.sum()
    U, U_used = _unique(fit, unique_tokens)
    normalized = objective == "normalized"
    P = solve_coupled(fit.law, fit.draws, N, D, fam_in_mix, len(mix), w, lo, hi, U, normalized)
    obj, L = objective_at(fit.law, fit.draws, N, D, fam_in_mix, P, w, U, normalized)
    notes = []
    bad = ~np.isfinite(obj)
    if bad.any():  # a fit at a boundary of parameter space (e.g. an unidentified exponent)
        P[bad] = np.nan
        notes.append(f"the law's loss is not finite at the target for {int(bad.sum())} of {len(obj)} draws "
                     "(a parameter at a boundary of parameter space): p* is undefined there (NaN)")
    base = {}
    for name, q in (all_baselines(mix, tokens, D, epochs).items() if baselines else ()):
        qv = np.array([q[f] for f in mix])
        base[name] = {"ratios": dict(q), "objective": objective_at(fit.law, fit.draws, N, D, fam_in_mix, qv, w, U,
                                                                    normalized)[0]}
    return CoupledRecommendation(law=fit.law.name, method=fit.method, N=float(N), D=float(D), objective=objective,
                                 mixture_families=mix, families=tuple(fit.families), p_star=P, loss_star=L,
                                 objective_star=obj, unique_tokens=U_used, baselines=base, notes=notes,
                                 weights=dict(zip(fit.families, w.tolist())))
