"""Predictions of a fitted law at any (N, D, p), with 90% credible intervals.

`predict` gives the mean law's loss at one (N, D) and mixture; `predictive_draws` and
`predict_table` give posterior *predictive* draws for the rows of a run table: the law's
parameter draws, the fitted run-to-run noise (Student-t, a Bayesian fit's sigma, which under the
"scale" noise model moves with N and p: `multiscale.laws.noise`, `row_sigma`; under the "size"
model each model size's offset, `size_offsets`), and, away
from the fitted sizes and budgets, the fit's extrapolation term (`multiscale.laws.extrapolation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multiscale.errors import InputError
from multiscale.laws.data import FitData, mixture_arrays
from multiscale.laws.extrapolation import extrapolation_sd
from multiscale.laws.fits import LOSS_UNITS, Fit
from multiscale.laws.forms import log_loss, mixture_loss, offdiag_mask, raw_from_natural
from multiscale.laws.noise import SIZE_OFFSET, SIZE_SD
from multiscale.laws.summary import Q_HIGH, Q_LOW, interval
from multiscale.mixture import RATIO_TOLERANCE, Mixture, parse_pairs
from multiscale.runs import UNIQUE_TOKENS

STUDENT_NU = 5.0  # the degrees of freedom of the fits' Student-t noise on log-loss (`multiscale.laws.bayes`)


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


def check_ratios(fit: Fit, ratios: str | Mapping[str, float], *, arg: str = "ratios") -> dict[str, float]:
    """The family ratios to predict at (text or mapping, `parse_pairs`, families of the fit), each
    in (0, 1]: summing to 1 over every family of the fit, to at most 1 over some of them (within
    `RATIO_TOLERANCE`). `InputError`s name the argument `arg` and the family."""
    p = parse_pairs(ratios, arg=arg, known=fit.families)
    for f, v in p.items():
        if not 0 < v <= 1:
            raise InputError(f"{arg}: the ratio of family {f!r} must lie in (0, 1], got {v:g}", arg=arg)
    if set(p) == set(fit.families):
        Mixture.parse(p, arg=arg)  # all families: they must sum to 1
    elif sum(p.values()) > 1 + RATIO_TOLERANCE:
        raise InputError(f"{arg}: the ratios sum to {sum(p.values()):.9g} > 1 (a mixture's ratios sum to 1)",
                         arg=arg)
    return p


def predict(fit: Fit, N: float, D: float, p_by_family: str | Mapping[str, float] | None = None) -> Prediction:
    """Loss of each family in `p_by_family` (default: every family at p = 1 / F) for a model of
    N non-embedding parameters trained on D tokens. `p_by_family` is checked by `check_ratios`.

    The interval is the mean law's (no run-to-run noise), widened beyond the fitted sizes and
    budgets by the fit's extrapolation term (`multiscale.laws.extrapolation`; 0 inside them).
    The ratio law only predicts at the (N, D) it was fitted on; elsewhere an `InputError`.
    """
    if not isinstance(fit, Fit):
        raise InputError(f"fit must be a PointFit or BayesFit (load_fit), got {type(fit).__name__}", arg="fit")
    fit.warn_unidentified()
    for name, v in (("N", N), ("D", D)):
        if not (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a finite positive number, got {v!r}", arg=name)
    if p_by_family is None:
        p_by_family = {f: 1.0 / len(fit.families) for f in fit.families}
    p_by_family = check_ratios(fit, p_by_family, arg="p_by_family")
    if not fit.law.uses_scale and not (np.isclose(N, fit.N_ref, rtol=1e-6) and np.isclose(D, fit.D_ref, rtol=1e-6)):
        raise InputError(f"law 'ratio' was fitted at N={fit.N_ref:.4g}, D={fit.D_ref:.4g} and cannot "
                         f"predict at N={N:.4g}, D={D:.4g}")
    # A law with a matrix reads the whole mixture (every mixture family's ratio must be given),
    # the others each family's own ratio (the families not given are left at NaN).
    mix = tuple(fit.mixture_families)
    missing = [f for f in mix if f not in p_by_family]
    if missing:
        raise InputError(f"law {fit.law.name!r} needs the whole mixture: give the ratio of {missing} too")
    mix = mix or tuple(fit.families)
    P = np.array([p_by_family.get(f, np.nan) for f in mix])
    U_F = np.array([fit.unique_tokens.get(f, np.inf) for f in fit.families])
    draws = mixture_loss(fit.law, fit.draws, float(N), float(D), P,
                         np.array([mix.index(f) for f in fit.families]), U_F)
    fams = tuple(p_by_family)
    draws = draws[:, [fit.family_index(f) for f in fams]]
    sd = float(extrapolation_sd(getattr(fit, "extrapolation", None), N, D))
    if sd > 0 and draws.shape[0] > 1:
        draws = draws * np.exp(sd * np.random.default_rng(0).standard_normal(draws.shape))
    return Prediction(families=fams, N=float(N), D=float(D), ratios=dict(p_by_family), draws=draws,
                      law=fit.law.name, method=fit.method, extrapolation_sd=sd)


def _row_log_loss(fit, fam_R, logN, logD, logp, logU, P_RxM, draws: slice) -> np.ndarray:
    """log L (S', R) of the draws `draws` for rows of fit families `fam_R` (indices into
    fit.families), with each row's mixture P_RxM over fit.mixture_families (None: no matrix)."""
    law = fit.law
    nat = {k: v[draws] for k, v in fit.draws.items()}
    th = {k: (v[:, :, fam_R] if k in law.matrix else v[:, fam_R]) for k, v in raw_from_natural(law, nat).items()}
    P = off = None
    if law.matrix:
        M = len(fit.mixture_families)
        fam_in_mix = np.array([list(fit.mixture_families).index(f) for f in fit.families])
        off = offdiag_mask(fam_in_mix, M)[:, None, :][:, :, fam_R]
        P = P_RxM.T[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return log_loss(law, th, logN, logD, logp, logU, P, off)


def _fit_mixture_of(fit, data: FitData) -> np.ndarray | None:
    """data.P_RxM reordered to the fit's mixture families (InputError if they differ)."""
    if not fit.law.matrix:
        return None
    if data.P_RxM is None or set(data.mixture_families) - set(fit.mixture_families):
        raise InputError(f"the table's mixture families {list(data.mixture_families)} are not among the "
                         f"fit's {list(fit.mixture_families)} (law {fit.law.name!r} needs p_<family> columns)")
    P = np.zeros((data.n_rows, len(fit.mixture_families)))
    for m, g in enumerate(data.mixture_families):
        P[:, list(fit.mixture_families).index(g)] = data.P_RxM[:, m]
    return P


def noise_draws(fit) -> dict[str, np.ndarray] | None:
    """A Bayesian fit's noise draws, ``sigma`` and its noise model's slopes, each (S, F) in the
    order of `fit.draws`, and under "size" ``size_sd`` (S, F) and ``size_offset`` (S, L); None for
    a fit without them (a point fit)."""
    idata = getattr(fit, "idata", None)
    if idata is None or "sigma" not in idata.posterior:
        return None
    out = {}
    for name in fit.noise.draw_names():
        dim = "level" if name == SIZE_OFFSET else "family"
        v = np.asarray(idata.posterior[name].transpose("chain", "draw", dim).values, float)
        out[name] = v.reshape(-1, v.shape[-1])
    return out


def size_offsets(fit, noise: dict[str, np.ndarray], fam_R, logN_R, rng=None,
                 draws: slice = slice(None)) -> np.ndarray | float:
    """The "size" model's offset of log-loss (S', R) of the draws `draws` at rows of fit families
    `fam_R` with log N: a row at a fitted (family, N) level gets that level's offset draw; a row
    at another size a fresh draw N(0, size_sd_f) from `rng`, one per (family, N) (None: such
    rows are refused, a `ValueError`). 0.0 under the other models."""
    if SIZE_OFFSET not in noise:
        return 0.0
    fam_R, logN_R = np.asarray(fam_R), np.asarray(logN_R, float)
    lev_R = fit.noise.level_of(fam_R, logN_R)
    off = noise[SIZE_OFFSET][draws]
    out_SxR = off[:, np.maximum(lev_R, 0)]
    new = np.flatnonzero(lev_R < 0)
    if len(new):
        if rng is None:
            raise ValueError(f"rows {new[:10].tolist()} are at sizes the fit has no offset for")
        keys, inv = np.unique(np.stack([fam_R[new], np.round(logN_R[new], 6)]), axis=1, return_inverse=True)
        tau_SxK = noise[SIZE_SD][draws][:, keys[0].astype(int)]
        out_SxR[:, new] = (tau_SxK * rng.standard_normal(tau_SxK.shape))[:, np.ravel(inv)]
    return out_SxR


def row_sigma(fit, noise: dict[str, np.ndarray], fam_R, logN_R, logp_R, draws: slice = slice(None)) -> np.ndarray:
    """The noise scale of log-loss (S', R) of the draws `draws` of `noise` (`noise_draws`) at rows
    of fit families `fam_R` with log N and log p: sigma_f, moved by the slopes of the fit's noise
    model (`multiscale.laws.noise`)."""
    sl = {k: v[draws] for k, v in noise.items()}
    return sl["sigma"][:, fam_R] * np.exp(fit.noise.log_factor(sl, fam_R, logN_R, logp_R))


def pointwise_loglik(fit, data: FitData, noise: dict[str, np.ndarray] | None = None,
                     chunk: int = 200) -> np.ndarray:
    """log p(y_r | draw s) (S, R), float32, of the Student-t likelihood of `multiscale.laws.bayes`,
    for any registered law, rows in `data`'s order; `noise` the noise draws (None: the fit's,
    `noise_draws`); under "size" given the fitted levels' offsets (`size_offsets`). Computed in
    float64 `chunk` draws at a time into one preallocated float32 array (half the memory of
    float64; PSIS-LOO needs no more)."""
    from scipy.special import gammaln

    noise = noise_draws(fit) if noise is None else noise

    nu = STUDENT_NU
    const = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
    fam_R = np.array([fit.family_index(f) for f in data.families])[data.fam_R]
    logU = data.logU_R if data.logU_R is not None else np.full(data.n_rows, np.inf)
    P = _fit_mixture_of(fit, data)
    sem2_R = data.sem_rel_R ** 2
    out_SxR = np.empty((fit.n_draws, data.n_rows), np.float32)
    for s0 in range(0, fit.n_draws, chunk):
        sl = slice(s0, s0 + chunk)
        mu = _row_log_loss(fit, fam_R, data.logN_R, data.logD_R, data.logp_R, logU, P, sl)
        mu = mu + size_offsets(fit, noise, fam_R, data.logN_R, draws=sl)
        scale = np.sqrt(row_sigma(fit, noise, fam_R, data.logN_R, data.logp_R, sl) ** 2 + sem2_R)
        z2 = np.square((data.logL_R - mu) / scale, out=mu)
        out_SxR[sl] = const - np.log(scale) - (nu + 1) / 2 * np.log1p(z2 / nu)
    return out_SxR


def predict_rows(fit: Fit, df: pd.DataFrame, chunk: int = 500) -> np.ndarray:
    """Loss draws (S, R) of the mean law for every row of a run table (families in the fit): each
    row's family at its run's whole mixture (``p_<family>`` columns, for the laws with a matrix)
    and unique tokens (its ``unique_tokens``, else the U the fit saw). Under the "size" noise
    model, the law without the sizes' offsets: a new size's offset has mean 0."""
    df = df.reset_index(drop=True)
    fam_R = np.array([fit.family_index(f) for f in df["family"].astype(str)])
    arr = mixture_arrays(df, fit.families)
    U_fit = np.array([fit.unique_tokens.get(f, np.inf) for f in fit.families])[fam_R]
    logU = arr["logU_R"] if UNIQUE_TOKENS in df.columns else np.log(U_fit)
    logU = np.where(np.isfinite(logU), logU, np.log(U_fit))
    data = FitData(families=tuple(fit.families), fam_R=fam_R, logN_R=np.log(df["N"].to_numpy(float)),
                   logD_R=np.log(df["D"].to_numpy(float)), logp_R=np.log(df["p"].to_numpy(float)),
                   logL_R=np.zeros(len(df)), sem_rel_R=np.zeros(len(df)), N_ref=fit.N_ref, D_ref=fit.D_ref,
                   mixture_families=arr.get("mixture_families", ()), P_RxM=arr.get("P_RxM"), logU_R=logU)
    P = _fit_mixture_of(fit, data)
    out = np.empty((fit.n_draws, len(df)))
    for s0 in range(0, fit.n_draws, chunk):
        sl = slice(s0, s0 + chunk)
        out[sl] = np.exp(_row_log_loss(fit, fam_R, data.logN_R, data.logD_R, data.logp_R, logU, P, sl))
    return out



def predictive_draws(fit: Fit, df: pd.DataFrame, *, noise: bool = True, seed: int = 0,
                     extrapolation: bool = True) -> np.ndarray:
    """Draws [S, R] of the predicted loss (nats/token) for the R rows of `df`.

    With `noise` (a Bayesian fit with an observation scale) each draw adds its Student-t noise
    (and under "size" its size's offset, fresh at a size the fit did not see: `size_offsets`): a
    posterior *predictive* draw; with `extrapolation` too, rows beyond the fitted N and D get the
    extrapolation term (sd `extrapolation_sd` of log-loss). Otherwise the draws are the mean law's.
    """
    draws_SxR = np.asarray(predict_rows(fit, df), float)
    noise_SxF = noise_draws(fit) if noise and draws_SxR.shape[0] > 1 else None
    if noise_SxF is None:
        return draws_SxR
    rng = np.random.default_rng(seed)
    idx = np.array([fit.family_index(f) for f in df["family"]])
    sig_SxR = row_sigma(fit, noise_SxF, idx, np.log(df["N"].to_numpy(float)), np.log(df["p"].to_numpy(float)))
    eps_SxR = rng.standard_t(STUDENT_NU, size=draws_SxR.shape)
    draws_SxR = draws_SxR * np.exp(sig_SxR * eps_SxR)
    if SIZE_OFFSET in noise_SxF:  # after the noise, so the other models' draws stay as they were
        draws_SxR = draws_SxR * np.exp(size_offsets(fit, noise_SxF, idx, np.log(df["N"].to_numpy(float)), rng))
    sd_R = extrapolation_sd(getattr(fit, "extrapolation", None) if extrapolation else None,
                            df["N"].to_numpy(float), df["D"].to_numpy(float))
    if np.any(sd_R > 0):
        draws_SxR = draws_SxR * np.exp(sd_R * rng.standard_normal(draws_SxR.shape))
    return draws_SxR


TABLE_INPUT = ("run", "family", "N", "D", "p")


def predict_table(fit: Fit, df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The 90% posterior-predictive loss (nats/token) of every row of a run table.

    Columns: run, family, N, D, p, median, q05, q95 (`predictive_draws`), ``sd_log`` (predictive
    sd of log-loss without the extrapolation term), ``extrapolation_sd_log`` (0 in range), and
    ``loss`` when the table has it (optional).
    """
    # The rows: families in the fit, N and D finite and > 0, p in (0, 1]; errors name column and rows.
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
