"""The coupled p* solver: agrees with the exact separable solver on the seed law and with scipy's
SLSQP on coupled laws; bounds; the recommendation of a fit of a mixture law."""

import numpy as np
import pytest
from scipy.optimize import minimize

from multiscale.laws import get_law
from multiscale.laws.coupled import objective_at, recommend_coupled, solve_coupled
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import scale_term
from multiscale.laws.optimal import optimal_ratios, solve_ratios

RNG = np.random.default_rng(1)
S, F = 40, 4
SEED = {"E": RNG.uniform(1, 2, (S, F)), "A": RNG.uniform(100, 500, (S, F)), "B": RNG.uniform(200, 900, (S, F)),
        "alpha": RNG.uniform(0.2, 0.4, (S, F)), "beta": RNG.uniform(0.2, 0.4, (S, F)),
        "gamma": RNG.uniform(0.05, 0.4, (S, F))}
W = np.array([0.4, 0.3, 0.2, 0.1])
LO, HI = np.full(F, 0.02), np.full(F, 0.7)


@pytest.mark.parametrize("normalized", [False, True])
def test_coupled_solver_agrees_with_the_exact_separable_one_on_the_seed_law(normalized):
    law = get_law("multilingual")
    P = solve_coupled(law, SEED, 1e9, 5e10, np.arange(F), F, W, LO, HI, normalized=normalized)
    c = np.ones((S, F)) if normalized else scale_term(law, SEED, 1e9, 5e10)
    Q = solve_ratios(SEED["gamma"], c, W, LO, HI)
    np.testing.assert_allclose(P, Q, atol=1e-6)
    o1, _ = objective_at(law, SEED, 1e9, 5e10, np.arange(F), P, W, normalized=normalized)
    o2, _ = objective_at(law, SEED, 1e9, 5e10, np.arange(F), Q, W, normalized=normalized)
    np.testing.assert_allclose(o1, o2, rtol=1e-10)
    assert np.all(P >= LO - 1e-12) and np.all(P <= HI + 1e-12) and np.allclose(P.sum(axis=1), 1)


def _slsqp(law, nat1, w, lo, hi, U=None):
    def f(p):
        return float(objective_at(law, nat1, 1e9, 5e10, np.arange(F), p, w, U)[0][0])
    best = None
    for x0 in (np.full(F, 1 / F), np.array([0.55, 0.25, 0.1, 0.1])):
        r = minimize(f, x0, method="SLSQP", bounds=list(zip(lo, hi)), tol=1e-14,
                     constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}], options={"maxiter": 500})
        best = r if best is None or r.fun < best.fun else best
    return best


@pytest.mark.parametrize("name", ["transfer", "mixing", "repetition"])
def test_coupled_solver_matches_slsqp_on_coupled_laws(name):
    law = get_law(name)
    nat = {n: SEED[n][:3] for n in law.params if n in SEED}
    if "tau" in law.matrix:
        nat["tau"] = RNG.uniform(0, 0.4, (3, F, F)) * (1 - np.eye(F))
    if "t" in law.matrix:
        nat["t"] = RNG.uniform(-1, 2, (3, F, F)) * (1 - np.eye(F))
        nat["k"] = RNG.uniform(0.2, 0.6, (3, F))
    U = None
    if law.uses_unique_tokens:
        nat["R_star"] = RNG.uniform(5, 20, (3, F))
        U = np.array([1e11, 1e10, 3e9, 1e9])
    P = solve_coupled(law, nat, 1e9, 5e10, np.arange(F), F, W, LO, HI, U)
    for s in range(3):
        nat1 = {k: v[s:s + 1] for k, v in nat.items()}
        ref = _slsqp(law, nat1, W, LO, HI, U)
        ours = objective_at(law, nat1, 1e9, 5e10, np.arange(F), P[s], W, U)[0][0]
        assert ours <= ref.fun + 1e-9
        np.testing.assert_allclose(P[s], ref.x, atol=2e-3)


def _fit(law_name, draws, mix=()):
    law = get_law(law_name)
    fams = tuple(f"fam{i}" for i in range(F))
    return PointFit(law=law, families=fams, shared=(), draws=draws, N_ref=1e8, D_ref=1e10,
                    n_runs=dict.fromkeys(fams, 50), mixture_families=fams if law.matrix else ())


def test_optimal_ratios_dispatches_a_coupled_law_and_agrees_at_tau_zero():
    one = {k: v[:1] for k, v in SEED.items()}
    seed = optimal_ratios(_fit("multilingual", one), 1e9, 5e10, objective="raw", floor=0.02, caps=0.7)
    rec = optimal_ratios(_fit("transfer", {**one, "tau": np.zeros((1, F, F))}), 1e9, 5e10, objective="raw",
                         floor=0.02, caps=0.7)
    assert rec.mixture_families == seed.families
    np.testing.assert_allclose(list(rec.ratios.values()), list(seed.ratios.values()), atol=1e-6)
    d = rec.to_dict()
    assert d["solver"].startswith("coupled") and "uniform" in d["baselines"]
    assert d["baselines"]["uniform"]["minus_p_star"]["median"] >= -1e-12


def test_recommend_reads_the_target_unique_tokens():
    one = {k: v[:1] for k, v in SEED.items()}
    fit = _fit("repetition", {**one, "R_star": np.full((1, F), 10.0)})
    free = recommend_coupled(fit, 1e9, 1e12, objective="raw")
    top = max(free.ratios, key=free.ratios.get)
    scarce = recommend_coupled(fit, 1e9, 1e12, objective="raw", unique_tokens=f"{top}=1e9")
    assert scarce.ratios[top] < free.ratios[top] - 1e-4  # its tokens repeat: they are worth less
    assert scarce.unique_tokens == {top: 1e9}
