"""`multiscale next` (multiscale/decisions/next_runs.py, candidates.py, sweep/next_plan.py, cli/next.py):
the Bayes-linear value of candidate runs, the greedy batch, the written plan, bad inputs.

Fast tests use a hand-built posterior of the separable law that is *unidentified in D*: every fitted
run at one budget D0, so each family's D term is pinned at D0 (B D0^-beta fixed) while beta keeps
a broad spread. A run at another budget is then the only thing that can narrow p* under the raw
objective. The slow test fits NUTS to such a table instead.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from multiscale.errors import InputError

FAMS = ("fam0", "fam1", "fam2")
D0 = 2e5
PRESET_N = {"cpu-100k": 100672.0, "cpu-200k": 201280.0, "cpu-400k": 443232.0}


def _fake_fit(S: int = 400, seed: int = 0):
    """A BayesFit whose draws mimic a posterior from runs at one budget D0 (module docstring)."""
    import arviz as az
    from fixtures.synthetic import synthetic_truth

    from multiscale.laws.extrapolation import fitted_ranges
    from multiscale.laws.fits import BayesFit
    from multiscale.laws.forms import get_law

    rng = np.random.default_rng(seed)
    truth = synthetic_truth(len(FAMS), seed=1)
    T = {n: np.array([truth[f"fam{i}"][n] for i in range(len(FAMS))]) for n in truth["fam0"]}
    z = lambda sd: np.exp(sd * rng.standard_normal((S, len(FAMS))))  # noqa: E731
    beta = 0.3 * z(0.5)
    draws = {"E": T["E"] * z(0.005), "A": T["A"] * z(0.02), "alpha": T["alpha"] * z(0.01),
             "B": T["B"] * D0 ** (beta - T["beta"]) * z(0.005), "beta": beta, "gamma": T["gamma"] * z(0.05)}
    sigma = 0.01 * z(0.1)
    post = {k: v.reshape(2, S // 2, len(FAMS)) for k, v in {**draws, "sigma": sigma}.items()}
    idata = az.from_dict(posterior=post, coords={"family": list(FAMS)}, dims={k: ["family"] for k in post})
    import pandas as pd

    table = pd.DataFrame({"N": list(PRESET_N.values()), "D": [D0] * 3})
    return BayesFit(law=get_law("multilingual"), families=FAMS, shared=(), draws=draws,
                    N_ref=float(np.exp(np.mean(np.log(table["N"])))), D_ref=D0, n_runs={f: 18 for f in FAMS},
                    idata=idata, options={"chains": 2, "draws": S // 2},
                    extrapolation={"kappa": None, **fitted_ranges(table)})


@pytest.fixture(scope="module")
def fit():
    return _fake_fit()


def _cand(preset, D, label="uniform", ratios=None):
    from multiscale.decisions.candidates import Candidate

    r = ratios or {f: 1 / len(FAMS) for f in FAMS}
    return Candidate(preset, PRESET_N[preset], int(D), label, tuple(r.items()))


def test_unidentified_D_proposes_a_second_budget(fit):
    from multiscale.decisions.next_runs import plan_next

    res = plan_next(fit, 1.55e6, 3.2e6, 5e12, k=4)
    budgets = {c["D"] for c in res.chosen}
    assert res.chosen and budgets - {int(D0)}, budgets
    assert res.chosen[0]["D"] != int(D0)  # the first pick is already a new budget
    assert res.chosen[-1]["width_sum_after"] < sum(res.width_now.values())
    assert sum(c["flops"] for c in res.chosen) <= 5e12


def test_normalized_objective_prefers_the_known_budget(fit):
    """Under the normalized objective the separable law's p* depends on gamma only. At D0 the scale
    term is pinned, so a run's loss measures gamma; at 4 D0 the unknown beta confounds it."""
    from multiscale.decisions.next_runs import values_alone

    cands = [_cand("cpu-100k", D0), _cand("cpu-100k", 4 * D0)]
    v = values_alone(fit, 1.55e6, 3.2e6, cands, objective="normalized", criterion="width")
    assert v[1] < 0.2 * v[0]


