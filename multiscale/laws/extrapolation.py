"""Honest intervals off the fitted range: an extrapolation term whose growth rate starts from a
field prior measured on public ladders and is updated by leaving the largest fitted size (and
budget) of the table out.

A law fitted on a narrow range of N and D is more wrong beyond it than its parameter posterior
says: the form itself is an approximation whose error grows with the distance from the data.
The predictive multiplies each draw by ``exp(kappa * d * z)``, z standard normal, where

    d(N, D) = max(dN, dD),   dN = max(0, log N - log N_max, log N_min - log N)

(dD alike) is ``log k``: the factor, in log units, by which (N, D) lies beyond the fitted sizes or
budgets. This is the distance in which the field prior was measured (`FIELD_PRIOR_PATH`,
benchmarks/FIELD_PRIOR.md): across four public ladders the point fit's error grew with log k at
similar rates (kappa_90 0.015-0.030, each error's log k taken as at least the field's edge),
whereas per span of the fitted range the same ladders disagreed 7x; dividing by the span
over-corrects. Inside the fitted range d = 0, so in-range intervals are exactly what they were.

kappa (sd of log-loss per unit log k, calibrated at 90%) combines two pieces of evidence:

- the field (`FieldPrior`): each shipped ladder's kappa_90, a ladder's log kappa a draw from the
  field; a new table is a new ladder, so its log kappa is a priori Student-t (the field's mean,
  its sd between ladders estimated from few ladders);
- the table's own: for each axis (N, then D) with at least three fitted levels `leave_largest_out`
  refits on the rows below the largest level, predicts the rows at it, and asks, row by row, how
  much extra spread the refit's 90% interval lacked,

    k_r = sqrt(max(0, e_r^2 - h_r^2)) / (z_90 * d_r)

  (``e_r = log L_r - log median_r``, ``h_r`` the interval's half-width on the side of the error,
  ``d_r`` the row's log k beyond the refit's range, at least the prior's `edge`: an error at a
  level 1% beyond the rest is no growth rate); one experiment's kappa is the 90% quantile of its
  k_r, an observation of the table's log kappa with the field's window-to-window sd; an
  experiment that needed no widening only bounds kappa from above (`combine`).

A table whose refits need no widening pulls kappa down but not to 0: a leave-largest-out refit
sees only what the table holds. One kappa serves both axes. The term is one shift of a family's
log-loss at one (N, D), common to every mixture there, so p*, regret and P(best) do not depend on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from multiscale.errors import InputError
from multiscale.laws.summary import Q_HIGH, Q_LOW

Z90 = 1.6448536269514722  # standard normal 95% quantile: half-width of a central 90% interval
KAPPA_QUANTILE = 0.9
MIN_LEVELS = 3  # an axis needs this many fitted levels to leave its largest out
METHOD = "leave-largest-out"
DISTANCE = "log_k"
GRID_SCALES, GRID_POINTS = 12.0, 4801  # combine's grid of log kappa: the prior's scale +- 12
MIN_RESOLUTION = 1e-6  # a refit with no interval at all still only bounds kappa from above
# Shipped with the package (pyproject package-data); read as data, not imported: datasets is a
# sibling layer of laws.
FIELD_PRIOR_PATH = Path(__file__).resolve().parents[1] / "datasets" / "ladders" / "field_prior.json"


@dataclass(frozen=True)
class FieldPrior:
    """The prior of the extrapolation term's kappa (sd of log-loss per unit log k, calibrated at
    90%), learned on `ladders` public ladders: each ladder has its own kappa, whose log is drawn
    from the field with mean `log_mean` and sd `log_sd` (between ladders); one ladder's windows
    scatter about its kappa with sd `within_sd` in log (what one leave-largest-out experiment
    measures). `edge`: the log k below which the field's error is the fitted edge's (the intercept
    c of its band c + d log k), not growth: errors nearer than that are charged as if at `edge`, in
    the field as in the table. `source`: where it was measured."""

    log_mean: float
    log_sd: float
    ladders: int
    within_sd: float
    edge: float
    source: str

    def __post_init__(self):
        for name in ("log_sd", "within_sd"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(self.edge) and self.edge >= 0):
            raise InputError(f"edge must be a finite number >= 0, got {self.edge!r}")
        if not math.isfinite(self.log_mean):
            raise InputError(f"log_mean must be a finite number, got {self.log_mean!r}")
        if isinstance(self.ladders, bool) or not isinstance(self.ladders, (int, np.integer)) or self.ladders < 2:
            raise InputError(f"ladders must be an integer >= 2, got {self.ladders!r}")

    @classmethod
    def from_summary(cls, summary: dict, source: str) -> FieldPrior:
        """From one log-k summary of benchmarks/bench_extrapolation_field.py: its ``ladder_t`` block."""
        t = summary["ladder_t"]
        return cls(log_mean=float(t["log_mean"]), log_sd=float(t["log_sd"]), ladders=int(t["ladders"]),
                   within_sd=float(t["within_sd"]), edge=float(t["edge"]), source=source)

    @property
    def kappa(self) -> float:
        """The prior's own kappa: `combine` with no experiment."""
        return combine(self, [])

    def to_dict(self) -> dict:
        return {"log_mean": self.log_mean, "log_sd": self.log_sd, "ladders": self.ladders,
                "within_sd": self.within_sd, "edge": self.edge, "source": self.source, "kappa": self.kappa}


