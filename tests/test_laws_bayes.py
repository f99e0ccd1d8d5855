"""Bayesian fit: calibration of gamma and p* intervals over many seeds, diagnostics, save/load."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.decisions import optimal_ratios
from multiscale.decisions.ratios import solve_ratios
from multiscale.laws import fit_bayes, load_fit, predict
from multiscale.laws.extrapolation import combine, field_prior

SEEDS = 30
FAMS = 3


@pytest.fixture(scope="module")
def calibration_fit():
    """30 independent synthetic experiments (3 families x 40 runs, known gamma, 2% noise), fitted in
    ONE NUTS run: the ratio law gives every family its own c, gamma and sigma, so the joint
    posterior factorizes into the 30 x 3 separate posteriors -- the same answer as 30 fits,
    for one compilation. (With only 10 runs per family the intervals over-cover: p* about 99%.)"""
    tables, truths = [], {}
    for s in range(SEEDS):
        truth = synthetic_truth(FAMS, seed=1000 + s, law="ratio")
        df = synthetic_runs(truth, law="ratio", n_mixtures=40, noise=0.02, seed=s)
        df = df[["run", "family", "N", "D", "p", "loss"]].copy()
        df["run"] = f"s{s}_" + df["run"]
        df["family"] = f"s{s}_" + df["family"]
        tables.append(df)
        truths.update({f"s{s}_{k}": v for k, v in truth.items()})
    df = pd.concat(tables, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law="ratio", chains=2, draws=600, seed=0)
    return fit, truths


@pytest.mark.slow
def test_gamma_and_p_star_intervals_are_calibrated(calibration_fit):
    fit, truths = calibration_fit
    g = fit.draws["gamma"]
    lo, hi = np.quantile(g, [0.05, 0.95], axis=0)
    true_g = np.array([truths[f]["gamma"] for f in fit.families])
    cover_gamma = np.mean((true_g >= lo) & (true_g <= hi))
    hits = []
    for s in range(SEEDS):
        idx = [fit.family_index(f"s{s}_fam{j}") for j in range(FAMS)]
        P = solve_ratios(g[:, idx], 1.0, np.ones(FAMS))
        p_true = solve_ratios(true_g[idx][None], 1.0, np.ones(FAMS))[0]
        plo, phi = np.quantile(P, [0.05, 0.95], axis=0)
        hits.extend(((p_true >= plo) & (p_true <= phi)).tolist())
    cover_p = np.mean(hits)
    assert len(hits) == SEEDS * FAMS
    assert 0.80 <= cover_gamma <= 0.97, cover_gamma
    assert 0.80 <= cover_p <= 0.97, cover_p
    assert fit.diagnostics["max_rhat"] < 1.05


@pytest.mark.slow
def test_diagnostics_recorded(calibration_fit):
    fit, _ = calibration_fit
    d = fit.diagnostics
    assert {"max_rhat", "min_ess_bulk", "divergences", "seconds"} <= set(d)
    assert d["min_ess_bulk"] > 50
    assert fit.idata.posterior["gamma"].dims == ("chain", "draw", "family")
    assert fit.draws["gamma"].shape == (1200, SEEDS * FAMS)


@pytest.mark.slow
def test_multilingual_fit_save_load_predict_recommend(tmp_path):
    truth = synthetic_truth(2, seed=3)
    df = synthetic_runs(truth, noise=0.01, seed=0, N=(1e7, 1e8, 1e9), D=(1e9, 1e10), n_mixtures=3)
    df["loss_sem"] = 0.005
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_bayes(df, law="multilingual", shared=("alpha", "beta"), chains=1, draws=150, seed=1)
    # one chain: R-hat is undefined and the user is told what to do
    assert any("chains=4" in str(w.message) for w in caught)
    assert any("chains=4" in m for m in fit.warnings)
    assert np.all(fit.draws["alpha"][:, 0] == fit.draws["alpha"][:, 1])  # shared
    for fam, t in truth.items():
        j = fit.family_index(fam)
        lo, hi = np.quantile(fit.draws["gamma"][:, j], [0.005, 0.995])
        assert lo < t["gamma"] < hi
    fit.save(tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert meta["method"] == "nuts" and meta["loss_units"] == "nats/token"
    back = load_fit(tmp_path / "fit")
    np.testing.assert_allclose(back.draws["gamma"], fit.draws["gamma"])
    # the extrapolation term: learned by leaving N = 1e9 out (D has 2 levels: skipped), saved, loaded
    ex = meta["extrapolation"]
    assert [e["left_out"] for e in ex["experiments"]] == ["N"] and ex["kappa"] >= 0
    assert ex["skipped"] and ex["skipped"][0].startswith("D: 2 fitted level(s)")
    assert back.extrapolation == ex and fit.options["extrapolation"]
    assert ex["prior"] == field_prior().to_dict()  # the shipped field prior, updated by the refit
    assert ex["kappa"] == pytest.approx(combine(field_prior(), ex["experiments"]))
    assert predict(back, 1.2e9, 5e10).extrapolation_sd == pytest.approx(
        ex["kappa"] * max(np.log(1.2), np.log(5)))  # log k: the larger factor beyond N_max and D_max
    assert predict(back, 1e8, 1e10).extrapolation_sd == 0
    pred = predict(back, 1.2e9, 5e10, {"fam0": 0.5, "fam1": 0.5}).table()
    assert pred["fam0"]["q05"] < pred["fam0"]["median"] < pred["fam0"]["q95"]
    rec = optimal_ratios(back, 1.2e9, 5e10)
    assert rec.p_star.shape == (150, 2)
    assert sum(rec.ratios.values()) == pytest.approx(1.0)


def _fake_fit(draws, families, law="multilingual"):
    from multiscale.laws.fits import BayesFit
    from multiscale.laws.forms import get_law

    return BayesFit(law=get_law(law), families=tuple(families), shared=(), draws=draws,
                    N_ref=1e8, D_ref=1e10, n_runs={f: 1 for f in families})


def test_calibration_coverage_counts_exactly():
    """`coverage` on hand-made posteriors: draws centred on the truth cover it; draws shifted
    by 10 sd do not (gamma exactly; p* follows gamma)."""
    from fixtures.calibration import coverage, stacked_experiments

    df, truths = stacked_experiments(4, 2, n_mixtures=1, N=(1e8,), D=(1e10,))
    assert sorted(df["family"].unique()) == sorted(truths) == [f"s{s}_fam{j}" for s in range(4) for j in range(2)]
    assert df["run"].nunique() == 4 and len(df) == 8
    fams = list(truths)
    rng = np.random.default_rng(0)
    S = 2000
    draws = {n: np.array([truths[f][n] for f in fams])[None] * np.exp(0.01 * rng.standard_normal((S, len(fams))))
             for n in ("E", "A", "B", "alpha", "beta")}
    g_true = np.array([truths[f]["gamma"] for f in fams])
    shift = np.array([0.0 if f.startswith(("s0_", "s1_")) else 10 * 0.01 for f in fams])
    draws["gamma"] = g_true + shift + 0.01 * rng.standard_normal((S, len(fams)))
    cov = coverage(_fake_fit(draws, fams), truths, 4, 2, N=1e9, D=1e11)
    assert cov["cases"] == 8
    assert cov["gamma"] == 0.5
    # seeds 0-1: everything centred on the truth, so p* is covered; seeds 2-3: both gammas
    # shifted by the same 0.1, which moves p* -- at most the unshifted half is covered
    assert 0.5 <= cov["p_star_normalized"] <= 1.0
    assert 0.5 <= cov["p_star_raw"] <= 1.0
    centred = coverage(_fake_fit({**draws, "gamma": g_true + 0.01 * rng.standard_normal((S, len(fams)))}, fams),
                       truths, 4, 2, N=1e9, D=1e11)
    assert centred["gamma"] == centred["p_star_normalized"] == centred["p_star_raw"] == 1.0


@pytest.mark.slow
def test_multilingual_calibration_machinery_runs_on_a_stacked_fit():
    """The stacked multilingual calibration of benchmarks/bench_calibration.py, small: 2 seeds
    x 2 families in one NUTS run. (The >= 20-seed coverage result is recorded in
    benchmarks/FIT_RESULTS.md; 4 cases cannot test a 90% rate, so this checks that every
    truth lies inside its 99.9% interval.) 2 x 1,000 draws: at 2 x 300 the largest R-hat of
    the 28 dimensions ranged 1.012-1.049 over six seeds, too close to the bound to be a verdict."""
    from fixtures.calibration import coverage, stacked_experiments

    df, truths = stacked_experiments(2, 2, N=(2e7, 6e7, 2e8), D=(2e9, 8e9), n_mixtures=4, noise=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law="multilingual", chains=2, draws=1000, warmup=500, seed=0, extrapolation=False)
    assert fit.options["dense_mass"]  # 28 sampled dimensions
    assert not fit.options["whitened"]  # fewer than LAPLACE_MIN_ROWS rows
    assert fit.diagnostics["max_rhat"] < 1.05
    cov = coverage(fit, truths, 2, 2, level=0.999, N=4e8, D=1.6e10)
    assert cov["cases"] == 4
    assert cov["gamma"] == cov["p_star_normalized"] == cov["p_star_raw"] == 1.0, cov


@pytest.mark.slow
def test_host_devices_for_chains_gives_parallel_chains_before_jax_starts():
    """In a fresh process the helper asks XLA for one CPU device per chain (then the "auto"
    chain method runs them in parallel); once jax is imported it changes nothing."""
    import os
    import subprocess
    import sys

    code = ("from multiscale.laws.bayes import host_devices_for_chains, _chain_method\n"
            "added = host_devices_for_chains(3)\n"
            "import jax\n"
            "print(added, jax.local_device_count(), _chain_method('auto', 3), _chain_method('auto', 4),"
            " host_devices_for_chains(3))\n")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["True", "3", "parallel", "sequential", "False"]


@pytest.mark.parametrize("kw, message", [
    (dict(chains=0), "chains must be an integer >= 1, got 0"),
    (dict(draws=2.5), "draws must be an integer >= 1, got 2.5"),
    (dict(warmup=-1), "warmup must be an integer >= 0, got -1"),
    (dict(chains=True), "chains must be an integer"),
])
def test_bad_sampler_settings_are_refused_before_sampling(kw, message):
    from multiscale.errors import InputError

    df = synthetic_runs(synthetic_truth(2, seed=0, law="ratio"), law="ratio", n_mixtures=4, seed=0)
    with pytest.raises(InputError, match=message):
        fit_bayes(df, law="ratio", **kw)


@pytest.mark.slow
def test_cheap_stacked_refits_give_the_kappa_of_full_separate_refits_within_noise(monkeypatch):
    """The cheap refits (REFIT_DRAWS draws in all, both left-out tables in one NUTS program)
    against refits with the fit's own settings, one after another, on a small table whose truth
    drifts with scale (so the refits miss the left-out rows and kappa > 0). The noise scale is
    kappa's spread over bootstrap resamples of the full refits' draws of the cheap refits' size.
    Scaled down for the suite's time: the fit draws 2 x 400, the cheap refits 400 in all (with
    the defaults, 2 x 1000 against 1,000, the cheap refits also have half the fit's draws)."""
    from multiscale.laws import bayes
    from multiscale.laws.extrapolation import KAPPA_QUANTILE, leave_largest_out, measure, split_largest
    from multiscale.laws.predict import predictive_draws

    monkeypatch.setattr(bayes, "REFIT_DRAWS", 400)

    truth = synthetic_truth(2, seed=3)
    for t in truth.values():
        t["drift"] = 0.06
    df = synthetic_runs(truth, noise=0.01, seed=0, N=(1e7, 3e7, 1e8), D=(1e9, 3e9, 1e10), n_mixtures=2,
                        drift_ref=(1e7, 1e9))
    kw = dict(law="multilingual", chains=2, draws=400, warmup=300, seed=0, warn=False)
    fit = fit_bayes(df, **kw)
    assert fit.options["extrapolation_refit"] == {"chains": 2, "draws": 200, "warmup": 300, "seed": 0,
                                                  "stacked": True}
    draws = {}

    def draws_fn(f, rows):  # the left-out rows: one N (N left out) or one D (D left out)
        draws["N" if rows["N"].nunique() == 1 else "D"] = d = predictive_draws(f, rows, extrapolation=False)
        return d

    full = leave_largest_out(df, lambda sub: fit_bayes(sub, **kw, extrapolation=False), draws_fn)
    assert [e["left_out"] for e in fit.extrapolation["experiments"]] == ["N", "D"]
    assert full["kappa_table"] > 0
    rng = np.random.default_rng(0)
    sub = []
    for _ in range(40):
        ks = []
        for axis in ("N", "D"):
            train, test = split_largest(df, axis)
            d = draws[axis]
            ks.append(measure(train, test, d[rng.choice(len(d), 400)], axis)[1])  # a bootstrap of the cheap size
        sub.append(np.quantile(np.concatenate(ks), KAPPA_QUANTILE))
    noise = float(np.std(sub))
    cheap = fit.extrapolation["kappa_table"]  # the refits' own kappa, before the field prior
    print(f"kappa: cheap stacked {cheap:.5f}, full separate {full['kappa_table']:.5f}, bootstrap sd {noise:.5f}")
    assert abs(cheap - full["kappa_table"]) <= 4 * noise, (cheap, full["kappa_table"], noise)
