"""The extrapolation term: distance from the fitted range, the per-row kappa, leave-largest-out."""

import numpy as np
import pandas as pd
import pytest

from multiscale.errors import InputError
from multiscale.laws.extrapolation import (
    FIELD_PRIOR_PATH,
    Z90,
    FieldPrior,
    combine,
    describe,
    distance,
    extrapolation_sd,
    field_prior,
    fitted_ranges,
    leave_largest_out,
    required_kappa,
)

RANGES = {"log_N_range": [np.log(1e6), np.log(1e8)], "log_D_range": [np.log(1e9), np.log(1e10)]}
PRIOR = FieldPrior(log_mean=float(np.log(0.04)), log_sd=0.3, ladders=4, within_sd=0.3, edge=0.5, source="test")


def test_distance_is_log_k_beyond_the_fitted_range_and_zero_inside():
    assert distance(RANGES, 1e7, 3e9) == 0 and distance(RANGES, 1e6, 1e10) == 0
    assert distance(RANGES, 1e9, 5e9) == pytest.approx(np.log(10))  # k = 10 beyond N_max
    assert distance(RANGES, 1e5, 1e12) == pytest.approx(np.log(100))  # the larger axis: D
    sd = extrapolation_sd({"kappa": 0.02, **RANGES}, np.array([1e7, 1e9, 1e10]), 5e9)
    assert sd.tolist() == pytest.approx([0.0, 0.02 * np.log(10), 0.02 * np.log(100)])  # grows with log k
    df = pd.DataFrame({"N": [1e6, 1e8, 1e7], "D": [1e9, 1e9, 1e9]})
    assert fitted_ranges(df) == {"log_N_range": pytest.approx([np.log(1e6), np.log(1e8)]),
                                 "log_D_range": pytest.approx([np.log(1e9)] * 2)}
    assert extrapolation_sd(None, 1e9, 1e9) == 0 and extrapolation_sd({"kappa": None, **RANGES}, 1e9, 1e9) == 0


def test_the_default_prior_is_the_shipped_field_measurement():
    """The ladder_t block of benchmarks/bench_extrapolation_field.py's pooled log-k summary; a
    missing file is a packaging bug and raises."""
    import json

    shipped = json.loads(FIELD_PRIOR_PATH.read_text())
    t = shipped["summary"]["log_k"]["pooled"]["ladder_t"]
    p = field_prior()
    assert (p.log_mean, p.log_sd, p.within_sd, p.edge) == (t["log_mean"], t["log_sd"], t["within_sd"], t["edge"])
    assert p.ladders == len(shipped["ladders"]) == len(t["kappa_90_per_ladder"]) == 4
    assert p.log_mean == pytest.approx(np.mean(np.log(list(t["kappa_90_per_ladder"].values()))))
    assert p.kappa == pytest.approx(t["kappa"]) and 0.015 < p.kappa < 0.06 and "field_prior.json" in p.source
    band = shipped["summary"]["log_k"]["pooled"]
    assert p.edge == pytest.approx(band["c"] / band["d"]) and 0.3 < p.edge < 1.0  # k ~ 1.8
    with pytest.raises(FileNotFoundError, match="ships with the package"):
        field_prior(FIELD_PRIOR_PATH.with_name("missing.json"))
    good = dict(log_mean=-3.0, log_sd=0.3, ladders=4, within_sd=0.3, edge=0.5, source="x")
    for bad, match in ((dict(log_sd=0.0), "log_sd must be"), (dict(within_sd=-1.0), "within_sd must be"),
                       (dict(edge=float("inf")), "edge must be"), (dict(log_mean=float("nan")), "log_mean must be"),
                       (dict(ladders=1), "ladders must be"), (dict(ladders=3.0), "ladders must be")):
        with pytest.raises(InputError, match=match):
            FieldPrior(**{**good, **bad})


def _exp(kappa, resolution=0.01):
    return {"kappa": kappa, "resolution": resolution}


def test_the_prior_is_a_new_ladder_of_the_field_and_the_table_updates_it():
    """Without experiments: the Gaussian-equivalent 90% scale of the field's predictive for a new
    ladder (wider than its median kappa, the more so the fewer ladders measured it); experiments
    pull it towards what they need, and many of them dominate; refits that needed no widening pull
    it down, never to 0."""
    sure = FieldPrior(log_mean=float(np.log(0.04)), log_sd=1e-4, ladders=50, within_sd=0.3, edge=0.5, source="x")
    assert combine(sure, []) == pytest.approx(0.04, rel=1e-3)  # no spread between ladders: their kappa
    few = FieldPrior(**{**PRIOR.__dict__, "ladders": 2})
    assert 0.04 < combine(PRIOR, []) < combine(few, [])  # Student-t with ladders - 1 degrees of freedom
    assert PRIOR.kappa == combine(PRIOR, [])
    assert 0.04 < combine(PRIOR, [_exp(0.04)]) < combine(PRIOR, [])  # agreeing evidence: less uncertain
    one, two, many = (combine(PRIOR, [_exp(0.1)] * n) for n in (1, 2, 40))
    assert combine(PRIOR, []) < one < two < many and many == pytest.approx(0.1, rel=0.05)
    none_needed = combine(PRIOR, [_exp(0.0, resolution=0.01)] * 2)
    assert 0 < none_needed < 0.01 < combine(PRIOR, [])  # censored below the refits' resolution, not 0
    blind = combine(PRIOR, [_exp(0.0, resolution=0.5)])  # a refit too wide to see anything
    assert blind == pytest.approx(combine(PRIOR, []), rel=0.02)


