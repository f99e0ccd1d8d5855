"""Synthetic run tables from known parameters of a law of the whole mixture (tests, benchmarks).

`mixture_truth` draws per-family parameters around `multiscale.laws.synthetic.DEFAULT_TRUTH`
plus the law's new ones (tau, t, k, R*); `mixture_runs` trains "runs" on Dirichlet mixtures
at every (N, D) and writes the law's loss times ``exp(noise * eps)``, with the whole mixture in
``p_<family>`` columns and, for the repetition laws, each family's ``unique_tokens``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multiscale.laws.forms import get_law, mixture_loss
from multiscale.laws.synthetic import synthetic_truth

# Unique tokens of five families, 5e9 down to 1e7 (the repetition table of issue 12).
DEFAULT_UNIQUE = (5e9, 1e9, 2e8, 5e7, 1e7)
# The repetition table: at these N and D the two smallest families read 0.5 to ~500 epochs
# (well past 4 for most of their rows), the largest hardly ever repeats; 10 mixtures per (N, D).
REPETITION_GRID = {"N": (2e7, 5e7, 1.2e8, 3e8), "D": (5e8, 2e9, 8e9), "n_mixtures": 10, "noise": 0.004}


def mixture_truth(law: str, n_families: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Natural parameters, per family (1, F) and matrix (1, F, F), deterministic in `seed`."""
    law_obj = get_law(law)
    rng = np.random.default_rng(seed + 1000)
    base = synthetic_truth(n_families, seed, law="ratio" if law_obj.base == "ratio" else "multilingual")
    fams = list(base)
    nat = {n: np.array([[base[f][n] for f in fams]]) for n in base[fams[0]] if n in law_obj.params}
    F = n_families
    if "R_star" in law_obj.params:
        nat["R_star"] = rng.uniform(5.0, 30.0, size=(1, F))
    if "k" in law_obj.params:
        nat["k"] = rng.uniform(0.2, 0.6, size=(1, F))
        if "E" in nat:
            nat["E"] = nat["E"] - 0.3
    off = 1.0 - np.eye(F)
    if "tau" in law_obj.matrix:  # the NUTS prior's HalfCauchy(0.05), truncated to [0, 1]
        nat["tau"] = 0.05 * np.tan(rng.uniform(size=(1, F, F)) * np.arctan(1.0 / 0.05)) * off
    if "t" in law_obj.matrix:
        nat["t"] = rng.uniform(-0.5, 1.5, size=(1, F, F)) * off
    return nat


def mixture_runs(law: str, truth: dict, *, N=(2e7, 5e7, 1.2e8, 3e8), D=(2e9, 6e9, 2e10),
                 n_mixtures: int = 8, noise: float = 0.004, seed: int = 0, unique_tokens=None,
                 p_min: float = 0.01) -> pd.DataFrame:
    """A run table of the law with parameters `truth` (families fam0, fam1, ...)."""
    law_obj = get_law(law)
    rng = np.random.default_rng(seed)
    F = next(iter(truth.values())).shape[1]
    fams = [f"fam{i}" for i in range(F)]
    U = None
    if law_obj.uses_unique_tokens:
        U = np.asarray(unique_tokens if unique_tokens is not None else DEFAULT_UNIQUE[:F], dtype=float)
    if not law_obj.uses_scale:
        N, D = (N[0],), (D[0],)
    rows, k = [], 0
    for n in N:
        for d in D:
            for _ in range(n_mixtures):
                p = np.maximum(rng.dirichlet(np.ones(F)), p_min)
                p = p / p.sum()
                L = mixture_loss(law_obj, truth, n, d, p, np.arange(F), U)[0]
                for j, f in enumerate(fams):
                    row = {"run": f"run{k:04d}", "family": f, "N": float(n), "D": float(d), "p": float(p[j]),
                           "loss": float(L[j] * np.exp(noise * rng.standard_normal()))}
                    if U is not None:
                        row["unique_tokens"] = float(U[j])
                    row.update({f"p_{g}": float(p[i]) for i, g in enumerate(fams)})
                    rows.append(row)
                k += 1
    return pd.DataFrame(rows)


def repetition_runs(seed: int = 0, law: str = "repetition") -> tuple[dict, pd.DataFrame]:
    """(truth, table) of the repetition case: `mixture_truth(law, 5, seed)` on `REPETITION_GRID`
    with the unique tokens `DEFAULT_UNIQUE`."""
    truth = mixture_truth(law, len(DEFAULT_UNIQUE), seed=seed)
    return truth, mixture_runs(law, truth, seed=seed, **REPETITION_GRID)
