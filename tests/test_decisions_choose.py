"""Choosing among measured candidate mixtures (`multiscale.decisions.choose`): per-mixture effects
shared across scales, shrunk by empirical Bayes, against the single-scale choice."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic import synthetic_truth

import multiscale.decisions.choose as choose
from multiscale.cli import main
from multiscale.decisions.choose import LAW, LIBRARY, SINGLE, choose_candidates
from multiscale.errors import InputError
from multiscale.laws import fit_bayes, fit_point
from multiscale.laws.forms import get_law, predict_loss

TARGET = (1e9, 3e10)
PROXY_N, PROXY_D = (2e7, 5e7, 1.2e8), (2e9, 6e9, 2e10)


def _candidates(truth, seed, *, effect_sd, noise, n_candidates=8):
    """(run table: every candidate at every proxy (N, D), plus the truth's target objective per
    candidate): each mixture's log loss is offset by u_m ~ N(0, effect_sd) at every scale."""
    law, fams = get_law("multilingual"), list(truth)
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(len(fams), 4.0), size=n_candidates)
    u = effect_sd * rng.standard_normal(n_candidates)
    rows, k = [], 0
    for n in PROXY_N:
        for d in PROXY_D:
            for m in range(n_candidates):
                for j, f in enumerate(fams):
                    mean = float(predict_loss(law, truth[f], n, d, P[m, j])) * np.exp(u[m])
                    rows.append({"run": f"r{k}", "family": f, "N": n, "D": d, "p": P[m, j],
                                 "loss": mean * np.exp(noise * rng.standard_normal()),
                                 **{f"p_{g}": P[m, i] for i, g in enumerate(fams)}})
                k += 1
    true = np.array([np.mean([float(predict_loss(law, truth[f], *TARGET, P[m, j])) for j, f in enumerate(fams)])
                     * np.exp(u[m]) for m in range(n_candidates)])
    return pd.DataFrame(rows), true


OWN = "library, tau from the fit's own residuals"


def _regrets(effect_sd, noise, seeds):
    """Mean true regret (nats/token) over `seeds` of the library's pick (given the fitted table: tau from
    leave-one-mixture-out refits; and without it), the single-scale and the law-only picks."""
    out = {LIBRARY: [], OWN: [], SINGLE: [], LAW: []}
    truth = synthetic_truth(3, seed=1)
    for s in seeds:
        df, true = _candidates(truth, s, effect_sd=effect_sd, noise=noise)
        fit = fit_point(df)
        ch = choose_candidates(fit, df, *TARGET, fitted=df)
        own = choose_candidates(fit, df, *TARGET)
        names = list(ch.candidates)
        regret = {k: true[names.index(ch.options[k]["candidate"])] - true.min() for k in (LIBRARY, SINGLE, LAW)}
        for k, v in {**regret, OWN: true[names.index(own.pick)] - true.min()}.items():
            out[k].append(v)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.slow  # 20 seeds x 10 point fits: ~2-4 min on 2 shared cores
def test_small_noise_library_loses_no_more_than_single_scale():
    r = _regrets(effect_sd=0.02, noise=0.002, seeds=range(20))
    print("small noise", r)
    assert r[LIBRARY] <= r[SINGLE] + 1e-4 and r[OWN] <= r[SINGLE] + 1e-4
    assert r[LIBRARY] <= r[OWN] + 1e-4  # the leave-one-mixture-out tau loses nothing


@pytest.mark.slow  # 20 seeds x 10 point fits: ~2-4 min on 2 shared cores
def test_noisy_proxies_library_beats_single_scale():
    r = _regrets(effect_sd=0.01, noise=0.03, seeds=range(20))
    print("noisy", r)
    assert r[LIBRARY] < r[SINGLE] and r[OWN] < r[SINGLE]
    assert r[LIBRARY] <= r[OWN] + 1e-4


@pytest.mark.slow  # 19 point fits of up to 216 rows (10 with the full grid): ~5-10 s on 2 shared cores
def test_leave_one_out_refits_match_full_grid_refits(monkeypatch):
    """tau from the leave-one-mixture-out refits (each run from the starts that led the refit of the
    whole table) equals tau from refits that each search the full start grid, on a noisy table where
    refits started from the whole table's optimum alone end in other optima (tau 0.25% off)."""
    df, _ = _candidates(synthetic_truth(3, seed=1), 0, effect_sd=0.01, noise=0.03)
    fit = fit_point(df)
    warm = choose_candidates(fit, df, *TARGET, fitted=df)

    def full_grid(table, leave_out, law, shared):
        return (fit_point(table, law=law, shared=shared),
                {k: fit_point(table[~m], law=law, shared=shared) for k, m in leave_out.items()})

    monkeypatch.setattr(choose, "fit_point_leave_out", full_grid)
    full = choose_candidates(fit, df, *TARGET, fitted=df)
    assert "leave-one-mixture-out" in full.notes[-1] and warm.tau == pytest.approx(full.tau, rel=1e-4, abs=0)
    assert {k: o["candidate"] for k, o in warm.options.items()} == {k: o["candidate"] for k, o in full.options.items()}
    for name, c in warm.candidates.items():
        assert c["effect"] == pytest.approx(full.candidates[name]["effect"], rel=0, abs=1e-6), name


