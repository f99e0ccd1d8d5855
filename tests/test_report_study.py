"""The CPU studies' analysis (examples/cpu_study/study_analysis.py) on a synthetic study
whose answers are known: a law generates the losses, each seed adds the same offset to every
mixture (so pairing by seed cancels it exactly), and the fits are the generating law itself."""

import zlib

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t
from study_analysis import (
    format_study_summary,
    measured_mixtures,
    mixture_label,
    over_seeds,
    paired_differences,
    paired_statistics,
    run_seed,
    select_runs,
    summarize_study,
    transfer_plan,
)

from multiscale.errors import InputError
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import get_law, predict_loss
from multiscale.sweep.plan import format_run_id

FAMS = ("fam0", "fam1", "fam2")
TRUTH = {"E": [1.8, 2.2, 2.0], "A": [30.0, 25.0, 35.0], "B": [60.0, 50.0, 80.0],
         "alpha": [0.30, 0.28, 0.32], "beta": [0.30, 0.32, 0.30], "gamma": [0.10, 0.20, 0.05]}
SEED_OFFSET = {0: 0.0, 1: 0.03, 2: -0.01}
PRESETS = {"cpu-100k": 1e5, "cpu-200k": 2e5, "cpu-800k": 8e5}
MIXTURES = {"uniform": (1 / 3, 1 / 3, 1 / 3), "fam00.5": (0.5, 0.25, 0.25), "fam10.5": (0.25, 0.5, 0.25),
            "fam20.5": (0.25, 0.25, 0.5), "pstar-small3": (0.2, 0.5, 0.3), "temp0.3": (0.4, 0.3, 0.3),
            "dir0": (0.6, 0.3, 0.1), "dir1": (0.1, 0.3, 0.6), "dir2": (0.3, 0.6, 0.1)}


def _law_loss(N, D, p):
    params = {k: np.array(v)[None, :] for k, v in TRUTH.items()}
    return np.asarray(predict_loss(get_law("multilingual"), params, N, D, np.asarray(p)[None, :]))[0]


def _table() -> pd.DataFrame:
    rows = []
    for preset, N in PRESETS.items():
        for label, p in MIXTURES.items():
            for seed in ((0, 1, 2) if preset == "cpu-800k" else (0,)):
                digest = f"{zlib.crc32(f'{preset}{label}{seed}'.encode()):08x}"
                run = format_run_id(preset, 200_000, label, seed, digest)
                loss = _law_loss(N, 2e5, np.array(p)) + SEED_OFFSET[seed]
                for j, f in enumerate(FAMS):
                    rows.append({"run": run, "family": f, "N": N, "D": 2e5, "p": p[j], "loss": float(loss[j]),
                                 **{f"p_{g}": p[i] for i, g in enumerate(FAMS)}})
    return pd.DataFrame(rows)


def _point_fit(law: str, draws: dict) -> PointFit:
    return PointFit(law=get_law(law), families=FAMS, shared=(), draws={k: np.array(v, float)[None, :]
                                                                          for k, v in draws.items()},
                    N_ref=2e5, D_ref=2e5, n_runs={f: 10 for f in FAMS})


@pytest.fixture(scope="module")
def table():
    return _table()


def test_run_ids_give_labels_and_seeds_through_the_sweep_parser(table):
    run = table["run"][table["run"].str.contains("pstar-small3-s2")].iloc[0]
    assert mixture_label(run) == "pstar-small3" and run_seed(run) == 2
    with pytest.raises(InputError, match="not a sweep run id"):
        mixture_label("my-own-run")


def test_select_by_size_and_label(table):
    small = select_runs(table, max_N=5e5)
    assert set(small["N"]) == {1e5, 2e5}
    large = select_runs(table, min_N=8e5, exclude=("pstar-small3", "temp0.3-s1"))
    labels = set(large["run"].map(mixture_label))
    assert "pstar-small3" not in labels and large["run"].nunique() == 3 * len(MIXTURES) - 3 - 1
    with pytest.raises(InputError, match="no rows"):
        select_runs(table, min_N=1e7)


def test_measured_mixtures_and_over_seeds(table):
    large = table[table["N"] == 8e5]
    c = {"fam0": 2.0, "fam1": 4.0, "fam2": 1.0}
    m = measured_mixtures(large, c)
    assert set(m) == {f"{lab}{s}" for lab in MIXTURES for s in ("", "-s1", "-s2")}
    u = m["uniform-s1"]
    want = _law_loss(8e5, 2e5, np.array(MIXTURES["uniform"])) + SEED_OFFSET[1]
    assert u["seed"] == 1 and u["mean_loss"] == pytest.approx(want.mean(), rel=1e-12)
    assert u["normalized_objective"] == pytest.approx(np.mean(want / [2.0, 4.0, 1.0]), rel=1e-12)
    assert measured_mixtures(large)["uniform"]["normalized_objective"] is None
    with pytest.raises(InputError, match="fam2"):
        measured_mixtures(large, {"fam0": 1.0, "fam1": 1.0})
    g = over_seeds(m)["temp0.3"]
    vals = [m["temp0.3"]["mean_loss"], m["temp0.3-s1"]["mean_loss"], m["temp0.3-s2"]["mean_loss"]]
    assert g["seeds"] == [0, 1, 2] and g["mean_loss"] == vals
    assert g["mean_loss_mean"] == pytest.approx(np.mean(vals))
    assert g["mean_loss_sd"] == pytest.approx(np.std(vals, ddof=1))


