"""The recommendation: p* of any fitted law at a target (N, D), and the decisions by expected regret.

`optimal_ratios` minimizes ``sum_i w_i L_i(N, D, P)`` (raw: a weighted mean loss in nats/token)
or the same with each loss divided by the family's monolingual loss (normalized) over the mixture
P of the decision families (`decision_families`: the fit's mixture families for a law with a
matrix, else its families), with floors, caps and the data caps ``p_i * D <= epochs * U_i`` for
``U_i`` available tokens of family i; family weights are normalized to sum to 1. The solver is
the law's (`multiscale.decisions.ratios`): the closed form for a separable law, the projected
gradient otherwise.

Every candidate mixture q (the robust p*, the median of the per-draw optima, the baselines) gets
its regret per draw, ``Obj_s(q) - min_p Obj_s(p)``, its mean and 90% interval, and P(q is best
among the candidates) (`multiscale.decisions.regret`). The recommended mixture is the robust p*,
which minimizes the posterior mean objective and so the expected regret (the Bayes decision); for
a law without the closed form it is started at the candidate inside the bounds with the least
mean objective, so it beats or ties every candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from multiscale.decisions.ratios import (
    P_MIN,
    objective_at,
    solve_coupled,
    solve_coupled_robust,
    solve_ratios,
    solve_robust,
)
from multiscale.decisions.regret import MEDIAN, ROBUST, Decisions, median_mixture
from multiscale.errors import InputError
from multiscale.laws.extrapolation import extrapolation_sd
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import predict_loss, scale_term
from multiscale.laws.summary import interval
from multiscale.mixture import DEFAULT_MAX_EPOCHS, all_baselines, parse_pairs

# The cap on epochs of any family's unique tokens: one value with UniMax's (Muennighoff et al. 2023:
# up to ~4 epochs of repeated data cost little).
DEFAULT_EPOCHS = DEFAULT_MAX_EPOCHS


@dataclass
class Recommendation(Decisions):
    """p* at (N, D) with credible intervals, and the decisions (point fits: one draw); the decision
    methods (`ratios`: the robust p*, `decision_table`, `to_dict`, ...) and what regret means are in
    `multiscale.decisions.regret`.

    Attributes:
      mixture_families: the M families p* is over; families: the F families whose losses the
        objective weighs (`weights` (F,), summing to 1), each in `mixture_families`.
      lower, upper: floors and caps (M,), after the data caps.
      p_star: per-draw optima (S, M) (NaN rows: draws whose loss is not finite at the target).
      loss_star: each family's loss at p*_s (S, F), nats/token (NaN where the law cannot predict
        at this (N, D)); objective_star: ``min_p Obj_s(p)`` (S,).
      candidates: name -> {"ratios", "objective" (S,), "loss" (S, F)}: robust p*, median p*, baselines.
      unique_tokens: the target's U per family for the laws that read it.
      extrapolation_sd: the fit's extrapolation term at (N, D) (sd of log-loss; 0 inside the fitted
        range): `loss_star` and the candidates' losses carry it, as `predict` does; p*, objectives and
        regrets do not (it shifts every mixture alike).
      solver: "exact (separable)" or "coupled (projected gradient)".
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
    unique_tokens: dict[str, float] = field(default_factory=dict)
    extrapolation_sd: float = 0.0
    solver: str = ""
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        ok = self.valid
        return {**super().to_dict(), "solver": self.solver, "mixture_families": list(self.mixture_families),
                "p_star": {f: interval(self.p_star[ok, m]) for m, f in enumerate(self.mixture_families)},
                "loss_at_p_star": {f: interval(self.loss_star[ok, j]) for j, f in enumerate(self.families)},
                "unique_tokens": self.unique_tokens, "extrapolation_sd": self.extrapolation_sd}

    def __str__(self) -> str:
        lines = [f"optimal ratios at N = {self.N:.3g}, D = {self.D:.3g} ({self.objective} objective, law "
                 f"{self.law}, {self.method}, {self.solver.split(' ')[0]} solver, {self.p_star.shape[0]} draws); "
                 f"loss in {LOSS_UNITS}",
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


def _scalar(value: Any, arg: str) -> float:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{arg}: expected a number or FAMILY=VALUE pairs, got {value!r}", arg=arg) from None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{arg}: expected a number or a family -> number mapping, got {value!r}", arg=arg)
    return float(value)


