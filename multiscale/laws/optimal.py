"""Optimal sampling ratios p*: the exact Lagrange solution, vectorized over posterior draws.

Minimize ``sum_i w_i L_i(N, D, p_i)`` over ``sum_i p_i = 1``, ``lo_i <= p_i <= hi_i``.
With ``c_i = E_i + A_i/N^alpha_i + B_i/D^beta_i`` (the monolingual loss ``L_i(N, D, 1)``),
stationarity gives ``p_i(lam) = (w_i gamma_i c_i / lam)^(1/(1 + gamma_i))``. The problem is
separable and convex, so its KKT point is ``p_i = clip(p_i(lam), lo_i, hi_i)`` for the one
``lam`` where these sum to 1: water-filling (clipping the families that hit a floor or cap
and re-solving on the free set) reaches exactly this point, and since
``sum_i clip(p_i(lam))`` falls monotonically in lam, a bisection on log lam finds it to
machine precision for every draw at once (numpy, float64).

The *normalized* objective divides each loss by the monolingual loss, leaving
``sum_i w_i p_i^(-gamma_i)``: p* then depends only on gamma and w, which is why it
transfers across scales (He et al. 2024). Family weights are normalized to sum to 1, so the
raw objective is a weighted mean loss in nats/token.

Caps from data: ``p_i * D <= epochs * U_i`` for ``U_i`` available tokens of family i.

Decisions (`Recommendation`): every candidate mixture q (the robust p*, the median of the
per-draw optima, the baselines) gets its regret per draw, ``Obj_s(q) - min_p Obj_s(p)``, its mean
and 90% interval, and P(q is best among the candidates). The recommended mixture is the robust
p* (`solve_robust`), which minimizes the posterior mean objective and so the expected regret.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from multiscale.errors import InputError
from multiscale.laws.decision import MEDIAN, ROBUST, Decisions, median_mixture
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import predict_loss, scale_term
from multiscale.mixture import DEFAULT_MAX_EPOCHS, all_baselines, parse_pairs

BISECTION_STEPS = 200
# The cap on epochs of any family's unique tokens: one value with UniMax's (Muennighoff et al. 2023:
# up to ~4 epochs of repeated data cost little).
DEFAULT_EPOCHS = DEFAULT_MAX_EPOCHS


def solve_ratios(gamma_SxF, c_SxF, w_F, lo_F=None, hi_F=None) -> np.ndarray:
    """Exact minimizer of ``sum_i w_i c_i p_i^(-gamma_i)`` on the capped simplex, per draw.

    Args:
      gamma_SxF, c_SxF: exponents and scale terms (c = 1 for the normalized objective).
      w_F: non-negative family weights.
      lo_F, hi_F: floors and caps (default 0 and 1); need ``sum lo <= 1 <= sum hi``.

    Returns:
      P_SxF, float64; each row sums to 1 (to ~1e-15).
    """
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

    Each family's term is a mean of convex functions of its own p_i, so the problem is separable
    and convex, and its KKT point is: every p_i where the term's slope equals -lam (clipped to its
    floor and cap), for the one lam where they sum to 1: bisection on log lam outside, Newton's
    method on log p_i inside (see `_robust_at`), exact up to floating point. With one draw it is
    `solve_ratios`' solution. Returns (F,), summing to 1 (to ~1e-15).
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


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{what}: expected a number or FAMILY=VALUE pairs, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{what}: expected a number or a family -> number mapping, got {value!r}")
    return float(value)


def family_values(value: Any, families, *, what: str, default: float, upper: float | None = None,
                  positive: bool = False) -> np.ndarray:
    """One number per family from `value`: None (`default` for every family), one number (for
    every family), ``'FAM=V,...'`` text or a family -> number mapping (parsed by
    `multiscale.mixture.parse_pairs`, so duplicates, unknown families, NaN, inf and negatives
    are refused; families not named get `default`). Every value must be finite and >= 0,
    > 0 when `positive`, <= `upper` when given. Errors are `InputError`s naming `what` (a flag
    such as ``--floor`` or an argument such as ``floor``) and the family."""
    families = list(families)
    if value is None:
        return np.full(len(families), default, dtype=float)
    if isinstance(value, Mapping) or (isinstance(value, str) and "=" in value):
        pairs = parse_pairs(value, arg=what, known=families)
        items = [(f, pairs[f]) for f in families if f in pairs]
        out = np.array([pairs.get(f, default) for f in families], dtype=float)
    else:
        v = _scalar(value, what)
        items = [("every family", v)]
        out = np.full(len(families), v)
    for fam, v in items:
        if not math.isfinite(v) or v < 0 or (positive and v <= 0) or (upper is not None and v > upper):
            bound = f"in (0, {upper:g}]" if positive and upper is not None else (
                "> 0" if positive else f"in [0, {upper:g}]" if upper is not None else ">= 0")
            raise InputError(f"{what}: the value for {fam} is {v!r}; it must be finite and {bound}")
    return out


@dataclass
class Recommendation(Decisions):
    """Optimal ratios at a target (N, D) with credible intervals, and decisions by expected regret
    (point fits: one draw); the decision methods (`ratios`: the robust p*, `decision_table`,
    `to_dict`, ...) and what regret means are in `multiscale.laws.decision`.

    Candidates: the *robust p** (`solve_robust`: the one mixture minimizing the posterior mean
    objective), the *median p** (per-family posterior medians of p*_s, renormalized) and every
    baseline. The robust p* is the RECOMMENDED mixture: it minimizes the expected regret (the Bayes
    decision). The median of per-draw optima is not in general the best single choice (it is not
    even a minimizer of anything when the posterior is skewed).

    Attributes:
      families: F names (the mixture families too: `mixture_families`).
      p_star: draws of the per-draw optimum p*_s, (S, F).
      loss_star: predicted loss of each family at p*_s, draws (S, F), nats/token (NaN where the
        law cannot predict at this (N, D)).
      objective_star: the objective at p*_s per draw, ``min_p Obj_s(p)`` (weighted mean loss in
        nats/token for "raw"; weighted mean of L/L(p=1) for "normalized").
      candidates: name -> {"ratios", "objective" draws (S,), "loss" draws (S, F)}: the robust p*,
        the median p*, then the baselines.
    """

    families: tuple[str, ...]
    N: float
    D: float
    objective: str
    weights: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p_star: np.ndarray
    loss_star: np.ndarray
    objective_star: np.ndarray
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    law: str = ""
    method: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def mixture_families(self) -> tuple[str, ...]:
        """The families p* is over: for the seed laws, the families whose losses it weighs."""
        return self.families

    def __str__(self) -> str:
        lines = [f"optimal ratios at N = {self.N:.3g}, D = {self.D:.3g} ({self.objective} objective, "
                 f"law {self.law}, {self.method}, {self.p_star.shape[0]} draws); loss in {LOSS_UNITS}",
                 f"{'family':16s}{'robust p*':>10s}{'p* median':>10s}{'90% interval':>20s}{'P(>1/F)':>9s}"
                 f"{'loss at p*':>12s}"]
        for f, row in self.family_table().items():
            p, L = row["p_star"], row["loss_at_recommended"]
            interval = f"[{p['q05']:.4f}, {p['q95']:.4f}]"
            lines.append(f"{f[:16]:16s}{row['recommended']:10.4f}{p['median']:10.4f}{interval:>20s}"
                         f"{row['prob_above_uniform']:9.2f}{L['median']:12.4f}")
        lines.append("recommended: the robust p* (least expected regret; the Bayes decision). "
                     "p* median, interval: the per-draw optima p*_s.")
        lines.extend(self.decision_lines())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _objective(fit: Fit, params, N, D, P_SxF, w, normalized: bool, can_predict: bool):
    """Objective per draw and per-family loss (S, F) at mixtures P (S, F) or (F,)."""
    P = np.broadcast_to(P_SxF, params["gamma"].shape if "gamma" in params else P_SxF.shape)
    g = params["gamma"]
    rel = np.power(P, -g)
    if normalized:
        obj = (w * rel).sum(axis=1)
    else:
        c = scale_term(fit.law, params, N, D)
        obj = (w * c * rel).sum(axis=1)
    loss = predict_loss(fit.law, params, N, D, P) if can_predict else np.full(P.shape, np.nan)
    return obj, np.asarray(loss, dtype=float)


def _check_target(fit: Fit, objective: str, N: float, D: float) -> None:
    if objective not in ("normalized", "raw"):
        raise InputError(f"objective must be 'normalized' or 'raw', got {objective!r}")
    if not fit.law.uses_ratio:
        raise InputError(f"law {fit.law.name!r} has no dependence on p: it cannot recommend ratios; "
                         "fit the 'multilingual' or 'ratio' law")
    if not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in (N, D)):
        raise InputError(f"N and D must be finite positive numbers, got N={N!r}, D={D!r}")


def _tokens(available_tokens, fams) -> dict[str, float] | None:
    """Available unique tokens of the families they are given for (None: not given)."""
    if available_tokens is None or (isinstance(available_tokens, (Mapping, str)) and not available_tokens):
        return None
    U = family_values(available_tokens, fams, what="available_tokens", default=np.inf, positive=True)
    return {f: float(u) for f, u in zip(fams, U) if np.isfinite(u)}


def check_bound_sums(fams, lo, hi, *, floor: str = "floor", caps: str = "caps") -> None:
    """Floors summing above 1 or caps below 1 admit no mixture: an `InputError` naming the
    argument (`floor`, `caps`: the flag names in the CLI) and every family's value."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if lo.sum() > 1 + 1e-12:
        raise InputError(f"{floor}: the floors sum to {lo.sum():.4g} > 1 ("
                         + ", ".join(f"{f}={v:g}" for f, v in zip(fams, lo)) + "); ratios sum to 1")
    if hi.sum() < 1 - 1e-12:
        raise InputError(f"{caps}: the caps sum to {hi.sum():.4g} < 1 ("
                         + ", ".join(f"{f}<={v:g}" for f, v in zip(fams, hi)) + "); ratios sum to 1, "
                         "so the caps must sum to at least 1")
    bad = [f for f, a, b in zip(fams, lo, hi) if a > b]
    if bad:
        raise InputError(f"floor above cap for families {bad} ({floor} > {caps})")