def test_existing_configuration_is_worth_less_than_a_new_budget(fit):
    from multiscale.decisions.next_runs import plan_next

    known, new = _cand("cpu-200k", D0), _cand("cpu-200k", 4 * D0)
    res = plan_next(fit, 1.55e6, 3.2e6, 1e15, k=1, candidates=[known, new])
    assert res.chosen[0]["D"] == 4 * D0
    from multiscale.decisions.next_runs import values_alone

    v = values_alone(fit, 1.55e6, 3.2e6, [known, new])
    assert v[0] < 0.05 * v[1]


def test_candidates_repeating_a_fitted_run_are_left_out(fit):
    import pandas as pd

    from multiscale.decisions.next_runs import plan_next

    runs = pd.DataFrame([{"run": "r0", "family": f, "N": PRESET_N["cpu-100k"], "D": 198656.0, "p": 1 / 3,
                          "loss": 3.0, **{f"p_{g}": 1 / 3 for g in FAMS}} for f in FAMS])
    res = plan_next(fit, 1.55e6, 3.2e6, 1e15, k=2, runs=runs,
                    candidates=[_cand("cpu-100k", D0), _cand("cpu-100k", 4 * D0)])
    assert [c["D"] for c in res.chosen] == [4 * D0]
    assert any("1 candidates repeat a fitted run" in n for n in res.notes)
    assert not any("no fitted table given" in n for n in res.notes)
    blind = plan_next(fit, 1.55e6, 3.2e6, 1e15, k=2, candidates=[_cand("cpu-100k", D0), _cand("cpu-100k", 4 * D0)])
    assert any("no fitted table given (runs)" in n for n in blind.notes)  # the user is told what was not checked


def test_value_per_flop_favours_the_cheaper_of_equal_runs():
    from multiscale.decisions.next_runs import greedy

    Sigma = np.array([[1.0, 0.8, 0.8], [0.8, 1.0, 1.0], [0.8, 1.0, 1.0]])  # z; two identical rows
    steps = greedy(Sigma, 1, np.array([0, 1]), np.array([0.1, 0.1]), np.array([2.0, 1.0]), np.ones(1), 2, 10.0)
    assert [s.index for s in steps] == [1, 0]
    assert steps[1].value < steps[0].value  # the second copy repeats much of the first's information


def test_conditioning_is_the_gaussian_posterior():
    """z ~ N(0, 1), y = z + e, e ~ N(0, r): Var(z | y) = r / (1 + r), whatever y."""
    from multiscale.decisions.next_runs import _blocks, condition, values

    r = 0.25
    Sigma = np.ones((2, 2))
    v, drop = values(Sigma, 1, *_blocks(np.array([0]), 1), np.array([r]), np.ones(1))
    assert v[0] == pytest.approx(1 - r / (1 + r)) and drop[0, 0] == pytest.approx(v[0])
    after = condition(Sigma, 1, np.array([0]), np.array([r]))
    assert after[0, 0] == pytest.approx(r / (1 + r))


def test_budget_and_k_bound_the_batch(fit):
    from multiscale.decisions.next_runs import plan_next

    res = plan_next(fit, 1.55e6, 3.2e6, 3.0e11, k=8)
    assert sum(c["flops"] for c in res.chosen) <= 3.0e11
    small = plan_next(fit, 1.55e6, 3.2e6, 1e15, k=2)
    assert len(small.chosen) == 2
    # k, not the budget, ended that batch: the note says how little of the budget it spends
    assert any("the k = 2 runs spend" in n and "raise k" in n for n in small.notes), small.notes
    assert not any("raise k" in n for n in res.notes)


