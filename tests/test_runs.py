"""Run-table validation, I/O and the mixture matrix."""

import numpy as np
import pandas as pd
import pytest

from multiscale.errors import InputError, MissingFileError
from multiscale.runs import (
    P_TOLERANCE,
    REQUIRED_COLUMNS,
    ROW_COLUMNS,
    SUM_TOLERANCE,
    RunTableError,
    column_order,
    make_rows,
    mixture_columns,
    mixture_matrix,
    read_runs,
    rows_csv,
    validate_runs,
    write_runs,
)


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


def test_one_run_under_two_names_is_refused():
    """A configuration trained twice at one seed by a deterministic trainer is one measurement
    (the second CPU study's stage C repeated two of stage A's runs under new names)."""
    df = _table().assign(loss=lambda d: d["loss"] + np.pi * 1e-3)  # unrounded, as training writes them
    copy = df[df["run"] == "r3"].assign(run="r3-again")
    with pytest.raises(RunTableError, match=r"runs 'r3' and 'r3-again' are one run under two names.*row 6"):
        validate_runs(pd.concat([df, copy], ignore_index=True))
    # another seed, another D, or one loss differing in its last bit are other measurements
    validate_runs(pd.concat([df.assign(seed=0), copy.assign(seed=1)], ignore_index=True))
    validate_runs(pd.concat([df, copy.assign(D=2e9)], ignore_index=True))
    nudged = copy.copy()
    nudged.loc[nudged.index[0], "loss"] = np.nextafter(nudged["loss"].iloc[0], 10.0)
    validate_runs(pd.concat([df, nudged], ignore_index=True))
    # losses rounded to 4 decimals (published tables) may agree by chance
    validate_runs(pd.concat([df, copy], ignore_index=True).assign(loss=lambda d: d["loss"].round(4)))


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


# ---------------------------------------------------------------- the row builder


def test_make_rows_schema_order_and_sampled_mixture():
    evals = {"a": {"loss": 3.1, "loss_sem": 0.01, "bpb": 4.2, "eval_tokens": 100},
             "b": {"loss": 3.3, "loss_sem": 0.02, "bpb": 4.5, "eval_tokens": 90},
             "c": {"loss": 3.9, "loss_sem": 0.03, "bpb": 5.0, "eval_tokens": 80}}
    rows = make_rows(run="r", N=1550560, D=198656, step=97, model="cpu-1.6m", seed=0,
                     mixture={"a": 0.75, "b": 0.25}, per_family=evals, families=["a", "b", "c"])
    # one row per family with a ratio > 0 (c was evaluated but not trained on: no row)
    assert [r["family"] for r in rows] == ["a", "b"]
    assert list(rows[0]) == column_order(["a", "b", "c"]) == [*ROW_COLUMNS, "p_a", "p_b", "p_c"]
    assert rows[1]["p"] == 0.25 and rows[1]["p_a"] == 0.75 and rows[1]["p_c"] == 0.0
    assert rows[0]["N"] == 1550560 and isinstance(rows[0]["N"], int)  # written as given
    assert rows[0]["eval_tokens"] == 100 and rows[1]["loss_sem"] == 0.02
    text = rows_csv(rows, column_order(["a", "b", "c"]))
    assert text.splitlines()[0] == ",".join(column_order(["a", "b", "c"]))
    back = read_runs_text(text)
    assert back["p_c"].tolist() == [0.0, 0.0] and back["N"].tolist() == [1550560.0] * 2


def test_make_rows_unique_tokens_and_refusals():
    rows = make_rows(run="r", N=1, D=2, step=3, model="m", seed=4, mixture={"a": 1.0},
                     per_family={"a": {"loss": 2.0}}, unique_tokens={"a": 5e6})
    assert list(rows[0]) == column_order(["a"], unique_tokens=True)
    assert rows[0]["unique_tokens"] == 5e6 and rows[0]["bpb"] is None
    with pytest.raises(InputError, match="'z'"):
        make_rows(run="r", N=1, D=2, step=3, model="m", seed=4, mixture={"z": 1.0},
                  per_family={}, families=["a"])
    with pytest.raises(InputError, match="family 'a' has no 'loss'"):
        make_rows(run="r", N=1, D=2, step=3, model="m", seed=4, mixture={"a": 1.0},
                  per_family={"a": {"bpb": 1.0}})


