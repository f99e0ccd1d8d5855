"""Bad inputs to the law commands (fit files, predict, recommend, independence, compare), one
test per kind: each checks the exit status, the one-line message naming the offending thing,
and that nothing was written or lost. In-process CLI and a fit built from known parameters
(no fitting), so these stay fast."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fixtures.synthetic import synthetic_runs, synthetic_truth

from multiscale.cli import main
from multiscale.errors import DamagedFileError
from multiscale.laws import load_fit
from multiscale.laws.fits import FIT_JSON, PointFit, payload_sha256
from multiscale.laws.forms import LAWS
from multiscale.laws.independence import independence_test


def _cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one in-process command."""
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_line_error(err: str, command: str) -> None:
    assert err.startswith(f"multiscale {command}: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture
def fitted(tmp_path):
    """(fit folder, run table) of the multilingual law at known parameters, saved as `fit` saves."""
    truth = synthetic_truth(3, seed=2)
    df = synthetic_runs(truth, noise=0.005, seed=1)
    runs = tmp_path / "runs.csv"
    df.to_csv(runs, index=False)
    law, fams = LAWS["multilingual"], tuple(truth)
    fit = PointFit(law=law, families=fams, shared=(),
                   draws={n: np.array([[truth[f][n] for f in fams]]) for n in law.params},
                   N_ref=float(np.exp(np.log(df["N"]).mean())), D_ref=float(np.exp(np.log(df["D"]).mean())),
                   n_runs={f: int((df["family"] == f).sum()) for f in fams})
    return fit.save(tmp_path / "fit"), runs


# ------------------------------------------------------------------ L1, L2: predict --out


def test_predict_refuses_an_out_that_is_its_input_or_a_file_of_the_fit(fitted, capsys):
    fit_dir, runs = fitted
    before = runs.read_bytes()
    code, out, err = _cli(capsys, "predict", fit_dir, "--runs", runs, "--out", runs)
    assert code == 2 and out == ""
    _one_line_error(err, "predict")
    assert "--out" in err and "--runs" in err and "runs.csv" in err
    assert runs.read_bytes() == before

    fit_json = fit_dir / FIT_JSON
    saved = fit_json.read_bytes()
    code, _, err = _cli(capsys, "predict", fit_dir, "--runs", runs, "--out", fit_json)
    assert code == 2 and "--out" in err and "a file of the fit" in err
    assert fit_json.read_bytes() == saved
    load_fit(fit_dir)  # still intact


def test_predict_replaces_an_existing_out_file_only_when_asked(fitted, tmp_path, capsys):
    """Like `fit --out` and `report --out`, an existing output is replaced only with --overwrite;
    the help says so."""
    fit_dir, runs = fitted
    pred = tmp_path / "pred.csv"
    pred.write_text("old\n")
    code, _, err = _cli(capsys, "predict", fit_dir, "--runs", runs, "--out", pred)
    assert code == 2 and "--out" in err and "--overwrite" in err and pred.read_text() == "old\n"
    code, _, err = _cli(capsys, "predict", fit_dir, "--runs", runs, "--out", pred, "--overwrite")
    assert code == 0, err
    table = pd.read_csv(pred)
    assert len(table) == len(pd.read_csv(runs)) and {"median", "q05", "q95"} <= set(table.columns)
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--overwrite" in " ".join(capsys.readouterr().out.split())


def test_predict_out_under_a_file_names_the_file(fitted, capsys):
    fit_dir, runs = fitted
    before = runs.read_bytes()
    for out in (runs / "x.csv", runs / "deeper" / "x.csv"):
        code, _, err = _cli(capsys, "predict", fit_dir, "--runs", runs, "--out", out)
        assert code == 2
        _one_line_error(err, "predict")
        assert "is a file" in err and str(runs) in err and "does not exist" not in err
    assert runs.is_file() and runs.read_bytes() == before


# ------------------------------------------------------------------ L3: a fit.json out of range


def _rewrite(fit_dir, change) -> None:
    """Edit fit.json as a hostile user would, with a matching checksum."""
    path = fit_dir / FIT_JSON
    payload = json.loads(path.read_text())
    change(payload)
    payload["checksums"][FIT_JSON] = payload_sha256(payload)
    path.write_text(json.dumps(payload))


def _set(path, value):
    def change(payload):
        *keys, last = path
        d = payload
        for k in keys:
            d = d[k]
        d[last] = value
    return change


@pytest.mark.parametrize("change, needles", [
    (_set(["format"], 99), ["'format'", "99"]),
    (_set(["format"], "2"), ["'format'"]),
    (_set(["params", "fam1", "E"], -1.4), ["'E'", "'fam1'", "-1.4", ">= 0"]),
    (_set(["params", "fam0", "A"], -1e-9), ["'A'", "'fam0'", ">= 0"]),
    (_set(["params", "fam2", "alpha"], -0.3), ["'alpha'", "'fam2'", "-0.3", ">= 0"]),
    (_set(["params", "martian"], {"E": 1.0}), ["'params'", "'martian'", "'families'"]),
])
def test_load_fit_refuses_a_fit_json_out_of_range(fitted, capsys, change, needles):
    fit_dir, _ = fitted
    load_fit(fit_dir)  # the saved fit loads
    _rewrite(fit_dir, change)
    with pytest.raises(DamagedFileError) as err:
        load_fit(fit_dir)
    msg = str(err.value)
    assert FIT_JSON in msg and all(n in msg for n in needles), msg
    code, out, err_text = _cli(capsys, "predict", fit_dir, "--N", "1e8", "--D", "1e10",
                               "--ratios", "fam0=0.4,fam1=0.3,fam2=0.3")
    assert code == 2 and out == ""
    _one_line_error(err_text, "predict")
    assert FIT_JSON in err_text and needles[0] in err_text


def test_a_fit_json_without_format_and_checksums_is_refused_with_how_to_refit(fitted, capsys):
    fit_dir, _ = fitted
    path = fit_dir / FIT_JSON
    payload = json.loads(path.read_text())
    del payload["format"], payload["checksums"]
    path.write_text(json.dumps(payload))
    with pytest.raises(DamagedFileError) as err:
        load_fit(fit_dir)
    msg = str(err.value)
    assert FIT_JSON in msg and "'format' is missing" in msg and "multiscale fit" in msg, msg
    code, out, err_text = _cli(capsys, "predict", fit_dir, "--N", "1e8", "--D", "1e10",
                               "--ratios", "fam0=0.4,fam1=0.3,fam2=0.3")
    assert code == 2 and out == ""
    _one_line_error(err_text, "predict")
    assert "'format' is missing" in err_text and "multiscale fit" in err_text


# ------------------------------------------------------------------ L4: a constant mixture column


def _mixture_runs(n=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fams = ["a", "b", "c"]
    rows = []
    for r in range(n):
        p = rng.dirichlet(np.ones(3))
        for j, f in enumerate(fams):
            loss = 3.0 * p[j] ** -0.2 * math.exp(0.01 * rng.standard_normal())
            rows.append({"run": f"r{r}", "family": f, "N": 1e7, "D": 1e9, "p": p[j], "loss": loss,
                         **{f"p_{g}": p[i] for i, g in enumerate(fams)}})
    return pd.DataFrame(rows)


def test_independence_leaves_out_a_mixture_column_that_never_varies(tmp_path, capsys):
    """`p_martian` is 0 in every run: it was reported as the largest cross effect, with an
    interval. Now it is left out of every regression and named in a note, with no number."""
    df = _mixture_runs()
    with_martian = df.assign(p_martian=0.0)
    res, ref = independence_test(with_martian), independence_test(df)
    for fam, r in res.families.items():
        assert r.top_family != "martian" and r.left_out == ["p_martian"]
        assert r.top_effect == ref.families[fam].top_effect and r.r2_full == ref.families[fam].r2_full
        assert ref.families[fam].left_out == []
    assert any("p_martian" in n and "every run" in n and "a, b, c" in n for n in res.notes)

    table = tmp_path / "runs.csv"
    with_martian.to_csv(table, index=False)
    code, out, err = _cli(capsys, "independence", table, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert all(r["top_family"] != "martian" and r["left_out"] == ["p_martian"] for r in d["families"].values())
    assert all("left_out" not in r for r in ref.to_dict()["families"].values())
    assert any("p_martian" in n for n in d["notes"])


# ------------------------------------------------------------------ L5, L6: recommend bounds and weights


@pytest.mark.parametrize("extra, needles, absent", [
    (["--cap", "0.1"], ["--cap", "0.3 < 1", "fam0<=0.1"], ["not enough data", "epochs"]),
    (["--cap", "fam0=0.2,fam1=0.2,fam2=0.2"], ["--cap", "0.6 < 1"], ["not enough data"]),
    (["--floor", "0.5"], ["--floor", "1.5 > 1", "fam2=0.5"], []),
    (["--floor", "fam0=0.5", "--cap", "fam0=0.3"], ["--floor", "above the cap", "'fam0'"], []),
    (["--tokens", "fam0=1e9,fam1=1e9,fam2=1e9"], ["tokens", "not enough data", "4 epochs"], []),
])
def test_recommend_bounds_name_the_flag_and_the_true_cause(fitted, capsys, extra, needles, absent):
    fit_dir, _ = fitted
    before = sorted(p.name for p in fit_dir.iterdir())
    code, out, err = _cli(capsys, "recommend", fit_dir, "--N", "1e9", "--D", "1e11", *extra)
    assert code == 2 and out == ""
    _one_line_error(err, "recommend")
    assert all(n in err for n in needles), err
    assert not any(a in err for a in absent), err
    assert sorted(p.name for p in fit_dir.iterdir()) == before


def test_recommend_shows_the_weights_used_and_names_families_left_out(fitted, capsys):
    fit_dir, _ = fitted
    code, out, err = _cli(capsys, "recommend", fit_dir, "--N", "1e9", "--D", "1e11", "--weights", "fam0=2",
                          "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["weights"] == pytest.approx({"fam0": 0.5, "fam1": 0.25, "fam2": 0.25})
    assert any("--weights" in n and "fam1, fam2" in n and "weight 1" in n for n in d["notes"])
    code, out, _ = _cli(capsys, "recommend", fit_dir, "--N", "1e9", "--D", "1e11", "--json")
    d = json.loads(out)
    assert d["weights"] == pytest.approx({f: 1 / 3 for f in ("fam0", "fam1", "fam2")})
    assert not any("--weights" in n for n in d["notes"])


# ------------------------------------------------------------------ L7: compare flags


@pytest.mark.parametrize("extra, needles", [
    (["--laws", "multilingual,multilingual"], ["--laws", "'multilingual' twice"]),
    (["--laws", "multilingual, chinchilla,multilingual"], ["--laws", "'multilingual' twice"]),
    (["--laws", "multilingual", "--N", "nan"], ["--N", "nan"]),
    (["--laws", "multilingual", "--D", "-1"], ["--D", "-1"]),
])
def test_compare_refuses_a_law_given_twice_and_a_bad_target(fitted, tmp_path, capsys, extra, needles):
    _, runs = fitted
    out_dir = tmp_path / "cmp"
    code, out, err = _cli(capsys, "compare", runs, *extra, "--out", out_dir)
    assert code == 2 and out == ""
    _one_line_error(err, "compare")
    assert all(n in err for n in needles), err
    assert not out_dir.exists()


def test_a_point_fit_that_load_fit_would_refuse_is_not_saved(fitted, tmp_path):
    """An exponent below 0 (loss rising with N) cannot be loaded back; it is refused at save,
    naming the parameter, and nothing is written."""
    from multiscale.errors import InputError

    fit = load_fit(fitted[0])
    fit.draws["beta"] = fit.draws["beta"].copy()
    fit.draws["beta"][0, 1] = -0.05
    out = tmp_path / "bad_fit"
    with pytest.raises(InputError, match=r"parameter 'beta' of family 'fam1' is -0\.05"):
        fit.save(out)
    assert not out.exists()
