"""The report: figures are valid PNGs, numbers are right, held-out runs are found, bad input fails."""

import json

import numpy as np
import pandas as pd
import pytest
from fixtures.markdown import md_table

from multiscale import report
from multiscale.decisions import optimal_ratios
from multiscale.errors import DamagedFileError
from multiscale.report import plots

FAMS = ("fam0", "fam1", "fam2")
TRUTH = {  # a multilingual law at CPU scale (losses in nats/token around 3-5)
    "fam0": {"E": 1.8, "A": 30.0, "B": 60.0, "alpha": 0.30, "beta": 0.30, "gamma": 0.10},
    "fam1": {"E": 2.2, "A": 25.0, "B": 50.0, "alpha": 0.28, "beta": 0.32, "gamma": 0.20},
    "fam2": {"E": 2.0, "A": 35.0, "B": 80.0, "alpha": 0.32, "beta": 0.30, "gamma": 0.05},
}


def _bayes_fit(spread=0.02, chains=2, draws=150, seed=0):
    """A BayesFit whose posterior is the truth times small log-normal noise (no sampler needed)."""
    import arviz as az

    from multiscale.laws.fits import BayesFit
    from multiscale.laws.forms import get_law

    law = get_law("multilingual")
    rng = np.random.default_rng(seed)
    post = {n: np.array([TRUTH[f][n] for f in FAMS]) * np.exp(spread * rng.standard_normal((chains, draws, 3)))
            for n in law.params}
    idata = az.from_dict(posterior=post, dims={n: ["family"] for n in law.params}, coords={"family": list(FAMS)})
    return BayesFit(law=law, families=FAMS, shared=(), draws={n: v.reshape(-1, 3) for n, v in post.items()},
                    N_ref=2e5, D_ref=1e5, n_runs={f: 12 for f in FAMS}, idata=idata,
                    diagnostics={"max_rhat": 1.0, "min_ess_bulk": 300.0, "divergences": 0},
                    options={"chains": chains, "draws": draws})


def _runs(seed=0, noise=0.01):
    from multiscale.laws.forms import get_law, predict_loss

    law = get_law("multilingual")
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    for N in (1e5, 4e5):
        for D in (6.5e4, 1.3e5):
            for _ in range(5):
                p = rng.dirichlet(np.ones(3)) * 0.9 + 0.1 / 3
                for j, f in enumerate(FAMS):
                    params = {n: np.float64(v) for n, v in TRUTH[f].items()}
                    loss = float(predict_loss(law, params, N, D, p[j])) * np.exp(noise * rng.standard_normal())
                    rows.append({"run": f"r{k:02d}", "family": f, "N": N, "D": D, "p": p[j], "loss": loss,
                                 **{f"p_{g}": p[i] for i, g in enumerate(FAMS)}})
                k += 1
    return pd.DataFrame(rows)


def test_law_band_brackets_the_truth():
    fit = _bayes_fit()
    p = np.array([0.05, 0.3, 1.0])
    lo, mid, hi = plots.law_band(fit, "fam1", 4e5, 1.3e5, p)
    t = TRUTH["fam1"]
    true = (t["E"] + t["A"] / 4e5 ** t["alpha"] + t["B"] / 1.3e5 ** t["beta"]) * p ** -t["gamma"]
    assert np.all(lo < true) and np.all(true < hi) and np.allclose(mid, true, rtol=0.03)


def test_prediction_table_and_metrics():
    fit, df = _bayes_fit(), _runs()
    held = ["r18", "r19"]
    table = report.prediction_table(fit, df, held)
    assert len(table) == len(df) and table["heldout"].sum() == 6
    m = report.fit_metrics(table)
    assert m["fitted"]["rows"] == 54 and m["heldout"]["rows"] == 6
    assert m["fitted"]["r2"] > 0.9 and m["fitted"]["mape_pct"] < 3
    # a perfect prediction scores R² = 1 and MAPE = 0
    exact = table.assign(loss=table["pred"])
    assert report.fit_metrics(exact)["fitted"]["r2"] == pytest.approx(1.0)
    assert report.fit_metrics(exact)["fitted"]["mape_pct"] == pytest.approx(0.0)


