"""Held-out validation: fit on some runs (e.g. the smaller models), score the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.predict import predictive_draws
from multiscale.laws.summary import Q_HIGH, Q_LOW
from multiscale.runs import validate_runs


@dataclass
class Scores:
    """Held-out scores, overall and per family.

    mape is in percent; coverage is the share inside the 90% interval (NaN for a point fit).
    `non_finite` names the families predicted non-finite on some row; their scores (and the
    overall ones) then mean nothing, and `ok` is False.
    """

    overall: dict[str, float]
    per_family: dict[str, dict[str, float]]
    non_finite: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every prediction was finite (so every score is meaningful)."""
        return not self.non_finite

    def to_dict(self) -> dict[str, Any]:
        return {"loss_units": LOSS_UNITS, "overall": self.overall, "per_family": self.per_family,
                "non_finite_predictions": list(self.non_finite)}

    def __str__(self) -> str:
        lines = [f"held-out scores (loss in {LOSS_UNITS})",
                 f"{'family':16s}{'n':>5s}{'R^2':>9s}{'MAPE %':>9s}{'cov90':>8s}"]
        for f, s in [*self.per_family.items(), ("all", self.overall)]:
            lines.append(f"{f[:16]:16s}{s['n']:5d}{s['r2']:9.4f}{s['mape']:9.3f}{s['coverage']:8.3f}")
        if self.non_finite:
            lines.append(f"WARNING: {NON_FINITE_NOTE.format(families=', '.join(self.non_finite))}")
        return "\n".join(lines)


NON_FINITE_NOTE = (
    "the fit predicts non-finite losses for {families} on these rows, so their R^2 and MAPE are "
    "meaningless (+-inf/nan): the fit ran to a boundary of parameter space, typically an exponent the "
    "table cannot identify (e.g. beta with token budgets too close together). Check the fitted "
    "parameters, share exponents, or score a Bayesian fit")


def _score(y, draws_SxR) -> dict[str, float]:
    med = np.median(draws_SxR, axis=0)
    ss_res = float(np.sum((y - med) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    mape = float(np.mean(np.abs(med - y) / y) * 100.0)
    if draws_SxR.shape[0] > 1:
        lo, hi = np.quantile(draws_SxR, [Q_LOW, Q_HIGH], axis=0)
        cov = float(np.mean((y >= lo) & (y <= hi)))
    else:
        cov = float("nan")
    return {"n": int(len(y)), "r2": r2, "mape": mape, "coverage": cov}


def score(fit: Fit, df: pd.DataFrame, *, noise: bool = True, seed: int = 0) -> Scores:
    """Score a fit on the rows of a run table: R^2, MAPE and 90%-interval coverage.

    The interval is posterior predictive when `noise` is true (see `predictive_draws`). The
    table is checked by `multiscale.runs.validate_runs`. Where the fit predicts a non-finite
    loss the result is flagged (`Scores.non_finite`, a RuntimeWarning naming the families).
    """
    df = validate_runs(df)
    draws = predictive_draws(fit, df, noise=noise, seed=seed)
    bad = tuple(f for f in dict.fromkeys(df["family"])
                if not np.all(np.isfinite(draws[:, (df["family"] == f).to_numpy()])))
    if bad:
        import warnings

        warnings.warn(NON_FINITE_NOTE.format(families=", ".join(bad)), RuntimeWarning, stacklevel=2)
    y = df["loss"].to_numpy(float)
    per = {}
    for f in dict.fromkeys(df["family"]):
        m = (df["family"] == f).to_numpy()
        per[f] = _score(y[m], draws[:, m])
    return Scores(overall=_score(y, draws), per_family=per, non_finite=bad)


def holdout(df: pd.DataFrame, fit_fn: Callable[[pd.DataFrame], Fit], *, by: str = "N",
            train_fraction: float = 0.5) -> tuple[Fit, Scores]:
    """Fit on the runs with the smallest values of `by` (default: model size), score the rest.

    `fit_fn` is e.g. ``lambda d: fit_point(d, law="multilingual")``. The split puts whole
    values of `by` on one side: runs whose `by` is below the `train_fraction` quantile of
    its distinct values train, the others are held out.
    """
    df = validate_runs(df)
    if by not in df.columns:
        raise InputError(f"holdout: no column {by!r} to split on")
    values = np.sort(df[by].unique())
    if len(values) < 2:
        raise InputError(f"holdout: column {by!r} has one value; nothing to extrapolate to")
    k = max(1, min(len(values) - 1, int(round(train_fraction * len(values)))))
    train = df[df[by] <= values[k - 1]]
    test = df[df[by] > values[k - 1]]
    fit = fit_fn(train)
    return fit, score(fit, test)
