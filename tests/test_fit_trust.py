"""No fit saved that cannot be trusted, and no fit used without saying what it cannot tell: one test
per kind, through the public API and the command line. Fits are built from known parameters where
the fitting itself is not the point, so most of these stay fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.cli import main
from multiscale.decisions import optimal_ratios
from multiscale.errors import InputError, UnidentifiedWarning
from multiscale.laws import fit_bayes, fit_point, load_fit, predict
from multiscale.laws.fits import FIT_JSON, PointFit
from multiscale.laws.forms import LAWS

FAMS = ("f0", "f1", "f2")
# a small start grid: these tests check what the fit says, not that it finds the optimum
SMALL_GRID = {"a": [5.0, 10.0], "b": [5.0, 10.0], "e": [0.0, 0.5], "alpha": [0.5], "beta": [0.5]}


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _fit(law="multilingual", unique_tokens=None, identifiability=(), **override) -> PointFit:
    """A point fit of `law` at plausible parameters (per family, overridden by `override`)."""
    law_obj = LAWS[law]
    vals = {"E": 1.6, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.3, "gamma": 0.15}
    draws = {n: np.array([[override.get(n, {}).get(f, vals[n]) if isinstance(override.get(n), dict)
                           else vals[n] for f in FAMS]]) for n in law_obj.params}
    if law_obj.matrix:
        draws["tau"] = np.full((1, 3, 3), 0.05) * (1 - np.eye(3))[None]
    return PointFit(law=law_obj, families=FAMS, shared=(), draws=draws, N_ref=1e8, D_ref=1e10,
                    n_runs={f: 20 for f in FAMS}, mixture_families=FAMS if law_obj.matrix else (),
                    unique_tokens=dict(unique_tokens or {}), identifiability=list(identifiability))


def test_a_fit_with_an_infinite_parameter_is_not_saved(tmp_path):
    """B = inf would be called damaged by every later command: refused at save, naming the family,
    the parameter and what to do, and nothing is written."""
    fit = _fit(B={"f1": np.inf})
    with pytest.raises(InputError, match=r"parameter 'B' of family 'f1' is inf, not finite.*add runs.*"
                                         r"another law.*share fewer exponents"):
        fit.save(tmp_path / "fit")
    assert not (tmp_path / "fit").exists()
    saved = _fit().save(tmp_path / "ok")  # a finite fit is saved and loads back
    assert load_fit(saved).params() == _fit().params()


@pytest.mark.slow  # three small point fits (~5 s each on 2 shared cores)
def test_a_family_at_one_model_size_is_unidentified_warned_recorded_and_strict_refuses(tmp_path):
    truth = synthetic_truth(2, seed=2)
    df = synthetic_runs(truth, noise=0.005, seed=1, n_mixtures=4)
    df = df[(df["family"] != "fam1") | (df["N"] == df["N"].min())]  # fam1 at one N
    with pytest.warns(UnidentifiedWarning, match=r"family 'fam1': E, A, alpha unidentified: its runs have "
                                                 r"1 distinct N \(3 needed\)") as caught:
        fit = fit_point(df, grid=SMALL_GRID)
    assert not any("'fam0'" in str(w.message) for w in caught)
    assert len(fit.identifiability) == 1 and "'fam1'" in fit.identifiability[0]
    # a shared alpha is identified by fam0's sizes: only fam1's E and A are left
    with pytest.warns(UnidentifiedWarning, match=r"family 'fam1': E, A unidentified: its runs have 1 distinct N "
                                                 r"\(2 needed\)"):
        fit_point(df, shared="alpha", grid=SMALL_GRID)
    with pytest.raises(InputError, match=r"strict: .*family 'fam1': E, A, alpha unidentified"):
        fit_point(df, grid=SMALL_GRID, strict=True)


def test_identifiability_is_saved_under_the_checksum_and_repeated_where_the_fit_is_used(tmp_path, capsys):
    line = "family 'f1': E, A, alpha unidentified: its runs have 1 distinct N (3 needed)"
    fit_dir = _fit(identifiability=[line]).save(tmp_path / "fit")
    meta = json.loads((fit_dir / FIT_JSON).read_text())
    assert meta["identifiability"] == [line]
    meta["identifiability"] = []  # hiding the warning breaks the checksum
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / FIT_JSON).write_text(json.dumps(meta))
    code, _, err = _cli(capsys, "recommend", tmp_path / "edited", "--N", 1e9, "--D", 2e10)
    assert code == 2 and "does not match its checksum" in err
    fit = load_fit(fit_dir)
    assert fit.identifiability == [line]
    with pytest.warns(UnidentifiedWarning, match=r"law 'multilingual', family 'f1': E, A, alpha unidentified"):
        optimal_ratios(fit, 1e9, 2e10)
    with pytest.warns(UnidentifiedWarning, match="family 'f1'"):
        predict(fit, 1e9, 2e10)
    for argv in (("recommend", fit_dir, "--N", 1e9, "--D", 2e10), ("predict", fit_dir, "--N", 1e9, "--D", 2e10,
                                                                     "--ratios", "f0=0.3,f1=0.3,f2=0.4")):
        with pytest.warns(UnidentifiedWarning) as caught:  # printed as one line by `multiscale.cli`
            code, out, _ = _cli(capsys, *argv)
        assert code == 0 and out
        assert [str(w.message) for w in caught] == [f"law 'multilingual', {line}"]


def test_recommend_caps_by_the_unique_tokens_the_fit_saw(tmp_path, capsys):
    """A family of 114,277 unique tokens cannot take 29% of 5e10 tokens: the fit's unique tokens
    cap p at epochs * U / D by default, with a note; tokens the caller gives replace them."""
    U = {"f0": 114_277.0, "f1": 1e12, "f2": 1e12}
    fit = _fit(unique_tokens=U, gamma={"f0": 0.4, "f1": 0.1, "f2": 0.1})
    free = optimal_ratios(_fit(gamma={"f0": 0.4, "f1": 0.1, "f2": 0.1}), 1.2e9, 5e10)
    assert free.ratios["f0"] > 0.2  # without the tokens, f0 gets a large share
    rec = optimal_ratios(fit, 1.2e9, 5e10)
    assert rec.ratios["f0"] <= 4 * U["f0"] / 5e10 + 1e-12
    assert any("the fitted table's unique tokens" in n and "f0=1.143e+05" in n for n in rec.notes)
    given = optimal_ratios(fit, 1.2e9, 5e10, available_tokens="f0=1e12,f1=1e12,f2=1e12")
    assert given.ratios["f0"] > 0.2 and not any("fitted table" in n for n in given.notes)
    code, out, _ = _cli(capsys, "recommend", fit.save(tmp_path / "fit"), "--N", 1.2e9, "--D", 5e10, "--json")
    assert code == 0 and json.loads(out)["ratios"]["f0"] <= 4 * U["f0"] / 5e10 + 1e-12


def test_recommend_says_when_epochs_or_unique_tokens_cannot_apply(tmp_path, capsys):
    fit = _fit()  # no unique tokens anywhere
    assert any("epochs = 2 is unused" in n for n in optimal_ratios(fit, 1e9, 2e10, epochs=2).notes)
    code, out, err = _cli(capsys, "recommend", fit.save(tmp_path / "fit"), "--N", 1e9, "--D", 2e10, "--epochs", 2)
    assert code == 2 and out == "" and "--epochs caps the ratios at epochs * tokens / D, which needs --tokens" in err
    transfer = _fit("transfer").save(tmp_path / "transfer")
    code, out, err = _cli(capsys, "recommend", transfer, "--N", 1e9, "--D", 2e10, "--unique-tokens", "f0=1e9")
    assert code == 2 and out == ""
    assert "--unique-tokens: law 'transfer' does not read unique tokens" in err


def test_huge_weights_do_not_overflow_to_uniform():
    fit = _fit(gamma={"f0": 0.4, "f1": 0.1, "f2": 0.1})
    equal = optimal_ratios(fit, 1e9, 2e10, baselines=False)
    huge = optimal_ratios(fit, 1e9, 2e10, weights=1e308, baselines=False)
    np.testing.assert_allclose(list(huge.ratios.values()), list(equal.ratios.values()), rtol=1e-12)
    lopsided = optimal_ratios(fit, 1e9, 2e10, weights="f0=1e308,f1=1e300,f2=1e300", baselines=False)
    assert np.all(np.isfinite(lopsided.weights)) and lopsided.ratios["f0"] > 0.99


def test_compare_refuses_a_heldout_table_holding_fitted_runs(tmp_path, capsys):
    df = synthetic_runs(synthetic_truth(2, seed=2), noise=0.005, seed=1, n_mixtures=3)
    runs = tmp_path / "runs.csv"
    df.to_csv(runs, index=False)
    part = tmp_path / "part.csv"
    df[df["run"].isin(sorted(set(df["run"]))[:2])].to_csv(part, index=False)
    for table, rows in ((runs, len(df)), (part, 4)):
        code, out, err = _cli(capsys, "compare", runs, "--laws", "multilingual", "--heldout", table)
        assert code == 2 and out == ""
        assert f"--heldout: {rows} of its {rows} rows" in err and "in-sample" in err, err


@pytest.mark.parametrize("call, arg", [
    (lambda: fit_point(None), "df"),
    (lambda: fit_bayes(None), "df"),
    (lambda: optimal_ratios(None, 1e9, 1e10), "fit"),
    (lambda: predict(None, 1e9, 1e10), "fit"),
    (lambda: load_fit(None), "directory"),
    (lambda: optimal_ratios("fit", 1e9, 1e10), "fit"),
])
def test_the_public_api_names_a_wrong_argument(call, arg):
    with pytest.raises(InputError, match=rf"^{arg} must be") as err:
        call()
    assert err.value.arg == arg