def test_figures_are_valid_pngs(tmp_path):
    fit, df = _bayes_fit(), _runs()
    paths = [plots.plot_loss_vs_p(df, fit, tmp_path / "a.png", heldout=["r00"]),
             plots.plot_pred_vs_obs(report.prediction_table(fit, df, ["r00"]), tmp_path / "b.png"),
             plots.plot_p_star({f: np.random.default_rng(0).beta(2, 5, 200) for f in FAMS},
                               {"uniform": {f: 1 / 3 for f in FAMS}}, tmp_path / "c.png"),
             plots.plot_independence({f: {"r2_own": 0.8, "r2_full": 0.85, "share_own": 0.94, "top_family": "fam0",
                                          "top_effect": 0.004, "top_interval": [0.001, 0.007],
                                          "verdict": "own ratio suffices"} for f in FAMS}, tmp_path / "d.png")]
    for p in paths:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        plots.check_png(p)  # matplotlib reads it back
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DamagedFileError, match="not a PNG"):
        plots.check_png(tmp_path / "bad.png")


def test_recommendation_beats_every_baseline_on_its_objective():
    fit = _bayes_fit()
    counts = {"fam0": 900_000, "fam1": 90_000, "fam2": 40_000}  # caps (4 epochs) do not bind
    rec = report.recommend_for_report(optimal_ratios(fit, 4e5, 1.3e5, available_tokens=counts))
    med = {f: s["median"] for f, s in rec["p_star"].items()}
    assert sum(rec["recommended"].values()) == pytest.approx(1.0)
    for f, s in rec["p_star"].items():
        assert 0 < s["q05"] <= s["median"] <= s["q95"] < 1, f
    # p* minimizes the objective draw by draw, so no baseline beats it on any draw: regret >= 0
    assert {"uniform", "temperature_0.3", "unimax", "proportional"} <= set(rec["comparison"])
    for name, c in rec["comparison"].items():
        assert c["regret"]["q05"] >= -1e-9, name
        if name not in ("recommended", "median p*"):
            assert c["objective_gain"]["q05"] >= -1e-9, name
    # the recommended mixture has the least expected regret of every choice
    least = min(rec["comparison"], key=lambda k: rec["comparison"][k]["expected_regret"])
    assert least == "recommended"
    # normalized objective: p* depends only on gamma; fam1 has the largest gamma, so the largest share
    assert max(med, key=med.get) == "fam1"
    text = "\n".join(rec["text"])  # the text prints the numbers of the dict: intervals, losses, gains
    for f, s in rec["p_star"].items():
        assert f"[{s['q05']:.3f}, {s['q95']:.3f}]" in text, f
    for name in ("uniform", "temperature_0.3"):
        c = rec["comparison"][name]
        assert f"{c['loss']['median']:.4f} nats/token" in text and f"{c['gain_nats']['median']:+.4f}" in text, name
    json.dumps({k: v for k, v in rec.items()})  # JSON-ready


def _check_report_tables(md: str, rec: dict) -> None:
    """report.md's recommendation and decision tables print the numbers of recommendation.json."""
    robust = {row[0]: row[1] for row in md_table(md, "family | recommended")}
    assert robust == {f: f"**{s['recommended']:.3f}**" for f, s in rec["p_star"].items()}
    decisions = [(row[4], row[6]) for row in md_table(md, "choice")]
    assert decisions == [(f"{e['expected_regret']:.2e}", f"{e['prob_best']:.2f}") for e in rec["comparison"].values()]


def _write_inputs(tmp_path, heldout_runs=("r18", "r19")):
    """A saved fit, the table it saw (FIT_DIR/runs.csv) and the full table with held-out runs."""
    fit, df = _bayes_fit(), _runs()
    fit_dir = tmp_path / "fit"
    fit.save(fit_dir)
    df[~df["run"].isin(heldout_runs)].to_csv(fit_dir / "runs.csv", index=False)
    df.to_csv(tmp_path / "all.csv", index=False)
    return fit_dir, tmp_path / "all.csv"


