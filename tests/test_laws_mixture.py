"""Laws of the whole mixture: forms, FitData's mixture and unique tokens, point fits, saving."""

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic_mixture import mixture_runs, mixture_truth

from multiscale.laws import fit_point, get_law, load_fit, predict_loss
from multiscale.laws.data import prepare
from multiscale.laws.forms import effective_logD, log_loss, mixture_loss, raw_from_natural
from multiscale.runs import RunTableError

RNG = np.random.default_rng(0)
F = 4
P = RNG.dirichlet(np.ones(F), size=6)  # six mixtures (S=6 evaluation points)
SEED = {"E": RNG.uniform(1, 2, (1, F)), "A": RNG.uniform(100, 500, (1, F)), "B": RNG.uniform(200, 900, (1, F)),
        "alpha": RNG.uniform(0.2, 0.4, (1, F)), "beta": RNG.uniform(0.2, 0.4, (1, F)),
        "gamma": RNG.uniform(0.05, 0.4, (1, F)), "c": RNG.uniform(2, 4, (1, F))}


@pytest.mark.parametrize("name", ["multilingual", "chinchilla", "ratio"])
def test_the_separable_laws_are_special_cases_of_the_generic_log_loss(name):
    law = get_law(name)
    nat = {n: SEED[n] for n in law.params}
    th = raw_from_natural(law, nat)
    got = np.exp(log_loss(law, th, np.log(3e7), np.log(4e9), np.log(P)))
    want = np.broadcast_to(predict_loss(law, nat, 3e7, 4e9, P), P.shape)  # chinchilla ignores p
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F)), want, rtol=1e-12, atol=0)


def _with(law_name, **extra):
    law = get_law(law_name)
    nat = {n: SEED[n] for n in law.params if n in SEED}
    nat.update(extra)
    return law, nat


def test_transfer_with_tau_zero_and_repetition_without_repeats_are_exactly_the_separable_law():
    ml = get_law("multilingual")
    nat0 = {n: SEED[n] for n in ml.params}
    seed = np.exp(log_loss(ml, raw_from_natural(ml, nat0), np.log(3e7), np.log(4e9), np.log(P)))
    np.testing.assert_allclose(seed, predict_loss(ml, nat0, 3e7, 4e9, P), rtol=1e-12, atol=0)
    law, nat = _with("transfer", tau=np.zeros((1, F, F)))
    assert np.array_equal(mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F)), seed)
    law, nat = _with("repetition", R_star=np.full((1, F), 15.0))
    U = 4e9 * P.max(axis=0) * 1.01  # every family has more unique tokens than it reads
    assert np.array_equal(mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F), U), seed)
    assert np.array_equal(mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F), None), seed)
    law, nat = _with("transfer_repetition", R_star=np.full((1, F), 15.0), tau=np.zeros((1, F, F)))
    assert np.array_equal(mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F), U), seed)


def test_repetition_follows_muennighoff_effective_data():
    U, D, p, Rs = 1e8, 1e10, 0.1, 15.0  # 1e9 tokens of 1e8 unique: 9 epochs beyond the first
    R = p * D / U - 1
    Dp = U + U * Rs * (1 - np.exp(-R / Rs))
    assert np.isclose(np.exp(effective_logD(np.log(Rs), np.log(D), np.log(p), np.log(U))), Dp / p, rtol=1e-13)
    law, nat = _with("repetition", R_star=np.full((1, F), Rs))
    Pm = np.full((1, F), 1.0 / F)
    small = mixture_loss(law, nat, 3e7, 1e10, Pm, np.arange(F), np.full(F, 1e8))
    fresh = mixture_loss(law, nat, 3e7, 1e10, Pm, np.arange(F), None)
    assert np.all(small > fresh)  # repeated tokens are worth less than fresh ones


