"""The repetition law: its effective-ratio form, its point-fit starts, and p* at the truth."""

import numpy as np
import pytest
from fixtures.synthetic_mixture import DEFAULT_UNIQUE, mixture_runs, mixture_truth, repetition_runs
from scipy import optimize

from multiscale.decisions.ratios import objective_at, solve_coupled
from multiscale.laws import fit_point, get_law, predict_loss
from multiscale.laws.data import prepare
from multiscale.laws.forms import log_effective_own_ratio, mixture_loss
from multiscale.laws.point import base_fits, effective_ratio_data

F = 5
U = np.array(DEFAULT_UNIQUE)
TRUTH = mixture_truth("repetition", F, seed=0)
BASE_LAW = get_law("multilingual")


def _effective_tokens(tokens, U, Rs):
    R = np.maximum(tokens / U - 1.0, 0.0)
    return np.where(tokens > U, U + U * Rs * (1 - np.exp(-R / Rs)), tokens)


def test_the_loss_is_the_separable_law_at_the_effective_ratio():
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(F), size=7)
    N, D = 1.2e8, 8e9
    got = mixture_loss(get_law("repetition"), TRUTH, N, D, P, np.arange(F), U)
    p_eff = _effective_tokens(P * D, U, TRUTH["R_star"]) / D
    seed = {k: v for k, v in TRUTH.items() if k in BASE_LAW.params}
    np.testing.assert_allclose(got, predict_loss(BASE_LAW, seed, N, D, p_eff), rtol=1e-12)
    assert np.all(p_eff[:, -1] < P[:, -1])  # the 1e7-token family repeats at 8e9 tokens


def test_without_repeats_the_effective_ratio_is_exactly_the_ratio():
    logp = np.log(np.array([0.5, 0.2, 0.01]))
    logU = np.log(np.array([1e12, 1e10, 1e9]))
    assert np.array_equal(log_effective_own_ratio(np.log(15.0), np.log(1e9), logp, logU), logp)
    assert np.array_equal(log_effective_own_ratio(np.log(15.0), np.log(1e9), logp, np.inf), logp)


def test_an_exhausted_family_stops_gaining_from_more_sampling():
    law, N, D = get_law("repetition"), 1e9, 2e10
    p = np.array([0.1, 0.2, 0.4])  # 200 to 800 epochs of the 1e7-token family (R* about 18)
    P = np.stack([np.full(F, (1 - q) / (F - 1)) for q in p])
    P[:, -1] = p
    L = mixture_loss(law, TRUTH, N, D, P, np.arange(F), U)[:, -1]
    fresh = mixture_loss(law, TRUTH, N, D, P, np.arange(F), None)[:, -1]
    gain, fresh_gain = L[0] - L[-1], fresh[0] - fresh[-1]
    assert 0 < gain < 1e-3 * fresh_gain  # with fresh tokens the same step gains over 1000x more
    Rs = TRUTH["R_star"][0, -1]
    limit = predict_loss(BASE_LAW, {k: TRUTH[k][:, -1:] for k in BASE_LAW.params}, N, D, U[-1] * (1 + Rs) / D)
    assert L[-1] == pytest.approx(float(np.ravel(limit)[0]), rel=1e-3)  # D' saturates at U (1 + R*)


def test_transfer_repetition_with_tau_zero_is_the_repetition_law():
    rng = np.random.default_rng(2)
    P = rng.dirichlet(np.ones(F), size=4)
    nat = {**TRUTH, "tau": np.zeros((1, F, F))}
    want = mixture_loss(get_law("repetition"), TRUTH, 3e8, 8e9, P, np.arange(F), U)
    got = mixture_loss(get_law("transfer_repetition"), nat, 3e8, 8e9, P, np.arange(F), U)
    assert np.array_equal(got, want)


def test_effective_ratio_data_is_the_separable_law_table_at_the_true_R_star():
    truth, df = repetition_runs(seed=0)
    _, data, _ = prepare(df, get_law("repetition"))
    Rs = truth["R_star"][0][data.fam_R]
    eff = effective_ratio_data(data, np.log(Rs))
    tokens = np.exp(data.logp_R + data.logD_R)
    np.testing.assert_allclose(np.exp(eff.logp_R), _effective_tokens(tokens, np.exp(data.logU_R), Rs) / np.exp(
        data.logD_R), rtol=1e-12)
    fresh = mixture_runs("multilingual", mixture_truth("multilingual", 3), n_mixtures=2)
    _, fdata, _ = prepare(fresh, get_law("multilingual"))
    assert base_fits(get_law("repetition"), fdata, [np.log(15.0)]) == {}
    assert np.array_equal(effective_ratio_data(fdata, np.log(15.0)).logp_R, fdata.logp_R)  # U = inf


def _slsqp(nat, N, D, w):
    law = get_law("repetition")

    def f(p):
        return float(objective_at(law, nat, N, D, np.arange(F), np.maximum(p, 1e-12), w, U)[0][0])

    best = None
    for p0 in np.random.default_rng(0).dirichlet(np.ones(F), size=3):
        r = optimize.minimize(f, p0, method="SLSQP", bounds=[(1e-9, 1)] * F,
                              constraints={"type": "eq", "fun": lambda p: p.sum() - 1}, options={"ftol": 1e-14})
        best = r if best is None or r.fun < best.fun else best
    return best


@pytest.mark.slow
def test_coupled_solver_finds_the_true_optimum_of_the_repetition_law():
    N, D, w = 1e9, 2e10, np.full(F, 1.0 / F)
    law = get_law("repetition")
    p = solve_coupled(law, TRUTH, N, D, np.arange(F), F, w, np.zeros(F), np.ones(F), U)[0]
    ref = _slsqp(TRUTH, N, D, w)
    obj = objective_at(law, TRUTH, N, D, np.arange(F), p, w, U)[0][0]
    assert obj <= ref.fun + 1e-9
    np.testing.assert_allclose(p, ref.x, atol=2e-3)
    seed = {k: v for k, v in TRUTH.items() if k in BASE_LAW.params}
    p_fresh = solve_coupled(BASE_LAW, seed, N, D, np.arange(F), F, w, np.zeros(F), np.ones(F))[0]
    assert p[-1] < 0.5 * p_fresh[-1]  # the base law, blind to repetition, samples the 1e7 family more


@pytest.mark.slow
def test_point_fit_recovers_the_truth_and_predicts_the_largest_N_at_the_noise_level():
    truth, df = repetition_runs(seed=0)
    train, test = df[df["N"] < df["N"].max()], df[df["N"] == df["N"].max()]
    fit = fit_point(train, law="repetition")
    P = test[[f"p_fam{i}" for i in range(F)]].to_numpy()
    fam = test["family"].str[3:].astype(int).to_numpy()
    pred = np.array([mixture_loss(get_law("repetition"), fit.draws, n, d, p, np.arange(F), U)[0][j]
                     for n, d, p, j in zip(test["N"], test["D"], P, fam)])
    mape = np.mean(np.abs(pred / test["loss"].to_numpy() - 1))
    assert mape < 0.005  # 0.4% noise: the truth itself scores 0.32% here
    for j in (2, 4):  # families that repeat in most of their rows: R* and gamma recovered
        assert fit.draws["R_star"][0, j] == pytest.approx(truth["R_star"][0, j], rel=0.1)
        assert fit.draws["gamma"][0, j] == pytest.approx(truth["gamma"][0, j], abs=0.01)