def test_regret_criterion_tracks_the_exact_regret(fit):
    from multiscale.decisions.next_runs import plan_next

    res = plan_next(fit, 1.55e6, 3.2e6, 1e12, k=1)
    assert res.criterion == "regret"
    assert 0.5 < res.uncertainty_now / res.expected_regret_now < 2.0


def test_plan_round_trips_through_the_loader_and_dry_run(fit, tmp_path):
    from multiscale.cli import main
    from multiscale.decisions.next_runs import plan_next
    from multiscale.sweep.next_plan import plan_dict, write_plan
    from multiscale.sweep.plan import SweepPlan

    res = plan_next(fit, 1.55e6, 3.2e6, 5e12, k=4)
    path = tmp_path / "next.yaml"
    write_plan(path, plan_dict(res, seed=3), "# test\n")
    runs = SweepPlan.load(path).expand()
    assert [(r.preset, r.tokens, r.seed) for r in sorted(runs, key=lambda r: r.mixture)] == \
        [(c["preset"], c["D"], 3) for c in res.chosen]
    for r, c in zip(sorted(runs, key=lambda r: r.mixture), res.chosen):
        assert r.ratio_dict == pytest.approx(c["ratios"], abs=2e-6)
    assert main(["sweep", str(path), "--out", str(tmp_path / "sw"), "--dry-run", "--json"]) == 0


def _saved(fit, tmp_path):
    d = tmp_path / "fit"
    if not d.exists():
        fit.save(d)
    return str(d)