def test_transfer_and_mixing_formulas():
    tau = RNG.uniform(0, 0.3, (1, F, F)) * (1 - np.eye(F))
    law, nat = _with("transfer", tau=tau)
    got = mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F))
    s = nat["E"] + nat["A"] * 3e7 ** -nat["alpha"] + nat["B"] * 4e9 ** -nat["beta"]
    pe = P + np.einsum("fm,sm->sf", tau[0], P)
    np.testing.assert_allclose(got, s * pe ** -nat["gamma"], rtol=1e-12)
    t = RNG.normal(size=(1, F, F)) * (1 - np.eye(F))
    law, nat = _with("mixing", k=np.full((1, F), 0.3), t=t)
    got = mixture_loss(law, nat, 3e7, 4e9, P, np.arange(F))
    np.testing.assert_allclose(got, s + 0.3 * np.exp(np.einsum("fm,sm->sf", t[0], P)), rtol=1e-12)


def _table(law, F=3, seed=0, **kw):
    truth = mixture_truth(law, F, seed=seed)
    return truth, mixture_runs(law, truth, seed=seed, n_mixtures=6, **kw)


def test_fitdata_carries_the_mixture_and_unique_tokens():
    _, df = _table("repetition")
    _, data, _ = prepare(df, get_law("repetition"))
    assert data.mixture_families == ("fam0", "fam1", "fam2")
    assert data.P_RxM.shape == (len(df), 3) and np.allclose(data.P_RxM.sum(axis=1), 1)
    assert list(data.fam_in_mix_F) == [0, 1, 2]
    assert data.unique_tokens_F() == pytest.approx({"fam0": 5e9, "fam1": 1e9, "fam2": 2e8})
    _, data, _ = prepare(df.drop(columns="unique_tokens"), get_law("multilingual"))
    assert np.all(np.isinf(data.logU_R)) and data.unique_tokens_F() == {}


def test_a_mixture_law_needs_the_mixture_columns():
    _, df = _table("transfer")
    with pytest.raises(RunTableError, match="p_<family>"):
        fit_point(df.drop(columns=[c for c in df.columns if c.startswith("p_")]), law="transfer")
    with pytest.raises(Exception, match="cannot share"):
        fit_point(df, law="transfer", shared="alpha")


def test_transfer_point_fit_recovers_tau_and_saves(tmp_path):
    truth, df = _table("transfer", seed=3, noise=0.002)
    fit = fit_point(df, law="transfer")
    assert fit.mixture_families == ("fam0", "fam1", "fam2")
    assert np.abs(fit.draws["tau"] - truth["tau"]).max() < 0.05
    assert np.abs(fit.draws["gamma"] - truth["gamma"]).max() < 0.03
    assert np.all(np.diag(fit.draws["tau"][0]) == 0)
    back = load_fit(fit.save(tmp_path / "fit"))
    for n in fit.draws:
        np.testing.assert_array_equal(back.draws[n], fit.draws[n])
    assert back.mixture_families == fit.mixture_families
    assert back.summary()["fam1"]["tau"]["fam0"]["median"] == fit.draws["tau"][0, 1, 0]


def test_repetition_point_fit_keeps_the_unique_tokens_it_saw(tmp_path):
    truth, df = _table("repetition", seed=2, noise=0.002, D=(2e9, 2e10, 1e11))
    fit = fit_point(df, law="repetition")
    assert fit.unique_tokens == pytest.approx({"fam0": 5e9, "fam1": 1e9, "fam2": 2e8})
    assert load_fit(fit.save(tmp_path / "fit")).unique_tokens == fit.unique_tokens
    assert np.abs(fit.draws["gamma"] - truth["gamma"]).max() < 0.03


def test_unique_tokens_column_is_read_per_row():
    _, df = _table("repetition")
    df = pd.concat([df.iloc[:3].assign(unique_tokens=np.nan), df.iloc[3:]])
    _, data, _ = prepare(df, get_law("repetition"))
    assert np.isinf(data.logU_R[:3]).all() and np.isfinite(data.logU_R[3:]).all()


