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
    with pytest.raises(InputError, match="--ratios"):
        check_ratios(fit, ratios, what="--ratios")


@pytest.mark.parametrize("N, D", [(float("nan"), 1e10), (1e9, float("inf")), (0, 1e10), (1e9, -1)])
def test_bad_scale_is_refused(N, D):
    with pytest.raises(InputError, match="N and D must be finite positive"):
        predict(_fit(), N, D)


def test_ratio_law_predicts_only_where_it_was_fitted():
    fit = PointFit(law=get_law("ratio"), families=("a", "b"), shared=(),
                   draws={"c": np.array([[3.0, 3.2]]), "gamma": np.array([[0.2, 0.1]])},
                   N_ref=2e7, D_ref=2e9, n_runs={"a": 5, "b": 5})
    assert predict(fit, 2e7, 2e9, "a=0.5").table()["a"]["median"] == pytest.approx(3.0 * 0.5 ** -0.2)
    with pytest.raises(InputError, match="cannot predict at N=1e\\+09"):
        predict(fit, 1e9, 2e9, "a=0.5")