def test_result_and_errors():
    truth = synthetic_truth(3, seed=1)
    df, _ = _candidates(truth, 0, effect_sd=0.02, noise=0.005)
    fit = fit_point(df)
    ch = choose_candidates(fit, df, *TARGET)
    d = ch.to_dict()
    assert d["pick"] in d["candidates"] and set(d["options"]) >= {LIBRARY, SINGLE, "law p*"}
    assert all(0.0 <= c["shrinkage"] <= 1.0 for c in d["candidates"].values())
    assert d["options"][LIBRARY]["expected_regret"] <= d["options"][SINGLE]["expected_regret"] + 1e-12
    with pytest.raises(InputError, match="mixture columns"):
        choose_candidates(fit, df.drop(columns=[c for c in df.columns if c.startswith("p_")]), *TARGET)
    other = df.assign(family=df["family"].replace("fam0", "famX")).rename(columns={"p_fam0": "p_famX"})
    with pytest.raises(InputError, match="not in the fit"):
        choose_candidates(fit, other, *TARGET)


def test_single_scale_cell_and_refusals():
    """The single-scale choice compares the candidates at one budget: a run of one candidate at a budget
    the others lack does not enter it. A fit whose loss is not finite refuses; so does a fitted table
    without the candidates' mixture columns."""
    df, _ = _candidates(synthetic_truth(3, seed=1), 0, effect_sd=0.02, noise=0.005)
    fit = fit_point(df)
    ch = choose_candidates(fit, df, *TARGET)
    big = df[(df["N"] == PROXY_N[-1]) & (df["D"] == PROXY_D[-1])]
    worst = big.groupby("run")["loss"].mean().idxmax()
    extra = big[big["run"] == worst].assign(run="more-data", D=10 * PROXY_D[-1], loss=lambda d: d["loss"] * 0.5)
    with_extra = choose_candidates(fit, pd.concat([df, extra], ignore_index=True), *TARGET)
    assert with_extra.proxy_N == ch.proxy_N == PROXY_N[-1] and with_extra.proxy_D == ch.proxy_D == PROXY_D
    assert with_extra.options[SINGLE]["candidate"] == ch.options[SINGLE]["candidate"]
    broken = dataclasses.replace(fit, draws={**fit.draws, "B": np.full_like(fit.draws["B"], np.inf)})
    with pytest.raises(InputError, match="not finite") as e:
        choose_candidates(broken, df, *TARGET)
    assert e.value.arg == "fit"
    with pytest.raises(InputError, match="^fitted: the table lacks the mixture columns") as e:
        choose_candidates(fit, df, *TARGET, fitted=df.drop(columns=[c for c in df.columns if c.startswith("p_")]))
    assert e.value.arg == "fitted"


def test_cli_candidates(tmp_path, capsys):
    df, _ = _candidates(synthetic_truth(3, seed=1), 0, effect_sd=0.02, noise=0.005)
    table, out = tmp_path / "cand.csv", tmp_path / "fit"
    df.to_csv(table, index=False)
    assert main(["fit", str(table), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--candidates", str(table), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pick"] in d["candidates"] and "single-scale" in d["options"]
    df.drop(columns=[c for c in df.columns if c.startswith("p_")]).to_csv(tmp_path / "bare.csv", index=False)
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--candidates", str(tmp_path / "bare.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("multiscale recommend: error: --candidates: no mixture columns") and "\n" not in err
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--candidates", str(table),
                 "--objective", "normalized"]) == 2
    other = df.assign(family=df["family"].replace("fam0", "famX")).rename(columns={"p_fam0": "p_famX"})
    other.to_csv(tmp_path / "other.csv", index=False)
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--candidates", str(tmp_path / "other.csv")]) == 2
    assert "--candidates: families ['famX'] are not in the fit's" in capsys.readouterr().err
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--candidates", str(table),
                 "--fitted", str(tmp_path / "bare.csv")]) == 2
    assert capsys.readouterr().err.startswith("multiscale recommend: error: --fitted: the table lacks the mixture")
    assert main(["recommend", str(out), "--N", "1e9", "--D", "3e10", "--fitted", str(table)]) == 2
    assert "--fitted goes with --candidates" in capsys.readouterr().err


@pytest.mark.slow  # 20 seeds of point fits / a NUTS fit: ~10 s
def test_nuts_fit_single_run_candidates_use_sigma():
    """A Bayesian fit: draws of the law carry to the target; with one run per candidate the noise
    comes from the fit's sigma."""
    df, true = _candidates(synthetic_truth(3, seed=1), 2, effect_sd=0.02, noise=0.005)
    fit = fit_bayes(df, chains=1, draws=200, warmup=200, seed=0, warn=False, extrapolation=False)
    one = df[df["N"] == PROXY_N[-1]]
    one = one[one["D"] == PROXY_D[-1]]
    ch = choose_candidates(fit, one, *TARGET)
    assert ch.objective_SxC.shape == (200, 8) and ch.noise_source == "the fit's sigma"
    assert all(c["runs"] == 1 for c in ch.candidates.values())
    names = list(ch.candidates)
    assert true[names.index(ch.pick)] - true.min() <= 0.02
