"""The run tables shipped in the package (multiscale.datasets): shape, sums, licence."""

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from multiscale.datasets import REGMIX_FOLDER, load_regmix, regmix_run_table
from multiscale.errors import InputError, MissingFileError
from multiscale.runs import SUM_TOLERANCE, mixture_columns, validate_runs

DOMAINS = 17
EVALUATED = 13


@pytest.mark.parametrize("split, runs", [("train", 512), ("test", 256)])
def test_regmix_shape_and_sums(split, runs):
    df = load_regmix(split)
    assert df["run"].nunique() == runs and df["family"].nunique() == EVALUATED
    assert len(mixture_columns(df)) == DOMAINS
    assert (df["N"] == 1e6).all() and (df["D"] == 1e9).all() and (df["p"] > 0).all()
    assert df["run"].str.startswith(f"regmix-{split}-").all()
    # each run's whole mixture sums to 1 up to the files' 3-decimal rounding
    mix = df.drop_duplicates("run").set_index("run")[mixture_columns(df)].sum(axis=1)
    assert (mix - 1).abs().max() <= SUM_TOLERANCE
    # a run's evaluated ratios sum to at most its whole mixture
    per_run = df.groupby("run")["p"].sum().reindex(mix.index)
    assert (per_run <= mix + 1e-12).all() and (per_run < mix - 0.01).any()
    validate_runs(df, law="ratio")


def test_regmix_rows_match_the_published_files():
    """Counted independently from the raw CSV files: one row per (run, evaluated domain > 0)."""
    mix = pd.read_csv(REGMIX_FOLDER / "train_mixture_1m.csv").set_index("index")
    loss = pd.read_csv(REGMIX_FOLDER / "train_pile_loss_1m.csv").set_index("index")
    evaluated = [c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in loss.columns]
    weights = mix[[f"train_the_pile_{d}" for d in evaluated]].to_numpy()
    df, dropped = regmix_run_table(split="train")
    assert len(df) == int((weights > 0).sum()) == 3947
    assert dropped == int((weights <= 0).sum()) == weights.size - len(df)
    row = df[(df["run"] == "regmix-train-2") & (df["family"] == "github")].iloc[0]
    assert row["p"] == mix.loc[2, "train_the_pile_github"] == row["p_github"]
    assert row["loss"] == loss.loc[2, "metric/the_pile_github_val_loss"]
    assert np.isfinite(df["loss"]).all()


def test_licence_and_attribution_ship_with_the_package():
    files = resources.files("multiscale.datasets") / "regmix"
    licence = (files / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Sea AI Lab" in licence
    readme = (files / "README.md").read_text()
    assert "Liu et al. 2024" in readme and "sail-sg/regmix" in readme and "b004d3a" in readme
    names = {p.name for p in files.iterdir()}
    assert {"train_mixture_1m.csv", "train_pile_loss_1m.csv", "test_mixture_1m.csv",
            "test_pile_loss_1m.csv"} <= names


def test_bad_split_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="split 'valid' is unknown"):
        load_regmix("valid")
    with pytest.raises(MissingFileError, match="train_mixture_1m.csv"):
        regmix_run_table(tmp_path, "train")