def _bounds(fams, weights, floor, caps, tokens: dict | None, epochs: float, D: float):
    """(weights normalized to sum 1, floors, caps after the data caps), each checked."""
    w = family_values(weights, fams, what="weights", default=1.0)
    if w.sum() <= 0:
        raise InputError(f"weights must not all be zero, got {dict(zip(fams, w.tolist()))}")
    w = w / w.sum()
    lo = family_values(floor, fams, what="floor", default=0.0, upper=1.0)
    hi = family_values(caps, fams, what="caps", default=1.0, upper=1.0, positive=True)
    check_bound_sums(fams, lo, hi)  # the caps given, before any data cap
    if tokens:
        U = np.array([tokens.get(f, np.inf) for f in fams])
        hi = np.minimum(hi, epochs * U / D)
    if hi.sum() < 1 - 1e-12:
        detail = ", ".join(f"{f}<={v:.4g}" for f, v in zip(fams, hi))
        raise InputError(f"not enough data for D = {D:.3g} tokens: the available tokens (available_tokens, "
                         f"--tokens) at {epochs:g} epochs cap the ratios (p <= epochs * tokens / D) so that "
                         f"the caps sum to {hi.sum():.4g} < 1 ({detail}); lower D, allow more epochs or "
                         "give more tokens")
    bad = [f for f, a, b in zip(fams, lo, hi) if a > b]
    if bad:
        raise InputError(f"floor above the data cap (p <= epochs * available_tokens / D) for families {bad}")
    return w, lo, hi


