"""Held-out validation: fit on small models, score the large ones."""

import numpy as np
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.laws import fit_point, holdout, score

GRID = {"alpha": [0.5], "beta": [0.5], "e": [0.0, 1.0], "a": [5.0, 10.0], "b": [5.0, 10.0],
        "gamma": [0.0]}


def test_holdout_extrapolates_in_N():
    truth = synthetic_truth(2, seed=3)
    df = synthetic_runs(truth, noise=0.003, seed=4, N=(1e7, 3e7, 1e8, 3e8, 1e9),
                        D=(1e9, 4e9, 1.6e10), n_mixtures=3)
    fit, s = holdout(df, lambda d: fit_point(d, grid=GRID), by="N", train_fraction=0.6)
    assert max(fit.draws["alpha"].shape) == 2
    assert set(s.per_family) == {"fam0", "fam1"}
    assert s.overall["n"] == (df["N"] > 1e8).sum()
    assert s.overall["mape"] < 2.0 and s.overall["r2"] > 0.8
    assert np.isnan(s.overall["coverage"])  # point fit: no interval
    # scoring the training rows of a noise-free table is exact
    clean = synthetic_runs(truth, noise=0.0, seed=4, N=(1e7, 1e8, 1e9), D=(1e9, 1e10), n_mixtures=3)
    exact = score(fit_point(clean, grid=GRID), clean)
    assert exact.overall["mape"] < 1e-3 and exact.overall["r2"] > 0.9999
    assert "MAPE" in str(exact)


def test_non_finite_predictions_are_flagged_and_named(monkeypatch):
    """A fit that ran to a boundary (e.g. B ~ 1e256) predicts inf: score says which family."""
    import pytest

    from multiscale.laws import validation

    truth = synthetic_truth(2, seed=3)
    df = synthetic_runs(truth, noise=0.0, seed=4, N=(1e7, 1e8), D=(1e9, 1e10), n_mixtures=2)
    fit = fit_point(df, grid=GRID)
    real = validation.predictive_draws

    def overflowing(fit, rows, **kw):
        draws = real(fit, rows, **kw)
        draws[:, (rows["family"] == "fam1").to_numpy()] = np.inf
        return draws

    monkeypatch.setattr(validation, "predictive_draws", overflowing)
    with pytest.warns(RuntimeWarning, match="non-finite losses for fam1 on these rows"):
        s = validation.score(fit, df)
    assert not np.isfinite(s.per_family["fam1"]["mape"])
    assert np.isfinite(s.per_family["fam0"]["mape"])
    # the result itself is flagged, not only the warning
    assert s.non_finite == ("fam1",) and not s.ok
    assert s.to_dict()["non_finite_predictions"] == ["fam1"]
    assert "WARNING: the fit predicts non-finite losses for fam1" in str(s)
    monkeypatch.setattr(validation, "predictive_draws", real)
    clean = validation.score(fit, df)
    assert clean.ok and clean.non_finite == () and "WARNING" not in str(clean)
