"""Optimal ratios (exact Lagrange + bisection) against a generic optimizer; the baselines they are compared with."""

import numpy as np
import pytest
from scipy.optimize import minimize

from multiscale.laws import baselines
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import get_law
from multiscale.laws.optimal import optimal_ratios, solve_ratios


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


def test_laws_baselines_is_the_mixture_module():
    # one implementation of each baseline (multiscale.mixture, tested in test_mixture.py); the
    # recommendation compares p* with exactly these
    import multiscale.mixture as mx

    for name in ("uniform", "proportional", "temperature", "unimax", "all_baselines", "TEMPERATURE_TAUS",
                 "DEFAULT_MAX_EPOCHS"):
        assert getattr(baselines, name) is getattr(mx, name), name


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
    (dict(caps={"f0": 0.1}, floor={"f0": 0.2}), r"floor above cap for families \['f0'\]"),
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

    with pytest.raises(InputError, match="N and D must be finite positive numbers"):
        optimal_ratios(_fit([0.1, 0.2, 0.4]), N, D)


def test_per_family_values_scalar_text_and_mapping_agree():
    from multiscale.laws.optimal import family_values

    fams = ("f0", "f1", "f2")
    np.testing.assert_array_equal(family_values(None, fams, what="floor", default=0.0), [0, 0, 0])
    np.testing.assert_array_equal(family_values(0.1, fams, what="floor", default=0.0), [0.1] * 3)
    np.testing.assert_array_equal(family_values("0.1", fams, what="floor", default=0.0), [0.1] * 3)
    np.testing.assert_array_equal(family_values("f1=0.2", fams, what="floor", default=0.0), [0, 0.2, 0])
    np.testing.assert_array_equal(family_values({"f1": 0.2}, fams, what="floor", default=0.0), [0, 0.2, 0])
    rec = optimal_ratios(_fit([0.1, 0.2, 0.4]), 1e9, 1e10, floor="f0=0.3", caps=0.5)
    assert rec.p_star[0, 0] == pytest.approx(0.3) and rec.p_star.max() <= 0.5 + 1e-12

