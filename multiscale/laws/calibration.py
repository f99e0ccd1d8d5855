"""Calibration of the Bayesian fit: do nominal intervals cover the truth as often as they say?

Many independent synthetic experiments (known parameters, fresh noise) are stacked into ONE
table whose families are renamed ``s<seed>_<family>``. Without shared exponents every family
of the law has its own parameters and noise scale, so the joint posterior factorizes into the
experiments' separate posteriors: one NUTS run (one compilation) gives the same intervals as
one fit per experiment. `coverage` then counts, per experiment and family, whether the
central interval of gamma and of the optimal ratio p* contains the true value.

p* is computed per experiment (its own families only) with equal weights, both for the
normalized objective (it depends on gamma alone) and for the raw objective at a target
(N, D) (it depends on every parameter through ``c_i = L_i(N, D, 1)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multiscale.decisions.ratios import solve_ratios
from multiscale.errors import InputError
from multiscale.laws.fits import Fit
from multiscale.laws.forms import scale_term
from multiscale.laws.summary import Q_HIGH, Q_LOW
from multiscale.laws.synthetic import synthetic_runs, synthetic_truth


def stacked_experiments(n_seeds: int, n_families: int, *, law: str = "multilingual",
                        seed0: int = 1000, **table_kw) -> tuple[pd.DataFrame, dict[str, dict]]:
    """`n_seeds` independent synthetic run tables (`synthetic_runs` keywords in `table_kw`;
    truths from `synthetic_truth(n_families, seed=seed0 + s)`), families and runs renamed
    ``s<s>_...``, concatenated. Returns (table, truth per renamed family)."""
    if n_seeds < 1 or n_families < 2:
        raise InputError(f"need n_seeds >= 1 and n_families >= 2, got {n_seeds}, {n_families}")
    tables, truths = [], {}
    for s in range(n_seeds):
        truth = synthetic_truth(n_families, seed=seed0 + s, law=law)
        df = synthetic_runs(truth, law=law, seed=s, **table_kw)
        df = df[["run", "family", "N", "D", "p", "loss"]].copy()
        df["run"] = f"s{s}_" + df["run"]
        df["family"] = f"s{s}_" + df["family"]
        tables.append(df)
        truths.update({f"s{s}_{k}": v for k, v in truth.items()})
    return pd.concat(tables, ignore_index=True), truths


def _inside(x_SxF, true_F, level: float) -> np.ndarray:
    lo, hi = np.quantile(x_SxF, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (true_F >= lo) & (true_F <= hi)


def coverage(fit: Fit, truths: dict[str, dict], n_seeds: int, n_families: int, *,
             level: float = 0.9, N: float | None = None, D: float | None = None) -> dict:
    """Share of (experiment, family) cases whose central `level` interval contains the truth,
    for gamma, p* (normalized objective) and, when the law depends on N and D and a target
    (N, D) is given, p* of the raw objective there. Families must be named as
    `stacked_experiments` names them."""
    law = fit.law
    hits = {"gamma": [], "p_star_normalized": []}
    raw = law.uses_scale and N is not None and D is not None
    if raw:
        hits["p_star_raw"] = []
    w = np.ones(n_families)
    for s in range(n_seeds):
        fams = [f"s{s}_fam{j}" for j in range(n_families)]
        idx = [fit.family_index(f) for f in fams]
        g = fit.draws["gamma"][:, idx]
        g_true = np.array([truths[f]["gamma"] for f in fams])
        hits["gamma"].extend(_inside(g, g_true, level).tolist())
        P = solve_ratios(g, 1.0, w)
        P_true = solve_ratios(g_true[None], 1.0, w)[0]
        hits["p_star_normalized"].extend(_inside(P, P_true, level).tolist())
        if raw:
            draws = {n: v[:, idx] for n, v in fit.draws.items()}
            true_params = {n: np.array([[truths[f][n] for f in fams]]) for n in law.params}
            c = scale_term(law, draws, N, D)
            c_true = scale_term(law, true_params, N, D)
            P = solve_ratios(g, c, w)
            P_true = solve_ratios(g_true[None], c_true, w)[0]
            hits["p_star_raw"].extend(_inside(P, P_true, level).tolist())
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    out["cases"] = len(hits["gamma"])
    out["level"] = level
    return out



# ------------------------------------------------------------------ calibration off the fitted range

HELD_N_FACTORS = (1.8, 3.5)  # held-out sizes, as multiples of the largest fitted one (as in the CPU study)


def drifting_experiments(n_seeds: int, n_families: int, *, drift: float = 0.02, seed0: int = 2000,
                         fit_N=(1e7, 2e7, 4.4e7), D=(1e9, 2e9), n_mixtures: int = 6,
                         noise: float = 0.01) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stacked synthetic experiments whose truth drifts with scale (`synthetic.drifted`; each
    family's drift uniform in [-drift, drift]): (fitted rows at `fit_N` x `D`, held-out rows at
    the larger sizes `HELD_N_FACTORS` x max(fit_N) and the smallest D). Families and runs are
    renamed ``s<s>_...`` as in `stacked_experiments`."""
    if n_seeds < 1 or n_families < 2:
        raise InputError(f"need n_seeds >= 1 and n_families >= 2, got {n_seeds}, {n_families}")
    held_N = tuple(max(fit_N) * f for f in HELD_N_FACTORS)
    fitted, held = [], []
    for s in range(n_seeds):
        truth = synthetic_truth(n_families, seed=seed0 + s)
        rng = np.random.default_rng(seed0 + s)
        for t in truth.values():
            t["drift"] = float(rng.uniform(-drift, drift))
        kw = dict(n_mixtures=n_mixtures, noise=noise, drift_ref=(min(fit_N), min(D)))
        for out, N_, D_, k in ((fitted, fit_N, D, 0), (held, held_N, (min(D),), 1)):
            df = synthetic_runs(truth, N=N_, D=D_, seed=2 * s + k, **kw)[["run", "family", "N", "D", "p", "loss"]]
            df["run"] = f"s{s}_{'h' if k else 'f'}_" + df["run"]
            df["family"] = f"s{s}_" + df["family"]
            out.append(df)
    return pd.concat(fitted, ignore_index=True), pd.concat(held, ignore_index=True)