def test_cli_json_and_plan(fit, tmp_path, capsys):
    from multiscale.cli import main
    from multiscale.sweep.plan import SweepPlan

    out, like = tmp_path / "next.yaml", tmp_path / "like.yaml"
    like.write_text("families: [fam0, fam1, fam2]\npresets: [cpu-100k]\ntokens: [2.0e5]\n"
                    "train: {seq_len: 128, batch: 16}\nmixtures: [{design: vary_one, grid: [0.5]}]\n")
    assert main(["next", _saved(fit, tmp_path), "--N", "1.55e6", "--D", "3.2e6", "--budget-flops", "2e12",
                 "--k", "3", "--out", str(out), "--like", str(like), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert 1 <= len(d["chosen"]) <= 3 and d["out"] == str(out)
    for c in d["chosen"]:
        assert c["value"] > 0 and c["flops"] == pytest.approx(6 * c["N"] * c["D"])
        assert set(c["width_after"]) == set(FAMS) and c["width_sum_after"] > 0
    assert len(SweepPlan.load(out).expand()) == len(d["chosen"])
    text = open(out).read()
    assert text.startswith("# Chosen by `multiscale next`: multiscale next") and "--budget-flops 2e+12" in text
    assert dict(SweepPlan.load(out).train) == {"seq_len": 128, "batch": 16}


@pytest.mark.parametrize("extra, message", [
    (["--budget-flops", "1e9"], "below the cheapest candidate"),
    (["--k", "0"], "k must be an integer >= 1"),
    (["--N", "5e4"], "N 5e+04 is below every fitted value"),
    (["--D", "-1"], "D must be a finite positive number"),
])
def test_cli_bad_inputs_are_one_line(fit, tmp_path, capsys, extra, message):
    from multiscale.cli import main

    args = {"--N": "1.55e6", "--D": "3.2e6", "--budget-flops": "2e12"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    argv = ["next", _saved(fit, tmp_path)] + [x for kv in args.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_point_fit_is_refused(fit, tmp_path, capsys):
    from multiscale.cli import main
    from multiscale.laws.fits import PointFit

    point = PointFit(law=fit.law, families=FAMS, shared=(), draws={k: v[:1] for k, v in fit.draws.items()},
                     N_ref=fit.N_ref, D_ref=fit.D_ref, n_runs=fit.n_runs)
    point.save(tmp_path / "pfit")
    assert main(["next", str(tmp_path / "pfit"), "--N", "1e6", "--D", "1e6", "--budget-flops", "1e13"]) == 2
    err = capsys.readouterr().err.strip()
    assert "point fit" in err and "no posterior" in err and len(err.splitlines()) == 1


def test_candidates_from_the_fit(fit):
    from multiscale.decisions.candidates import FittedRange, generate

    cands = generate(FittedRange.of(fit), FAMS, 1.6e6, 3.2e6, robust={f: 1 / 3 for f in FAMS})
    presets = {c.preset for c in cands}
    assert {"cpu-100k", "cpu-200k", "cpu-400k", "cpu-800k"} <= presets and "cpu-3m" not in presets
    assert {c.D for c in cands} == {int(D0), int(2 * D0), int(4 * D0)}
    assert all(abs(sum(c.ratio_dict.values()) - 1) < 1e-9 and min(c.ratio_dict.values()) > 0 for c in cands)
    assert len({c.key() for c in cands}) == len(cands)


def test_candidates_from_a_plan(fit, tmp_path):
    from multiscale.decisions.next_runs import plan_next
    from multiscale.sweep.next_plan import from_plan
    from multiscale.sweep.plan import SweepPlan

    plan = SweepPlan.from_dict({"families": list(FAMS), "presets": ["cpu-100k", "cpu-200k"], "tokens": [2e5, 8e5],
                                "mixtures": [{"design": "vary_one", "grid": [0.2, 0.6]}]})
    cands = from_plan(plan, FAMS)
    assert len(cands) == 2 * 2 * 6
    res = plan_next(fit, 1.55e6, 3.2e6, 1e13, k=3, candidates=cands)
    assert all(c["label"].startswith("fam") for c in res.chosen)
    with pytest.raises(InputError, match="does not have"):
        from_plan(plan, FAMS[:2])


@pytest.mark.slow  # the coupled solver's compilation: seconds
def test_a_law_of_the_whole_mixture(fit):
    """The transfer law (tau small, so close to the base law): the coupled p* and the rows'
    whole mixtures go through the same value; a second budget is still the first pick."""
    import dataclasses

    import arviz as az

    from multiscale.decisions.next_runs import plan_next
    from multiscale.laws.forms import get_law

    S = fit.n_draws
    tau = np.abs(0.02 * np.random.default_rng(0).standard_normal((S, 3, 3))) * (1 - np.eye(3))
    draws = {**fit.draws, "tau": tau}
    post = {k: v.reshape(2, S // 2, *v.shape[1:]) for k, v in draws.items()}
    post["sigma"] = fit.idata.posterior["sigma"].values
    idata = az.from_dict(posterior=post, coords={"family": list(FAMS), "source": list(FAMS)},
                         dims={**{k: ["family"] for k in post}, "tau": ["family", "source"]})
    mix = dataclasses.replace(fit, law=get_law("transfer"), draws=draws, idata=idata, mixture_families=FAMS)
    res = plan_next(mix, 1.55e6, 3.2e6, 2e12, k=2)
    assert res.law == "transfer" and res.chosen and res.chosen[0]["D"] != int(D0)
    assert res.chosen[0]["value"] > 0


@pytest.mark.slow
def test_nuts_fit_unidentified_in_D_proposes_a_second_budget():
    """The brief's synthetic case end to end: a NUTS fit (2 chains x 300 draws) of a table with
    every run at one budget; `next` must propose a run at a second budget among its top k."""
    from fixtures.synthetic import synthetic_runs, synthetic_truth

    from multiscale.decisions.next_runs import plan_next
    from multiscale.laws import fit_bayes

    df = synthetic_runs(synthetic_truth(3, seed=1), N=tuple(PRESET_N.values()), D=(D0,), n_mixtures=6, seed=0)
    fit = fit_bayes(df, chains=2, draws=300, warmup=300, seed=0, warn=False, extrapolation=False)
    res = plan_next(fit, 1.55e6, 3.2e6, 3e12, k=4, runs=df)
    assert any(c["D"] != int(D0) for c in res.chosen), res.chosen
