"""Optimal ratios (exact Lagrange + bisection) against a generic optimizer; the baselines they are compared with."""

import numpy as np
import pytest
from scipy.optimize import minimize

from multiscale.decisions.ratios import solve_ratios
from multiscale.decisions.recommend import optimal_ratios
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import get_law


def _slsqp(g, c, w, lo, hi):
    F = len(g)
    f = lambda p: float(np.sum(w * c * p ** (-g)))  # noqa: E731
    jac = lambda p: -w * c * g * p ** (-g - 1)  # noqa: E731
    x0 = np.clip(np.full(F, 1.0 / F), np.maximum(lo, 1e-9), hi)
    res = minimize(f, x0, jac=jac, method="SLSQP",
                   bounds=[(max(a, 1e-12), b) for a, b in zip(lo, hi)],
                   constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": lambda p: np.ones(F)}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    # status 8 ("positive directional derivative") is SLSQP stopping at the optimum under the
    # tight ftol; the comparison below checks the point itself.
    assert res.status in (0, 8), res.message
    return res.x


@pytest.mark.parametrize("seed", range(6))
def test_matches_generic_optimizer(seed):
    rng = np.random.default_rng(seed)
    F = 5
    g = rng.uniform(0.05, 0.6, F)
    c = rng.uniform(1.5, 4.0, F)
    w = rng.uniform(0.2, 2.0, F)
    lo = np.full(F, 0.02) if seed % 2 else np.zeros(F)
    hi = np.ones(F)
    if seed >= 3:  # binding caps and floors
        hi[np.argmax(w * g * c)] = 0.15
        lo[np.argmin(w * g * c)] = 0.12
    p = solve_ratios(g[None], c[None], w, lo, hi)[0]
    q = _slsqp(g, c, w, lo, hi)
    assert abs(p.sum() - 1) < 1e-12
    np.testing.assert_allclose(p, q, atol=1e-6)
    obj = lambda x: np.sum(w * c * x ** (-g))  # noqa: E731
    assert obj(p) <= obj(q) + 1e-12
    if seed >= 3:
        assert p[np.argmax(w * g * c)] == pytest.approx(0.15, abs=1e-12)
        assert p[np.argmin(w * g * c)] >= 0.12 - 1e-12


def test_unconstrained_closed_form_and_vectorized():
    rng = np.random.default_rng(1)
    g = rng.uniform(0.05, 0.5, (300, 4))
    P = solve_ratios(g, 1.0, np.ones(4))
    # Stationarity: gamma_i p_i^(-gamma_i - 1) equal across families for each draw.
    lam = g * P ** (-g - 1)
    np.testing.assert_allclose(lam / lam[:, :1], 1.0, rtol=1e-9)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)


def test_zero_gamma_family_gets_its_floor_and_infeasible_bounds():
    p = solve_ratios(np.array([[0.0, 0.2, 0.3]]), 1.0, np.ones(3), [0.05, 0, 0], None)[0]
    assert p[0] == pytest.approx(0.05) and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="infeasible"):
        solve_ratios(np.array([[0.1, 0.2]]), 1.0, np.ones(2), [0.6, 0.6], None)


def _fit(gammas, c=(2.0, 3.0, 4.0), S=1, spread=0.0, seed=0):
    rng = np.random.default_rng(seed)
    g = np.asarray(gammas)[None] * np.exp(spread * rng.standard_normal((S, len(gammas))))
    law = get_law("multilingual")
    F = len(gammas)
    draws = {"E": np.tile(np.asarray(c, float), (S, 1)), "A": np.full((S, F), 400.0),
             "B": np.full((S, F), 900.0), "alpha": np.full((S, F), 0.34),
             "beta": np.full((S, F), 0.3), "gamma": g}
    return PointFit(law=law, families=tuple(f"f{i}" for i in range(F)), shared=(), draws=draws,
                    N_ref=1e8, D_ref=1e10, n_runs={})