@pytest.mark.slow  # ~3-4 s on 2 idle cores: keeps `pytest -m 'not slow'` under 2 minutes
def test_write_report_end_to_end(tmp_path):
    fit_dir, runs = _write_inputs(tmp_path)
    rep = report.write_report(fit_dir, tmp_path / "rep", runs=runs,
                              family_tokens={"fam0": 9e6, "fam1": 3e6, "fam2": 1e6})
    names = sorted(p.split("/")[-1] for p in rep.figures)
    assert names == ["independence.png", "loss_vs_p.png", "p_star.png", "pred_vs_obs.png"]
    for p in rep.figures:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        plots.check_png(p)
    md = open(rep.markdown).read()
    for p in rep.figures:  # report.md shows every figure it wrote
        assert f"({p.split('/')[-1]})" in md, p
    _check_report_tables(md, json.loads((tmp_path / "rep" / "recommendation.json").read_text()))
    # the independence table prints the test's numbers for every family
    from multiscale.laws import independence_test

    indep = independence_test(pd.read_csv(runs)).to_dict()["families"]
    shares = {row[0]: row[4] for row in md_table(md, "family | runs")}
    assert shares == {f: f"{e['share_own']:.2f}" for f, e in indep.items()}
    # held-out runs come from the difference between the table and the fitted table
    assert rep.metrics["heldout"]["rows"] == 6 and rep.metrics["fitted"]["rows"] == 54
    # data from the law itself: predictive intervals cover most rows, R² is high
    assert rep.metrics["fitted"]["r2"] > 0.9 and rep.metrics["fitted"]["coverage90"] >= 0.7
    pred = pd.read_csv(tmp_path / "rep" / "predictions.csv")
    assert len(pred) == 60 and (pred["pred_lo"] <= pred["pred"]).all() and (pred["pred"] <= pred["pred_hi"]).all()
    rec = json.loads((tmp_path / "rep" / "recommendation.json").read_text())
    assert rec["N"] == 4e5 and rec["D"] == 1.3e5 and sum(rec["recommended"].values()) == pytest.approx(1)


