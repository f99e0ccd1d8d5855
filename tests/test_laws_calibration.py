"""Synthetic truths that drift with scale, and the leave-largest-out calibration machinery
(the >= 20-seed NUTS run is benchmarks/bench_calibration.py --part extrapolation)."""

import numpy as np
import pytest
from fixtures.calibration import HELD_N_FACTORS, drifting_experiments, extrapolation_coverage
from fixtures.synthetic import drifted, synthetic_runs, synthetic_truth

from multiscale.errors import InputError
from multiscale.laws.fits import BayesFit
from multiscale.laws.forms import get_law, predict_loss


def test_drift_steepens_the_n_and_d_terms_around_the_reference():
    t = {"E": 1.6, "A": 400.0, "B": 900.0, "alpha": 0.3, "beta": 0.3, "gamma": 0.1}
    assert drifted(t, 1e8, 1e10, (1e7, 1e9)) is t  # no drift: unchanged
    d = drifted({**t, "drift": 0.02}, 1e8, 1e10, (1e7, 1e9))
    assert "drift" not in d
    assert d["A"] == pytest.approx(400.0 * np.exp(-0.02 * np.log(10) ** 2))
    assert d["B"] == pytest.approx(900.0 * np.exp(-0.02 * np.log(10) ** 2))
    # at the reference nothing moves: the table's smallest size and budget follow the plain law
    truth = {"a": {**t, "drift": 0.05}}
    plain = synthetic_runs({"a": t}, N=(1e7,), D=(1e9,), n_mixtures=2, noise=0.0, seed=0)
    drift = synthetic_runs(truth, N=(1e7,), D=(1e9,), n_mixtures=2, noise=0.0, seed=0)
    np.testing.assert_allclose(drift["loss"], plain["loss"], rtol=1e-14)
    far = synthetic_runs(truth, N=(1e9,), D=(1e9,), n_mixtures=1, noise=0.0, seed=0, drift_ref=(1e7, 1e9))
    law = predict_loss(get_law("multilingual"), {k: np.float64(v) for k, v in t.items()}, 1e9, 1e9, far["p"].iloc[0])
    assert far["loss"].iloc[0] < law  # drift > 0: the truth falls below the law's extrapolation


def test_drifting_experiments_layout():
    fitted, held = drifting_experiments(3, 2, n_mixtures=2, fit_N=(1e7, 2e7, 4e7), D=(1e9, 2e9))
    assert sorted(fitted["family"].unique()) == [f"s{s}_fam{j}" for s in range(3) for j in range(2)]
    assert sorted(fitted["N"].unique()) == [1e7, 2e7, 4e7] and sorted(fitted["D"].unique()) == [1e9, 2e9]
    assert sorted(held["N"].unique()) == pytest.approx([4e7 * f for f in HELD_N_FACTORS])
    assert set(held["D"]) == {1e9} and not set(held["run"]) & set(fitted["run"])
    assert len(fitted) == 3 * 3 * 2 * 2 * 2 and len(held) == 3 * 2 * 1 * 2 * 2
    with pytest.raises(InputError, match="n_families >= 2"):
        drifting_experiments(2, 1)


def _truth_fit(fitted, spread=0.002, sigma=0.002, S=400):
    """A stand-in posterior: draws scattered tightly around each experiment's true parameters
    WITHOUT the drift (what a fit of the law form can at best reach), and a small noise scale."""
    import arviz as az

    fams = sorted(fitted["family"].unique())
    rng = np.random.default_rng(0)
    truths = {}
    for f in fams:
        s, j = f.split("_")
        truths[f] = synthetic_truth(3, seed=2000 + int(s[1:]))[j]
    draws = {n: np.array([[truths[f][n] for f in fams]]) * np.exp(spread * rng.standard_normal((S, len(fams))))
             for n in ("E", "A", "B", "alpha", "beta", "gamma")}
    post = {n: v[None] for n, v in draws.items()}
    post["sigma"] = np.full((1, S, len(fams)), sigma)
    idata = az.from_dict(posterior=post, coords={"family": fams}, dims={n: ["family"] for n in post})
    return BayesFit(law=get_law("multilingual"), families=tuple(fams), shared=(), draws=draws, N_ref=1e8,
                    D_ref=1e9, n_runs={f: 1 for f in fams}, idata=idata)


def test_extrapolation_coverage_learns_the_term_per_experiment():
    """With strong drift and over-confident stand-in fits, the held-out rows fall outside the
    in-range intervals; each experiment's kappa, learned from the left-out largest fitted size,
    widens them, and the fit is left without a term afterwards."""
    fitted, held = drifting_experiments(4, 3, drift=0.08, n_mixtures=3, noise=0.001)
    fit = _truth_fit(fitted)
    out = extrapolation_coverage(fit, fit, fitted, held, 4)
    assert out["n_seeds"] == 4 and out["heldout_rows"] == len(held)
    assert len(out["kappa_by_seed"]) == 4 and max(out["kappa_by_seed"]) > 0
    assert out["coverage_heldout_without_term"] < 0.8
    assert out["coverage_heldout"] > out["coverage_heldout_without_term"]
    assert fit.extrapolation == {}