def read_runs_text(text):
    import io

    return validate_runs(pd.read_csv(io.StringIO(text)))


# ---------------------------------------------------------------- contradictions within a run
# (issue 11: each was fitted without complaint before)


def _no_mixture(df):
    return df.drop(columns=mixture_columns(df))


def test_run_table_error_is_an_input_error():
    assert issubclass(RunTableError, InputError) and issubclass(RunTableError, ValueError)


def test_ratios_of_a_run_summing_to_4_5_are_refused():
    fams = ("a", "b", "c", "d", "e")
    df = pd.DataFrame([{"run": f"r{r}", "family": f, "N": 1e7, "D": 1e9, "p": 0.2, "loss": 3.0}
                       for r in range(4) for f in fams])
    validate_runs(df)
    df.loc[df["run"] == "r3", "p"] = 0.9  # each family 0.9: the run's ratios sum to 4.5
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    msg = str(e.value)
    assert "column 'p' of run 'r3' sums to 4.5 over its families, not at most 1" in msg
    assert "row 15 (run 'r3')" in msg


def test_ratios_summing_below_1_with_every_family_evaluated_are_refused():
    df = _table()
    for col in ("p", "p_a", "p_b"):
        df.loc[df["run"] == "r2", col] = df.loc[df["run"] == "r2", col] * 0.8
    with pytest.raises(RunTableError, match=r"p_<family> columns of run 'r2' sum to 0\.8"):
        validate_runs(df)
    # without p_ columns nothing says the run evaluated every family: at most 1 is all we know
    validate_runs(_no_mixture(df))


def test_some_families_evaluated_sum_to_at_most_1():
    df = _table(n_runs=4, fams=("a", "b"))
    only_a = df[df["family"] == "a"]  # p_b > 0 but b has no row: a partial run, sum p <= 1
    assert validate_runs(only_a)["p"].sum() < 4


def test_p_disagreeing_with_its_mixture_column_is_refused():
    df = _table()
    df.loc[6, "p"] = 0.45  # row 6: run r3, family a, whose p_a is 0.4
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    msg = str(e.value)
    assert "column 'p' disagrees with column 'p_a'" in msg and "row 6 (run 'r3')" in msg
    assert "p = 0.45" in msg and "p_a = 0.4" in msg
    df.loc[6, "p"] = 0.4 + P_TOLERANCE / 2  # within the stated tolerance
    validate_runs(df)


def test_mixture_columns_summing_above_1_are_refused():
    df = _table()
    df["p_c"] = 0.5  # a third family in every mixture: the p_ columns sum to 1.5
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    assert "p_<family> columns of run 'r0' sum to 1.5, not 1" in str(e.value)
    df["p_c"] = SUM_TOLERANCE / 2  # rounding in a published table is tolerated
    validate_runs(df)


def test_a_row_without_its_mixture_column_is_refused():
    df = _table()
    df.loc[df["family"] == "b", "family"] = "c"  # the table has p_a, p_b but rows of family c
    with pytest.raises(RunTableError, match="no column 'p_c' for the family of row 1"):
        validate_runs(df)


def test_two_mixtures_in_one_run_are_refused():
    df = _table()
    df.loc[3, ["p_a", "p_b"]] = [0.5, 0.5]  # run r1's second row carries another mixture
    df.loc[3, "p"] = 0.5
    with pytest.raises(RunTableError, match=r"different mixtures.*'p_a'.*row 2 \(run 'r1'\), row 3"):
        validate_runs(df)


@pytest.mark.parametrize("col", ["N", "D"])
def test_N_or_D_differing_within_a_run_is_refused(col):
    df = _table()
    df.loc[9, col] = df.loc[9, col] * 2  # run r4, family b
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    msg = str(e.value)
    assert f"column {col!r} differs within run 'r4'" in msg and "row 8" in msg and "row 9" in msg


# ---------------------------------------------------------------- names, duplicates, NaN


def test_family_with_spaces_is_the_same_family():
    df = _table()
    df["family"] = df["family"].astype(object)
    df.loc[0, "family"] = " a"
    df.loc[3, "family"] = "b\t"
    out = validate_runs(df)
    assert sorted(out["family"].unique()) == ["a", "b"]  # never a second family
    df.loc[1, "family"] = "a "  # now run r0 has family a twice
    with pytest.raises(RunTableError, match=r"duplicate \(run, family\).*row 0 \(run 'r0'\), row 1"):
        validate_runs(df)