def test_recommendation_objectives_caps_and_baselines():
    fit = _fit([0.1, 0.2, 0.4], S=200, spread=0.1)
    rec = optimal_ratios(fit, 1.2e9, 5e10, objective="normalized")
    d = rec.to_dict()
    assert d["loss_units"] == "nats/token"
    assert sum(d["ratios"].values()) == pytest.approx(1.0)
    fam = d["families"]["f2"]
    assert fam["p_star"]["q05"] < fam["p_star"]["median"] < fam["p_star"]["q95"]
    assert fam["prob_above_uniform"] > 0.9
    # p* minimizes the objective, so every baseline is worse in every draw
    assert d["baselines"]["uniform"]["minus_p_star"]["q05"] > 0
    raw = optimal_ratios(fit, 1.2e9, 5e10, objective="raw")
    assert not np.allclose(raw.p_star, rec.p_star)
    tok = {"f0": 6e9, "f1": 6e9, "f2": 2e9}
    capped = optimal_ratios(fit, 1e9, 2e10, available_tokens=tok, epochs=2)
    assert np.all(capped.p_star[:, 2] <= 2 * 2e9 / 2e10 + 1e-12)
    assert "unimax" in capped.baselines and "temperature_0.3" in capped.baselines
    with pytest.raises(ValueError, match="caps sum to"):
        optimal_ratios(fit, 1e9, 1e11, available_tokens=tok, epochs=1)
    with pytest.raises(ValueError, match="weights: unknown family 'nope'"):
        optimal_ratios(fit, 1e9, 1e10, weights={"nope": 1.0})
    assert "f0" in str(rec) and "nats/token" in str(rec)


@pytest.mark.parametrize("kw, message", [
    (dict(floor=float("nan")), "floor: the value for every family is nan"),
    (dict(floor={"f0": float("nan")}), "floor: the value of family 'f0' is not finite"),
    (dict(floor="f0=0.1,f0=0.2"), "floor: family 'f0' is given twice"),
    (dict(floor=1.5), r"floor: .* in \[0, 1\]"),
    (dict(floor=0.4), "floors sum to 1.2 > 1"),
    (dict(weights={"f0": float("nan")}), "weights: the value of family 'f0' is not finite"),
    (dict(weights={"f0": -1.0}), "weights: family 'f0' is negative"),
    (dict(weights=0.0), "weights must not all be zero"),
    (dict(weights={"nope": 1.0}), "weights: unknown family 'nope'; the known families are: f0, f1, f2"),
    (dict(caps=0.0), r"caps: .* in \(0, 1\]"),
    (dict(caps={"f1": float("inf")}), "caps: the value of family 'f1' is not finite"),
    (dict(caps=0.2), "caps sum to 0.6 < 1"),
    (dict(caps={"f0": 0.1}, floor={"f0": 0.2}), r"floor: above the cap for families \['f0'\]"),
    (dict(available_tokens={"f0": -5.0, "f1": 1e9, "f2": 1e9}), "available_tokens: family 'f0' is negative"),
    (dict(available_tokens={"f0": 0.0, "f1": 1e9, "f2": 1e9}), "available_tokens: .*f0.* > 0"),
    (dict(available_tokens={"f0": 1e9, "f1": 1e9, "f2": 1e9}, epochs=float("nan")), "epochs must be a finite"),
    (dict(available_tokens={"f0": 1e9}), r"available tokens missing for families \['f1', 'f2'\]"),
    (dict(objective="mean"), "objective must be 'normalized' or 'raw'"),
])
def test_bad_arguments_are_refused_naming_them(kw, message):
    from multiscale.errors import InputError

    with pytest.raises(InputError, match=message):
        optimal_ratios(_fit([0.1, 0.2, 0.4]), 1e9, 1e10, **kw)


@pytest.mark.parametrize("N, D", [(float("nan"), 1e10), (1e9, float("inf")), (-1.0, 1e10)])
def test_bad_target_is_refused(N, D):
    from multiscale.errors import InputError

    bad = "N" if not (np.isfinite(N) and N > 0) else "D"
    with pytest.raises(InputError, match=f"^{bad} must be a finite positive number") as err:
        optimal_ratios(_fit([0.1, 0.2, 0.4]), N, D)
    assert err.value.arg == bad


def test_per_family_values_scalar_text_and_mapping_agree():
    from multiscale.decisions.recommend import family_values

    fams = ("f0", "f1", "f2")
    np.testing.assert_array_equal(family_values(None, fams, arg="floor", default=0.0), [0, 0, 0])
    np.testing.assert_array_equal(family_values(0.1, fams, arg="floor", default=0.0), [0.1] * 3)
    np.testing.assert_array_equal(family_values("0.1", fams, arg="floor", default=0.0), [0.1] * 3)
    np.testing.assert_array_equal(family_values("f1=0.2", fams, arg="floor", default=0.0), [0, 0.2, 0])
    np.testing.assert_array_equal(family_values({"f1": 0.2}, fams, arg="floor", default=0.0), [0, 0.2, 0])
    rec = optimal_ratios(_fit([0.1, 0.2, 0.4]), 1e9, 1e10, floor="f0=0.3", caps=0.5)
    assert rec.p_star[0, 0] == pytest.approx(0.3) and rec.p_star.max() <= 0.5 + 1e-12