def _covered(draws_SxR, y) -> np.ndarray:
    lo, hi = np.quantile(draws_SxR, [Q_LOW, Q_HIGH], axis=0)
    return (y >= lo) & (y <= hi)


def extrapolation_coverage(fit, loo_fit, fitted: pd.DataFrame, held: pd.DataFrame, n_seeds: int) -> dict:
    """Per experiment s of `drifting_experiments`: its extrapolation term from `loo_fit` (the
    same model fitted on `fitted` without its largest N), exactly as `fit_bayes` learns it
    (`extrapolation.measure`), applied to `fit` for the held-out rows. Families are independent
    (no shared exponents), so the stacked fits equal one fit per experiment. Returns the 90%
    coverage of the held-out losses with and without the term, of the fitted rows, MAPE, and
    each experiment's kappa."""
    from multiscale.laws.extrapolation import KAPPA_QUANTILE, fitted_ranges, measure, split_largest
    from multiscale.laws.predict import predictive_draws

    with_term, without, in_range, ape, kappas = [], [], [], [], []
    for s in range(n_seeds):
        f_s, h_s = (df[df["family"].str.startswith(f"s{s}_")] for df in (fitted, held))
        train, test = split_largest(f_s, "N")
        _, k = measure(train, test, predictive_draws(loo_fit, test, extrapolation=False), "N")
        kappas.append(float(np.quantile(k, KAPPA_QUANTILE)))
        fit.extrapolation = {"kappa": kappas[-1], **fitted_ranges(f_s)}
        y = h_s["loss"].to_numpy(float)
        draws = predictive_draws(fit, h_s)
        with_term.append(_covered(draws, y))
        without.append(_covered(predictive_draws(fit, h_s, extrapolation=False), y))
        in_range.append(_covered(predictive_draws(fit, f_s), f_s["loss"].to_numpy(float)))
        ape.append(np.abs(np.median(draws, axis=0) / y - 1))
    fit.extrapolation = {}
    cover = [float(np.mean(c)) for c in with_term]
    return {"coverage_heldout": float(np.mean(np.concatenate(with_term))),
            "coverage_heldout_without_term": float(np.mean(np.concatenate(without))),
            "coverage_fitted": float(np.mean(np.concatenate(in_range))),
            "mape_heldout_pct": float(100 * np.mean(np.concatenate(ape))),
            "coverage_by_seed": cover, "kappa_by_seed": kappas, "n_seeds": n_seeds,
            "heldout_rows": int(sum(len(c) for c in with_term))}