@pytest.mark.slow  # NUTS
def test_transfer_nuts_saves_loads_and_has_a_pointwise_log_likelihood(tmp_path):
    import arviz as az

    from multiscale.laws import fit_bayes

    truth, df = _table("transfer", seed=3, noise=0.004)
    fit = fit_bayes(df, law="transfer", chains=2, draws=200, warmup=200, seed=0, warn=False,
                    chain_method="sequential")
    assert fit.draws["tau"].shape == (400, 3, 3) and np.all(fit.draws["tau"][:, [0, 1, 2], [0, 1, 2]] == 0)
    assert fit.idata.log_likelihood["y"].shape == (2, 200, len(df))
    assert fit.options["target_accept"] == 0.85  # TARGET_ACCEPT: the transfer law has no exp-linear ridge
    assert np.isfinite(az.loo(fit.idata, var_name="y").elpd_loo)
    back = load_fit(fit.save(tmp_path / "fit"))
    np.testing.assert_array_equal(back.draws["tau"], fit.draws["tau"])
    lo, hi = np.quantile(fit.draws["gamma"], [0.005, 0.995], axis=0)
    assert np.all((truth["gamma"][0] > lo - 0.02) & (truth["gamma"][0] < hi + 0.02))


@pytest.mark.slow  # NUTS
def test_mixing_nuts_defaults_to_the_mixing_target_accept_and_keeps_an_explicit_one():
    from multiscale.laws import fit_bayes
    from multiscale.laws.bayes import TARGET_ACCEPT_MIXING

    _, df = _table("mixing", seed=1)
    fit = fit_bayes(df, law="mixing", chains=1, draws=100, warmup=100, seed=0, warn=False,
                    chain_method="sequential")
    assert fit.options["target_accept"] == TARGET_ACCEPT_MIXING == 0.95
    assert fit.draws["t"].shape == (100, 3, 3) and np.all(fit.draws["t"][:, [0, 1, 2], [0, 1, 2]] == 0)
    assert np.all(np.isfinite(fit.draws["t"])) and np.ptp(fit.draws["t"][:, 0, 1]) > 0
    again = fit_bayes(df, law="mixing", chains=1, draws=50, warmup=50, seed=0, warn=False,
                      chain_method="sequential", target_accept=0.8)
    assert again.options["target_accept"] == 0.8


def _natural_draws(law, data, z, ybar):
    """The natural draws of standard site draws z (chain, draw, ...) on `data`'s one table."""
    from multiscale.laws.bayes import Layout, _natural, offdiag_slots
    from multiscale.laws.forms import offdiag_mask

    lay = Layout(np.array([ybar]), np.array([np.log(data.N_ref)]), np.array([np.log(data.D_ref)]),
                 np.zeros(data.n_families, int))
    M = len(data.mixture_families)
    return _natural(law, z, lay, (), M, offdiag_slots(law, data), offdiag_mask(data.fam_in_mix_F, M))


def test_nuts_tau_site_maps_to_natural_tau_by_source_and_family():
    # z_tau holds the off-diagonal pairs only, in (mixture family m, family i) order: its entry
    # for (m, i) is tau[i, m] of the natural draws, times the prior scale, and the diagonal is 0;
    # no sampling: two fake chains of three draws
    from multiscale.laws.bayes import EXTRA_PRIORS, offdiag_slots

    law = get_law("transfer")
    _, df = _table("transfer")
    _, data, _ = prepare(df, law)
    F = data.n_families
    z = {f"z_{s}": np.zeros((2, 3, F)) for s in ("log_E", "log_Nterm", "log_Dterm", "log_alpha", "log_beta",
                                                   "log_gamma")}
    slots = offdiag_slots(law, data)
    assert len(slots) == F * F - F
    z["z_tau"] = np.arange(2 * 3 * len(slots), dtype=float).reshape(2, 3, len(slots)) + 1.0
    nat = _natural_draws(law, data, z, ybar=1.0)
    scale = EXTRA_PRIORS["tau"][1]
    for m, i in [(0, 2), (2, 0), (1, 2)]:
        k = list(slots).index(m * F + i)
        np.testing.assert_allclose(nat["tau"][1, 2, i, m], scale * z["z_tau"][1, 2, k])
    assert nat["tau"].shape == (2, 3, F, F) and np.all(nat["tau"][:, :, np.arange(F), np.arange(F)] == 0)