# ---------------------------------------------------------------------- decisions by expected regret


def _posterior_fit(S=400, F=3, seed=0):
    from multiscale.laws.fits import BayesFit

    rng = np.random.default_rng(seed)
    g = np.exp(np.log([0.1, 0.25, 0.4][:F]) + 0.5 * rng.standard_normal((S, F)))  # skewed gamma posteriors
    draws = {"E": np.full((S, F), 1.6), "A": np.full((S, F), 400.0), "B": np.full((S, F), 900.0),
             "alpha": np.full((S, F), 0.3), "beta": np.full((S, F), 0.3), "gamma": g}
    fams = tuple(f"f{j}" for j in range(F))
    return BayesFit(law=get_law("multilingual"), families=fams, shared=(), draws=draws, N_ref=1e8, D_ref=1e10,
                    n_runs={f: 10 for f in fams})


def _simplex_grid(step=0.005):
    a = np.arange(step, 1.0, step)
    A, B = np.meshgrid(a, a, indexing="ij")
    P = np.stack([A.ravel(), B.ravel(), 1 - A.ravel() - B.ravel()], axis=1)
    return P[(P > step / 2).all(axis=1)]


@pytest.mark.parametrize("objective", ["normalized", "raw"])
def test_regret_and_robust_p_star_against_brute_force(objective):
    """Over a dense grid of 3-family mixtures: (a) no grid mixture beats any draw's p*_s, so the
    regret of every candidate equals its objective minus the grid minimum (to the grid's
    resolution); (b) the robust p* is at least as good as the best grid mixture on the posterior
    mean objective, and lies next to it; (c) P(best) counts the winning candidate per draw."""
    fit = _posterior_fit()
    rec = optimal_ratios(fit, 1e9, 1e11, objective=objective)
    g = fit.draws["gamma"]
    c = np.ones_like(g) * (1.0 if objective == "normalized" else 1.6 + 400.0 * 1e9 ** -0.3 + 900.0 * 1e11 ** -0.3)
    grid = _simplex_grid()
    obj_grid = np.einsum("sf,gsf->gs", c / 3, grid[:, None, :] ** (-g[None]))  # (G, S)
    best_grid = obj_grid.min(axis=0)
    assert np.all(rec.objective_star <= best_grid + 1e-12)
    assert np.all(best_grid - rec.objective_star < 1e-4 * rec.objective_star)
    table = rec.decision_table()
    for name, cand in rec.candidates.items():
        q = np.array([cand["ratios"][f] for f in fit.families])
        obj_q = np.sum(c / 3 * q ** (-g), axis=1)
        regret = obj_q - rec.objective_star
        assert table[name]["expected_regret"] == pytest.approx(regret.mean(), rel=1e-9, abs=1e-15)
        assert regret.min() >= -1e-12 and table[name]["regret"]["q95"] == pytest.approx(np.quantile(regret, 0.95))
        assert np.mean(obj_q - best_grid) == pytest.approx(regret.mean(), abs=1e-4 * rec.objective_star.mean())
    mean_grid = obj_grid.mean(axis=1)
    robust = np.array([rec.ratios[f] for f in fit.families])
    assert np.mean(np.sum(c / 3 * robust ** (-g), axis=1)) <= mean_grid.min() + 1e-12
    assert np.abs(robust - grid[np.argmin(mean_grid)]).max() < 0.01
    # the robust p* has the least expected regret of the candidates; here strictly less than the median's
    regrets = {k: v["expected_regret"] for k, v in table.items()}
    assert min(regrets, key=regrets.get) == "robust p*"
    assert regrets["robust p*"] < regrets["median p*"]
    objs = np.stack([rec.candidates[k]["objective"] for k in table])
    winners = np.argmin(objs, axis=0)
    for i, k in enumerate(table):
        assert table[k]["prob_best"] == pytest.approx(np.mean(winners == i))
    assert sum(v["prob_best"] for v in table.values()) == pytest.approx(1.0)