def test_report_cli_and_bad_input(tmp_path, capsys):
    from multiscale.cli import main

    fit_dir, runs = _write_inputs(tmp_path)
    assert main(["report", str(fit_dir), "--out", str(tmp_path / "r"), "--heldout", "r00", "--N", "1e6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommendation"]["N"] == 1e6 and out["metrics"]["heldout"]["rows"] == 3
    assert main(["report", str(fit_dir), "--out", str(tmp_path / "r"), "--heldout", "nope", "--overwrite"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--overwrite"]) == 2
    assert "missing" in capsys.readouterr().err
    bad = pd.read_csv(runs).assign(family=lambda d: d["family"].replace("fam2", "klingon"))
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["report", str(fit_dir), "--runs", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "r"),
                 "--overwrite"]) == 2
    assert "klingon" in capsys.readouterr().err


def test_held_out_runs_follow_the_evidence_in_order(tmp_path):
    """--heldout as given; else the runs missing from the table the fit saw; else (outside a sweep
    folder) none: nothing says which runs the fit did not see."""
    from multiscale.errors import InputError
    from multiscale.report.inputs import SweepFacts, heldout_runs

    fit, df = _bayes_fit(), _runs()
    df.to_csv(tmp_path / "all.csv", index=False)
    df[df["N"] < 4e5].to_csv(tmp_path / "small.csv", index=False)
    all_csv, small_csv = str(tmp_path / "all.csv"), str(tmp_path / "small.csv")
    big = list(dict.fromkeys(df[df["N"] == 4e5]["run"]))
    assert heldout_runs(fit, df, all_csv, heldout=None, fitted_table=small_csv, facts=None) == big
    assert heldout_runs(fit, df, all_csv, heldout=["r01"], fitted_table=small_csv, facts=None) == ["r01"]
    assert heldout_runs(fit, df, all_csv, heldout=None, fitted_table=all_csv, facts=None) == []
    assert heldout_runs(fit, df, all_csv, heldout=None, fitted_table=None, facts=None) == []
    with pytest.raises(InputError, match="^heldout names runs that are not in"):
        heldout_runs(fit, df, all_csv, heldout=["r99"], fitted_table=None, facts=None)
    facts = SweepFacts(heldout=frozenset({"r00"}), family_tokens=None)
    fit.n_runs = {f: 20 for f in FAMS}  # as many rows as the table has: the fit saw the flagged run too
    assert heldout_runs(fit, df, all_csv, heldout=None, fitted_table=None, facts=facts) == []
    fit.n_runs = {f: 4 for f in FAMS}
    assert heldout_runs(fit, df, all_csv, heldout=None, fitted_table=None, facts=facts) == ["r00"]
    # a held-out planned run that the sweep found finished under another name (one configuration
    # digest): the finished run is the held-out one
    named = df.assign(run=df["run"].map(lambda r: f"cpu-100k-D1k-{r}-s0-{int(r[1:]):08x}"))
    planned = frozenset({"cpu-100k-D1k-next3-r03-s0-00000003"})
    got = heldout_runs(fit, named, all_csv, heldout=None, fitted_table=None,
                       facts=SweepFacts(heldout=planned, family_tokens=None))
    assert got == ["cpu-100k-D1k-r03-s0-00000003"]


def test_report_refuses_bad_paths_and_scales_before_any_work(tmp_path, capsys):
    from multiscale.cli import main

    fit_dir, runs = _write_inputs(tmp_path)
    (tmp_path / "afile").write_text("x")
    cases = [(["--out", str(tmp_path / "afile")], "is a file"),
             (["--out", str(tmp_path / "afile" / "rep")], "lies under"),
             (["--out", str(tmp_path / "r"), "--runs", str(tmp_path / "nope.csv")], "nope.csv"),
             (["--out", str(tmp_path / "r"), "--fitted", str(tmp_path / "gone.csv")], "--fitted"),
             (["--out", str(tmp_path / "r"), "--N", "nan"], "--N must be a finite number"),
             (["--out", str(tmp_path / "r"), "--D", "-1"], "--D must be a finite number")]
    for extra, message in cases:
        assert main(["report", str(fit_dir), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()  # nothing was written
    assert main(["report", str(runs), "--out", str(tmp_path / "r")]) == 2  # a file is not a FIT_DIR
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow  # ~3-4 s on 2 idle cores: keeps `pytest -m 'not slow'` under 2 minutes
def test_report_reads_held_out_runs_and_token_counts_from_the_sweep_store(tmp_path):
    """A run table inside a sweep folder: the runs its plans mark held-out are held out (when the
    fit did not see them) and the corpus's token counts give the proportional baseline."""
    from multiscale.report.inputs import sweep_facts
    from multiscale.sweep import SweepStore

    fit, df = _bayes_fit(), _runs()
    fit_dir = tmp_path / "fit"
    fit.save(fit_dir)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    df.to_csv(sweep_dir / "runs.csv", index=False)
    assert sweep_facts(str(sweep_dir / "runs.csv")) is None  # no plan recorded: not a sweep folder

    class Planned:  # what SweepStore.save_plan records of a planned run
        def __init__(self, run_id, heldout):
            self.run_id, self.heldout = run_id, heldout

        def to_dict(self):
            return {"run_id": self.run_id, "heldout": self.heldout}

    counts = {"fam0": 9_000_000, "fam1": 3_000_000, "fam2": 1_000_000}
    SweepStore(sweep_dir).save_plan("p", [Planned(r, r in ("r18", "r19")) for r in dict.fromkeys(df["run"])],
                                    corpus=None, family_tokens=counts)
    facts = sweep_facts(str(sweep_dir / "runs.csv"))
    assert facts.heldout == {"r18", "r19"} and facts.family_tokens == counts
    fit.n_runs = {f: 4 for f in fit.families}  # the fit saw fewer rows than the table has
    fit.save(fit_dir)
    rep = report.write_report(fit_dir, tmp_path / "rep", runs=sweep_dir / "runs.csv")
    assert rep.metrics["heldout"]["rows"] == 6
    assert rep.recommendation["baselines"]["proportional"] == pytest.approx(
        {f: n / sum(counts.values()) for f, n in counts.items()})


def test_labels_and_markdown_table():
    from multiscale.report.labels import pretty, scale_label, short, si
    from multiscale.report.markdown import markdown_table

    assert [si(x) for x in (950, 1550560, 2e5, 1.2e9, 3e12)] == ["950", "1.55M", "200k", "1.2B", "3T"]
    assert scale_label(1e5, 6.5e4) == "N=100k, D=65k"
    assert pretty("temperature_0.3") == "temperature τ=0.3" and pretty("unimax") == "UniMax"
    assert short("temperature_0.7") == "temp τ=0.7" and short("proportional") == "proportional"
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |"


def test_independence_section_says_why_it_was_not_run():
    from multiscale.report.writer import _independence

    df = _runs()
    few = df[df["run"].isin(["r00", "r01", "r02"])]
    indep, why = _independence(few)
    assert indep is None and "too few" in why
    indep, why = _independence(df.drop(columns=[f"p_{f}" for f in FAMS]))
    assert indep is None and "no p_<family> mixture columns" in why
    indep, why = _independence(df)
    assert why == "" and set(indep["families"]) == set(FAMS)


def test_report_says_how_much_of_an_interval_is_extrapolation():
    from types import SimpleNamespace

    from multiscale.report.markdown import ReportContent, _extrapolation

    model = {"method": "leave-largest-out", "kappa": 0.02, "log_N_range": [np.log(1e5), np.log(4e5)],
             "log_D_range": [np.log(2e5), np.log(4e5)], "prior": {"kappa": 0.03, "weight": 4, "source": "s"},
             "experiments": [{"left_out": "N", "value": 4e5, "coverage_before": 0.3, "kappa": 0.01}], "skipped": []}
    runs = pd.DataFrame({"N": [1e5, 4e5, 8e5, 1.6e6], "D": [2e5] * 4})
    content = ReportContent(fit=SimpleNamespace(method="nuts", extrapolation=model), runs=runs, runs_path="r.csv",
                            heldout=[], metrics={}, recommendation={}, independence=None, independence_note="",
                            figures=[])
    text = " ".join(_extrapolation(content))
    assert "0.0200 per unit log k" in text and "2 of 4 rows lie beyond" in text
    assert f"{0.02 * np.log(2):.4f}-{0.02 * np.log(4):.4f}" in text  # 8e5 is 2x beyond 4e5, 1.6e6 4x
    assert _extrapolation(ReportContent(**{**content.__dict__, "fit": SimpleNamespace(method="lbfgs")})) == []


def _transfer_bayes_fit(truth, fams, chains=2, draws=100, spread=0.03, seed=0):
    """A BayesFit of the transfer law whose posterior is `truth` times log-normal noise."""
    import arviz as az

    from multiscale.laws.fits import BayesFit
    from multiscale.laws.forms import get_law

    law = get_law("transfer")
    rng = np.random.default_rng(seed)
    post = {n: v[0] * np.exp(spread * rng.standard_normal((chains, draws) + v.shape[1:])) for n, v in truth.items()}
    post["sigma"] = np.full((chains, draws, len(fams)), 0.005)
    dims = {n: ["family"] for n in law.params} | {"tau": ["family", "source"], "sigma": ["family"]}
    idata = az.from_dict(posterior=post, dims=dims, coords={"family": list(fams), "source": list(fams)})
    return BayesFit(law=law, families=fams, shared=(), mixture_families=fams,
                    draws={n: v.reshape((-1,) + v.shape[2:]) for n, v in post.items() if n != "sigma"},
                    N_ref=1e8, D_ref=1e10, n_runs=dict.fromkeys(fams, 12), idata=idata,
                    diagnostics={"max_rhat": 1.0, "min_ess_bulk": 200.0, "divergences": 0},
                    options={"chains": chains, "draws": draws})


@pytest.mark.slow  # the coupled solver's jax programs and the figures (~5 s on 2 idle cores)
def test_report_of_a_mixture_law_shows_the_robust_mixture_regret_and_p_best(tmp_path):
    """`multiscale report` on a fit of the transfer law (a law of the whole mixture): the
    recommended mixture is the coupled robust p*, beside the gains each choice's expected regret
    and P(best), as for the multilingual law; recommendation.json carries the same decision numbers."""
    from fixtures.synthetic_mixture import mixture_runs, mixture_truth

    from multiscale.laws import load_fit

    truth = mixture_truth("transfer", 3, seed=4)
    runs = mixture_runs("transfer", truth, seed=4, n_mixtures=4, N=(2e7, 5e7), D=(2e9, 6e9))
    fams = tuple(sorted(runs["family"].unique()))
    fit_dir = tmp_path / "fit"
    _transfer_bayes_fit(truth, fams).save(fit_dir)
    runs.to_csv(fit_dir / "runs.csv", index=False)
    tokens = {"fam0": 4e9, "fam1": 2e9, "fam2": 1e9}
    report.write_report(fit_dir, tmp_path / "rep", family_tokens=tokens)
    md = (tmp_path / "rep" / "report.md").read_text()
    rec = json.loads((tmp_path / "rep" / "recommendation.json").read_text())
    _check_report_tables(md, rec)
    assert {"uniform", "unimax"} <= set(rec["comparison"])
    plots.check_png(tmp_path / "rep" / "p_star.png")
    assert rec["solver"].startswith("coupled") and rec["recommended_is"].startswith("robust p*")
    want = optimal_ratios(load_fit(fit_dir), 5e7, 6e9, available_tokens=tokens)
    assert rec["recommended"] == pytest.approx(want.ratios, abs=1e-12)
    table = want.decision_table()
    comp = rec["comparison"]
    assert comp["recommended"]["expected_regret"] == pytest.approx(table["robust p*"]["expected_regret"])
    assert comp["median p*"]["prob_best"] == pytest.approx(table["median p*"]["prob_best"])
    assert comp["uniform"]["prob_best"] == pytest.approx(table["uniform"]["prob_best"])
    assert sum(c["prob_best"] for c in comp.values()) == pytest.approx(1.0)
    assert min(comp, key=lambda k: comp[k]["expected_regret"]) == "recommended"
    assert comp["uniform"]["gain_nats"]["median"] > 0
