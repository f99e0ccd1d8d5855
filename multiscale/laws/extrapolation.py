"""Honest intervals off the fitted range: an extrapolation term learned by leaving the largest
fitted size (and budget) out.

A law fitted on a narrow range of N and D is more wrong beyond it than its parameter posterior
says: the form itself is an approximation whose error grows with the distance from the data.
`leave_largest_out` measures that error inside the fit. For each axis (N, then D) with at least
three fitted levels it refits on the rows below the largest level, predicts the rows at it, and
asks, row by row, how much extra log-loss spread the refit's 90% predictive interval lacked:

    k_r = sqrt(max(0, e_r^2 - h_r^2)) / (z_90 * d_r)

with ``e_r = log L_r - log median_r`` the row's error, ``h_r`` the half-width of its interval on
the side of the error (log scale), and ``d_r`` its distance from the refit's range. ``kappa`` is
the 90% quantile of ``k_r`` over every left-out row: the smallest growth rate under which 90% of
them fall inside their widened intervals. The final fit's predictive then multiplies each draw by
``exp(kappa * d * z)``, z standard normal, where

    d(N, D) = sqrt((dN / uN)^2 + (dD / uD)^2),   dN = max(0, log N - log N_max, log N_min - log N)

(dD alike) is the distance from the fitted ranges *relative to their spans*: uN = log N_max -
log N_min of the fitted sizes (uD of the budgets; an axis with one level uses the other's span,
and 1 when both have one). Relative, because a law fitted over a span of h log-units and pushed
d beyond it errs in proportion to d / h (as any fitted curve does), and because the refit that
leaves the largest level out spans less than the final fit: measuring its error per unit of
absolute log-distance would charge the final fit with the refit's narrower range. On the CPU
study (docs/cpu_study) the absolute form covered 98% of the held-out losses, the relative 82%
(benchmarks/FIT_RESULTS.md). Inside the fitted range d = 0, so in-range intervals are exactly
what they were. One kappa serves both axes (an axis with fewer than three levels cannot be left
out and borrows the other's). The term is one shift of a family's log-loss at one (N, D), common
to every mixture there, so p*, regret and P(best) do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws.summary import Q_HIGH, Q_LOW

Z90 = 1.6448536269514722  # standard normal 95% quantile: half-width of a central 90% interval
KAPPA_QUANTILE = 0.9
MIN_LEVELS = 3  # an axis needs this many fitted levels to leave its largest out
METHOD = "leave-largest-out"


def fitted_ranges(df: pd.DataFrame) -> dict[str, list[float] | float]:
    """The fitted ranges of log N and log D of a run table, and the unit of distance along each
    (its span; an axis with one level takes the other's span, 1 when both have one)."""
    lN, lD = np.log(df["N"].to_numpy(float)), np.log(df["D"].to_numpy(float))
    sN, sD = float(lN.max() - lN.min()), float(lD.max() - lD.min())
    return {"log_N_range": [float(lN.min()), float(lN.max())],
            "log_D_range": [float(lD.min()), float(lD.max())],
            "unit_N": sN if sN > 0 else (sD if sD > 0 else 1.0),
            "unit_D": sD if sD > 0 else (sN if sN > 0 else 1.0)}


def distance(ranges: dict, N, D) -> np.ndarray:
    """Distance of (N, D) from the fitted ranges in units of their spans (0 inside); broadcasts."""
    def axis(x, lo_hi):
        lo, hi = lo_hi
        lx = np.log(np.asarray(x, float))
        return np.maximum(0.0, np.maximum(lx - hi, lo - lx))

    return np.hypot(axis(N, ranges["log_N_range"]) / ranges["unit_N"],
                    axis(D, ranges["log_D_range"]) / ranges["unit_D"])


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


def measure(train: pd.DataFrame, test: pd.DataFrame, draws_SxR, axis: str) -> tuple[dict, np.ndarray]:
    """A refit's predictive draws for the left-out rows `test` against their losses:
    (record, per-row kappas)."""
    d = distance(fitted_ranges(train), test["N"].to_numpy(float), test["D"].to_numpy(float))
    y = test["loss"].to_numpy(float)
    k = required_kappa(y, draws_SxR, d)
    lo, hi = np.quantile(draws_SxR, [Q_LOW, Q_HIGH], axis=0)
    rec = {"left_out": axis, "value": float(test[axis].iloc[0]), "rows": int(len(test)),
           "distance": float(np.median(d)), "coverage_before": float(np.mean((y >= lo) & (y <= hi))),
           "kappa": float(np.quantile(k, KAPPA_QUANTILE))}
    return rec, k


def leave_largest_out(df: pd.DataFrame, fit_fn: Callable[[pd.DataFrame], Any] | None,
                      draws_fn: Callable[[Any, pd.DataFrame], np.ndarray], *,
                      fit_many: Callable[[list[pd.DataFrame]], list] | None = None) -> dict:
    """The extrapolation model of a fit of `df` (see the module docstring).

    Args:
      df: the validated run table the final fit sees.
      fit_fn: fits a sub-table (e.g. the refit settings of `fit_bayes`, without extrapolation).
      draws_fn: posterior predictive loss draws (S, R) of such a fit for the rows of a table.
      fit_many: instead of `fit_fn`, fits all the sub-tables at once (`fit_bayes` runs the refits
        as one NUTS program); returns one fit per table, or the `InputError` that refused it.

    Returns a JSON-ready dict: ``method``, ``kappa`` (None when no axis has `MIN_LEVELS` levels,
    or every refit was refused), the fitted ``log_N_range``/``log_D_range``, one record per
    experiment (the left-out level, rows, median distance, the refit's coverage there, its own
    kappa) and ``skipped`` (why an axis was not left out).
    """
    out: dict[str, Any] = {"method": METHOD, "kappa": None, "quantile": KAPPA_QUANTILE,
                           **fitted_ranges(df), "experiments": [], "skipped": []}
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
            rec, k = measure(train, test, draws_fn(fit, test), axis)
        except InputError as err:  # the rows below the largest level cannot be fitted
            skipped[axis] = f"{axis}: the rows below its largest level cannot be fitted ({err})"
            continue
        out["experiments"].append(rec)
        ks.append(k)
    out["skipped"] = [skipped[a] for a in ("N", "D") if a in skipped]
    if ks:
        out["kappa"] = float(np.quantile(np.concatenate(ks), KAPPA_QUANTILE))
    return out


def describe(model: dict | None) -> str:
    """One line on the extrapolation model, for printouts and reports."""
    if not model:
        return "no extrapolation term (a point fit, or a fit saved before it existed)"
    if model.get("kappa") is None:
        return "extrapolation term not estimated: " + "; ".join(model.get("skipped", []))
    exps = ", ".join(f"{e['left_out']}={e['value']:.4g} left out: refit covered {e['coverage_before']:.0%}"
                     for e in model["experiments"])
    return (f"extrapolation sd of log-loss = {model['kappa']:.4f} per fitted span beyond the fitted "
            f"N and D ({exps})")