def test_robust_solver_matches_a_generic_one_with_floors_and_caps():
    from multiscale.decisions.ratios import solve_robust

    rng = np.random.default_rng(3)
    S, F = 300, 4
    g = rng.uniform(0.05, 0.6, (S, F))
    c = rng.uniform(1.5, 4.0, (S, F))
    w = np.array([0.1, 0.2, 0.3, 0.4])
    lo, hi = np.array([0.05, 0.0, 0.3, 0.0]), np.array([1.0, 0.1, 1.0, 1.0])
    p = solve_robust(g, c, w, lo, hi)
    f = lambda x: float(np.sum(w * np.mean(c * x ** (-g), axis=0)))  # noqa: E731
    res = minimize(f, np.array([0.3, 0.1, 0.3, 0.3]), method="SLSQP",
                   bounds=[(max(a, 1e-9), b) for a, b in zip(lo, hi)],
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert abs(p.sum() - 1) < 1e-12 and np.all(p >= lo - 1e-15) and np.all(p <= hi + 1e-15)
    np.testing.assert_allclose(p, res.x, atol=1e-5)
    assert f(p) <= f(res.x) + 1e-12
    # one draw: exactly the per-draw solver's answer
    np.testing.assert_allclose(solve_robust(g[:1], c[:1], w, lo, hi), solve_ratios(g[:1], c[:1], w, lo, hi)[0],
                               atol=1e-12)


def test_recommendation_reports_regret_and_the_robust_choice():
    rec = optimal_ratios(_posterior_fit(), 1e9, 1e11)
    d = rec.to_dict()
    assert d["recommended"] == "robust p*" and d["ratios"] == rec.ratios
    assert sum(d["median_ratios"].values()) == pytest.approx(1.0) and d["median_ratios"] != d["ratios"]
    assert {"robust p*", "median p*", "uniform"} <= set(d["decisions"])
    for e in d["decisions"].values():
        assert {"ratios", "objective", "expected_regret", "regret", "prob_best"} <= set(e)
    b = d["baselines"]["uniform"]
    assert b["minus_recommended"]["median"] > 0 and 0.5 < b["prob_recommended_better"] <= 1.0
    text = str(rec)
    assert "robust p*" in text and "regret" in text and "P(best)" in text


def test_losses_at_the_target_carry_the_extrapolation_term_and_decisions_do_not():
    model = {"kappa": 0.05, "log_N_range": [np.log(5e7), np.log(2e8)], "log_D_range": [np.log(1e9), np.log(1e10)],
             "unit_N": 1.0, "unit_D": 1.0}
    plain_fit, term_fit = _posterior_fit(), _posterior_fit()
    term_fit.extrapolation = model
    plain, far = optimal_ratios(plain_fit, 8e8, 1e10), optimal_ratios(term_fit, 8e8, 1e10)
    assert far.extrapolation_sd == pytest.approx(0.05 * np.log(4)) and plain.extrapolation_sd == 0
    assert far.ratios == plain.ratios
    np.testing.assert_array_equal(far.p_star, plain.p_star)
    np.testing.assert_array_equal(far.candidates["uniform"]["objective"], plain.candidates["uniform"]["objective"])
    # the same draws of the law, each times exp(sd z): log(far / plain) has sd `sd` (400 draws: +-4%)
    np.testing.assert_allclose(np.std(np.log(far.loss_star / plain.loss_star), axis=0), far.extrapolation_sd,
                               rtol=0.15)
    assert far.to_dict()["extrapolation_sd"] == pytest.approx(far.extrapolation_sd)
    inside = optimal_ratios(term_fit, 1e8, 5e9)  # within the fitted range: nothing added
    np.testing.assert_array_equal(inside.loss_star, optimal_ratios(plain_fit, 1e8, 5e9).loss_star)


def test_a_separable_law_takes_the_closed_form_and_reads_no_unique_tokens():
    """The law definition picks the solver: a separable law's p* is the exact water-filling one
    (per draw and robust), and target unique tokens, which its loss cannot read, are refused."""
    from multiscale.decisions.ratios import solve_robust
    from multiscale.errors import InputError

    fit = _fit([0.1, 0.2, 0.4], S=50, spread=0.1)
    rec = optimal_ratios(fit, 1.2e9, 5e10, objective="normalized", baselines=False)
    assert rec.solver == "exact (separable)" and rec.to_dict()["solver"] == rec.solver
    w = np.full(3, 1 / 3)
    np.testing.assert_array_equal(rec.p_star, solve_ratios(fit.draws["gamma"], 1.0, w))
    robust = solve_robust(fit.draws["gamma"], np.ones_like(fit.draws["gamma"]), w)
    np.testing.assert_array_equal(list(rec.ratios.values()), robust)
    with pytest.raises(InputError, match="unique_tokens: law 'multilingual' does not read unique tokens"):
        optimal_ratios(fit, 1.2e9, 5e10, unique_tokens="f0=1e9")