def family_values(value: Any, families, *, arg: str, default: float, upper: float | None = None,
                  positive: bool = False) -> np.ndarray:
    """One number per family from `value`: None (`default` for every family), one number (for
    every family), ``'FAM=V,...'`` text or a family -> number mapping (parsed by
    `multiscale.mixture.parse_pairs`, so duplicates, unknown families, NaN, inf and negatives
    are refused; families not named get `default`). Every value must be finite and >= 0,
    > 0 when `positive`, <= `upper` when given. Errors are `InputError`s naming the argument
    `arg` (``floor``) and the family."""
    families = list(families)
    if value is None:
        return np.full(len(families), default, dtype=float)
    if isinstance(value, Mapping) or (isinstance(value, str) and "=" in value):
        pairs = parse_pairs(value, arg=arg, known=families)
        items = [(f, pairs[f]) for f in families if f in pairs]
        out = np.array([pairs.get(f, default) for f in families], dtype=float)
    else:
        v = _scalar(value, arg)
        items = [("every family", v)]
        out = np.full(len(families), v)
    for fam, v in items:
        if not math.isfinite(v) or v < 0 or (positive and v <= 0) or (upper is not None and v > upper):
            bound = f"in (0, {upper:g}]" if positive and upper is not None else (
                "> 0" if positive else f"in [0, {upper:g}]" if upper is not None else ">= 0")
            raise InputError(f"{arg}: the value for {fam} is {v!r}; it must be finite and {bound}", arg=arg)
    return out