def test_names_empty_or_with_separators_are_refused():
    df = _table().astype({"family": object, "run": object})
    df.loc[4, "family"] = "  "
    with pytest.raises(RunTableError, match=r"column 'family' is empty \(or only spaces\) at row 4"):
        validate_runs(df)
    df = _table().astype({"family": object})
    df.loc[2, "family"] = "a=b"
    with pytest.raises(RunTableError, match="',' or '='.*row 2"):
        validate_runs(df)


def test_column_names_are_stripped():
    df = _table().rename(columns={"loss": " loss", "p_a": "p_a "})
    assert list(validate_runs(df).columns) == list(_table().columns)
    df = _table().rename(columns={"p_a": " p_b"})
    with pytest.raises(RunTableError, match=r"\['p_b'\] appear more than once"):
        validate_runs(df)


@pytest.mark.parametrize("col", ["run", "family", "N", "D", "p", "loss"])
def test_nan_in_a_required_column_is_refused(col):
    df = _table().astype({col: object})
    df.loc[11, col] = np.nan
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    assert f"column {col!r}" in str(e.value) and "row 11" in str(e.value)


@pytest.mark.parametrize("col, value", [("loss_sem", np.inf), ("bpb", -1.0), ("p_a", 1.5),
                                        ("unique_tokens", 0.0), ("eval_tokens", np.inf), ("step", 1.5),
                                        ("eval_tokens", 100.5), ("seed", 0.5), ("step", -1.0)])
def test_optional_columns_in_range(col, value):
    df = _table()
    df[col] = df.get(col, 1.0)
    df.loc[5, col] = value
    with pytest.raises(RunTableError, match=rf"column {col!r} must be .*row 5"):
        validate_runs(df)
    df.loc[5, col] = np.nan  # empty optional cells are allowed
    if col != "p_a":
        validate_runs(df)


# ---------------------------------------------------------------- files


def test_file_cut_mid_row_is_refused_with_file_and_line(tmp_path):
    path = write_runs(_table(), tmp_path / "runs.csv")
    text = path.read_text()
    path.write_text(text[: len(text) - 30])  # cut inside the last row
    with pytest.raises(RunTableError) as e:
        read_runs(path)
    msg = str(e.value)
    assert str(path) in msg and "line 17 (row 15)" in msg and "ends mid-row" in msg


def test_ragged_row_is_refused_with_file_and_line(tmp_path):
    lines = _table().to_csv(index=False).splitlines()
    lines[4] += ",0.3"  # one field too many on line 5
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunTableError, match=r"r\.csv: line 5 \(row 3\) has 9 fields, the header has 8"):
        read_runs(tmp_path / "r.csv")
    lines = _table().to_csv(index=False).splitlines()
    lines[2] = ",".join(lines[2].split(",")[:6])  # a short row in the middle
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunTableError, match=r"line 3 \(row 1\) has 6 fields") as e:
        read_runs(tmp_path / "s.csv")
    assert "ends mid-row" not in str(e.value)


