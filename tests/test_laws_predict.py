"""Predictions: values against the law's formula, intervals, and the ratios they accept."""

import numpy as np
import pytest

from multiscale.errors import InputError
from multiscale.laws.fits import BayesFit, PointFit
from multiscale.laws.forms import get_law
from multiscale.laws.predict import check_ratios, predict

FAMS = ("germanic", "romance", "slavic")


def _fit(S=1):
    rng = np.random.default_rng(0)
    base = {"E": [1.5, 1.7, 1.6], "A": [300.0, 420.0, 380.0], "B": [800.0, 950.0, 700.0],
            "alpha": [0.3, 0.33, 0.31], "beta": [0.28, 0.31, 0.3], "gamma": [0.12, 0.2, 0.15]}
    draws = {n: np.array([v]) * (1 + 0.01 * rng.standard_normal((S, 3)) * (S > 1)) for n, v in base.items()}
    cls = PointFit if S == 1 else BayesFit
    return cls(law=get_law("multilingual"), families=FAMS, shared=(), draws=draws, N_ref=1e8, D_ref=1e10,
               n_runs={f: 10 for f in FAMS})


def test_point_prediction_is_the_formula():
    fit = _fit()
    N, D = 3e8, 2e10
    pred = predict(fit, N, D, "germanic=0.5, slavic=0.25")
    assert pred.families == ("germanic", "slavic")
    t = pred.table()
    for f, p in (("germanic", 0.5), ("slavic", 0.25)):
        j = FAMS.index(f)
        ps = {n: v[0, j] for n, v in fit.draws.items()}
        want = (ps["E"] + ps["A"] * N ** -ps["alpha"] + ps["B"] * D ** -ps["beta"]) * p ** -ps["gamma"]
        assert t[f]["median"] == pytest.approx(want, rel=1e-12) == t[f]["q05"] == t[f]["q95"]
        assert t[f]["p"] == p
    default = predict(fit, N, D)  # every family at 1/F
    assert set(default.ratios) == set(FAMS) and all(v == pytest.approx(1 / 3) for v in default.ratios.values())


def test_bayes_prediction_has_an_interval():
    t = predict(_fit(S=400), 3e8, 2e10, {"germanic": 0.2, "romance": 0.3, "slavic": 0.5}).table()
    for row in t.values():
        assert row["q05"] < row["median"] < row["q95"]


@pytest.mark.parametrize("ratios, message", [
    ({"germanic": 0.9, " germanic": 0.1}, "'germanic' is given twice"),
    ("germanic=0.9,germanic=0.1", "'germanic' is given twice"),
    ({"germanic": float("nan")}, "'germanic' is not finite"),
    ({"germanic": float("inf")}, "not finite"),
    ({"germanic": -0.1}, "negative"),
    ({"germanic": 0.0}, r"must lie in \(0, 1\]"),
    ({"germanic": 1.5}, r"must lie in \(0, 1\]"),
    ({"germanic": 0.7, "romance": 0.6}, "sum to 1.3 > 1"),
    ({"germanic": 1.5, "romance": 1.5, "slavic": 1.5}, r"must lie in \(0, 1\]"),
    ({"germanic": 0.5, "romance": 0.4, "slavic": 0.4}, "sum to 1.3, not 1"),
    ({"celtic": 0.5}, "unknown family 'celtic'"),
    ({}, "is empty"),
])
def test_bad_ratios_are_refused_naming_the_family(ratios, message):
    fit = _fit()
    with pytest.raises(InputError, match=message):
        predict(fit, 1e9, 1e10, ratios)
    with pytest.raises(InputError, match=message) as err:
        check_ratios(fit, ratios)
    assert err.value.arg == "ratios"  # the library's argument; the CLI shows it as --ratios


@pytest.mark.parametrize("N, D", [(float("nan"), 1e10), (1e9, float("inf")), (0, 1e10), (1e9, -1)])
def test_bad_scale_is_refused(N, D):
    bad = "N" if not (np.isfinite(N) and N > 0) else "D"
    with pytest.raises(InputError, match=f"^{bad} must be a finite positive number") as err:
        predict(_fit(), N, D)
    assert err.value.arg == bad


def test_ratio_law_predicts_only_where_it_was_fitted():
    fit = PointFit(law=get_law("ratio"), families=("a", "b"), shared=(),
                   draws={"c": np.array([[3.0, 3.2]]), "gamma": np.array([[0.2, 0.1]])},
                   N_ref=2e7, D_ref=2e9, n_runs={"a": 5, "b": 5})
    assert predict(fit, 2e7, 2e9, "a=0.5").table()["a"]["median"] == pytest.approx(3.0 * 0.5 ** -0.2)
    with pytest.raises(InputError, match="cannot predict at N=1e\\+09"):
        predict(fit, 1e9, 2e9, "a=0.5")