def test_required_kappa_widens_exactly_enough():
    rng = np.random.default_rng(0)
    draws = np.exp(rng.normal(0.0, 0.01, size=(40000, 3)))  # interval half-width ~ 0.01645 in log
    loss = np.exp([0.005, 0.05, -0.1])  # inside; outside above; outside below
    k = required_kappa(loss, draws, dist=np.array([1.0, 1.0, 2.0]))
    assert k[0] == 0
    h = Z90 * 0.01
    assert k[1] == pytest.approx(np.sqrt(0.05 ** 2 - h ** 2) / Z90, rel=0.02)
    assert k[2] == pytest.approx(np.sqrt(0.1 ** 2 - h ** 2) / (2 * Z90), rel=0.02)
    # with kappa = k the widened half-width sqrt(h^2 + (Z90 k d)^2) reaches the error exactly
    assert np.hypot(h, Z90 * k[1]) == pytest.approx(0.05, rel=0.02)


def _table(levels_N=(1e6, 1e7, 1e8), levels_D=(1e9,)):
    rows = [{"run": f"r{i}{j}", "family": "a", "N": n, "D": d, "p": 1.0, "loss": 3.0}
            for i, n in enumerate(levels_N) for j, d in enumerate(levels_D)]
    return pd.DataFrame(rows)


def test_leave_largest_out_measures_the_refits_error():
    """A stand-in refit that predicts 3.0 exactly with a tiny spread: the left-out rows at N = 1e8
    carry loss 3.3, so kappa is what their log error needs at distance log(10)."""
    df = _table()
    df.loc[df["N"] == 1e8, "loss"] = 3.3
    seen = []

    def fit_fn(sub):
        seen.append(sorted(sub["N"].unique()))
        return "refit"

    def draws_fn(fit, rows):
        return np.full((200, len(rows)), 3.0) * np.exp(np.linspace(-1e-6, 1e-6, 200))[:, None]

    m = leave_largest_out(df, fit_fn, draws_fn, prior=PRIOR)
    assert seen == [[1e6, 1e7]]
    k_table = np.log(1.1) / (Z90 * np.log(10))  # log k = log 10 beyond the refit's N
    assert m["kappa_table"] == pytest.approx(k_table, rel=1e-4)
    assert m["experiments"][0]["kappa"] == pytest.approx(k_table, rel=1e-4)
    assert m["kappa"] == combine(PRIOR, m["experiments"]) and k_table < m["kappa"] < PRIOR.kappa  # towards it
    assert m["experiments"][0]["resolution"] == pytest.approx(0.9e-6 / (Z90 * np.log(10)), rel=0.02)  # q05-q95
    assert m["prior"] == PRIOR.to_dict() and m["distance"] == "log_k"
    assert m["experiments"][0]["left_out"] == "N" and m["experiments"][0]["coverage_before"] == 0
    assert m["skipped"] == ["D: 1 fitted level(s), 3 needed to leave the largest out"]
    assert m["log_N_range"] == pytest.approx([np.log(1e6), np.log(1e8)])
    assert f"{m['kappa']:.4f} per unit log k" in describe(m) and "refit covered 0%" in describe(m)
    assert leave_largest_out(df, fit_fn, draws_fn)["prior"] == field_prior().to_dict()  # the default


def test_a_left_out_level_nearer_than_the_edge_is_measured_at_the_edge():
    """Largest N only 1% beyond the rest (log k = 0.00995): its 10% error is charged as if at
    the prior's edge (0.5), not as a growth rate of 10% per 1%."""
    df = _table(levels_N=(1e6, 1e7, 1.01e7))
    df.loc[df["N"] == 1.01e7, "loss"] = 3.3

    def draws_fn(fit, rows):
        return np.full((200, len(rows)), 3.0) * np.exp(np.linspace(-1e-6, 1e-6, 200))[:, None]

    m = leave_largest_out(df, lambda sub: "refit", draws_fn, prior=PRIOR)
    assert m["experiments"][0]["distance"] == pytest.approx(np.log(1.01))
    assert m["kappa_table"] == pytest.approx(np.log(1.1) / (Z90 * 0.5), rel=1e-4)


def test_too_few_levels_or_refused_refits_leave_the_prior():
    m = leave_largest_out(_table(levels_N=(1e6, 1e7)), lambda s: None, lambda f, r: None, prior=PRIOR)
    assert m["kappa"] == PRIOR.kappa and m["kappa_table"] is None and len(m["skipped"]) == 2
    assert "not updated by this table" in describe(m)

    def refuse(sub):
        raise InputError("too few runs")

    m = leave_largest_out(_table(), refuse, lambda f, r: None, prior=PRIOR)
    assert m["kappa"] == PRIOR.kappa and "cannot be fitted (too few runs)" in m["skipped"][0]


