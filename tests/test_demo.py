"""The quickstart demo (its --quick variant): trains, fits, recommends, reports, and reuses work.

Every expected token count is read from the corpus the demo built (Debian's packages change
their manual pages from release to release, so no count is written here)."""

import json

import pandas as pd
import pytest

from multiscale.data.corpus import Corpus
from multiscale.demo import DEMO_PLAN, QUICK, run_demo
from multiscale.report import plots
from multiscale.sweep import SweepPlan, SweepStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The quick demo run once, with what it logged."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    lines = []
    res = run_demo(out, settings=QUICK, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    return out, res, "\n".join(lines)


@pytest.mark.slow
def test_quick_demo_end_to_end(demo):
    out, res, logged = demo
    planned = len(SweepStore(out / "sweep").planned_runs())
    assert planned == 7  # uniform, 5 x vary_one, temperature 0.3 (held out)
    assert res.trained == planned and res.reused_runs == 0 and not res.reused_fit
    rec = res.recommendation
    # it printed the recommendation's numbers: each family's 90% interval, the gains over uniform and
    # temperature sampling, and where the report went
    for f, s in rec["p_star"].items():
        assert f"[{s['q05']:.3f}, {s['q95']:.3f}]" in logged, f
    for name in ("uniform", "temperature_0.3"):
        assert f"{rec['comparison'][name]['gain_nats']['median']:+.4f} nats/token" in logged, name
    assert res.report in logged
    assert sum(rec["recommended"].values()) == pytest.approx(1.0)
    for f, s in rec["p_star"].items():
        assert 0 < s["q05"] <= s["median"] <= s["q95"] < 1, f
    saved = json.loads((out / "recommendation.json").read_text())
    assert saved["p_star"] == rec["p_star"]
    # the numbers come from runs it trained: the fitted table is the sweep's, less held-out runs
    runs = pd.read_csv(res.runs_csv)
    fitted = pd.read_csv(out / "fit" / "runs.csv")
    held = {r["run_id"] for r in SweepStore(out / "sweep").planned_runs(heldout=True)}
    assert set(fitted["run"]) == set(runs["run"]) - held and len(held) == 1 and runs["run"].nunique() == planned
    for name in ("loss_vs_p", "p_star", "pred_vs_obs"):
        plots.check_png(out / "report" / f"{name}.png")
    # 7 runs are too few for the independence test with 4 other families: it was not run
    assert not (out / "report" / "independence.png").exists()


@pytest.mark.slow
def test_baselines_use_the_token_counts_of_the_corpus_the_demo_built(demo):
    out, res, _ = demo
    corpus = Corpus.open(str(out / "corpus"))
    tokens = {f: int(corpus.train_tokens(f)) for f in corpus.grouping.family_names}
    assert all(n > 0 for n in tokens.values())
    assert SweepStore(out / "sweep").corpus_tokens() == tokens  # what the sweep recorded
    total = sum(tokens.values())
    proportional = res.recommendation["baselines"]["proportional"]
    assert proportional == pytest.approx({f: n / total for f, n in tokens.items()}, rel=1e-9)


@pytest.mark.slow
def test_rerun_reuses_the_corpus_every_run_and_the_fit(demo):
    out, res, _ = demo
    lines = []
    again = run_demo(out, settings=QUICK, progress=False, log=lambda *a: lines.append(" ".join(map(str, a))))
    planned = res.trained
    assert again.trained == 0 and again.reused_runs == planned and again.reused_fit
    assert again.recommendation["p_star"] == res.recommendation["p_star"]
    assert "reusing the corpus" in "\n".join(lines)


@pytest.mark.slow
def test_full_demo_plan_is_valid_and_small(demo):
    """The full demo's plan expanded on real token counts (the quick demo's corpus: the same
    families and languages, fewer documents, so the UniMax and temperature mixtures differ only
    in their ratios, not in how many runs there are)."""
    out, _, _ = demo
    corpus = Corpus.open(str(out / "corpus"))
    fams = tuple(corpus.grouping.family_names)
    counts = {f: int(corpus.train_tokens(f)) for f in fams}
    runs = SweepPlan.from_dict(DEMO_PLAN).expand(fams, family_tokens=counts)
    assert 20 <= len(runs) <= 32  # sized for ~5 minutes on 2 CPU cores
    assert {r.preset for r in runs} == {"cpu-100k", "cpu-400k"} and len({r.tokens for r in runs}) == 2
    assert any(r.heldout for r in runs) and not all(r.heldout for r in runs)


def test_demo_refuses_an_output_path_that_is_a_file(tmp_path):
    from multiscale.errors import InputError

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        run_demo(tmp_path / "f", settings=QUICK, progress=False, log=lambda *a: None)
    with pytest.raises(InputError, match="lies under"):
        run_demo(tmp_path / "f" / "demo", settings=QUICK, progress=False, log=lambda *a: None)


def test_demo_cli_help():
    from multiscale.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x", "--quick"])
    assert args.quick and args.out == "x"