# ----------------------------------------------------------------------------- predict_table


def _bayes_with_sigma(S=800, sigma=0.02, extrapolation=None):
    import arviz as az

    fit = _fit(S=S)
    sig = np.full((1, S, 3), sigma)
    post = {n: v.reshape(1, S, 3) for n, v in fit.draws.items()}
    fit.idata = az.from_dict(posterior={**post, "sigma": sig}, coords={"family": list(FAMS)},
                             dims={n: ["family"] for n in [*post, "sigma"]})
    fit.extrapolation = extrapolation or {}
    return fit


def _rows(N=(1e8, 1e8, 4e8), D=(1e10, 1e10, 1e10), loss=True):
    import pandas as pd

    df = pd.DataFrame({"run": ["r0", "r0", "r1"], "family": ["germanic", "slavic", "germanic"],
                       "N": list(N), "D": list(D), "p": [0.5, 0.5, 0.25]})
    if loss:
        df["loss"] = [3.0, 3.1, 2.9]
    return df


def test_point_fit_table_is_the_formula_with_no_interval():
    from multiscale.laws.predict import predict_table

    fit = _fit()
    t = predict_table(fit, _rows())
    assert list(t.columns) == ["run", "family", "N", "D", "p", "median", "q05", "q95", "sd_log",
                               "extrapolation_sd_log", "loss"]
    for _, row in t.iterrows():
        one = predict(fit, row["N"], row["D"], {row["family"]: row["p"]}).table()[row["family"]]
        assert row["median"] == pytest.approx(one["median"], rel=1e-12)
        assert row["q05"] == row["median"] == row["q95"]
    assert "loss" not in predict_table(fit, _rows(loss=False)).columns


def test_bayes_table_is_posterior_predictive():
    """sigma widens the interval beyond the mean law's; in range there is no extrapolation term."""
    from multiscale.laws.predict import predict_table, predictive_draws

    fit = _bayes_with_sigma(sigma=0.05)
    t = predict_table(fit, _rows())
    mean_law = predict(fit, 1e8, 1e10, {"germanic": 0.5}).table()["germanic"]
    assert t.loc[0, "q95"] - t.loc[0, "q05"] > mean_law["q95"] - mean_law["q05"]
    # variances add: the mean law's spread plus a Student-t (nu = 5, scale 0.05) of variance 0.05^2 5/3
    sd_law = np.std(np.log(predictive_draws(fit, _rows(), noise=False)), axis=0)
    noise_var = t["sd_log"].to_numpy() ** 2 - sd_law ** 2
    assert noise_var == pytest.approx(np.full(3, 0.05 ** 2 * 5 / 3), rel=0.2)
    assert (t["extrapolation_sd_log"] == 0).all()


def test_extrapolation_term_widens_only_beyond_the_fitted_range():
    from multiscale.laws.predict import predict_table

    model = {"kappa": 0.05, "log_N_range": [np.log(5e7), np.log(2e8)], "log_D_range": [np.log(1e10)] * 2,
             "unit_N": 1.0, "unit_D": 1.0}
    plain = predict_table(_bayes_with_sigma(), _rows())
    wide = predict_table(_bayes_with_sigma(extrapolation=model), _rows())
    assert wide.loc[:1, ["median", "q05", "q95"]].equals(plain.loc[:1, ["median", "q05", "q95"]])
    assert wide.loc[2, "extrapolation_sd_log"] == pytest.approx(0.05 * np.log(4e8 / 2e8))
    assert wide.loc[2, "q95"] - wide.loc[2, "q05"] > plain.loc[2, "q95"] - plain.loc[2, "q05"]
    one = predict(_bayes_with_sigma(extrapolation=model), 4e8, 1e10, {"germanic": 0.25})
    assert one.extrapolation_sd == pytest.approx(0.05 * np.log(2))
    assert "extrapolation sd" in str(one)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="p"), r"no column\(s\) \['p'\]"),
    (lambda d: d.assign(family=["germanic", "celtic", "slavic"]), "families \\['celtic'\\]"),
    (lambda d: d.assign(N=[1e8, -1.0, 1e8]), "column 'N'.*rows \\[1\\]"),
    (lambda d: d.assign(p=[0.5, 1.5, 0.2]), "column 'p'.*rows \\[1\\]"),
    (lambda d: d.assign(D=[1e10, float("nan"), 1e10]), "column 'D'"),
])
def test_bad_tables_are_refused_naming_the_column(change, message):
    from multiscale.laws.predict import predict_table

    with pytest.raises(InputError, match=message):
        predict_table(_fit(), change(_rows()))
