"""Predictions of a fitted law at any (N, D, p), with 90% credible intervals.

`predict` gives the mean law's loss at one (N, D) and mixture; `predictive_draws` and
`predict_table` give posterior *predictive* draws for the rows of a run table: the law's
parameter draws, the fitted run-to-run noise (Student-t, a Bayesian fit's sigma), and, away
from the fitted sizes and budgets, the fit's extrapolation term (`multiscale.laws.extrapolation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws.extrapolation import extrapolation_sd
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import predict_loss
from multiscale.laws.summary import Q_HIGH, Q_LOW, interval
from multiscale.mixture import RATIO_TOLERANCE, Mixture, parse_pairs


@dataclass
class Prediction:
    """Per family: posterior median of the law's loss and its 90% credible interval, in
    nats/token (the interval of the mean law, without run-to-run noise, widened beyond the fitted
    range by the extrapolation term whose sd of log-loss is `extrapolation_sd`; a point fit gives
    the same number three times). `draws` holds the (S, F') loss draws."""

    families: tuple[str, ...]
    N: float
    D: float
    ratios: dict[str, float]
    draws: np.ndarray
    law: str
    method: str
    extrapolation_sd: float = 0.0

    def table(self) -> dict[str, dict[str, float]]:
        out = {}
        for j, f in enumerate(self.families):
            out[f] = {"p": self.ratios[f], **interval(self.draws[:, j])}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "method": self.method, "N": self.N, "D": self.D,
                "loss_units": LOSS_UNITS, "extrapolation_sd_log": self.extrapolation_sd,
                "families": self.table()}

    def __str__(self) -> str:
        lines = [f"predicted loss ({LOSS_UNITS}) at N = {self.N:.3g}, D = {self.D:.3g} "
                 f"(law {self.law}, {self.method})",
                 f"{'family':16s}{'p':>8s}{'median':>10s}{'5%':>10s}{'95%':>10s}"]
        for f, r in self.table().items():
            lines.append(f"{f[:16]:16s}{r['p']:8.4f}{r['median']:10.4f}{r['q05']:10.4f}{r['q95']:10.4f}")
        if self.extrapolation_sd > 0:
            lines.append(f"beyond the fitted N and D: the interval includes an extrapolation sd of log-loss "
                         f"of {self.extrapolation_sd:.4f}")
        return "\n".join(lines)


def check_ratios(fit: Fit, ratios: str | Mapping[str, float], *, what: str = "ratios") -> dict[str, float]:
    """The family ratios to predict at, checked: ``'FAM=P,...'`` text or a mapping, read by
    `multiscale.mixture.parse_pairs` (no duplicates, NaN, inf, negatives, or families outside
    the fit); each ratio in (0, 1]; ratios of every family of the fit sum to 1, ratios of some
    of them to at most 1 (both within `multiscale.mixture.RATIO_TOLERANCE`). `InputError`s
    name `what` (e.g. ``--ratios``) and the family."""
    p = parse_pairs(ratios, arg=what, known=fit.families)
    for f, v in p.items():
        if not 0 < v <= 1:
            raise InputError(f"{what}: the ratio of family {f!r} must lie in (0, 1], got {v:g}")
    if set(p) == set(fit.families):
        Mixture.parse(p, arg=what)  # all families: they must sum to 1
    elif sum(p.values()) > 1 + RATIO_TOLERANCE:
        raise InputError(f"{what}: the ratios sum to {sum(p.values()):.9g} > 1 (a mixture's ratios sum to 1)")
    return p


def predict(fit: Fit, N: float, D: float, p_by_family: str | Mapping[str, float] | None = None) -> Prediction:
    """Loss of each family in `p_by_family` (default: every family at p = 1 / F) for a model of
    N non-embedding parameters trained on D tokens. `p_by_family` is checked by `check_ratios`.

    The interval is the mean law's (no run-to-run noise), widened beyond the fitted sizes and
    budgets by the fit's extrapolation term (`multiscale.laws.extrapolation`; 0 inside them).
    The ratio law only predicts at the (N, D) it was fitted on; elsewhere an `InputError`.
    """
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0 for v in (N, D)):
        raise InputError(f"N and D must be finite positive numbers, got N={N!r}, D={D!r}")
    if p_by_family is None:
        p_by_family = {f: 1.0 / len(fit.families) for f in fit.families}
    p_by_family = check_ratios(fit, p_by_family, what="p_by_family")
    if not fit.law.uses_scale and not (np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6)):
        raise InputError(f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g} and cannot "
                         f"predict at N={N:.4g}, D={D:.4g}")
    fams = tuple(p_by_family)
    idx = [fit.family_index(f) for f in fams]
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    p = np.array([p_by_family[f] for f in fams])
    if fit.law.is_seed:
        draws = np.asarray(predict_loss(fit.law, params, N, D, p[None, :]), dtype=float)
    else:  # a law of the whole mixture (multiscale.laws.mixture_fit)
        from multiscale.laws.mixture_fit import predict_mixture

        draws = predict_mixture(fit, N, D, p_by_family)
    sd = float(extrapolation_sd(getattr(fit, "extrapolation", None), N, D))
    if sd > 0 and draws.shape[0] > 1:
        draws = draws * np.exp(sd * np.random.default_rng(0).standard_normal(draws.shape))
    return Prediction(families=fams, N=float(N), D=float(D), ratios=dict(p_by_family), draws=draws,
                      law=fit.law.name, method=fit.method, extrapolation_sd=sd)


