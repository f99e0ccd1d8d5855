"""The quickstart demo (its --quick variant): trains, fits, recommends, reports, and reuses work."""

import json

import pytest

from multiscale.report import plots
from multiscale.demo import DEMO_PLAN, QUICK, run_demo
from multiscale.sweep import SweepPlan


def test_quick_demo_end_to_end_and_rerun_reuses_everything(tmp_path):
    lines = []
    res = run_demo(tmp_path / "demo", settings=QUICK, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    from multiscale.sweep import read_plan_json

    planned = len(read_plan_json(tmp_path / "demo" / "sweep"))
    assert planned == 7  # uniform, 5 x vary_one, temperature 0.3 (held out)
    assert res.trained == planned and res.reused_runs == 0 and not res.reused_fit
    out = "\n".join(lines)
    # the printed recommendation: ratios with 90% intervals, gains over uniform and temperature sampling
    assert "90% credible interval" in out and "vs uniform" in out and "vs temperature τ=0.3" in out
    assert "nats/token" in out and "report/report.md" in out
    rec = res.recommendation
    assert sum(rec["recommended"].values()) == pytest.approx(1.0)
    for s in rec["p_star"].values():
        assert 0 < s["q05"] <= s["median"] <= s["q95"] < 1
    saved = json.loads((tmp_path / "demo" / "recommendation.json").read_text())
    assert saved["p_star"] == rec["p_star"]
    # the numbers come from runs it trained: the fitted table is the sweep's, less held-out runs
    import pandas as pd

    runs = pd.read_csv(res.runs_csv)
    fitted = pd.read_csv(tmp_path / "demo" / "fit" / "runs.csv")
    assert set(fitted["run"]) < set(runs["run"]) and runs["run"].nunique() == planned
    for name in ("loss_vs_p", "p_star", "pred_vs_obs"):
        plots.check_png(tmp_path / "demo" / "report" / f"{name}.png")
    # 7 runs are too few for the independence test with 4 other families: the report says so
    assert "Not run: family" in (tmp_path / "demo" / "report" / "report.md").read_text()
    # re-running reuses the corpus, every run and the fit
    lines.clear()
    again = run_demo(tmp_path / "demo", settings=QUICK, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    assert again.trained == 0 and again.reused_runs == planned and again.reused_fit
    assert again.recommendation["p_star"] == rec["p_star"]
    assert "reusing the corpus" in "\n".join(lines)


def test_full_demo_plan_is_valid_and_small():
    fams = ("germanic", "romance", "slavic", "sino_tibetan", "japonic")
    counts = dict(zip(fams, (1_822_173, 3_290_678, 3_581_645, 537_870, 778_802)))  # the 80-document corpus
    runs = SweepPlan.from_dict(DEMO_PLAN).expand(fams, family_tokens=counts)
    assert 20 <= len(runs) <= 32  # sized for ~5 minutes on 2 CPU cores
    assert {r.preset for r in runs} == {"cpu-100k", "cpu-400k"} and len({r.tokens for r in runs}) == 2
    assert any(r.heldout for r in runs) and not all(r.heldout for r in runs)


def test_demo_cli_help():
    from multiscale.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x", "--quick"])
    assert args.quick and args.out == "x"
