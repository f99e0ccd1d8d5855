"""Synthetic run tables drawn from known law parameters (for tests, calibration, benchmarks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from multiscale.laws.forms import get_law, predict_loss

# Plausible multilingual-law parameters (nats/token), in the range He et al. (2024) report.
DEFAULT_TRUTH = {
    "E": 1.6, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.30, "gamma": 0.15,
}


def synthetic_truth(n_families: int, seed: int = 0, law: str = "multilingual") -> dict[str, dict[str, float]]:
    """Per-family parameters spread around `DEFAULT_TRUTH` (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_families):
        if law == "ratio":
            out[f"fam{i}"] = {"c": float(rng.uniform(2.0, 5.0)), "gamma": float(rng.uniform(0.05, 0.4))}
            continue
        t = dict(DEFAULT_TRUTH)
        t["E"] = float(rng.uniform(1.2, 2.4))
        t["A"] = float(np.exp(rng.uniform(np.log(150), np.log(800))))
        t["B"] = float(np.exp(rng.uniform(np.log(300), np.log(2000))))
        t["alpha"] = float(rng.uniform(0.28, 0.42))
        t["beta"] = float(rng.uniform(0.24, 0.36))
        t["gamma"] = float(rng.uniform(0.05, 0.4))
        if law == "chinchilla":
            t.pop("gamma")
        out[f"fam{i}"] = t
    return out


def drifted(params: dict, n, d, ref: tuple[float, float]) -> dict:
    """Parameters whose exponents drift with scale: with ``drift`` in `params`, the N term
    ``A N^-alpha`` becomes ``A N0^-alpha (N/N0)^-(alpha + drift log(N/N0))`` (the D term alike
    with D0), i.e. A and B are multiplied by ``exp(-drift log(x/x0)^2)``: a law whose log-log
    slope steepens (drift > 0) or flattens with scale, which the fitted form cannot follow."""
    drift = params.get("drift")
    if drift is None:
        return params
    out = {k: v for k, v in params.items() if k != "drift"}
    out["A"] = params["A"] * np.exp(-drift * np.log(n / ref[0]) ** 2)
    out["B"] = params["B"] * np.exp(-drift * np.log(d / ref[1]) ** 2)
    return out


def synthetic_runs(truth: dict[str, dict[str, float]], *, law: str = "multilingual",
                   N=(2e7, 5e7, 1.2e8, 3e8), D=(2e9, 6e9, 2e10), n_mixtures: int = 8,
                   noise: float = 0.01, seed: int = 0, dirichlet: float = 1.0,
                   p_min: float = 0.01, drift_ref: tuple[float, float] | None = None) -> pd.DataFrame:
    """A run table: every (N, D) pair trained on `n_mixtures` Dirichlet mixtures.

    Losses are the law's prediction times ``exp(noise * eps)``, eps standard normal
    (so `noise` is the standard deviation of log-loss). Each row carries ``loss_sem = 0``
    and the whole mixture in ``p_<family>`` columns. For the ``ratio`` law only the first
    N and D are used. A family whose truth holds ``drift`` follows `drifted` around
    `drift_ref` = (N0, D0) (default: the smallest N and D given).
    """
    law_obj = get_law(law)
    rng = np.random.default_rng(seed)
    fams = list(truth)
    F = len(fams)
    if not law_obj.uses_scale:
        N, D = (N[0],), (D[0],)
    ref = drift_ref or (min(N), min(D))
    rows = []
    k = 0
    for n in N:
        for d in D:
            for _ in range(n_mixtures):
                p = rng.dirichlet(np.full(F, dirichlet))
                p = np.maximum(p, p_min)
                p = p / p.sum()
                run = f"run{k:04d}"
                k += 1
                for j, fam in enumerate(fams):
                    params = drifted({name: np.float64(v) for name, v in truth[fam].items()}, n, d, ref)
                    mean = float(predict_loss(law_obj, params, n, d, p[j]))
                    loss = mean * float(np.exp(noise * rng.standard_normal()))
                    row = {"run": run, "family": fam, "N": float(n), "D": float(d),
                           "p": float(p[j]), "loss": loss}
                    row.update({f"p_{g}": float(p[i]) for i, g in enumerate(fams)})
                    rows.append(row)
    return pd.DataFrame(rows)
