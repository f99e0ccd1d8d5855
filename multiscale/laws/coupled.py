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

Decisions (`recommend_coupled`, `CoupledRecommendation`) are the seed laws' (`multiscale.laws.decision`):
the recommended mixture is the robust p* (`solve_coupled_robust`: the same projected gradient on
the objective averaged over the draws, `ROBUST_ITERS` iterations, started at the candidate inside
the bounds with the least mean objective, so it beats or ties every candidate), and the robust
p*, the median of the per-draw optima and every baseline get their expected regret against the
per-draw optimum and P(best).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.decision import MEDIAN, ROBUST, Decisions, median_mixture
from multiscale.laws.fits import LOSS_UNITS
from multiscale.laws.mixture_forms import log_loss, offdiag_mask, raw_from_natural
from multiscale.laws.summary import interval

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


def _losses_fn(law, fam_in_mix, M: int):
    """(theta of one draw, P (M,), log N, log D, log U (F,)) -> losses (F,) in nats/token."""
    import jax.numpy as jnp

    off = jnp.asarray(offdiag_mask(fam_in_mix, M))
    idx = jnp.asarray(fam_in_mix)

    def losses(th, P, logN, logD, logU):
        return jnp.exp(log_loss(law, th, logN, logD, jnp.log(P[idx]), logU, P[:, None], off, xp=jnp))

    return losses


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


def _draw_objective(law, fam_in_mix: tuple, M: int, normalized: bool):
    """(objective, reference): ``objective(theta of one draw, ref (F,), P (M,), log N, log D,
    log U, w)`` is the draw's weighted sum of the losses divided by `ref`, and
    ``reference(theta, log N, log D, log U)`` is each family's monolingual loss when
    `normalized` (ones otherwise), computed once per draw outside the solver's loop."""
    import jax
    import jax.numpy as jnp

    F = len(fam_in_mix)
    losses = _losses_fn(law, np.asarray(fam_in_mix), M)
    mono = jnp.asarray(np.eye(M)[np.asarray(fam_in_mix)])  # family i's monolingual mixture

    def reference(th1, logN, logD, logU):
        if not normalized:
            return jnp.ones(F)
        return jax.vmap(lambda Q: losses(th1, Q, logN, logD, logU))(mono)[jnp.arange(F), jnp.arange(F)]

    def objective(th1, ref1, P, logN, logD, logU, w):
        return jnp.sum(w * losses(th1, P, logN, logD, logU) / ref1)

    return objective, reference


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
    objective, reference = _draw_objective(law, fam_in_mix, M, normalized)

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
    objective (the Bayes decision, `multiscale.laws.decision`), by the same projected gradient on
    the draw-averaged objective, started at `p0` (default uniform), whose objective it never
    exceeds. Every draw's objective must be finite near the solution (leave the others out)."""
    return _run(law, nat, N, D, fam_in_mix, M, w_F, lo_M, hi_M, U_F, normalized, iters, True, p0)