def test_paired_differences_cancel_the_seed_effect(table):
    """Every seed shifts all mixtures alike: paired differences are the same on every seed
    (SD 0), while the unpaired SD over seeds is the seed offsets' SD."""
    m = measured_mixtures(table[table["N"] == 8e5])
    d = paired_differences(m, "uniform")["pstar-small3"]
    law = _law_loss(8e5, 2e5, np.array(MIXTURES["pstar-small3"])).mean() - \
        _law_loss(8e5, 2e5, np.array(MIXTURES["uniform"])).mean()
    assert d["seeds"] == [0, 1, 2]
    assert d["mean_loss"]["diffs"] == pytest.approx([law] * 3, abs=1e-12)
    assert d["mean_loss"]["sd"] == pytest.approx(0.0, abs=1e-12)
    assert over_seeds(m)["pstar-small3"]["mean_loss_sd"] == pytest.approx(np.std(list(SEED_OFFSET.values()), ddof=1))
    assert "normalized_objective" not in d  # not measured without c
    with pytest.raises(InputError, match="no 'nope' run"):
        paired_differences(m, "nope")


def test_paired_statistics_t_interval():
    s = paired_statistics([1.0, 2.0, 6.0], level=0.90)
    se = np.std([1, 2, 6], ddof=1) / np.sqrt(3)
    assert s["mean"] == 3.0 and s["sd"] == pytest.approx(np.sqrt(7)) and s["se"] == pytest.approx(se)
    assert s["interval"] == pytest.approx([3 - t.ppf(0.95, 2) * se, 3 + t.ppf(0.95, 2) * se])
    wider = paired_statistics([1.0, 2.0, 6.0], level=0.99)["interval"]
    assert wider[0] < s["interval"][0] and wider[1] > s["interval"][1]
    one = paired_statistics([0.5])
    assert one == {"diffs": [0.5], "mean": 0.5, "sd": None, "se": None, "interval": None}
    with pytest.raises(InputError, match="level"):
        paired_differences({}, level=1.5)


def test_transfer_plan_refuses_bad_input():
    with pytest.raises(InputError, match="at least one"):
        transfer_plan({}, {"presets": ["cpu-100k"]})
    plan = transfer_plan({"p": {"ratios": {"fam0": 0.1234567, "fam1": 0.8765433}}}, {"name": "x", "seeds": [0]})
    assert plan["mixtures"] == [{"name": "p", "ratios": {"fam0": 0.123457, "fam1": 0.876543}, "normalize": True}]
    assert plan["seeds"] == [0] and plan["name"] == "cpu-study-p"


def test_summarize_study_with_the_generating_law(table):
    """Fitted with the truth itself: prediction errors are zero at the fitted sizes and, without
    noise, at the held-out size too except for the seed offsets."""
    truth = _point_fit("multilingual", TRUTH)
    loss_p1 = _law_loss(8e5, 2e5, np.ones(3))
    large_fit = _point_fit("ratio", {"c": loss_p1, "gamma": TRUTH["gamma"]})
    rec = {"ratios": {"fam0": 0.2, "fam1": 0.5, "fam2": 0.3},
           "families": {f: {"p_star": {"median": 0.3, "q05": 0.2, "q95": 0.4}} for f in FAMS},
           "objective_at_p_star": {"median": 1.0, "q05": 1.0, "q95": 1.0}}
    s = summarize_study(table, fit_small=truth, fit_small_point=truth, fit_large=large_fit,
                        rec_small=rec, rec_large={**rec, "ratios": {"fam0": 0.3, "fam1": 0.4, "fam2": 0.3}},
                        fit_max_N=5e5)
    assert s["n_runs"] == table["run"].nunique() and s["n_rows"] == len(table)
    assert s["sizes"] == {"100000": [200000], "200000": [200000], "800000": [200000]}
    assert s["N_large"] == 8e5 and "N_mid" not in s  # one held-out size: no size below the largest
    assert s["errors"]["N100000"]["mean_rel_error"] == pytest.approx(0.0, abs=1e-12)
    assert s["scores"]["nuts_fitted"]["overall"]["mape"] == pytest.approx(0.0, abs=1e-9)
    assert s["scores"]["nuts_heldout"]["overall"]["n"] == 3 * 3 * len(MIXTURES)
    assert s["measured_large"]["uniform"]["normalized_objective"] == pytest.approx(
        np.mean(_law_loss(8e5, 2e5, np.array(MIXTURES["uniform"])) / loss_p1))
    assert set(s["paired_vs_pstar_small3"]) == set(MIXTURES) - {"pstar-small3"}
    assert s["pstar_l1_small_vs_large"] == pytest.approx(0.2)
    text = format_study_summary(s)
    for piece in ("runs,", "nuts_heldout: overall R2", "paired by seed, minus uniform",
                  "L1(p*_small, p*_large) = 0.200"):
        assert piece in text, piece
