"""The coupled p* solver: agrees with the exact separable solver on the separable law and with scipy's
SLSQP on coupled laws; bounds; the recommendation of a fit of a mixture law."""

import json

import numpy as np
import pytest
from scipy.optimize import minimize

from multiscale.decisions.ratios import objective_at, solve_coupled, solve_ratios
from multiscale.decisions.recommend import optimal_ratios
from multiscale.decisions.recommend import optimal_ratios as recommend_coupled
from multiscale.laws import get_law
from multiscale.laws.fits import BayesFit, PointFit
from multiscale.laws.forms import scale_term

RNG = np.random.default_rng(1)
S, F = 40, 4
SEED = {"E": RNG.uniform(1, 2, (S, F)), "A": RNG.uniform(100, 500, (S, F)), "B": RNG.uniform(200, 900, (S, F)),
        "alpha": RNG.uniform(0.2, 0.4, (S, F)), "beta": RNG.uniform(0.2, 0.4, (S, F)),
        "gamma": RNG.uniform(0.05, 0.4, (S, F))}
W = np.array([0.4, 0.3, 0.2, 0.1])
LO, HI = np.full(F, 0.02), np.full(F, 0.7)


@pytest.mark.parametrize("normalized", [False, True])
def test_coupled_solver_agrees_with_the_exact_separable_one_on_the_separable_law(normalized):
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


# ---------------------------------------------------------------------- decisions by expected regret


def _transfer_posterior(S=300, F=3, seed=0, tau_scale=0.3):
    """A transfer-law posterior with skewed gamma and tau draws (tau[s, i, j]: from j to i)."""
    from multiscale.laws.fits import BayesFit

    rng = np.random.default_rng(seed)
    g = np.exp(np.log([0.1, 0.25, 0.4, 0.3][:F]) + 0.5 * rng.standard_normal((S, F)))
    tau = tau_scale * rng.exponential(1.0, (S, F, F)) * (1 - np.eye(F))
    draws = {"E": rng.uniform(1.4, 1.8, (S, F)), "A": np.full((S, F), 400.0), "B": np.full((S, F), 900.0),
             "alpha": np.full((S, F), 0.3), "beta": np.full((S, F), 0.3), "gamma": g, "tau": tau}
    fams = tuple(f"f{j}" for j in range(F))
    return BayesFit(law=get_law("transfer"), families=fams, shared=(), draws=draws, N_ref=1e8, D_ref=1e10,
                    n_runs=dict.fromkeys(fams, 10), mixture_families=fams)


def _simplex_grid(step=0.005):
    a = np.arange(step, 1.0, step)
    A, B = np.meshgrid(a, a, indexing="ij")
    P = np.stack([A.ravel(), B.ravel(), 1 - A.ravel() - B.ravel()], axis=1)
    return P[(P > step / 2).all(axis=1)]


def _transfer_objective(d, N, D, P_GxM, normalized):
    """The transfer law's objective (G, S) written out here, independently of the library:
    mean over families of c_i (p_i + sum_j tau_ij p_j)^(-gamma_i), divided by c_i if normalized."""
    c = d["E"] + d["A"] / N ** d["alpha"] + d["B"] / D ** d["beta"]  # (S, F)
    eff = np.einsum("sij,gj->gsi", d["tau"], P_GxM) + P_GxM[:, None, :]  # tau has a zero diagonal
    rel = eff ** (-d["gamma"][None])
    return np.mean(rel if normalized else c[None] * rel, axis=2)