def objective_at(law, nat: dict, N: float, D: float, fam_in_mix, P_SxM, w_F, U_F=None,
                 normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(objective per draw (S,), losses (S, F)) at mixtures P ((S, M) or (M,)). A loss that
    overflows is inf, and the draw's objective not finite (the recommendation leaves it out)."""
    from multiscale.laws.mixture_forms import mixture_loss

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


@dataclass
class CoupledRecommendation(Decisions):
    """p* of a law of the whole mixture at (N, D), with the decisions of the seed laws'
    `multiscale.laws.optimal.Recommendation` (the same methods and `to_dict` keys, from
    `multiscale.laws.decision`): `ratios` is the robust p* (`solve_coupled_robust`), the
    recommended mixture; `median_ratios` the median of the per-draw optima; every candidate's
    expected regret and P(best) in `decision_table`.

    Attributes:
      mixture_families: the M families p* is over; families: the F families whose losses the
        objective weighs (`weights` (F,), summing to 1), each in `mixture_families`.
      lower, upper: floors and caps (M,), after the data caps.
      p_star: per-draw optima (S, M) (NaN rows: draws whose loss is not finite at the target);
        loss_star (S, F); objective_star (S,).
      candidates: name -> {"ratios", "objective" (S,), "loss" (S, F)}: robust p*, median p*, baselines.
      unique_tokens: the target's U per family for the laws that read it.
    """

    law: str
    method: str
    N: float
    D: float
    objective: str
    mixture_families: tuple[str, ...]
    families: tuple[str, ...]
    weights: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p_star: np.ndarray
    loss_star: np.ndarray
    objective_star: np.ndarray
    unique_tokens: dict[str, float]
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        ok = self.valid
        return {**super().to_dict(), "solver": "coupled (projected gradient)",
                "mixture_families": list(self.mixture_families),
                "p_star": {f: interval(self.p_star[ok, m]) for m, f in enumerate(self.mixture_families)},
                "loss_at_p_star": {f: interval(self.loss_star[ok, j]) for j, f in enumerate(self.families)},
                "unique_tokens": self.unique_tokens}

    def __str__(self) -> str:
        lines = [f"optimal ratios at N = {self.N:.3g}, D = {self.D:.3g} ({self.objective} objective, law "
                 f"{self.law}, {self.method}, coupled solver, {self.p_star.shape[0]} draws); loss in {LOSS_UNITS}",
                 f"{'family':16s}{'robust p*':>10s}{'p* median':>10s}{'90% interval':>20s}{'P(>1/M)':>9s}"
                 f"{'loss at p*':>12s}"]
        for f, row in self.family_table().items():
            p, L = row["p_star"], row["loss_at_recommended"]
            iv = f"[{p['q05']:.4f}, {p['q95']:.4f}]"
            loss = f"{L['median']:12.4f}" if L is not None else f"{'-':>12s}"
            lines.append(f"{f[:16]:16s}{row['recommended']:10.4f}{p['median']:10.4f}{iv:>20s}"
                         f"{row['prob_above_uniform']:9.2f}{loss}")
        lines.append("recommended: the robust p* (least expected regret; the Bayes decision). "
                     "p* median, interval: the per-draw optima p*_s.")
        lines.extend(self.decision_lines())
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

        pairs = parse_pairs(unique_tokens, arg="unique_tokens", known=fit.families)
        family_values(pairs, fit.families, what="unique_tokens", default=np.inf, positive=True)
        given.update(pairs)
    U = np.array([given.get(f, np.inf) for f in fit.families], dtype=float)
    return U, {f: float(u) for f, u in zip(fit.families, U) if np.isfinite(u)}


def recommend_coupled(fit, N: float, D: float, *, objective: str = "normalized", weights=None, floor=None,
                      caps=None, available_tokens=None, epochs=None, unique_tokens=None,
                      baselines: bool = True) -> CoupledRecommendation:
    """p* of any law with the coupled solver (see the module docstring), and the decisions: the
    robust p* (recommended), the median p*, the baselines, each with its expected regret and
    P(best). `unique_tokens` (family -> U, or 'FAM=U,...') sets the target's unique tokens for
    the laws that read U (default: the U the fit saw). The other arguments are those of
    `multiscale.laws.optimal.optimal_ratios`; floors, caps and available tokens are over
    `decision_families(fit)`, weights over the fit's families."""
    from multiscale.laws.optimal import DEFAULT_EPOCHS, _bounds, _check_target, _scalar, _tokens, family_values

    _check_target(fit, objective, N, D)
    epochs = DEFAULT_EPOCHS if epochs is None else _scalar(epochs, "epochs")
    mix = decision_families(fit)
    tokens = _tokens(available_tokens, mix)
    _, lo, hi = _bounds(mix, None, floor, caps, tokens, epochs, D)
    w = family_values(weights, fit.families, what="weights", default=1.0)
    if w.sum() <= 0:
        raise InputError("weights must not all be zero")
    w = w / w.sum()
    U, U_used = _unique(fit, unique_tokens)
    problem = _Problem(fit, N, D, np.array([mix.index(f) for f in fit.families]), len(mix), w, lo, hi, U,
                       objective == "normalized")
    P = problem.solve()
    obj, L = problem.score(P)
    notes = []
    bad = ~np.isfinite(obj)
    if bad.all():
        raise InputError(f"law {fit.law.name!r}: the loss is not finite at N = {N:.3g}, D = {D:.3g} for any "
                         "posterior draw (a parameter at a boundary of parameter space): no p* there")
    if bad.any():  # a fit at a boundary of parameter space (e.g. an unidentified exponent)
        P[bad] = np.nan
        notes.append(f"the law's loss is not finite at the target for {int(bad.sum())} of {len(obj)} draws "
                     "(a parameter at a boundary of parameter space): p* is undefined there (NaN), and the "
                     "decisions use the other draws")
    base = _baselines(mix, tokens, D, epochs) if baselines else {}
    cands, more = problem.candidates(P, ~bad, base)
    return CoupledRecommendation(law=fit.law.name, method=fit.method, N=float(N), D=float(D), objective=objective,
                                 mixture_families=mix, families=tuple(fit.families), weights=w, lower=lo, upper=hi,
                                 p_star=P, loss_star=L, objective_star=obj, unique_tokens=U_used,
                                 candidates=cands, notes=notes + more)


def _baselines(mix, tokens, D, epochs) -> dict[str, np.ndarray]:
    from multiscale.mixture import all_baselines

    return {name: np.array([q[f] for f in mix]) for name, q in all_baselines(mix, tokens, D, epochs).items()}


@dataclass(frozen=True)
class _Problem:
    """One coupled decision problem: the fit's draws, the target, weights (F,), bounds (M,), U (F,)."""

    fit: Any
    N: float
    D: float
    fam_in_mix: np.ndarray
    M: int
    w: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    U: np.ndarray
    normalized: bool

    def solve(self) -> np.ndarray:
        return solve_coupled(self.fit.law, self.fit.draws, self.N, self.D, self.fam_in_mix, self.M, self.w,
                             self.lo, self.hi, self.U, self.normalized)

    def score(self, P) -> tuple[np.ndarray, np.ndarray]:
        return objective_at(self.fit.law, self.fit.draws, self.N, self.D, self.fam_in_mix, P, self.w, self.U,
                            self.normalized)

    def candidates(self, P_SxM, ok, baselines: dict) -> tuple[dict, list[str]]:
        """(name -> {"ratios", "objective", "loss"} for the robust p*, the median p* and each
        baseline, notes). The robust p* starts at the candidate inside the bounds with the least
        mean objective over the draws `ok` (so it is never worse than that one)."""
        mix = decision_families(self.fit)
        scored, notes = {}, []
        for name, q in {MEDIAN: median_mixture(P_SxM), **baselines}.items():
            obj, L = self.score(q)
            if name != MEDIAN and not np.all(np.isfinite(obj[ok])):
                notes.append(f"baseline {name} left out: the law's loss is not finite there")
                continue
            scored[name] = {"ratios": dict(zip(mix, q.tolist())), "objective": obj, "loss": L}
        inside = [n for n, c in scored.items() if _within(np.array(list(c["ratios"].values())), self.lo, self.hi)]
        start = min(inside or [MEDIAN], key=lambda n: float(np.mean(scored[n]["objective"][ok])))
        nat = {k: v[ok] for k, v in self.fit.draws.items()}
        q = solve_coupled_robust(self.fit.law, nat, self.N, self.D, self.fam_in_mix, self.M, self.w, self.lo,
                                 self.hi, self.U, self.normalized, p0=np.array(list(scored[start]["ratios"].values())))
        obj, L = self.score(q)
        return {ROBUST: {"ratios": dict(zip(mix, q.tolist())), "objective": obj, "loss": L}, **scored}, notes


def _within(q, lo, hi) -> bool:
    return bool(np.all(q >= np.maximum(lo, P_MIN) - 1e-12) and np.all(q <= hi + 1e-12))
