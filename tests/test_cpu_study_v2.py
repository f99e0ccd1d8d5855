"""The second CPU study's plans (examples/cpu_study_v2): they load and expand, the budgets span
16x at two sizes, and stage B's compute F is the budget `multiscale next` was given in the
committed next.json and next_full.json (6 N D with the nominal D, as `multiscale next` counts a
candidate)."""

import importlib.util
from pathlib import Path

import pytest

from multiscale.sweep import SweepPlan
from multiscale.sweep.runner import plan_runs

HERE = Path(__file__).resolve().parents[1] / "examples" / "cpu_study_v2"


def _tools():
    spec = importlib.util.spec_from_file_location("study_v2", HERE / "study_v2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_sweep_spans_16x_at_two_sizes():
    runs = [r for p in ("stage_a1.yaml", "stage_a2.yaml") for r in plan_runs(SweepPlan.load(HERE / p))]
    budgets: dict[str, set[int]] = {}
    for r in runs:
        budgets.setdefault(r.preset, set()).add(r.tokens)
    wide = [p for p, b in budgets.items() if len(b) >= 3 and max(b) / min(b) >= 16]
    assert len(wide) >= 2 and len(runs) == 48


def test_stage_b_compute_is_the_budget_next_was_given():
    import json

    tools = _tools()
    out = tools.plan_compute(str(HERE / "stage_b.yaml"), None)
    assert out["runs"] == 36
    assert out["flops_6ND"] == pytest.approx(4.566e13, rel=1e-3)
    assert out["flops_6ND_trained"] < out["flops_6ND"]
    for name in ("next.json", "next_full.json"):  # stage C and E spent the compute of stage B
        assert json.loads((DOCS / name).read_text())["budget_flops"] == pytest.approx(out["flops_6ND"], rel=1e-12)


def _headline():
    spec = importlib.util.spec_from_file_location("headline_v2", HERE / "headline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DOCS = HERE.parents[1] / "docs" / "cpu_study_v2"


def test_headline_numbers_recompute_from_the_committed_tables():
    """summary.json (the numbers report.md prints) is what headline.py computes from the committed
    runs.csv, stage A's fit, the two designs' recommendations and `multiscale next`'s output."""
    import json

    got = json.loads(json.dumps(_headline().summary(DOCS), default=str))
    assert got == json.loads((DOCS / "summary.json").read_text())


def test_the_table_meets_the_issue_s_design_goals():
    """Issue 14: >= 3 budgets spanning >= 16x at two or more sizes, a family past 2 epochs, and the
    90% interval of beta narrower than 0.2 for every family in stage A's NUTS fit."""
    import json

    s = json.loads((DOCS / "summary.json").read_text())
    assert len(s["models_spanning_16x"]) >= 2
    assert s["repetition"]["max_epochs"] > 2 and s["repetition"]["runs_past_2_epochs"] > 0
    assert len(s["beta_width90"]) == 5 and max(s["beta_width90"].values()) < 0.2
    assert s["designs"]["active"]["flops_6ND"] <= s["designs"]["static"]["flops_6ND"]


def test_the_designs_are_compared_at_equal_compute():
    """Issue 14: the active design (stage E) spends the static design's FLOPs (within the cost of
    its cheapest candidate, 1.2e11 of 4.566e13), and both designs' p* were trained at the held-out
    size with the same three seeds as uniform."""
    import json

    s = json.loads((DOCS / "summary.json").read_text())
    static, active = s["designs"]["static"], s["designs"]["active_full"]
    assert 0.99 * static["flops_6ND"] <= active["flops_6ND"] <= static["flops_6ND"]
    seeds = s["final"]["loss_by_seed"]
    assert set(seeds["static"]) == set(seeds["active_full"]) == set(seeds["uniform"]) == {"0", "1", "2"}
    paired = s["final"]["static_minus"]["active_full"]
    assert paired["seeds"] == 3 and paired["t90"][0] < paired["mean"] < paired["t90"][1]
