"""`multiscale fit | recommend | predict | independence` end to end (ratio law: fast)."""

import inspect
import json

import numpy as np
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.cli import main


def _runs(tmp_path):
    truth = synthetic_truth(3, seed=2, law="ratio")
    df = synthetic_runs(truth, law="ratio", n_mixtures=20, noise=0.005, seed=1)
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    return path, truth


def test_fit_recommend_predict_json(tmp_path, capsys):
    runs, truth = _runs(tmp_path)
    out = tmp_path / "fit"
    assert main(["fit", str(runs), "--law", "ratio", "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "lbfgs" and d["loss_units"] == "nats/token"
    for fam, t in truth.items():
        assert abs(d["params"][fam]["gamma"] - t["gamma"]) < 0.02
    assert main(["recommend", str(out), "--N", "2e7", "--D", "2e9", "--floor", "0.05",
                 "--weights", "fam0=2,fam1=1,fam2=1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert abs(sum(r["ratios"].values()) - 1) < 1e-9 and min(r["ratios"].values()) >= 0.05 - 1e-12
    assert r["families"]["fam0"]["weight"] == 0.5
    assert main(["predict", str(out), "--N", "2e7", "--D", "2e9", "--ratios", "fam0=0.5", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    g = d["params"]["fam0"]
    assert np.isclose(p["families"]["fam0"]["median"], g["c"] * 0.5 ** (-g["gamma"]))
    assert main(["independence", str(runs)]) == 0
    assert "own ratio suffices" in capsys.readouterr().out


def test_errors_name_the_problem(tmp_path, capsys):
    runs, _ = _runs(tmp_path)
    bad = tmp_path / "bad.csv"
    text = runs.read_text().splitlines()
    cells = text[3].split(",")
    cells[5] = "-1"  # loss of data row 2
    bad.write_text("\n".join(text[:3] + [",".join(cells)] + text[4:]))
    assert main(["fit", str(bad), "--law", "ratio", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "multiscale fit: error:" in err and "column 'loss'" in err and "row 2" in err
    out = tmp_path / "fit"
    assert main(["fit", str(runs), "--law", "ratio", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), "--N", "1e9", "--D", "2e9", "--ratios", "fam0=0.5"]) == 2
    assert "cannot predict" in capsys.readouterr().err
    assert main(["recommend", str(out), "--N", "2e7", "--D", "2e9", "--weights", "fam0"]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path / "nope"), "--N", "1", "--D", "1"]) == 2
    assert "not a saved fit" in capsys.readouterr().err


# ---------------------------------------------------------------- refusals (issue 11)


@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory):
    """A ratio-law fit of three families saved by `multiscale fit` (shared by the refusal tests)."""
    tmp = tmp_path_factory.mktemp("lawcli")
    runs, _ = _runs(tmp)
    out = tmp / "fit"
    assert main(["fit", str(runs), "--law", "ratio", "--out", str(out), "--no-progress"]) == 0
    return runs, out


def _refused(capsys, argv, *needles):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"multiscale {argv[0]}: error:"), err
    assert "\n" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert captured.out == ""  # nothing printed as a result
    return err


@pytest.mark.parametrize("extra, needles", [
    (["--floor", "nan"], ["--floor", "nan", "finite"]),
    (["--floor", "fam0=nan"], ["--floor", "'fam0'", "not finite"]),
    (["--floor", "-0.1"], ["--floor", "-0.1"]),
    (["--floor", "0.5"], ["floors sum to 1.5 > 1"]),
    (["--weights", "fam0=nan,fam1=1,fam2=1"], ["--weights", "'fam0'", "not finite"]),
    (["--weights", "fam0=inf"], ["--weights", "not finite"]),
    (["--weights", "fam0=1,fam0=2"], ["--weights", "'fam0' is given twice"]),
    (["--weights", "germanic=1"], ["--weights", "unknown family 'germanic'", "fam0, fam1, fam2"]),
    (["--weights", "fam0=-1"], ["--weights", "negative"]),
    (["--weights", "fam0=0,fam1=0,fam2=0"], ["weights must not all be zero"]),
    (["--cap", "0"], ["--cap", "in (0, 1]"]),
    (["--cap", "fam0=1.5"], ["--cap", "fam0", "1.5"]),
    (["--cap", "fam0=nan"], ["--cap", "not finite"]),
    (["--tokens", "fam0=1e9,fam0=2e9"], ["--tokens", "given twice"]),
    (["--tokens", "fam0=1e9,fam1=1e9,fam2=1e9", "--epochs", "nan"], ["--epochs", "finite"]),
    (["--tokens", "fam0=-1,fam1=1e9,fam2=1e9"], ["--tokens", "'fam0' is negative"]),
    (["--tokens", "fam0=0,fam1=1e9,fam2=1e9"], ["--tokens", "fam0", "> 0"]),
    (["--N", "nan"], ["--N", "finite positive"]),
    (["--D", "-5"], ["--D", "finite positive"]),
])
def test_recommend_refuses_bad_values_naming_the_flag(saved_fit, capsys, extra, needles):
    _, out = saved_fit
    argv = ["recommend", str(out), "--N", "2e7", "--D", "2e9", *extra]
    if "--N" in extra:
        argv = ["recommend", str(out), "--D", "2e9", *extra]
    if "--D" in extra:
        argv = ["recommend", str(out), "--N", "2e7", *extra]
    _refused(capsys, argv, *needles)


def test_recommend_floor_and_cap_per_family_or_scalar(saved_fit, capsys):
    _, out = saved_fit
    base = ["recommend", str(out), "--N", "2e7", "--D", "2e9", "--json"]
    assert main([*base, "--floor", "fam1=0.3", "--cap", "fam0=0.2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ratios"]["fam1"] >= 0.3 - 1e-12 and r["ratios"]["fam0"] <= 0.2 + 1e-12
    assert r["families"]["fam2"]["floor"] == 0.0 and r["families"]["fam2"]["cap"] == 1.0
    assert main([*base, "--floor", "0.2", "--cap", "0.4"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert all(0.2 - 1e-12 <= v <= 0.4 + 1e-12 for v in r["ratios"].values())
    assert all(np.isfinite(v) for v in r["ratios"].values())


@pytest.mark.parametrize("ratios, needles", [
    ("fam0=0.9,fam0=0.1", ["--ratios", "'fam0' is given twice"]),
    ("fam0=1.5,fam1=1.5,fam2=1.5", ["--ratios", "'fam0'", "(0, 1]"]),
    ("fam0=0.9,fam1=0.9", ["--ratios", "sum to 1.8", "> 1"]),
    ("fam0=0.5,fam1=0.5,fam2=0.5", ["--ratios", "sum to 1.5", "not 1"]),
    ("fam0=nan", ["--ratios", "not finite"]),
    ("fam0=0", ["--ratios", "(0, 1]"]),
    ("germanic=0.5", ["--ratios", "unknown family 'germanic'"]),
    ("fam0", ["--ratios", "not FAMILY=VALUE"]),
])
def test_predict_refuses_bad_ratios(saved_fit, capsys, ratios, needles):
    _, out = saved_fit
    _refused(capsys, ["predict", str(out), "--N", "2e7", "--D", "2e9", "--ratios", ratios], *needles)


def test_predict_accepts_all_families_summing_to_one(saved_fit, capsys):
    _, out = saved_fit
    assert main(["predict", str(out), "--N", "2e7", "--D", "2e9", "--ratios", "fam0=0.2,fam1=0.3,fam2=0.5",
                 "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["families"]) == {"fam0", "fam1", "fam2"}


def test_fit_checks_paths_and_settings_before_any_work(saved_fit, tmp_path, capsys):
    runs, _ = saved_fit
    _refused(capsys, ["fit", str(tmp_path), "--out", str(tmp_path / "f")], "is a folder")
    _refused(capsys, ["fit", str(tmp_path / "none.csv"), "--out", str(tmp_path / "f")], "does not exist")
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    _refused(capsys, ["fit", str(runs), "--law", "ratio", "--out", str(taken)], "--out", "existing file")
    assert taken.read_text() == "keep me"
    _refused(capsys, ["fit", str(runs), "--law", "ratio", "--out", str(taken / "fit")], "--out", "which is a file")
    _refused(capsys, ["fit", str(runs), "--method", "nuts", "--chains", "0", "--out", str(tmp_path / "f")],
             "--chains must be >= 1")
    _refused(capsys, ["fit", str(runs), "--method", "nuts", "--num-warmup", "-1", "--out", str(tmp_path / "f")],
             "--num-warmup must be >= 0")
    _refused(capsys, ["fit", str(runs), "--law", "ratio", "--shared", "alpha", "--out", str(tmp_path / "f")],
             "cannot share ['alpha']")
    _refused(capsys, ["fit", str(runs), "--law", "ratio", "--noise", "scale", "--out", str(tmp_path / "f")],
             "--noise applies to --method nuts only")
    _refused(capsys, ["compare", str(runs), "--laws", "ratio", "--method", "nuts", "--noise", "constant,wobbly"],
             "--noise must name each of constant, scale")
    _refused(capsys, ["compare", str(runs), "--laws", "ratio", "--noise", "constant,scale"],
             "--noise applies to --method nuts only")
    assert not (tmp_path / "f").exists()


def test_damaged_saved_fit_is_one_line_naming_the_file(saved_fit, tmp_path, capsys):
    import shutil

    _, out = saved_fit
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "fit.json").write_text("[1, 2]")
    _refused(capsys, ["recommend", str(bad), "--N", "2e7", "--D", "2e9"], str(bad / "fit.json"), "damaged")
    _refused(capsys, ["predict", str(bad), "--N", "2e7", "--D", "2e9", "--ratios", "fam0=0.5"], "damaged")


def test_law_flags_follow_the_registry_and_python_defaults():
    import argparse

    from multiscale.cli import build_parser
    from multiscale.laws import bayes
    from multiscale.laws.forms import LAWS

    parser = build_parser(("multiscale.cli.laws",))
    fit = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "fit")[1]
    law = next(a for a in fit._actions if a.dest == "law")
    assert list(law.choices) == list(LAWS)
    sig = inspect.signature(bayes.fit_bayes).parameters
    args = parser.parse_args(["fit", "r.csv", "--out", "o"])
    assert args.chains == sig["chains"].default and args.draws == sig["draws"].default
    assert args.num_warmup is None and sig["warmup"].default is None  # both mean bayes.WARMUP
    assert f"default {bayes.WARMUP}" in fit.format_help()
    assert "--warmup " not in fit.format_help() and "--no-progress" in fit.format_help()
    assert parser.parse_args(["fit", "r.csv", "--out", "o", "--num-warmup", "9"]).num_warmup == 9
    assert isinstance(fit, argparse.ArgumentParser)


def test_json_output_is_strict(saved_fit, capsys):
    """The ratio law cannot predict losses away from its (N, D): they are NaN in Python and
    null in the JSON, which must parse without NaN or Infinity."""
    _, out = saved_fit

    def strict(text):
        def refuse(name):
            raise AssertionError(f"non-standard JSON constant {name}")
        return json.loads(text, parse_constant=refuse)

    assert main(["recommend", str(out), "--N", "1e9", "--D", "1e11", "--json"]) == 0
    r = strict(capsys.readouterr().out)
    assert r["families"]["fam0"]["loss_at_p_star"]["median"] is None
    assert any("only predicted at the fitted" in n for n in r["notes"])


def test_predict_runs_writes_a_table(tmp_path, capsys):
    """`predict FIT --runs TABLE --out PRED.csv`: one row per (run, family) of the table."""
    import pandas as pd

    runs, _ = _runs(tmp_path)
    out = tmp_path / "fit"
    assert main(["fit", str(runs), "--law", "ratio", "--out", str(out)]) == 0
    capsys.readouterr()
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out), "--runs", str(runs), "--out", str(pred), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    table, src = pd.read_csv(pred), pd.read_csv(runs)
    assert d["rows"] == len(src) == len(table) and d["rows_beyond_fitted_range"] == 0
    assert list(table.columns[:8]) == ["run", "family", "N", "D", "p", "median", "q05", "q95"]
    assert "loss" in table.columns and np.allclose(table["loss"], src["loss"])
    assert (table["q05"] == table["median"]).all() and (table["median"] == table["q95"]).all()  # point fit
    assert abs(table["median"] / table["loss"] - 1).mean() < 0.02
    for args, needle in ((["--runs", str(runs)], "needs --out"),
                         (["--runs", str(runs), "--out", str(tmp_path)], "is a folder"),
                         (["--runs", str(runs), "--out", str(pred), "--N", "1e7"], "drop --N"),
                         (["--N", "1e7", "--D", "1e9"], "needs --ratios"),
                         (["--runs", str(tmp_path / "nope.csv"), "--out", str(pred)], "does not exist")):
        assert main(["predict", str(out), *args]) == 2
        assert needle in capsys.readouterr().err


@pytest.mark.parametrize("noise", ["scale", "size"])
def test_fit_noise_flag_reaches_the_saved_fit(saved_fit, tmp_path, capsys, noise):
    """The ratio law's table has one (N, D), the fixture's first: "scale" samples the slope on p
    alone, "size" has one size level per family."""
    runs, _ = saved_fit
    out = tmp_path / "nuts"
    assert main(["fit", str(runs), "--law", "ratio", "--method", "nuts", "--noise", noise, "--chains", "1",
                 "--draws", "100", "--num-warmup", "100", "--no-extrapolation", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["options"]["noise"]["model"] == noise
    saved = json.loads((out / "fit.json").read_text())["options"]["noise"]
    if noise == "scale":
        assert saved["slopes"] == ["p"]
    else:
        assert saved["levels"] == {f: [2e7] for f in saved["levels"]} and len(saved["levels"]) == 3