def _check_target(fit: Fit, objective: str, N: float, D: float) -> None:
    if objective not in ("normalized", "raw"):
        raise InputError(f"objective must be 'normalized' or 'raw', got {objective!r}")
    if not fit.law.uses_ratio:
        raise InputError(f"law {fit.law.name!r} has no dependence on p: it cannot recommend ratios; "
                         "fit a law with a ratio term, such as 'multilingual'")
    for name, v in (("N", N), ("D", D)):
        if not (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a finite positive number, got {v!r}", arg=name)


def _tokens(available_tokens, epochs, fit, fams) -> tuple[dict[str, float] | None, float, list[str]]:
    """(available unique tokens of the families they are given for (None: none), the epoch cap,
    notes). Not given: the unique tokens of the run table the fit saw, where it has them for every
    family in `fams`."""
    epochs_given = epochs is not None
    epochs = DEFAULT_EPOCHS if epochs is None else _scalar(epochs, "epochs")
    if not (math.isfinite(epochs) and epochs > 0):
        raise InputError(f"epochs must be a finite positive number, got {epochs!r}", arg="epochs")
    if available_tokens is not None and not (isinstance(available_tokens, (Mapping, str)) and not available_tokens):
        U = family_values(available_tokens, fams, arg="available_tokens", default=np.inf, positive=True)
        return {f: float(u) for f, u in zip(fams, U) if np.isfinite(u)}, epochs, []
    if fit.unique_tokens and all(f in fit.unique_tokens for f in fams):
        tokens = {f: float(fit.unique_tokens[f]) for f in fams}
        listed = ", ".join(f"{f}={u:.4g}" for f, u in tokens.items())
        return tokens, epochs, [f"available tokens: the fitted table's unique tokens ({listed}), capping p <= "
                                f"{epochs:g} epochs * tokens / D; give available_tokens to change them"]
    unused = [f"epochs = {epochs:g} is unused: it caps the ratios only with available tokens (available_tokens), "
              "and the fit has no unique tokens for every family"] if epochs_given else []
    return None, epochs, unused


def _weights(fit, weights) -> np.ndarray:
    """The family weights (F,), summing to 1."""
    w = family_values(weights, fit.families, arg="weights", default=1.0)
    if w.max() <= 0:  # each is >= 0
        raise InputError(f"weights must not all be zero, got {dict(zip(fit.families, w.tolist()))}", arg="weights")
    w = w / w.max()  # first: a sum of huge weights (1e308) would overflow to inf
    return w / w.sum()


def check_bound_sums(fams, lo, hi) -> None:
    """Floors summing above 1 or caps below 1 admit no mixture: an `InputError` naming the
    argument (`floor`, `caps`) and every family's value."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if lo.sum() > 1 + 1e-12:
        raise InputError(f"floor: the floors sum to {lo.sum():.4g} > 1 ("
                         + ", ".join(f"{f}={v:g}" for f, v in zip(fams, lo)) + "); ratios sum to 1", arg="floor")
    if hi.sum() < 1 - 1e-12:
        raise InputError(f"caps: the caps sum to {hi.sum():.4g} < 1 ("
                         + ", ".join(f"{f}<={v:g}" for f, v in zip(fams, hi)) + "); ratios sum to 1, "
                         "so the caps must sum to at least 1", arg="caps")
    bad = [f for f, a, b in zip(fams, lo, hi) if a > b]
    if bad:
        raise InputError(f"floor: above the cap for families {bad}", arg="floor")


def _bounds(fams, floor, caps, tokens: dict | None, epochs: float, D: float,
            source: str = "the available tokens (available_tokens)") -> tuple[np.ndarray, np.ndarray]:
    """(floors, caps after the data caps of `tokens`, which come from `source`), each checked."""
    lo = family_values(floor, fams, arg="floor", default=0.0, upper=1.0)
    hi = family_values(caps, fams, arg="caps", default=1.0, upper=1.0, positive=True)
    check_bound_sums(fams, lo, hi)  # the caps given, before any data cap
    if tokens:
        U = np.array([tokens.get(f, np.inf) for f in fams])
        hi = np.minimum(hi, epochs * U / D)
    if hi.sum() < 1 - 1e-12:
        detail = ", ".join(f"{f}<={v:.4g}" for f, v in zip(fams, hi))
        raise InputError(f"not enough data for D = {D:.3g} tokens: {source} at "
                         f"{epochs:g} epochs cap the ratios (p <= epochs * tokens / D) so that the caps sum to "
                         f"{hi.sum():.4g} < 1 ({detail}); lower D, allow more epochs or give more tokens")
    bad = [f for f, a, b in zip(fams, lo, hi) if a > b]
    if bad:
        raise InputError(f"floor above the data cap (p <= epochs * available_tokens / D) for families {bad}")
    return lo, hi


def _ratio_law_scope(fit: Fit, N: float, D: float, normalized: bool) -> tuple[bool, list[str]]:
    """(whether the law predicts losses at (N, D), notes); refuses the raw objective of a law
    without N and D (ratio, ratio_transfer, ratio_mixing) away from the (N, D) it was fitted at."""
    if fit.law.uses_scale:
        return True, []
    if np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6):
        return True, []
    if not normalized:
        raise InputError(
            f"law {fit.law.name!r} was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g}; its raw objective is "
            "unknown at another (N, D). Use the normalized objective (scale-free) or a law with N and D")
    return False, [f"{fit.law.name} law: p* (normalized) is scale-free, but losses are only predicted at "
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


def decision_families(fit) -> tuple[str, ...]:
    """The families p* is over: the fit's mixture families for a matrix law, else its families."""
    return tuple(fit.mixture_families) if fit.law.matrix else tuple(fit.families)


def _unique(fit, unique_tokens) -> tuple[np.ndarray, dict[str, float]]:
    """The target's unique tokens per fit family: the fit's, updated by `unique_tokens`."""
    given = dict(fit.unique_tokens)
    if unique_tokens is not None:
        if not fit.law.uses_unique_tokens:
            raise InputError(f"unique_tokens: law {fit.law.name!r} does not read unique tokens; fit 'repetition' "
                             "(or give available_tokens to cap the ratios)", arg="unique_tokens")
        pairs = parse_pairs(unique_tokens, arg="unique_tokens", known=fit.families)
        family_values(pairs, fit.families, arg="unique_tokens", default=np.inf, positive=True)
        given.update(pairs)
    U = np.array([given.get(f, np.inf) for f in fit.families], dtype=float)
    return U, {f: float(u) for f, u in zip(fit.families, U) if np.isfinite(u)}


@dataclass(frozen=True)
class _Problem:
    """One decision problem: the fit's draws, the target, weights (F,), bounds (M,), U (F,); the
    law's solver: the closed form of a separable law, else the projected gradient."""

    fit: Any
    N: float
    D: float
    fam_in_mix: np.ndarray
    w: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    U: np.ndarray
    normalized: bool
    can_predict: bool

    def _c(self, nat: dict):
        return np.ones_like(nat["gamma"]) if self.normalized else scale_term(self.fit.law, nat, self.N, self.D)

    def solve(self, nat: dict | None = None, *, robust: bool = False, p0=None) -> np.ndarray:
        """p* per draw (S, M), or `robust`: the one mixture minimizing the mean objective over `nat`."""
        law, nat = self.fit.law, self.fit.draws if nat is None else nat
        if law.separable:
            return (solve_robust if robust else solve_ratios)(nat["gamma"], self._c(nat), self.w, self.lo, self.hi)
        args = (law, nat, self.N, self.D, self.fam_in_mix, len(self.lo), self.w, self.lo, self.hi, self.U,
                self.normalized)
        return solve_coupled_robust(*args, p0=p0) if robust else solve_coupled(*args)

    def score(self, P) -> tuple[np.ndarray, np.ndarray]:
        """(objective per draw (S,), losses (S, F)) at mixtures P ((S, M) or (M,))."""
        law, nat = self.fit.law, self.fit.draws
        if law.separable:  # the closed form's objective, sum_i w_i c_i p_i^-gamma_i
            P = np.broadcast_to(P, nat["gamma"].shape)
            obj = (self.w * self._c(nat) * np.power(P, -nat["gamma"])).sum(axis=1)
            loss = np.asarray(predict_loss(law, nat, self.N, self.D, P), dtype=float)
        else:
            obj, loss = objective_at(law, nat, self.N, self.D, self.fam_in_mix, P, self.w, self.U, self.normalized)
        return obj, loss if self.can_predict else np.full(np.shape(loss), np.nan)

    def candidates(self, P_SxM, ok, baselines: dict) -> tuple[dict, list[str]]:
        """(name -> {"ratios", "objective", "loss"} for the robust p*, the median p* and each
        baseline, notes). The robust p* of the projected gradient starts at the candidate inside
        the bounds with the least mean objective over the draws `ok`."""
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
        q = self.solve({k: v[ok] for k, v in self.fit.draws.items()}, robust=True,
                       p0=np.array(list(scored[start]["ratios"].values())))
        obj, L = self.score(q)
        return {ROBUST: {"ratios": dict(zip(mix, q.tolist())), "objective": obj, "loss": L}, **scored}, notes


def _within(q, lo, hi) -> bool:
    return bool(np.all(q >= np.maximum(lo, P_MIN) - 1e-12) and np.all(q <= hi + 1e-12))


def optimal_ratios(fit: Fit, N: float, D: float, *, objective: str = "normalized", weights=None, floor=None,
                   caps=None, available_tokens=None, epochs=None, unique_tokens=None,
                   baselines: bool = True) -> Recommendation:
    """Optimal sampling ratios for a model of N non-embedding parameters trained on D tokens, and
    the decisions (module docstring).

    Args:
      fit: a `PointFit` or `BayesFit` of a law with a ratio term.
      objective: "normalized" (each loss divided by its monolingual loss) or "raw".
      weights: family -> weight over the fit's families (default equal), normalized to sum to 1.
      floor, caps: minimum and maximum ratio, one number or family -> number, over
        `decision_families(fit)`.
      available_tokens: family -> unique tokens available; caps ``p_i <= epochs * U_i / D``
        and enables the proportional, temperature and UniMax baselines. Default: the unique
        tokens of the table the fit saw (`Fit.unique_tokens`), where it has them for every
        decision family (said in a note).
      epochs: epoch cap for available tokens (default 4; a note says when there are none).
      unique_tokens: family -> U (or 'FAM=U,...'), the target's unique tokens for the laws that
        read U (default: the U the fit saw).
      baselines: also score the baseline mixtures.

    Every per-family argument is read by `family_values`; bad input raises `InputError` naming
    the argument. The fit's `identifiability` lines are repeated as `UnidentifiedWarning`s.
    """
    if not isinstance(fit, Fit):
        raise InputError(f"fit must be a PointFit or BayesFit (load_fit), got {type(fit).__name__}", arg="fit")
    _check_target(fit, objective, N, D)
    fit.warn_unidentified()
    mix = decision_families(fit)
    tokens, epochs, notes = _tokens(available_tokens, epochs, fit, mix)
    from_fit = tokens is not None and bool(notes)  # _tokens notes only the tokens it took from the fit
    lo, hi = _bounds(mix, floor, caps, tokens, epochs, D, *(
        ["the fitted table's unique tokens (give available_tokens to override them)"] if from_fit else []))
    w = _weights(fit, weights)
    U, U_used = _unique(fit, unique_tokens)
    normalized = objective == "normalized"
    can_predict, more = _ratio_law_scope(fit, N, D, normalized)
    notes += more
    problem = _Problem(fit, N, D, np.array([mix.index(f) for f in fit.families]), w, lo, hi, U, normalized,
                       can_predict)
    P = problem.solve()
    obj, L = problem.score(P)
    bad = ~np.isfinite(obj)
    if bad.all():
        raise InputError(f"law {fit.law.name!r}: the loss is not finite at N = {N:.3g}, D = {D:.3g} for any "
                         "posterior draw (a parameter at a boundary of parameter space): no p* there")
    if bad.any():  # a fit at a boundary of parameter space (e.g. an unidentified exponent)
        P[bad] = np.nan
        notes.append(f"the law's loss is not finite at the target for {int(bad.sum())} of {len(obj)} draws "
                     "(a parameter at a boundary of parameter space): p* is undefined there (NaN), and the "
                     "decisions use the other draws")
    if not fit.law.uses_unique_tokens:
        notes += _repetition_notes(mix, P[~bad], tokens, D)
    base = {name: np.array([q[f] for f in mix]) for name, q in all_baselines(mix, tokens, D, epochs).items()}
    cands, more = problem.candidates(P, ~bad, base if baselines else {})
    sd = float(extrapolation_sd(getattr(fit, "extrapolation", None), N, D))
    if sd > 0 and L.shape[0] > 1:  # the same factor per draw for every mixture, as `predict` draws it
        widen_SxF = np.exp(sd * np.random.default_rng(0).standard_normal(L.shape))
        L = L * widen_SxF
        for c in cands.values():
            c["loss"] = c["loss"] * widen_SxF
        notes.append(f"losses at the target carry the fit's extrapolation term (sd {sd:.3g} of log-loss at "
                     "this distance beyond the fitted sizes and budgets); p* and regrets do not depend on it")
    return Recommendation(law=fit.law.name, method=fit.method, N=float(N), D=float(D), objective=objective,
                          mixture_families=mix, families=tuple(fit.families), weights=w, lower=lo, upper=hi,
                          p_star=P, loss_star=L, objective_star=obj, unique_tokens=U_used, extrapolation_sd=sd,
                          solver="exact (separable)" if fit.law.separable else "coupled (projected gradient)",
                          candidates=cands, notes=notes + more)
