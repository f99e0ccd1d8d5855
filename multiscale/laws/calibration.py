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

from multiscale.errors import InputError
from multiscale.laws.fits import Fit
from multiscale.laws.forms import scale_term
from multiscale.laws.optimal import solve_ratios
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

