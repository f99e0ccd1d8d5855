"""The noise models of the Bayesian fit (`fit_bayes(noise=...)`): the "scale" model recovers noise
that grows as N or p shrinks, wins by PSIS-LOO where it does, finds no slope where there is none,
and is carried through saving, loading and predictive draws."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.decisions.compare import compare_laws
from multiscale.errors import InputError
from multiscale.laws import fit_bayes, load_fit
from multiscale.laws.predict import predict_table

ROOT = Path(__file__).resolve().parent.parent
NUTS = {"chains": 2, "draws": 300, "warmup": 300, "extrapolation": False, "warn": False}


def ratio_table(slope_p: float, seed: int = 0, runs: int = 60) -> pd.DataFrame:
    """Two families at one (N, D), fam0 at p and fam1 at 1 - p, loss c p^-gamma with normal noise
    of log-loss sd 0.01 (p / 0.2)^slope_p."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, p in enumerate(np.geomspace(0.01, 0.99, runs)):
        for fam, pf, c, g in (("fam0", p, 2.5, 0.1), ("fam1", 1 - p, 3.0, 0.2)):
            sd = 0.01 * (pf / 0.2) ** slope_p
            rows.append({"run": f"r{r}", "family": fam, "N": 1e8, "D": 1e9, "p": pf,
                         "loss": c * pf ** -g * np.exp(sd * rng.standard_normal())})
    return pd.DataFrame(rows)


def ladder_table(slope_N: float, seed: int = 0) -> pd.DataFrame:
    """One family, 7 sizes x 3 budgets x 2 seeds of the chinchilla law, normal noise of log-loss
    with sd 0.02 (N / 3e7)^slope_N."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1e6, 1e9, 7):
        for D in np.geomspace(1e8, 1e10, 3):
            for _ in range(2):
                mu = 1.7 + 400 * N ** -0.34 + 400 * D ** -0.28
                rows.append({"run": f"r{len(rows)}", "family": "en", "N": N, "D": D, "p": 1.0,
                             "loss": mu * np.exp(0.02 * (N / 3e7) ** slope_N * rng.standard_normal())})
    return pd.DataFrame(rows)


def slope_interval(fit_or_idata, name: str) -> np.ndarray:
    idata = getattr(fit_or_idata, "idata", fit_or_idata)
    return np.quantile(idata.posterior[name].values[..., 0].ravel(), [0.05, 0.95])


def test_scale_noise_recovers_a_share_slope_and_is_saved_loaded_and_predicted(tmp_path):
    """Noise ~ p^-0.5: the slope's 90% interval holds -0.5 and not 0; the saved fit loads with its
    noise model, and its predictive interval is wider at a small share than at a large one."""
    fit = fit_bayes(ratio_table(-0.5), law="ratio", noise="scale", **NUTS)
    assert fit.noise.model == "scale" and fit.noise.slopes == ("p",)
    lo, hi = slope_interval(fit, "noise_slope_p")
    assert lo < -0.5 < hi and hi < 0, (lo, hi)
    back = load_fit(fit.save(tmp_path / "fit"))
    assert back.noise == fit.noise
    rows = pd.DataFrame({"run": ["a", "b"], "family": ["fam0", "fam0"], "N": 1e8, "D": 1e9, "p": [0.02, 0.9]})
    pred = predict_table(back, rows)
    assert pred["sd_log"][0] > 3 * pred["sd_log"][1], pred
    assert np.allclose(pred["sd_log"], predict_table(fit, rows)["sd_log"])


def test_homoscedastic_truth_gives_a_share_slope_interval_around_zero():
    fit = fit_bayes(ratio_table(0.0, seed=1), law="ratio", noise="scale", **NUTS)
    lo, hi = slope_interval(fit, "noise_slope_p")
    assert lo < 0 < hi and hi - lo < 0.6, (lo, hi)


def test_noise_growing_as_N_shrinks_is_recovered_and_wins_by_psis_loo():
    """compare_laws with both noise models: the scale model leads by more than 2 SE of PSIS-LOO, and
    its posterior's slope of N holds the truth, -0.4."""
    df = ladder_table(-0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = compare_laws(df, ["chinchilla"], "largest-D", method="nuts", draws=300, chains=2,
                           noise=("constant", "scale"))
    names = [r.name for r in cmp.results]
    assert names == ["chinchilla/constant", "chinchilla/scale"]
    assert cmp.rule["by"] == "PSIS-LOO elpd" and cmp.rule["use"] == "chinchilla/scale", cmp.rule
    assert cmp.results[1].n_params == cmp.results[0].n_params + 1
    lo, hi = slope_interval(cmp.results[1].idata, "noise_slope_N")
    assert lo < -0.4 < hi and hi < -0.2, (lo, hi)


def test_a_fit_saved_before_the_noise_models_loads_as_constant():
    fit = load_fit(ROOT / "docs/cpu_study_v2/fit_a")
    assert fit.noise.model == "constant" and fit.noise.slopes == ()
    rows = pd.read_csv(ROOT / "docs/cpu_study_v2/runs.csv").head(5)
    pred = predict_table(fit, rows)
    assert np.all((pred["q05"] < pred["median"]) & (pred["median"] < pred["q95"]))


def test_bad_noise_models_are_refused_naming_the_argument():
    with pytest.raises(InputError, match="noise must be one of"):
        fit_bayes(ratio_table(0.0), law="ratio", noise="wobbly")
    with pytest.raises(InputError, match="noise: the noise models are compared by NUTS"):
        compare_laws(ladder_table(0.0), ["chinchilla"], method="lbfgs", noise="constant,scale")


def test_a_law_started_at_its_point_fit_samples_the_scale_model():
    """transfer starts its chains at the point fit (the slopes at 0): on noise that does not vary,
    both slopes' intervals hold 0."""
    df = synthetic_runs(synthetic_truth(3, seed=3), noise=0.01, seed=0, N=(1e7, 1e8, 1e9), D=(1e9, 1e10),
                        n_mixtures=4)
    fit = fit_bayes(df, law="transfer", noise="scale", **NUTS)
    assert fit.noise.slopes == ("N", "p")
    for name in ("noise_slope_N", "noise_slope_p"):
        lo, hi = slope_interval(fit, name)
        assert lo < 0 < hi, (name, lo, hi)