def test_nuts_mixing_sites_map_to_e_k_and_t_by_source_and_family():
    # E and k come from the level log(E + k) and the share logit(k / (E + k)); z_t's entry for the
    # off-diagonal pair (m, i) is t[i, m] in units of the prior's scale, with the diagonal 0; no
    # sampling: two fake chains of three draws
    from multiscale.laws.bayes import EXTRA_PRIORS, LEVEL_SITES, offdiag_slots

    law = get_law("mixing")
    _, df = _table("mixing")
    _, data, _ = prepare(df, law)
    F = data.n_families
    z = {f"z_{s}": np.zeros((2, 3, F)) for s in ("log_Nterm", "log_Dterm", "log_alpha", "log_beta")}
    z["z_level"] = np.linspace(-1.0, 1.0, 2 * 3 * F).reshape(2, 3, F)
    z["z_share"] = np.linspace(1.0, -2.0, 2 * 3 * F).reshape(2, 3, F)
    slots = offdiag_slots(law, data)
    z["z_t"] = np.arange(2 * 3 * len(slots), dtype=float).reshape(2, 3, len(slots)) + 1.0
    ybar = 1.0
    nat = _natural_draws(law, data, z, ybar=ybar)
    (l0, ls), (s0, ss) = LEVEL_SITES["level"], LEVEL_SITES["share"]
    m, i = 0, 2
    level, share = np.exp(ybar + l0 + ls * z["z_level"][1, 2, i]), 1 / (1 + np.exp(-(s0 + ss * z["z_share"][1, 2, i])))
    np.testing.assert_allclose([nat["E"][1, 2, i], nat["k"][1, 2, i]], [level * (1 - share), level * share])
    np.testing.assert_allclose(nat["t"][1, 2, i, m], EXTRA_PRIORS["t"] * z["z_t"][1, 2, list(slots).index(m * F + i)])
    assert nat["t"].shape == (2, 3, F, F) and np.all(nat["t"][:, :, np.arange(F), np.arange(F)] == 0)


def test_mixing_level_share_prior_is_the_prior_on_log_e_and_log_k():
    # the factor plus the sites' own densities is log N(log E) + log N(log k) up to a constant
    from scipy import stats

    from multiscale.laws.bayes import EXTRA_PRIORS, PRIORS, _e_and_k, _prior_e_k

    rng = np.random.default_rng(0)
    zl, zs, ybar = 2 * rng.normal(size=50), 2 * rng.normal(size=50), 1.1
    le, lk = _e_and_k(ybar, zl, zs, np)
    total = np.array([_prior_e_k(ybar, zl[s:s + 1], zs[s:s + 1], le[s:s + 1], lk[s:s + 1], np) for s in range(50)])
    total = total + stats.norm.logpdf(zl) + stats.norm.logpdf(zs)
    want = (stats.norm.logpdf(le, ybar + PRIORS["log_E"][0], PRIORS["log_E"][1])
            + stats.norm.logpdf(lk, ybar + EXTRA_PRIORS["log_k"][0], EXTRA_PRIORS["log_k"][1]))
    assert np.ptp(want) > 1.0  # the check below can fail
    np.testing.assert_allclose(total - want, (total - want)[0], atol=1e-9)
    # and the map (z_level, z_share) -> (log E, log k) has a constant Jacobian (finite differences)
    h = 1e-6
    d_l = (np.array(_e_and_k(ybar, zl + h, zs, np)) - np.array(_e_and_k(ybar, zl - h, zs, np))) / (2 * h)
    d_s = (np.array(_e_and_k(ybar, zl, zs + h, np)) - np.array(_e_and_k(ybar, zl, zs - h, np))) / (2 * h)
    det = d_l[0] * d_s[1] - d_l[1] * d_s[0]
    np.testing.assert_allclose(det, det[0], rtol=1e-6)