def field_prior(path: Path = FIELD_PRIOR_PATH) -> FieldPrior:
    """The default prior: the ladders of the shipped field_prior.json. The file ships with the
    package: a missing file raises."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it ships with the package (a packaging bug; reinstall)")
    data = json.loads(path.read_text())
    return FieldPrior.from_summary(data["summary"][DISTANCE]["pooled"],
                                   source=f"{path.name}: {', '.join(data['ladders'])}")


def combine(prior: FieldPrior, experiments) -> float:
    """The table's kappa: the 90% scale of the predictive sd of log-loss per unit log k, given the
    field prior and the table's leave-largest-out experiments (records with ``kappa`` and
    ``resolution``, as `measure` gives them).

    The table's log kappa has the prior predictive of a new ladder, Student-t with ladders - 1
    degrees of freedom about `log_mean`, scale ``log_sd * sqrt(1 + 1/ladders)`` (the sd is
    estimated from a few ladders); an experiment that needed widening observes log kappa with sd
    `within_sd`; one that needed none (kappa 0) says only that kappa is below its ``resolution``
    (censored). The result is the kappa whose Gaussian 90% interval holds 90% of the posterior
    predictive (a scale mixture of Gaussians over the posterior of kappa)."""
    scale = prior.log_sd * math.sqrt(1 + 1 / prior.ladders)
    grid_G = prior.log_mean + scale * np.linspace(-GRID_SCALES, GRID_SCALES, GRID_POINTS)
    logp_G = stats.t.logpdf(grid_G, prior.ladders - 1, prior.log_mean, scale)
    for e in experiments:
        if e["kappa"] > 0:
            logp_G += stats.norm.logpdf(math.log(e["kappa"]), grid_G, prior.within_sd)
        else:
            res = math.log(max(e["resolution"], MIN_RESOLUTION))
            logp_G += stats.norm.logcdf((res - grid_G) / prior.within_sd)
    p_G = np.exp(logp_G - logp_G.max())
    p_G /= p_G.sum()
    kappa_G = np.exp(grid_G)

    def short(k):  # coverage of +-Z90 k minus 0.9
        return float(np.sum(p_G * (2 * stats.norm.cdf(Z90 * k / kappa_G) - 1))) - KAPPA_QUANTILE

    return float(optimize.brentq(short, kappa_G[0] * 1e-3, kappa_G[-1] * 10, xtol=1e-10, rtol=1e-10))


def fitted_ranges(df: pd.DataFrame) -> dict[str, list[float]]:
    """The fitted ranges of log N and log D of a run table."""
    lN, lD = np.log(df["N"].to_numpy(float)), np.log(df["D"].to_numpy(float))
    return {"log_N_range": [float(lN.min()), float(lN.max())],
            "log_D_range": [float(lD.min()), float(lD.max())]}


def distance(ranges: dict, N, D) -> np.ndarray:
    """log k: how far (N, D) lies beyond the fitted ranges, the larger of the two axes' excess
    log-distances (0 inside); broadcasts."""
    def axis(x, lo_hi):
        lo, hi = lo_hi
        lx = np.log(np.asarray(x, float))
        return np.maximum(0.0, np.maximum(lx - hi, lo - lx))

    return np.maximum(axis(N, ranges["log_N_range"]), axis(D, ranges["log_D_range"]))


def extrapolation_sd(model: dict | None, N, D) -> np.ndarray:
    """The extrapolation term's sd of log-loss at (N, D): kappa * `distance` (0 without a model)."""
    shape = np.broadcast(np.asarray(N, float), np.asarray(D, float)).shape
    if not model or model.get("kappa") is None:
        return np.zeros(shape)
    return float(model["kappa"]) * distance(model, N, D)


def required_kappa(loss, draws_SxR, dist) -> np.ndarray:
    """Per row, the smallest kappa whose widened 90% interval holds the observed loss (0 if the
    interval of `draws_SxR` already does). `dist` > 0 for every row."""
    logL = np.log(np.asarray(loss, float))
    lo, med, hi = np.log(np.quantile(draws_SxR, [0.05, 0.5, 0.95], axis=0))
    e = logL - med
    h = np.where(e > 0, hi - med, med - lo)
    return np.sqrt(np.maximum(0.0, e ** 2 - h ** 2)) / (Z90 * np.asarray(dist, float))


