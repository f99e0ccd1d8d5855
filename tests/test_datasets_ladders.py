"""The public scaling ladders shipped in the package (multiscale.datasets.load_ladder): shape,
validation, values against the shipped files, licences and package data."""

import fnmatch
import json
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multiscale.datasets import LADDERS, ladder_folder, load_ladder
from multiscale.errors import InputError
from multiscale.runs import REQUIRED_COLUMNS, validate_runs

ROOT = Path(__file__).resolve().parents[1]
# name -> (runs per family, distinct sizes N, (N min, N max), (D min, D max))
EXPECTED = {
    "gadre2024_openlm": ({"c4": 34, "redpajama": 35, "refinedweb": 35}, 6, (886368, 6476271616),
                         (5.28e7, 9.21e11)),
    "porian2024_resolving": ({"openwebtext2": 88, "refinedweb": 88}, 16, (331776, 825876480), (3.6e7, 1.9e10)),
    "gemstone2025": ({"dolma": 199}, 20, (22621952, 1769627136), (1.1e10, 1.1e11)),
    "olmo2_ladder_peteish": ({"c4_en": 25}, 5, (113283840, 2835565824), (1.91e9, 6.34e11)),
}
LICENCE_START = {"gadre2024_openlm": "MIT License", "porian2024_resolving": "Copyright (c)",
                 "gemstone2025": "MIT License", "olmo2_ladder_peteish": "Apache License"}


def test_the_four_ladders_are_listed():
    assert set(LADDERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ladder_loads_as_a_valid_run_table(name):
    per_family, sizes, (n_lo, n_hi), (d_lo, d_hi) = EXPECTED[name]
    df = load_ladder(name)
    assert list(df.columns) == list(REQUIRED_COLUMNS)
    assert df.groupby("family").size().to_dict() == per_family
    assert df["run"].is_unique and (df["p"] == 1.0).all()
    assert df["N"].nunique() == sizes
    assert (df["N"].min(), df["N"].max()) == (n_lo, n_hi)
    assert df["D"].min() == pytest.approx(d_lo, rel=0.02) and df["D"].max() == pytest.approx(d_hi, rel=0.02)
    assert 1.0 < df["loss"].min() and df["loss"].max() < 9.0  # nats per token
    pd.testing.assert_frame_equal(validate_runs(df, law="chinchilla"), df)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rows_are_the_shipped_final_losses(name):
    """Read independently from the shipped file: every row a final loss, one per run, same values."""
    raw = pd.read_csv(ladder_folder(name) / "runs.csv")
    df = load_ladder(name).set_index("run")
    assert len(raw) == len(df) and raw["run"].is_unique
    if "final_loss" in raw.columns:
        assert raw["final_loss"].all() and raw["checkpoint_of"].isna().all()
    if "rerun" in raw.columns:
        assert not raw["rerun"].any()
    raw = raw.set_index("run").loc[df.index]
    np.testing.assert_array_equal(raw["loss"], df["loss"])
    np.testing.assert_array_equal(raw["N"], df["N"])
    np.testing.assert_array_equal(raw["D"], df["D"])
    # non-embedding N is below the counts that keep the head or the embeddings
    assert (raw["N"] < raw["N_no_input_embed"]).all() and (raw["N_no_input_embed"] < raw["N_total"]).all()


def test_gadre_family_is_the_training_corpus_with_its_own_evaluation():
    raw = pd.read_csv(ladder_folder("gadre2024_openlm") / "runs.csv").set_index("run")
    df = load_ladder("gadre2024_openlm").set_index("run")
    assert (df["family"] == raw.loc[df.index, "train_dataset"]).all()
    assert raw["in_distribution"].all()
    own = {"c4": "c4_val", "redpajama": "paloma_redpajama", "refinedweb": "paloma_falcon-refinedweb"}
    assert (raw["family"] == raw["train_dataset"].map(own)).all()


def test_known_values():
    olmo = load_ladder("olmo2_ladder_peteish").set_index("run")
    assert olmo.loc["peteish-moreeval-190M-0.5xC", "loss"] == 3.747478962
    gem = load_ladder("gemstone2025").set_index("run")
    assert gem.loc["Gemstone-256x23-base-cooldown-step2622", ["N", "D", "loss"]].tolist() == \
        [22621952, 10997465088, 3.511018276]


def test_unknown_ladder_names_the_known_ones():
    with pytest.raises(InputError, match="ladder 'chinchilla' is unknown.*gemstone2025"):
        load_ladder("chinchilla")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_licence_and_attribution_ship_with_the_package(name):
    folder = resources.files("multiscale.datasets") / "ladders" / name
    assert (folder / "LICENSE").read_text().lstrip().startswith(LICENCE_START[name])
    readme = (folder / "README.md").read_text()
    assert "Licence" in readme and "arXiv:" in readme and "commit" in readme


def test_package_data_covers_every_shipped_file():
    """pyproject's package-data patterns match every data file of the ladders folder."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["multiscale.datasets.ladders"]
    folder = ROOT / "multiscale" / "datasets" / "ladders"
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert len(files) == 2 + 3 * len(LADDERS)  # README.md, field_prior.json, then 3 files a ladder
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns), f


def test_field_prior_names_its_law_and_ladders():
    prior = json.loads((resources.files("multiscale.datasets") / "ladders" / "field_prior.json").read_text())
    assert prior["law"] == "chinchilla" and set(prior["ladders"]) == set(LADDERS)
    assert all(v["windows"] > 0 and v["held_out_rows"] > 0 for v in prior["ladders"].values())
    assert sum(v["held_out_rows"] for v in prior["ladders"].values()) == prior["rows"]
    for x in ("log_k", "d_span"):
        summary = prior["summary"][x]
        assert set(summary["leave_one_ladder_out"]) == set(LADDERS)
        pooled = summary["pooled"]
        assert pooled["c"] > 0 and pooled["d"] >= 0 and pooled["rows"] == prior["rows"]


def test_field_prior_has_each_ladders_kappa_and_the_leave_one_out_priors_lack_theirs():
    prior = json.loads((resources.files("multiscale.datasets") / "ladders" / "field_prior.json").read_text())
    summary = prior["summary"]["log_k"]
    t = summary["pooled"]["ladder_t"]
    assert set(t["kappa_90_per_ladder"]) == set(LADDERS) and t["ladders"] == len(LADDERS)
    assert t["log_mean"] == pytest.approx(np.mean(np.log(list(t["kappa_90_per_ladder"].values()))))
    for name, without in summary["leave_one_ladder_out"].items():
        assert set(without["ladder_t"]["kappa_90_per_ladder"]) == set(LADDERS) - {name}
        assert without["ladder_t"]["log_sd"] > 0 and without["ladder_t"]["within_sd"] > 0