@pytest.mark.slow  # two jax programs per objective, a 19,701 x 300 grid (~4 s each on 2 idle cores)
@pytest.mark.parametrize("objective", ["raw", "normalized"])
def test_coupled_regret_prob_best_and_robust_p_star_against_brute_force(objective):
    """Over a dense grid of 3-family mixtures and a transfer posterior of 300 draws: each draw's
    p*_s is at least as good as the best grid mixture; every candidate's regret equals its
    objective (written out here) minus the per-draw optimum's, its mean, 90% interval and
    P(best) as recomputed from the draws; the robust p* beats or ties every grid mixture and
    every candidate on the posterior mean objective."""
    fit = _transfer_posterior(tau_scale=0.1)
    N, D = 1e9, 1e11
    # a floor of one grid step: the transfer law's optima can sit at p -> 0, off any grid; caps >= 1
    rec = optimal_ratios(fit, N, D, objective=objective, available_tokens="f0=1e11,f1=6e10,f2=3e10", floor=0.005)
    normalized = objective == "normalized"
    grid = _simplex_grid()  # every mixture of the grid is feasible (p >= 0.005 - rounding)
    obj_grid = _transfer_objective(fit.draws, N, D, grid, normalized)  # (G, S)
    best_grid = obj_grid.min(axis=0)
    assert np.all(rec.objective_star <= best_grid * (1 + 1e-11))  # rounding where both are at a corner
    assert np.all(best_grid - rec.objective_star < 1e-4 * rec.objective_star)  # the grid's resolution
    table = rec.decision_table()
    assert list(table)[:2] == ["robust p*", "median p*"] and {"uniform", "proportional", "unimax"} <= set(table)
    objs = {}
    for name, cand in rec.candidates.items():
        q = np.array([cand["ratios"][f] for f in fit.families])
        objs[name] = _transfer_objective(fit.draws, N, D, q[None], normalized)[0]
        np.testing.assert_allclose(cand["objective"], objs[name], rtol=1e-12)
        regret = objs[name] - rec.objective_star
        # the library computes the loss in log space: the objectives agree to ~1e-12 relative (~3e-12 here)
        assert regret.min() >= -1e-11
        assert table[name]["expected_regret"] == pytest.approx(regret.mean(), rel=1e-9, abs=1e-11)
        assert table[name]["regret"]["q05"] == pytest.approx(np.quantile(regret, 0.05), rel=1e-9, abs=1e-11)
        assert table[name]["regret"]["q95"] == pytest.approx(np.quantile(regret, 0.95), rel=1e-9, abs=1e-11)
    robust_mean = objs["robust p*"].mean()
    assert robust_mean <= obj_grid.mean(axis=1).min() + 1e-12
    assert all(robust_mean <= o.mean() + 1e-12 for o in objs.values())
    assert table["robust p*"]["expected_regret"] < table["median p*"]["expected_regret"]
    stacked = np.stack(list(objs.values()))  # (C, S); uniform and unimax are one mixture here: they tie
    tie = stacked <= stacked.min(axis=0) * (1 + 1e-9)
    assert tie.sum(axis=0).max() >= 2
    share = (tie / tie.sum(axis=0)).mean(axis=1)
    for i, k in enumerate(objs):
        assert table[k]["prob_best"] == pytest.approx(share[i], abs=1e-12)
    assert sum(v["prob_best"] for v in table.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("objective", ["raw", pytest.param("normalized", marks=pytest.mark.slow)])
def test_coupled_robust_p_star_at_tau_zero_is_the_separable_one(objective):
    """tau = 0: the transfer law is the base law, so the coupled robust p* (projected gradient on
    the draw-averaged objective) is the separable solver's exact one, with floors and caps."""
    fit = _transfer_posterior(S=200, F=4, seed=2, tau_scale=0.0)
    d = {k: v for k, v in fit.draws.items() if k != "tau"}
    seed = BayesFit(law=get_law("multilingual"), families=fit.families, shared=(), draws=d, N_ref=1e8,
                    D_ref=1e10, n_runs=fit.n_runs)
    kw = dict(objective=objective, floor="f0=0.05", caps="f3=0.1,f2=0.6", weights="f0=2")
    a, b = optimal_ratios(fit, 1e9, 1e11, **kw), optimal_ratios(seed, 1e9, 1e11, **kw)
    np.testing.assert_allclose(list(a.ratios.values()), list(b.ratios.values()), atol=1e-7)
    np.testing.assert_allclose(list(a.median_ratios.values()), list(b.median_ratios.values()), atol=1e-6)
    ta, tb = a.decision_table(), b.decision_table()
    assert list(ta) == list(tb)
    for k in ta:
        assert ta[k]["expected_regret"] == pytest.approx(tb[k]["expected_regret"], rel=1e-4, abs=1e-10)


def test_coupled_and_separable_recommendations_carry_the_same_keys():
    fit = _transfer_posterior(S=300, tau_scale=0.1)
    seed = optimal_ratios(_fit("multilingual", {k: v[:1] for k, v in SEED.items()}), 1e9, 1e11)
    rec = optimal_ratios(fit, 1e9, 1e11)
    a, b = rec.to_dict(), seed.to_dict()
    assert set(b) <= set(a) and a["recommended"] == b["recommended"] == "robust p*"
    assert set(a["families"]["f0"]) == set(next(iter(b["families"].values())))
    assert set(a["decisions"]["uniform"]) == set(b["decisions"]["uniform"])
    assert set(a["baselines"]["uniform"]) == set(b["baselines"]["uniform"])
    assert a["ratios"] == rec.ratios and abs(sum(a["median_ratios"].values()) - 1) < 1e-12
    text = str(rec)
    assert "robust p*" in text and "P(best)" in text and "coupled solver" in text


@pytest.mark.slow  # its own jax programs (2 families of 3)
def test_a_mixture_family_without_a_loss_gets_a_ratio_but_no_weight():
    """A matrix law over 3 mixture families fitted on the losses of 2: p* is over all three;
    the third has weight 0 and no loss in the family table."""
    fit = _transfer_posterior(S=40)
    d = {k: v[:, :2] for k, v in fit.draws.items()}  # tau (S, 2, 3): the 2 families' transfer from all 3
    two = BayesFit(law=fit.law, families=("f0", "f1"), shared=(), draws=d, N_ref=1e8, D_ref=1e10,
                   n_runs={"f0": 10, "f1": 10}, mixture_families=fit.families)
    rec = optimal_ratios(two, 1e9, 1e11, objective="raw", floor=0.01)
    assert set(rec.ratios) == {"f0", "f1", "f2"} and rec.ratios["f2"] == pytest.approx(0.01, abs=1e-6)
    row = rec.family_table()["f2"]
    assert row["weight"] == 0.0 and row["loss_at_p_star"] is None
    assert rec.to_dict()["weights"] == {"f0": 0.5, "f1": 0.5}


@pytest.mark.slow  # two CLI recommends, the coupled solver compiled (~4 s on 2 idle cores)
def test_recommend_json_has_the_same_keys_for_a_coupled_and_a_separable_law(tmp_path, capsys):
    """`multiscale recommend --json` on a fit of the transfer law carries every key it carries for
    the separable law (robust p*, median p*, decisions with regret and P(best), baselines, ...)."""
    from multiscale.cli import main

    one = {k: v[:1] for k, v in SEED.items()}
    out = {}
    for name, draws in (("multilingual", one), ("transfer", {**one, "tau": np.full((1, F, F), 0.1) * (1 - np.eye(F))})):
        _fit(name, draws).save(tmp_path / name)
        assert main(["recommend", str(tmp_path / name), "--N", "1e9", "--D", "5e10", "--floor", "0.02",
                     "--weights", "fam0=2", "--json"]) == 0
        out[name] = json.loads(capsys.readouterr().out)
    seed, coupled = out["multilingual"], out["transfer"]
    assert set(seed) <= set(coupled) and coupled["solver"].startswith("coupled")
    assert coupled["recommended"] == "robust p*" and set(coupled["decisions"]) == set(seed["decisions"])
    for key in ("families", "decisions", "baselines"):
        first = next(iter(seed[key]))
        assert set(coupled[key][first]) == set(seed[key][first]), key
    assert coupled["weights"] == seed["weights"] == pytest.approx({"fam0": 0.4, "fam1": 0.2, "fam2": 0.2, "fam3": 0.2})
    assert main(["recommend", str(tmp_path / "transfer"), "--N", "1e9", "--D", "5e10", "--weights", "fam0=-1"]) == 2
    assert "--weights" in capsys.readouterr().err


@pytest.mark.slow  # two fits' jax programs
def test_a_draw_whose_loss_is_not_finite_is_left_out_of_the_decisions():
    """One draw with a loss that overflows at every mixture (gamma = 1e4): its p* is NaN, its
    regret NaN (aligned with p_star), and the robust p*, regret and P(best) are those of the
    other draws."""
    fit = _transfer_posterior(S=30, tau_scale=0.1)
    bad = {k: v.copy() for k, v in fit.draws.items()}
    bad["gamma"][7] = 1e4
    broken = BayesFit(law=fit.law, families=fit.families, shared=(), draws=bad, N_ref=1e8, D_ref=1e10,
                      n_runs=fit.n_runs, mixture_families=fit.families)
    rest = BayesFit(law=fit.law, families=fit.families, shared=(), draws={k: np.delete(v, 7, axis=0)
                    for k, v in fit.draws.items()}, N_ref=1e8, D_ref=1e10, n_runs=fit.n_runs,
                    mixture_families=fit.families)
    a, b = optimal_ratios(broken, 1e9, 1e11, objective="raw"), optimal_ratios(rest, 1e9, 1e11, objective="raw")
    assert np.isnan(a.p_star[7]).all() and np.isfinite(np.delete(a.p_star, 7, axis=0)).all()
    assert any("not finite" in n for n in a.notes)
    r = a.regret("uniform")
    assert r.shape == (30,) and np.isnan(r[7]) and np.isfinite(np.delete(r, 7)).all()
    np.testing.assert_allclose(list(a.ratios.values()), list(b.ratios.values()), atol=1e-9)
    ta, tb = a.decision_table(), b.decision_table()
    for k in tb:
        assert ta[k]["expected_regret"] == pytest.approx(tb[k]["expected_regret"], rel=1e-6, abs=1e-12)
        assert ta[k]["prob_best"] == pytest.approx(tb[k]["prob_best"])
