"""laws.data.prepare: the one run-table validation, then float64 arrays for the fits."""

import numpy as np
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.laws.data import prepare
from multiscale.laws.forms import get_law
from multiscale.runs import RunTableError

WIDE = dict(N=(1e7, 1e8), D=(1e9, 1e10), n_mixtures=2)


def test_arrays_hold_the_table():
    df = synthetic_runs(synthetic_truth(2, seed=1), noise=0.01, seed=0, **WIDE)
    clean, data, shared = prepare(df, get_law("multilingual"), "alpha,beta")
    assert shared == ("alpha", "beta") and data.families == ("fam0", "fam1")
    assert data.n_rows == len(df) and list(data.counts_F()) == [8, 8]
    np.testing.assert_array_equal(data.logL_R, np.log(clean["loss"].to_numpy(float)))
    np.testing.assert_array_equal(data.logp_R, np.log(clean["p"].to_numpy(float)))
    np.testing.assert_array_equal(data.fam_R, (clean["family"] == "fam1").to_numpy().astype(np.int32))
    assert data.N_ref == pytest.approx(np.sqrt(1e7 * 1e8)) and data.D_ref == pytest.approx(np.sqrt(1e9 * 1e10))
    np.testing.assert_array_equal(data.sem_rel_R, 0.0)  # loss_sem absent: 0
    assert data.weight_R is None


def test_names_are_stripped_by_the_run_table_validation():
    """' fam0' and 'fam0' are one family (multiscale.runs strips names), never two."""
    df = synthetic_runs(synthetic_truth(2, seed=1), noise=0.01, seed=0, **WIDE)
    df.loc[df["family"] == "fam0", "family"] = [" fam0", "fam0 "] * 4
    _, data, _ = prepare(df, get_law("multilingual"), "alpha,beta,gamma")
    assert data.families == ("fam0", "fam1") and list(data.counts_F()) == [8, 8]


def test_bad_tables_are_refused_by_the_run_table_validation():
    df = synthetic_runs(synthetic_truth(2, seed=1), noise=0.01, seed=0, **WIDE)
    bad = df.copy()
    bad.loc[3, "loss"] = np.nan
    with pytest.raises(RunTableError, match="column 'loss'"):
        prepare(bad, get_law("multilingual"))
    bad = df.copy()
    bad.loc[bad["run"] == bad["run"].iloc[0], "p"] = 0.9  # p disagrees with the run's mixture
    with pytest.raises(RunTableError, match="column 'p' disagrees with column 'p_fam0'"):
        prepare(bad, get_law("multilingual"))
    bad.loc[bad["run"] == bad["run"].iloc[0], ["p_fam0", "p_fam1"]] = 0.9  # the mixture sums to 1.8
    with pytest.raises(RunTableError, match="of run 'run0000' sum to 1.8, not 1"):
        prepare(bad, get_law("multilingual"))
    with pytest.raises(RunTableError, match="needs at least 7 runs per family"):
        prepare(df[df["N"] == 1e7], get_law("multilingual"))
    with pytest.raises(RunTableError, match="law 'ratio' needs runs that share one"):
        prepare(df, get_law("ratio"))
