"""Held-out validation: fit on some runs (e.g. the smaller models), score the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.predict import predict_rows
from multiscale.runs import validate_runs


@dataclass
class Scores:
    """Held-out scores, overall and per family.

    r2: 1 - SS_res / SS_tot of loss (nats/token); mape: mean absolute percentage error
    (percent); coverage: share of held-out losses inside the 90% interval (NaN for a point
    fit); n: rows scored.
    """

    overall: dict[str, float]
    per_family: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"loss_units": LOSS_UNITS, "overall": self.overall, "per_family": self.per_family}

    def __str__(self) -> str:
        lines = [f"held-out scores (loss in {LOSS_UNITS})",
                 f"{'family':16s}{'n':>5s}{'R^2':>9s}{'MAPE %':>9s}{'cov90':>8s}"]
        for f, s in [*self.per_family.items(), ("all", self.overall)]:
            lines.append(f"{f[:16]:16s}{s['n']:5d}{s['r2']:9.4f}{s['mape']:9.3f}{s['coverage']:8.3f}")
        return "\n".join(lines)


def _score(y, draws_SxR) -> dict[str, float]:
    med = np.median(draws_SxR, axis=0)
    ss_res = float(np.sum((y - med) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    mape = float(np.mean(np.abs(med - y) / y) * 100.0)
    if draws_SxR.shape[0] > 1:
        lo, hi = np.quantile(draws_SxR, [0.05, 0.95], axis=0)
        cov = float(np.mean((y >= lo) & (y <= hi)))
    else:
        cov = float("nan")
    return {"n": int(len(y)), "r2": r2, "mape": mape, "coverage": cov}


def predictive_draws(fit: Fit, df: pd.DataFrame, *, noise: bool = True, seed: int = 0) -> np.ndarray:
    """Draws [S, R] of the predicted loss (nats/token) for the R rows of `df`.

    For a Bayesian fit with an observation scale and `noise` true, each draw adds its Student-t
    observation noise (sigma of the row's family): a posterior *predictive* draw, so about 90%
    of new runs should fall in its 90% interval. Otherwise the draws are the mean law's.
    """
    draws_SxR = np.asarray(predict_rows(fit, df), float)
    idata = getattr(fit, "idata", None)
    if noise and draws_SxR.shape[0] > 1 and idata is not None and "sigma" in idata.posterior:
        from multiscale.laws.bayes import STUDENT_NU

        sig = np.asarray(idata.posterior["sigma"].transpose("chain", "draw", "family").values, float)
        sig_SxF = sig.reshape(-1, sig.shape[-1])
        idx = np.array([fit.family_index(f) for f in df["family"]])
        eps_SxR = np.random.default_rng(seed).standard_t(STUDENT_NU, size=draws_SxR.shape)
        draws_SxR = draws_SxR * np.exp(sig_SxF[:, idx] * eps_SxR)
    return draws_SxR


def score(fit: Fit, df: pd.DataFrame, *, noise: bool = True, seed: int = 0) -> Scores:
    """Score a fit on the rows of a run table: R^2, MAPE and 90%-interval coverage.

    The interval is posterior predictive when `noise` is true (see `predictive_draws`).
    """
    df = validate_runs(df)
    draws = predictive_draws(fit, df, noise=noise, seed=seed)
    bad = [f for f in dict.fromkeys(df["family"])
           if not np.all(np.isfinite(draws[:, (df["family"] == f).to_numpy()]))]
    if bad:
        import warnings

        warnings.warn(
            f"the fit predicts non-finite losses for {', '.join(bad)} on these rows, so their "
            "R^2 and MAPE are meaningless (+-inf/nan): the fit ran to a boundary of parameter "
            "space, typically an exponent the table cannot identify (e.g. beta with token "
            "budgets too close together). Check the fitted parameters, share exponents, or "
            "score a Bayesian fit", RuntimeWarning, stacklevel=2)
    y = df["loss"].to_numpy(float)
    per = {}
    for f in dict.fromkeys(df["family"]):
        m = (df["family"] == f).to_numpy()
        per[f] = _score(y[m], draws[:, m])
    return Scores(overall=_score(y, draws), per_family=per)


def holdout(df: pd.DataFrame, fit_fn: Callable[[pd.DataFrame], Fit], *, by: str = "N",
            train_fraction: float = 0.5) -> tuple[Fit, Scores]:
    """Fit on the runs with the smallest values of `by` (default: model size), score the rest.

    `fit_fn` is e.g. ``lambda d: fit_point(d, law="multilingual")``. The split puts whole
    values of `by` on one side: runs whose `by` is below the `train_fraction` quantile of
    its distinct values train, the others are held out.
    """
    df = validate_runs(df)
    if by not in df.columns:
        raise ValueError(f"holdout: no column {by!r} to split on")
    values = np.sort(df[by].unique())
    if len(values) < 2:
        raise ValueError(f"holdout: column {by!r} has one value; nothing to extrapolate to")
    k = max(1, min(len(values) - 1, int(round(train_fraction * len(values)))))
    train = df[df[by] <= values[k - 1]]
    test = df[df[by] > values[k - 1]]
    fit = fit_fn(train)
    return fit, score(fit, test)
