"""Run-table validation, I/O and the mixture matrix."""

import numpy as np
import pandas as pd
import pytest

from multiscale.runs import (REQUIRED_COLUMNS, RunTableError, mixture_matrix, read_runs,
                             validate_runs, write_runs)


def _table(n_runs=8, fams=("a", "b")):
    rows = []
    for r in range(n_runs):
        p = np.array([0.25 + 0.05 * r, 0.75 - 0.05 * r])
        for j, f in enumerate(fams):
            rows.append({"run": f"r{r}", "family": f, "N": 1e7, "D": 1e9, "p": p[j],
                         "loss": 3.0 + 0.1 * j - 0.1 * r, "p_a": p[0], "p_b": p[1]})
    return pd.DataFrame(rows)


def test_valid_table_is_typed_copy():
    df = _table()
    out = validate_runs(df)
    assert out is not df
    assert list(out.columns[:6]) == list(REQUIRED_COLUMNS)
    assert out["N"].dtype == np.float64
    assert pd.api.types.is_string_dtype(out["run"])


@pytest.mark.parametrize("col, value, needle", [
    ("p", 0.0, "column 'p'"), ("p", 1.5, "column 'p'"), ("loss", -1.0, "column 'loss'"),
    ("loss", np.inf, "column 'loss'"), ("N", 0.0, "column 'N'"), ("D", np.nan, "column 'D'"),
])
def test_bad_values_name_row_run_and_column(col, value, needle):
    df = _table()
    df.loc[5, col] = value
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    msg = str(e.value)
    assert needle in msg and "row 5" in msg and "run 'r2'" in msg


def test_missing_column_and_duplicates():
    with pytest.raises(RunTableError, match="missing required column.*'loss'"):
        validate_runs(_table().drop(columns=["loss"]))
    df = pd.concat([_table(), _table().iloc[[0]]], ignore_index=True)
    with pytest.raises(RunTableError, match="duplicate .*row 0 .*row 16"):
        validate_runs(df)


def test_too_few_runs_for_law_names_family():
    df = _table(n_runs=4)
    validate_runs(df, law="ratio")
    with pytest.raises(RunTableError, match=r"column 'family'.*'a' has 4"):
        validate_runs(df, law="multilingual")


def test_non_numeric_cell_is_named():
    df = _table().astype({"loss": object})
    df.loc[3, "loss"] = "oops"
    with pytest.raises(RunTableError, match="'loss' is not numeric at row 3"):
        validate_runs(df)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_roundtrip_atomic(tmp_path, suffix):
    df = _table()
    path = write_runs(df, tmp_path / f"runs{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"runs{suffix}"]  # no temp file left
    back = read_runs(path)
    pd.testing.assert_frame_equal(back, validate_runs(df), check_dtype=False)


def test_read_missing_file_and_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_runs(tmp_path / "nope.csv")
    bad = _table()
    bad.loc[0, "p"] = 2.0
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(RunTableError, match="bad.csv.*column 'p'"):
        read_runs(tmp_path / "bad.csv")


def test_mixture_matrix():
    runs, fams, P = mixture_matrix(_table())
    assert fams == ["a", "b"] and len(runs) == 8 and P.shape == (8, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    df = _table()
    df.loc[1, "p_a"] = 0.9  # run r0 has two different mixtures on its two rows
    with pytest.raises(RunTableError, match="r0"):
        mixture_matrix(df)