def predict_rows(fit: Fit, df) -> np.ndarray:
    """Loss draws (S, R) of the mean law for every row of a run table (families must be in the fit)."""
    if not fit.law.is_seed:  # a law of the whole mixture: each row at its run's mixture
        from multiscale.laws.mixture_fit import predict_rows_mixture

        return predict_rows_mixture(fit, df)
    idx = np.array([fit.family_index(f) for f in df["family"].astype(str)])
    params = {k: v[:, idx] for k, v in fit.draws.items()}
    N = df["N"].to_numpy(float)[None, :]
    D = df["D"].to_numpy(float)[None, :]
    p = df["p"].to_numpy(float)[None, :]
    return np.asarray(predict_loss(fit.law, params, N, D, p), dtype=float)


def _sigma_SxF(fit: Fit) -> np.ndarray | None:
    """A Bayesian fit's draws of the noise scale sigma, (S, F); None without them."""
    idata = getattr(fit, "idata", None)
    if idata is None or "sigma" not in idata.posterior:
        return None
    sig = np.asarray(idata.posterior["sigma"].transpose("chain", "draw", "family").values, float)
    return sig.reshape(-1, sig.shape[-1])


def predictive_draws(fit: Fit, df: pd.DataFrame, *, noise: bool = True, seed: int = 0,
                     extrapolation: bool = True) -> np.ndarray:
    """Draws [S, R] of the predicted loss (nats/token) for the R rows of `df`.

    For a Bayesian fit with an observation scale and `noise` true, each draw adds its Student-t
    observation noise (sigma of the row's family): a posterior *predictive* draw, so about 90%
    of new runs should fall in its 90% interval. With `extrapolation` (and `noise`), rows beyond
    the fitted N and D also get the fit's extrapolation term, a normal shift of log-loss with sd
    `extrapolation_sd` (0 in range). Otherwise the draws are the mean law's.
    """
    draws_SxR = np.asarray(predict_rows(fit, df), float)
    sig_SxF = _sigma_SxF(fit)
    if not noise or draws_SxR.shape[0] <= 1 or sig_SxF is None:
        return draws_SxR
    from multiscale.laws.bayes import STUDENT_NU

    rng = np.random.default_rng(seed)
    idx = np.array([fit.family_index(f) for f in df["family"]])
    eps_SxR = rng.standard_t(STUDENT_NU, size=draws_SxR.shape)
    draws_SxR = draws_SxR * np.exp(sig_SxF[:, idx] * eps_SxR)
    sd_R = extrapolation_sd(getattr(fit, "extrapolation", None) if extrapolation else None,
                            df["N"].to_numpy(float), df["D"].to_numpy(float))
    if np.any(sd_R > 0):
        draws_SxR = draws_SxR * np.exp(sd_R * rng.standard_normal(draws_SxR.shape))
    return draws_SxR


def _check_table(fit: Fit, df) -> pd.DataFrame:
    """The rows to predict: a DataFrame with run, family, N, D, p (loss optional), families in
    the fit, N and D finite and > 0, p in (0, 1]; `InputError` naming the column and rows."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"predict_table: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in TABLE_INPUT if c not in df.columns]
    if missing:
        raise InputError(f"predict_table: the table has no column(s) {missing}; it needs {list(TABLE_INPUT)}")
    df = df.reset_index(drop=True)
    unknown = sorted(set(df["family"].astype(str)) - set(fit.families))
    if unknown:
        raise InputError(f"predict_table: families {unknown} are not in the fit ({list(fit.families)})")
    for col, ok, what in (("N", lambda v: v > 0, "> 0"), ("D", lambda v: v > 0, "> 0"),
                          ("p", lambda v: (v > 0) & (v <= 1), "in (0, 1]")):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~(np.isfinite(v) & ok(np.nan_to_num(v))))
        if len(bad):
            raise InputError(f"predict_table: column {col!r} must be finite and {what}; rows {bad[:10].tolist()}")
    if not fit.law.uses_scale:
        off = np.flatnonzero(~(np.isclose(df["N"].to_numpy(float), fit.N_ref, rtol=1e-6)
                               & np.isclose(df["D"].to_numpy(float), fit.D_ref, rtol=1e-6)))
        if len(off):
            raise InputError(f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g} and cannot "
                             f"predict rows {off[:10].tolist()} at another (N, D)")
    return df


TABLE_INPUT = ("run", "family", "N", "D", "p")


def predict_table(fit: Fit, df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The 90% posterior-predictive loss (nats/token) of every row of a run table.

    Columns: run, family, N, D, p, median, q05, q95 (`predictive_draws`: parameter draws,
    run-to-run noise and, beyond the fitted range, the extrapolation term; a point fit gives
    q05 = q95 = median), ``sd_log`` (the predictive sd of log-loss without the extrapolation term),
    ``extrapolation_sd_log`` (the extrapolation term's sd of log-loss, 0 in range), and ``loss``
    when the table has it. The table needs run, family, N, D and p; losses are optional.
    """
    df = _check_table(fit, df)
    in_range = predictive_draws(fit, df, seed=seed, extrapolation=False)
    draws = predictive_draws(fit, df, seed=seed)
    q05, med, q95 = np.quantile(draws, [Q_LOW, 0.5, Q_HIGH], axis=0)
    out = pd.DataFrame({c: df[c] for c in TABLE_INPUT})
    out["median"], out["q05"], out["q95"] = med, q05, q95
    out["sd_log"] = np.std(np.log(in_range), axis=0)
    out["extrapolation_sd_log"] = extrapolation_sd(getattr(fit, "extrapolation", None),
                                                   df["N"].to_numpy(float), df["D"].to_numpy(float))
    if "loss" in df.columns:
        out["loss"] = df["loss"].to_numpy(float)
    return out