def _ratio_law_scope(fit: Fit, N: float, D: float, normalized: bool) -> tuple[bool, list[str]]:
    """(whether the law predicts losses at (N, D), notes); refuses the ratio law's raw
    objective away from the (N, D) it was fitted at."""
    if fit.law.uses_scale:
        return True, []
    if np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6):
        return True, []
    if not normalized:
        raise InputError(
            f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g}; its raw objective is "
            "unknown at another (N, D). Use --objective normalized (scale-free) or the multilingual law")
    return False, ["ratio law: p* (normalized) is scale-free, but losses are only predicted at "
                   f"the fitted N={fit.N_ref:.4g}, D={fit.D_ref:.4g}"]


def _repetition_notes(fams, P, tokens: dict | None, D: float) -> list[str]:
    if not tokens:
        return []
    U = np.array([tokens.get(f, np.inf) for f in fams])
    reps = np.median(P, axis=0) * D / U
    heavy = [f"{f} ({r:.2g} epochs)" for f, r in zip(fams, reps) if r > 1.0]
    if not heavy:
        return []
    return ["p* repeats data (the law ignores repetition, ATLAS 2025): " + ", ".join(heavy)]


def _baseline_scores(fit: Fit, N, D, w, normalized, can_predict, tokens: dict | None, epochs) -> dict:
    """name -> {"ratios", "objective" draws, "loss" draws} for every baseline with all ratios > 0."""
    fams, base = fit.families, {}
    for name, q in all_baselines(fams, tokens, D, epochs).items():
        if any(q[f] <= 0 for f in fams):
            continue
        base[name] = _score(fit, N, D, q, w, normalized, can_predict)
    return base