def split_largest(df: pd.DataFrame, axis: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows below the largest level of `axis`, rows at it)."""
    left = df[axis].max()
    return df[df[axis] < left], df[df[axis] == left]


def measure(train: pd.DataFrame, test: pd.DataFrame, draws_SxR, axis: str,
            min_distance: float = 0.0) -> tuple[dict, np.ndarray]:
    """A refit's predictive draws for the left-out rows `test` against their losses:
    (record, per-row kappas, each row's distance taken as at least `min_distance`). The record's
    ``resolution`` is the median kappa whose term would match the refit's own 90% half-width
    there: a refit that needs no widening says only that kappa is below it."""
    d = distance(fitted_ranges(train), test["N"].to_numpy(float), test["D"].to_numpy(float))
    d_at_least = np.maximum(d, min_distance)
    y = test["loss"].to_numpy(float)
    k = required_kappa(y, draws_SxR, d_at_least)
    lo, hi = np.quantile(draws_SxR, [Q_LOW, Q_HIGH], axis=0)
    half = 0.5 * np.log(np.quantile(draws_SxR, 0.95, axis=0) / np.quantile(draws_SxR, 0.05, axis=0))
    rec = {"left_out": axis, "value": float(test[axis].iloc[0]), "rows": int(len(test)),
           "distance": float(np.median(d)), "coverage_before": float(np.mean((y >= lo) & (y <= hi))),
           "kappa": float(np.quantile(k, KAPPA_QUANTILE)),
           "resolution": float(np.median(half / (Z90 * d_at_least)))}
    return rec, k


def leave_largest_out(df: pd.DataFrame, fit_fn: Callable[[pd.DataFrame], Any] | None,
                      draws_fn: Callable[[Any, pd.DataFrame], np.ndarray], *,
                      fit_many: Callable[[list[pd.DataFrame]], list] | None = None,
                      prior: FieldPrior | None = None) -> dict:
    """The extrapolation model of a fit of `df` (see the module docstring).

    Args:
      df: the validated run table the final fit sees.
      fit_fn: fits a sub-table (e.g. the refit settings of `fit_bayes`, without extrapolation).
      draws_fn: posterior predictive loss draws (S, R) of such a fit for the rows of a table.
      fit_many: instead of `fit_fn`, fits all the sub-tables at once (`fit_bayes` runs the refits
        as one NUTS program); returns one fit per table, or the `InputError` that refused it.
      prior: the field prior of kappa (None: `field_prior()`, the shipped one).

    Returns a JSON-ready dict: ``method``, ``distance`` ("log_k"), ``kappa`` (`combine` of the
    prior and the experiments; the prior's alone when no axis has `MIN_LEVELS` levels or every
    refit was refused), ``kappa_table`` (the 90% quantile of every left-out row's k_r, None
    without experiments), ``prior`` (the `FieldPrior` used), the fitted ``log_N_range`` and
    ``log_D_range``, one record per experiment (the left-out level, rows, median distance, the
    refit's coverage there, its own kappa) and ``skipped`` (why an axis was not left out).
    """
    prior = field_prior() if prior is None else prior
    out: dict[str, Any] = {"method": METHOD, "distance": DISTANCE, "kappa": prior.kappa, "kappa_table": None,
                           "quantile": KAPPA_QUANTILE, "prior": prior.to_dict(), **fitted_ranges(df),
                           "experiments": [], "skipped": []}
    axes, skipped = [], {}
    for axis in ("N", "D"):
        n_levels = df[axis].nunique()
        if n_levels < MIN_LEVELS:
            skipped[axis] = f"{axis}: {n_levels} fitted level(s), {MIN_LEVELS} needed to leave the largest out"
        else:
            axes.append(axis)
    splits = [split_largest(df, axis) for axis in axes]
    trains = [train for train, _ in splits]
    if fit_many is not None:
        fits = fit_many(trains)
    else:  # one after another; a table that cannot be fitted gets its InputError, as in fit_many
        fits = []
        for t in trains:
            try:
                fits.append(fit_fn(t))
            except InputError as err:
                fits.append(err)
    ks = []
    for axis, (train, test), fit in zip(axes, splits, fits):
        try:
            if isinstance(fit, InputError):
                raise fit
            rec, k = measure(train, test, draws_fn(fit, test), axis, prior.edge)
        except InputError as err:  # the rows below the largest level cannot be fitted
            skipped[axis] = f"{axis}: the rows below its largest level cannot be fitted ({err})"
            continue
        out["experiments"].append(rec)
        ks.append(k)
    out["skipped"] = [skipped[a] for a in ("N", "D") if a in skipped]
    if ks:
        out["kappa_table"] = float(np.quantile(np.concatenate(ks), KAPPA_QUANTILE))
    out["kappa"] = combine(prior, out["experiments"])
    return out


def describe(model: dict | None) -> str:
    """One line on the extrapolation model, for printouts and reports."""
    if not model:
        return "no extrapolation term (a point fit, or a fit saved before it existed)"
    prior = model["prior"]
    exps = ", ".join(f"{e['left_out']}={e['value']:.4g} left out: refit covered {e['coverage_before']:.0%}, "
                     f"kappa {e['kappa']:.4f}" for e in model["experiments"])
    table = f"updated by this table's leave-largest-out ({exps})" if exps else (
        "not updated by this table: " + "; ".join(model["skipped"]))
    return (f"extrapolation sd of log-loss = {model['kappa']:.4f} per unit log k beyond the fitted N and D "
            f"(field prior {prior['kappa']:.4f}, {prior['source']}; {table})")
