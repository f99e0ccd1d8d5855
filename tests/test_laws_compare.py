"""Model comparison: splits, Spearman within (N, D), the rule, the compare and laws commands."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic_mixture import mixture_runs, mixture_truth

from multiscale.cli import main
from multiscale.decisions.compare import LawResult, choose, compare_laws, mean_finite, spearman_within_cells, split
from multiscale.errors import InputError


@pytest.fixture(scope="module")
def table():
    truth = mixture_truth("transfer", 3, seed=4)
    # three budgets: with two, a point fit's D term (E, B, beta) is not identified and ran off to
    # B = inf, beta = 42 for one family once the synthetic truth's tau changed (d1bf3b8)
    return mixture_runs("transfer", truth, seed=4, n_mixtures=6, N=(2e7, 5e7, 1.2e8), D=(2e9, 6e9, 1.8e10))


def test_splits(table):
    tr, te = split(table, "largest-N")
    assert set(te["N"]) == {1.2e8} and 1.2e8 not in set(tr["N"])
    tr, te = split(table, "largest-D")
    assert set(te["D"]) == {1.8e10}
    tr, te = split(table, "mixtures")
    assert set(tr["run"]).isdisjoint(te["run"]) and len(tr) + len(te) == len(table)
    mix = [c for c in table.columns if c.startswith("p_")]
    held = {tuple(r) for r in te[mix].round(9).to_numpy()}
    assert held.isdisjoint({tuple(r) for r in tr[mix].round(9).to_numpy()})  # whole mixtures held out
    with pytest.raises(InputError, match="seed"):
        split(table, "seeds")
    tr, te = split(table.assign(seed=(table["run"].str[-1].astype(int) % 2)), "seeds")
    assert set(te["seed"]) == {1}
    with pytest.raises(InputError, match="holdout"):
        split(table, "smallest-N")


def test_spearman_within_cells():
    df = pd.DataFrame({"family": ["a"] * 6, "N": [1, 1, 1, 2, 2, 2], "D": [1] * 6,
                       "loss": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]})
    rho = spearman_within_cells(df, np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0]))
    assert rho == {"a": 0.0}  # +1 in one cell, -1 in the other
    assert spearman_within_cells(df, df["loss"].to_numpy())["a"] == 1.0


def test_spearman_without_a_usable_cell_is_nan_without_a_warning():
    """Cells of fewer than MIN_CELL held-out runs are skipped, and a constant prediction has no
    correlation: the family's Spearman is then NaN, said without numpy's "Mean of empty slice"."""
    df = pd.DataFrame({"family": ["a", "a", "b", "b", "b"], "N": [1, 1, 1, 1, 1], "D": [1] * 5,
                       "loss": [1.0, 2.0, 1.0, 2.0, 3.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho = spearman_within_cells(df, np.array([1.0, 2.0, 5.0, 5.0, 5.0]))
        assert np.isnan(rho["a"]) and np.isnan(rho["b"])  # a: 2 runs in its cell; b: constant prediction
        assert np.isnan(mean_finite(rho.values())) and np.isnan(mean_finite([]))
        assert mean_finite([0.5, float("nan"), 1.0]) == 0.75


def test_compare_laws_refuses_a_law_named_twice(table):
    with pytest.raises(InputError, match="'multilingual' named twice"):
        compare_laws(table, "multilingual,transfer,multilingual")
    with pytest.raises(InputError, match="'transfer' named twice"):
        compare_laws(table, ["transfer", "transfer"])


@pytest.mark.slow  # one point fit (~5 s on 2 idle cores)
def test_compare_laws_on_a_table_too_small_for_spearman_warns_nothing(table):
    """Two mixtures per (N, D): no held-out cell has MIN_CELL runs, so Spearman is NaN for every
    family and overall, with no RuntimeWarning from the averaging."""
    small = table[table["run"].isin(sorted(table["run"].unique())[::3])]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*empty slice.*")
        warnings.filterwarnings("error", message=".*Degrees of freedom.*")
        cmp = compare_laws(small, "multilingual", "largest-N")
    r = cmp.results[0]
    assert np.isnan(r.overall["spearman"]) and all(np.isnan(v["spearman"]) for v in r.per_family.values())
    assert np.isfinite(r.overall["mape"])


def _result(name, ape, n_params=2):
    return LawResult(law=name, n_params=n_params, per_family={}, overall={"mape": float(np.mean(ape))}, loo=None,
                     p_star=None, seconds=0.0, ape_R=np.asarray(ape, float))


def test_the_rule_names_a_law_or_says_the_data_cannot_tell():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.5, 200)
    clear = choose([_result("ratio", base + 1.0), _result("ratio_transfer", base, 19)])
    assert clear["use"] == "ratio_transfer" and clear["distinguishable"]
    tie = choose([_result("ratio", base + rng.normal(0, 0.3, 200)), _result("ratio_transfer", base, 19)])
    assert not tie["distinguishable"] and tie["use"] == "ratio" and "cannot tell" in tie["text"]
    broken = choose([_result("ratio", np.r_[base[:-1], np.nan]), _result("ratio_transfer", base, 19),
                     _result("mixing", base + 1.0, 19)])
    assert broken["left_out"] == ["ratio"] and broken["use"] == "ratio_transfer" and "non-finite" in broken["text"]


@pytest.mark.slow  # two fits of each of two laws (~1 min on 2 loaded cores)
def test_compare_laws_prefers_the_true_law(table):
    cmp = compare_laws(table, "multilingual,transfer", "largest-N")
    d = cmp.to_dict()
    assert [r["law"] for r in d["laws"]] == ["multilingual", "transfer"]
    scores = {r.law: r.overall for r in cmp.results}
    assert scores["transfer"]["mape"] < scores["multilingual"]["mape"]
    assert cmp.rule["best"] == "transfer"
    assert set(cmp.results[1].p_star) == {"fam0", "fam1", "fam2"}
    assert abs(sum(cmp.results[1].p_star.values()) - 1) < 1e-9


def test_laws_command_json(capsys):
    assert main(["laws", "--json"]) == 0
    laws = {d["name"]: d for d in json.loads(capsys.readouterr().out)["laws"]}
    assert laws["repetition"]["uses_unique_tokens"] and not laws["repetition"]["uses_mixture"]
    assert laws["transfer"]["uses_mixture"] and "tau" in laws["transfer"]["params"]
    assert not laws["multilingual"]["uses_mixture"] and laws["chinchilla"]["uses_ratio"] is False


@pytest.mark.slow
def test_compare_command_writes_its_folder(table, tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    table.to_csv(runs, index=False)
    code = main(["compare", str(runs), "--laws", "multilingual,transfer", "--holdout", "mixtures",
                 "--out", str(tmp_path / "cmp"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["holdout"] == "mixtures" and out["rule"]["use"] in ("multilingual", "transfer")
    for name in ("compare.json", "compare.md", "compare.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    assert main(["compare", str(runs), "--laws", "quadratic"]) == 2
    assert "unknown law 'quadratic'" in capsys.readouterr().err


@pytest.mark.slow  # a transfer-law point fit through the CLI, then coupled p* (~10 s on 2 idle cores)
def test_fit_predict_recommend_accept_a_mixture_law(table, tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    table.to_csv(runs, index=False)
    assert main(["fit", str(runs), "--law", "transfer", "--out", str(tmp_path / "fit"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["law"] == "transfer"
    ratios = "fam0=0.5,fam1=0.3,fam2=0.2"
    assert main(["predict", str(tmp_path / "fit"), "--N", "1e9", "--D", "5e10", "--ratios", ratios, "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert set(pred["families"]) == {"fam0", "fam1", "fam2"}
    assert main(["predict", str(tmp_path / "fit"), "--N", "1e9", "--D", "5e10", "--ratios", "fam0=0.5"]) == 2
    assert "whole mixture" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path / "fit"), "--N", "1e9", "--D", "5e10", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["solver"].startswith("coupled") and abs(sum(rec["ratios"].values()) - 1) < 1e-9