def _score(fit: Fit, N, D, q: dict, w, normalized, can_predict) -> dict:
    """{"ratios", "objective" draws (S,), "loss" draws (S, F)} of one mixture q (all ratios > 0)."""
    qv = np.array([q[f] for f in fit.families])
    ob, lb = _objective(fit, fit.draws, N, D, qv[None, :], w, normalized, can_predict)
    return {"ratios": dict(q), "objective": ob, "loss": lb}


def optimal_ratios(fit: Fit, N: float, D: float, *, objective: str = "normalized",
                   weights=None, floor=None, caps=None, available_tokens: Mapping[str, float] | None = None,
                   epochs: float | None = None, baselines: bool = True) -> Recommendation:
    """Optimal sampling ratios for a model of N non-embedding parameters trained on D tokens.

    Args:
      fit: a `PointFit` or `BayesFit` of a law with a gamma (multilingual or ratio).
      N, D: the target model size and token budget.
      objective: "normalized" (each loss divided by its monolingual loss; p* depends only on
        gamma and the weights) or "raw" (weighted mean loss in nats/token).
      weights: family -> weight (default equal), normalized to sum to 1.
      floor: minimum ratio, one number or family -> number.
      caps: maximum ratio, one number or family -> number.
      available_tokens: family -> unique tokens available; caps ``p_i <= epochs * U_i / D``
        and enables the proportional, temperature and UniMax baselines.
      epochs: epoch cap for available tokens (default 4).
      baselines: also score the baseline mixtures.

    Every per-family argument is read by `family_values` (finite, non-negative, known
    families, no duplicates); bad input raises `InputError` naming the argument.
    """
    _check_target(fit, objective, N, D)
    if not fit.law.is_seed:  # a law of the whole mixture: the coupled solver
        from multiscale.laws.coupled import recommend_coupled

        return recommend_coupled(fit, N, D, objective=objective, weights=weights, floor=floor, caps=caps,
                                 available_tokens=available_tokens, epochs=epochs, baselines=baselines)
    epochs = DEFAULT_EPOCHS if epochs is None else _scalar(epochs, "epochs")
    if not (math.isfinite(epochs) and epochs > 0):
        raise InputError(f"epochs must be a finite positive number, got {epochs!r}")
    fams = fit.families
    tokens = _tokens(available_tokens, fams)
    w, lo, hi = _bounds(fams, weights, floor, caps, tokens, epochs, D)
    normalized = objective == "normalized"
    can_predict, notes = _ratio_law_scope(fit, N, D, normalized)
    params = fit.draws
    c = np.ones_like(params["gamma"]) if normalized else scale_term(fit.law, params, N, D)
    P = solve_ratios(params["gamma"], c, w, lo, hi)
    obj_star, loss_star = _objective(fit, params, N, D, P, w, normalized, can_predict)
    notes += _repetition_notes(fams, P, tokens, D)
    cands = {ROBUST: solve_robust(params["gamma"], c, w, lo, hi), MEDIAN: median_mixture(P)}
    cands = {k: _score(fit, N, D, dict(zip(fams, q.tolist())), w, normalized, can_predict)
             for k, q in cands.items()}
    if baselines:
        cands.update(_baseline_scores(fit, N, D, w, normalized, can_predict, tokens, epochs))
    return Recommendation(families=fams, N=float(N), D=float(D), objective=objective, weights=w,
                          lower=lo, upper=hi, p_star=P, loss_star=loss_star, objective_star=obj_star,
                          candidates=cands, law=fit.law.name, method=fit.method, notes=notes)
