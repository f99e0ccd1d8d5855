"""`compare_laws --method nuts` scores the intervals the fit itself gives: with the extrapolation term
beyond the fitted range where the law learns one (the CPU study v2's held-out cpu-1.6m coverage was
0.49 without it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multiscale.decisions.compare import compare_laws, split
from multiscale.laws import fit_bayes
from multiscale.laws.validation import score


@pytest.mark.slow  # 2 small NUTS fits with their leave-largest-out refits: ~1 min on 2 shared cores
def test_nuts_compare_coverage_is_the_fits_own():
    rng = np.random.default_rng(0)
    grid = [(n, d) for n in (1e7, 3e7, 1e8, 3e8) for d in (1e9, 3e9, 1e10)] * 2
    loss = [(1.8 + 400 / n ** 0.34 + 900 / d ** 0.28) * np.exp(0.01 * rng.standard_normal()) for n, d in grid]
    df = pd.DataFrame({"run": [f"r{i}" for i in range(len(grid))], "family": "a", "N": [n for n, _ in grid],
                       "D": [d for _, d in grid], "p": 1.0, "loss": loss})
    cmp = compare_laws(df, "chinchilla", "largest-N", method="nuts", draws=300, chains=2, seed=0)
    (res,) = cmp.results
    train, test = split(df, "largest-N")
    fit = fit_bayes(train, law="chinchilla", chains=2, draws=300, warmup=300, seed=0, warn=False)
    assert res.extrapolation_kappa == pytest.approx(fit.extrapolation["kappa"]) and res.extrapolation_kappa > 0
    assert res.overall["coverage"] == pytest.approx(score(fit, test, seed=0).overall["coverage"])
    assert cmp.to_dict()["laws"][0]["extrapolation_kappa"] == res.extrapolation_kappa