def test_file_errors_name_the_line(tmp_path):
    bad = _table()
    bad.loc[12, "loss"] = -1.0
    lines = bad.to_csv(index=False).splitlines()
    lines[6] = lines[6].replace("r2,b,", " r2, b ,")  # spaces around names are stripped
    lines.insert(3, "")  # a blank line is skipped (as pandas does) but counted in line numbers
    (tmp_path / "u.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunTableError, match=r"u\.csv: column 'loss' .*row 12 \(run 'r6', line 15\)"):
        read_runs(tmp_path / "u.csv")
    bad.loc[12, "loss"] = 1.0
    lines = bad.to_csv(index=False).splitlines()
    lines[6] = lines[6].replace("r2,b,", " r2, b ,")
    (tmp_path / "v.csv").write_text("\n".join(lines) + "\n")
    assert read_runs(tmp_path / "v.csv").loc[5, ["run", "family"]].tolist() == ["r2", "b"]


def test_missing_folder_and_unreadable_files(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        read_runs(tmp_path / "nope.csv")
    with pytest.raises(MissingFileError, match="is a folder"):
        read_runs(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(RunTableError, match="empty.csv: the file is empty"):
        read_runs(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00run")
    with pytest.raises(RunTableError, match="bin.csv: not a UTF-8"):
        read_runs(tmp_path / "bin.csv")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 cut")
    with pytest.raises(RunTableError, match=r"t\.parquet: cannot read the run table"):
        read_runs(tmp_path / "t.parquet")


def test_mixture_matrix_tolerance():
    df = _table()
    df.loc[1, "p_a"] = df.loc[0, "p_a"] + P_TOLERANCE / 10
    runs, fams, P = mixture_matrix(df)
    assert P[0, 0] == df.loc[0, "p_a"]


def test_mixture_recorded_on_some_rows_of_a_run_only_is_refused():
    df = _table()
    df.loc[5, ["p_a", "p_b"]] = np.nan  # run r2: row 4 holds the mixture, row 5 none
    with pytest.raises(RunTableError, match=r"empty on some rows of a run.*row 5 \(run 'r2'\)"):
        validate_runs(df)
    df.loc[4, ["p_a", "p_b"]] = np.nan  # no mixture recorded for run r2 at all: allowed
    out = validate_runs(df)
    assert out.loc[4:5, "p_a"].isna().all()


def test_compressed_csv(tmp_path):
    import gzip
    import lzma

    text = _table().to_csv(index=False).encode()
    (tmp_path / "runs.csv.gz").write_bytes(gzip.compress(text))
    pd.testing.assert_frame_equal(read_runs(tmp_path / "runs.csv.gz"), validate_runs(_table()))
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(text)[:-40])
    with pytest.raises(RunTableError, match=r"cut\.csv\.gz: cannot read the run table"):
        read_runs(tmp_path / "cut.csv.gz")
    (tmp_path / "cut.csv.xz").write_bytes(lzma.compress(text)[:-40])
    with pytest.raises(RunTableError, match=r"cut\.csv\.xz: cannot read the run table"):
        read_runs(tmp_path / "cut.csv.xz")


@pytest.mark.slow  # trains a tiny model (compilation dominates: 30-70 s on 2 busy cores)
def test_training_rows_record_the_mixture_the_pipeline_sampled(tmp_path):
    """rows.csv's p and p_<family> come from RunData.sampled_ratios (what the pipeline draws),
    not from the ratios the user typed; the file is a valid run table in the schema."""
    import dataclasses

    from fixtures.synthetic_data import SyntheticData

    from multiscale.train import TrainConfig, run_training

    asked = {"germanic": 0.6, "romance": 0.4, "slavic": 0.0}
    sampled = {"germanic": 0.625, "romance": 0.375, "slavic": 0.0}  # e.g. after rounding
    data = dataclasses.replace(SyntheticData().run_data(asked, seq_len=32), sampled_ratios=sampled)
    cfg = TrainConfig(corpus="unused", model="cpu-100k", tokens=4 * 8 * 32, ratios=asked,
                      out=str(tmp_path / "run"), seq_len=32, batch=8, eval_batch=8, checkpoint_every=0)
    summary = run_training(cfg, data=data, progress=False)
    table = read_runs(tmp_path / "run" / "rows.csv")
    assert list(table.columns) == column_order(["germanic", "romance", "slavic"])
    assert table["family"].tolist() == ["germanic", "romance"]
    assert table["p"].tolist() == [0.625, 0.375] and table["p_slavic"].tolist() == [0.0, 0.0]
    assert summary["rows"][0]["p_germanic"] == 0.625


# ---------------------------------------------------------------- odd but legal-looking input
# (issue 24: each was accepted silently, or raised a traceback from deep inside)


def test_a_column_named_twice_in_the_header_is_refused(tmp_path):
    """pandas renames the second 'loss' to 'loss.1' and the table would fit on the first."""
    lines = _table().to_csv(index=False).splitlines()
    (tmp_path / "d.csv").write_text("\n".join([lines[0] + ",loss"] + [x + ",9.9" for x in lines[1:]]) + "\n")
    with pytest.raises(RunTableError, match=r"d\.csv: the header \(line 1\) names column\(s\) \['loss'\] more than"):
        read_runs(tmp_path / "d.csv")
    (tmp_path / "s.csv").write_text("\n".join([lines[0] + ", N"] + [x + ",1e7" for x in lines[1:]]) + "\n")
    with pytest.raises(RunTableError, match=r"\['N'\] more than once"):
        read_runs(tmp_path / "s.csv")


@pytest.mark.parametrize("col, values, shown", [
    ("loss", lambda d: d["loss"] + 0j, "complex128"),
    ("D", lambda d: pd.Timestamp("2024-01-01"), "datetime64"),
    ("D", lambda d: pd.Timedelta("1s"), "timedelta64"),
    ("N", lambda d: True, "bool"),
    ("N", lambda d: pd.array([True] * len(d), dtype="boolean"), "boolean"),
    ("loss", lambda d: pd.Series([True, *d["loss"].iloc[1:]], dtype=object), "object"),
    ("loss", lambda d: pd.Series([3 + 1j, *d["loss"].iloc[1:]], dtype=object), "object"),
    ("seed", lambda d: False, "bool"),
])
def test_numeric_columns_must_hold_real_numbers(col, values, shown):
    df = _table()
    df[col] = values(df)
    with pytest.raises(RunTableError) as e:
        validate_runs(df)
    msg = str(e.value)
    assert f"column {col!r} holds values that are not real numbers" in msg and shown in msg
    assert "row 0 (run 'r0')" in msg and len(msg.splitlines()) == 1


def test_real_numbers_of_every_dtype_are_accepted():
    df = _table()
    ref = validate_runs(df)
    df["N"] = pd.array([10**7] * len(df), dtype="Int64")
    df["D"] = pd.Categorical([1e9] * len(df))
    df["loss"] = df["loss"].astype(str)  # text that parses as numbers, as before
    df["seed"] = pd.Series([None] * len(df), dtype=object)  # all empty
    out = validate_runs(df)
    pd.testing.assert_frame_equal(out.drop(columns="seed"), ref)
    assert out["N"].dtype == np.float64 and out["seed"].isna().all()


def test_cr_only_line_ends_are_read(tmp_path):
    """Old Mac text ends lines with CR alone: it is read, with the right line numbers."""
    df = _table()
    text = df.to_csv(index=False)
    (tmp_path / "cr.csv").write_bytes(text.replace("\n", "\r").encode())
    pd.testing.assert_frame_equal(read_runs(tmp_path / "cr.csv"), validate_runs(df))
    df.loc[4, "loss"] = -1.0
    (tmp_path / "bad.csv").write_bytes(df.to_csv(index=False).replace("\n", "\r").encode())
    with pytest.raises(RunTableError, match=r"row 4 \(run 'r2', line 6\)"):
        read_runs(tmp_path / "bad.csv")
    lines = text.splitlines()
    (tmp_path / "cut.csv").write_bytes(("\r".join(lines))[:-20].encode())
    with pytest.raises(RunTableError, match="line 17 .*ends mid-row"):
        read_runs(tmp_path / "cut.csv")


def test_a_huge_cell_or_an_unclosed_quote_is_one_line_naming_the_line(tmp_path):
    lines = _table().to_csv(index=False).splitlines()
    big = [lines[0] + ",model", *(x + ",m" for x in lines[1:5]), lines[5] + "," + "x" * 200_000,
           *(x + ",m" for x in lines[6:])]
    (tmp_path / "big.csv").write_text("\n".join(big) + "\n")
    with pytest.raises(RunTableError) as e:
        read_runs(tmp_path / "big.csv")
    assert str(e.value) == (f"{tmp_path / 'big.csv'}: line 6: a field is longer than 131,072 characters "
                            f"(an unclosed quote?)")
    lines[3] = '"' + lines[3]  # the quote swallows the rest of the file
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunTableError, match=r"line 4 \(row 2\) has 1 fields.*quote opened on line 4"):
        read_runs(tmp_path / "q.csv")


@pytest.mark.parametrize("call, needle", [
    (lambda: validate_runs(None), "validate_runs: argument 'df' must be a pandas DataFrame (a run table), got None"),
    (lambda: validate_runs(_table().to_dict()), "argument 'df' must be a pandas DataFrame (a run table), got dict"),
    (lambda: validate_runs(_table(), law=3), "argument 'law' must be None or one of"),
    (lambda: validate_runs(_table(), min_runs="3"), "argument 'min_runs' must be None or a whole number >= 0, got '3'"),
    (lambda: validate_runs(_table(), min_runs=-1), "argument 'min_runs'"),
    (lambda: validate_runs(_table(), lines=[1, 2]), "'lines' must hold one line number per row of 'df' (16), got 2"),
    (lambda: read_runs(None), "read_runs: argument 'path' must be a file path (str or os.PathLike), got None"),
    (lambda: read_runs(""), "read_runs: argument 'path' must be a file path"),
    (lambda: mixture_matrix(None), "mixture_matrix: argument 'df' must be a pandas DataFrame"),
    (lambda: write_runs(None, "x.csv"), "argument 'df' must be a pandas DataFrame"),
])
def test_arguments_are_checked_first_and_named(call, needle):
    with pytest.raises(RunTableError) as e:
        call()
    assert needle in str(e.value)


@pytest.mark.parametrize("data, needle", [
    (lambda t: t.replace("r1,a", "r1\x00,a", 1).encode(), "line 4 holds a NUL character"),
    (lambda t: t.encode("utf-16"), "not a UTF-8 CSV file: it looks like UTF-16 text: save it as UTF-8"),
    (lambda t: __import__("gzip").compress(t.encode()), "it looks like a gzip file: name it .csv.gz"),
    (lambda t: t.replace(",", ";").encode(), "seems separated by ';', not ','"),
    (lambda t: t.replace(",", "\t").encode(), "seems separated by '\\t'"),
    (lambda t: b" \n" + t.encode(), "the header (line 1) names no column"),
    (lambda t: b"sep=,\n" + t.encode(), "line 1 is a spreadsheet's 'sep=,' line, not the header: delete it"),
    (lambda t: t.replace(",b,", ",NA,").encode(), "column 'family' is empty (a missing value; in a CSV also NA"),
])
def test_files_that_are_not_run_tables_are_named(tmp_path, data, needle):
    (tmp_path / "x.csv").write_bytes(data(_table().to_csv(index=False)))
    with pytest.raises(RunTableError) as e:
        read_runs(tmp_path / "x.csv")
    assert str(e.value).startswith(f"{tmp_path / 'x.csv'}: ") and needle in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_names_are_read_as_written(tmp_path):
    """Run names that look like numbers stay text ('007' was read as 7); a family written in
    decomposed Unicode is the family its p_ column names; 'p_ a' is 'p_a'."""
    df = _table()
    df["run"] = df["run"].str.replace("r", "00")
    text = df.to_csv(index=False).replace(",a,", ",a\u0301,").replace("p_a", "p_ \u00e1")
    (tmp_path / "n.csv").write_text(text)
    out = read_runs(tmp_path / "n.csv")
    assert out["run"].iloc[0] == "000" and out["run"].iloc[-1] == "007"
    assert sorted(out["family"].unique()) == ["b", "\u00e1"] and "p_\u00e1" in out.columns
    assert len(validate_runs(out)) == 16


def test_a_run_table_of_many_runs_is_checked_like_a_small_one():
    """The vectorised checks name the same rows as before on a table of 20,000 runs."""
    fams = ("a", "b")
    n = 20_000
    p_a = np.linspace(0.1, 0.9, n)
    df = pd.DataFrame({"run": np.repeat([f"r{i}" for i in range(n)], 2), "family": np.tile(fams, n),
                       "N": 1e7, "D": 1e9, "p": np.column_stack([p_a, 1 - p_a]).ravel(),
                       "loss": np.linspace(2.0, 4.0, 2 * n) + np.pi * 1e-7,
                       "p_a": np.repeat(p_a, 2), "p_b": np.repeat(1 - p_a, 2)})
    assert len(validate_runs(df)) == 2 * n
    # every run twice, at another seed, with bit-identical losses (a trainer that ignores the seed)
    replicas = pd.concat([df.assign(seed=0), df.assign(seed=1, run=df["run"] + "-s1")], ignore_index=True)
    assert len(validate_runs(replicas)) == 4 * n
    twin = df[df["run"] == "r17000"].assign(run="r17000-again")
    with pytest.raises(RunTableError, match=r"runs 'r17000' and 'r17000-again' are one run under two names.*"
                                            r"row 34000 \(run 'r17000'\), row 34001 \(run 'r17000'\), row 40000"):
        validate_runs(pd.concat([df, twin], ignore_index=True))
    bad = _no_mixture(df)
    bad.loc[[30001, 30003], "p"] = 0.9  # runs r15000 and r15001: p sums above 1
    with pytest.raises(RunTableError, match=r"column 'p' of run 'r15000' sums to 1\.\d+ .*row 30000"):
        validate_runs(bad)