def test_fit_many_fits_all_left_out_tables_at_once_and_may_refuse_one():
    """`fit_bayes` hands both sub-tables to one `fit_many` (one NUTS program); a table it
    refuses (an InputError in its place) skips that axis only, in axis order."""
    df = _table(levels_D=(1e9, 2e9, 4e9))
    calls = []

    def fit_many(tables):
        calls.append([(sorted(t["N"].unique()), sorted(t["D"].unique())) for t in tables])
        return ["refit", InputError("too few runs")]

    def draws_fn(fit, rows):
        assert fit == "refit"
        return np.full((100, len(rows)), 3.0) * np.exp(np.linspace(-0.01, 0.01, 100))[:, None]

    m = leave_largest_out(df, None, draws_fn, fit_many=fit_many, prior=PRIOR)
    assert calls == [[([1e6, 1e7], [1e9, 2e9, 4e9]), ([1e6, 1e7, 1e8], [1e9, 2e9])]]
    assert [e["left_out"] for e in m["experiments"]] == ["N"] and m["kappa_table"] == 0
    assert m["kappa"] == combine(PRIOR, m["experiments"]) < PRIOR.kappa  # a refit that missed nothing
    assert m["skipped"] == ["D: the rows below its largest level cannot be fitted (too few runs)"]


def test_refit_settings():
    """1,000 draws in all over the fit's chains (at most the fit's own per chain), the fit's
    warm-up (WARMUP when not given), the rest unchanged."""
    from multiscale.laws.bayes import REFIT_DRAWS, WARMUP, refit_settings

    base = dict(chains=4, draws=1000, warmup=None, seed=3, target_accept=0.85, dense_mass=None, chain_method="auto")
    r = refit_settings(base)
    assert (REFIT_DRAWS, WARMUP) == (1000, 500)
    assert r == {**base, "draws": 250, "warmup": WARMUP}
    assert refit_settings({**base, "chains": 3})["draws"] == 334  # ceil(1000 / 3)
    assert refit_settings({**base, "chains": 1, "draws": 150, "warmup": 80}) == {
        **base, "chains": 1, "draws": 150, "warmup": 80}
    # a large table's refits run on at most 2 chains (parallel chains' memory grows with their number)
    assert refit_settings(base, rows=15000) == {**base, "chains": 2, "draws": 500, "warmup": WARMUP}
    assert refit_settings(base, rows=4999) == r


@pytest.mark.slow
def test_a_fit_records_its_prior_and_widens_only_beyond_the_fitted_range(tmp_path):
    """A real NUTS fit: the saved extrapolation block records the prior it was given; the
    predictive interval is the term-free one inside the fitted range and widens with log k beyond."""
    from multiscale.laws import fit_bayes, load_fit
    from multiscale.laws.predict import predict_table, predictive_draws

    rng = np.random.default_rng(0)
    grid = [(n, d) for n in (1e7, 3e7, 1e8) for d in (1e9, 3e9, 1e10)] * 2
    loss = [(1.8 + 400 / n ** 0.34 + 900 / d ** 0.28) * np.exp(0.01 * rng.standard_normal()) for n, d in grid]
    df = pd.DataFrame({"run": [f"r{i}" for i in range(len(grid))], "family": "a", "N": [n for n, _ in grid],
                       "D": [d for _, d in grid], "p": 1.0, "loss": loss})
    fit = fit_bayes(df, law="chinchilla", chains=2, draws=300, warmup=300, seed=0, warn=False,
                    extrapolation_prior=PRIOR)
    ex = fit.extrapolation
    assert ex["prior"] == PRIOR.to_dict() and [e["left_out"] for e in ex["experiments"]] == ["N", "D"]
    assert ex["kappa"] == pytest.approx(combine(PRIOR, ex["experiments"]))
    fit.save(tmp_path / "fit")
    assert load_fit(tmp_path / "fit").extrapolation == ex
    rows = pd.DataFrame({"run": ["in", "x2", "x4", "x8"], "family": "a", "N": [3e7, 2e8, 4e8, 8e8],
                         "D": 3e9, "p": 1.0, "loss": 2.5})
    with_term, without = predictive_draws(fit, rows, seed=1), predictive_draws(fit, rows, seed=1, extrapolation=False)
    np.testing.assert_array_equal(with_term[:, 0], without[:, 0])  # inside: exactly the term-free draws
    assert predict_table(fit, rows)["extrapolation_sd_log"].tolist() == pytest.approx(
        [0.0, *(ex["kappa"] * np.log([2, 4, 8]))])  # log k beyond N_max = 1e8

    def width(draws):
        return np.log(np.quantile(draws, 0.95, axis=0) / np.quantile(draws, 0.05, axis=0))

    widen = width(with_term) - width(without)
    assert widen[0] == 0 and 0 < widen[1] < widen[2] < widen[3]
