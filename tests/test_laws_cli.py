"""`multiscale fit | recommend | predict | independence` end to end (ratio law: fast)."""

import json

import numpy as np

from multiscale.cli import main
from multiscale.laws.synthetic import synthetic_runs, synthetic_truth


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
