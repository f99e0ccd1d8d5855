"""Sweep plans: parsing, validation, designs, run ids, sharding."""

import numpy as np
import pytest

from multiscale.plan import PlanError, SweepPlan, parse_shard, shard_runs

FAMS = ("germanic", "romance", "slavic", "uralic", "japonic")


def _plan(**over):
    raw = {"presets": ["cpu-100k", "cpu-200k"], "tokens": [1000, "2e3"], "families": list(FAMS),
           "mixtures": [{"design": "vary_one", "grid": [0.1, 0.5]}]}
    raw.update(over)
    return SweepPlan.from_dict(raw)


def test_vary_one_is_the_papers_design():
    runs = _plan().expand()
    # 2 presets x 2 budgets x 5 families x 2 grid values
    assert len(runs) == 2 * 2 * 5 * 2
    r = [r for r in runs if r.mixture == "slavic0.1"][0]
    p = r.ratio_dict
    assert p["slavic"] == pytest.approx(0.1)
    for f in FAMS:
        if f != "slavic":
            assert p[f] == pytest.approx(0.9 / 4)
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-12)
    assert {r.tokens for r in runs} == {1000, 2000}  # "2e3" (a YAML string) is accepted


def test_run_ids_are_deterministic_readable_and_config_sensitive():
    a, b = _plan().expand(), _plan().expand()
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert len({r.run_id for r in a}) == len(a)
    assert a[0].run_id.startswith("cpu-100k-D1k-germanic0.1-s0-")
    changed = _plan(train={"lr": 0.01}).expand()
    assert not {r.run_id for r in a} & {r.run_id for r in changed}


def test_explicit_dirichlet_and_dedup():
    plan = _plan(presets=["cpu-100k"], tokens=[1000], mixtures=[
        {"name": "even", "ratios": {f: 0.2 for f in FAMS}},
        {"design": "vary_one", "grid": [0.2]},  # p=0.2 with 5 families is `even` again
        {"design": "dirichlet", "count": 3, "alpha": 0.5, "seed": 1},
    ])
    runs = plan.expand()
    assert [r.mixture for r in runs] == ["even", "dir1-0", "dir1-1", "dir1-2"]
    for r in runs:
        ps = np.array([p for _, p in r.ratios])
        assert ps.sum() == pytest.approx(1.0, abs=1e-9) and (ps >= 0.005 - 1e-6).all()
    # same seed -> same mixtures; another seed -> others
    again = plan.expand()
    assert runs[1].ratios == again[1].ratios
    other = _plan(presets=["cpu-100k"], tokens=[1000],
                  mixtures=[{"design": "dirichlet", "count": 1, "alpha": 0.5, "seed": 2}]).expand()
    assert other[0].ratios != runs[1].ratios


def test_baselines_from_token_counts():
    counts = {"germanic": 8000, "romance": 4000, "slavic": 2000, "uralic": 1000, "japonic": 1000}
    plan = _plan(presets=["cpu-100k"], tokens=[1000], mixtures=[
        {"design": "baselines", "include": ["uniform", "proportional", "temperature"],
         "temperatures": [0.3, 0.5]}])
    runs = {r.mixture: r.ratio_dict for r in plan.expand(FAMS, family_tokens=counts)}
    assert set(runs) == {"uniform", "proportional", "temp0.3", "temp0.5"}
    assert runs["proportional"]["germanic"] == pytest.approx(0.5)
    n = np.array([counts[f] for f in FAMS], float)
    q = n ** 0.3 / (n ** 0.3).sum()
    assert [runs["temp0.3"][f] for f in FAMS] == pytest.approx(q.tolist(), abs=2e-6)
    with pytest.raises(PlanError, match="token counts"):
        plan.expand()


def test_unimax_baseline_depends_on_budget():
    pytest.importorskip("multiscale.laws.baselines")
    counts = {"germanic": 8000, "romance": 4000, "slavic": 2000, "uralic": 500, "japonic": 100}
    plan = _plan(presets=["cpu-100k"], tokens=[500, 20000], mixtures=[
        {"design": "baselines", "include": ["unimax"], "max_epochs": 2}])
    small, big = [r.ratio_dict for r in plan.expand(FAMS, family_tokens=counts)]
    assert small["japonic"] == pytest.approx(0.2)  # 5 families share 500 tokens evenly (100 <= 2 epochs)
    # 20000 tokens: japonic capped at 2 epochs = 200 tokens = 1%
    assert big["japonic"] == pytest.approx(200 / 20000, abs=1e-6)
    for r in (small, big):
        assert sum(r.values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("raw, match", [
    ({"tokens": [1000], "mixtures": []}, "'presets' is missing"),
    ({"presets": ["a"], "tokens": [1000], "mixtures": [{"design": "vary_one", "grid": [0.1]}], "bogus": 1},
     "unknown plan key"),
    ({"presets": ["a"], "tokens": [-5], "mixtures": [{"design": "vary_one", "grid": [0.1]}]}, r"tokens\[0\]"),
    ({"presets": ["a"], "tokens": [1000], "mixtures": [{"design": "vary_one", "grid": [1.5]}]}, r"grid\[0\]"),
    ({"presets": ["a"], "tokens": [1000], "mixtures": [{"design": "magic"}]}, r"mixtures\[0\].design"),
    ({"presets": ["a"], "tokens": [1000], "mixtures": [{"ratios": {"germanic": 0.5, "romance": 0.2}}]},
     "sum to 0.7"),
    ({"presets": ["a"], "tokens": [1000], "mixtures": [{"design": "dirichlet", "count": 2, "colour": 1}]},
     r"unknown key\(s\) \['colour'\]"),
    ({"presets": ["a"], "tokens": [1000], "families": list(FAMS),
      "mixtures": [{"ratios": {"klingon": 1.0}}]}, "klingon"),
    ({"presets": ["a"], "tokens": [1000], "train": {"seed": 3},
      "mixtures": [{"design": "vary_one", "grid": [0.1]}]}, "train.seed"),
    ({"presets": ["a"], "tokens": [1000], "holdout_presets": ["b"],
      "mixtures": [{"design": "vary_one", "grid": [0.1]}]}, "holdout_presets: 'b'"),
])
def test_bad_plans_name_the_key(raw, match):
    with pytest.raises(PlanError, match=match):
        SweepPlan.from_dict(raw)


def test_load_yaml_and_heldout(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_text("""
name: t
presets: [cpu-100k, cpu-400k]
tokens: [2.0e5]
families: [germanic, romance]
holdout_presets: [cpu-400k]
mixtures:
  - {design: vary_one, grid: [0.25, 0.75]}
  - {name: half, ratios: {germanic: 0.5, romance: 0.5}, heldout: true}
""")
    plan = SweepPlan.load(f)
    runs = plan.expand()
    held = {(r.preset, r.mixture) for r in runs if r.heldout}
    assert ("cpu-400k", "germanic0.25") in held and ("cpu-100k", "half") in held
    assert ("cpu-100k", "germanic0.25") not in held
    (tmp_path / "bad.yaml").write_text("presets: [a\n")
    with pytest.raises(PlanError, match="bad.yaml"):
        SweepPlan.load(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        SweepPlan.load(tmp_path / "none.yaml")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_shards_are_disjoint_and_complete(n):
    runs = _plan(mixtures=[{"design": "dirichlet", "count": 10}]).expand()
    shards = [shard_runs(runs, i, n) for i in range(n)]
    ids = [r.run_id for s in shards for r in s]
    assert len(ids) == len(set(ids)) == len(runs)          # disjoint and complete
    assert set(ids) == {r.run_id for r in runs}
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert [r.run_id for r in shard_runs(runs, 0, n)] == [r.run_id for r in shards[0]]  # deterministic


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "-1/2", "1/0"):
        with pytest.raises(PlanError, match="--shard"):
            parse_shard(bad)


def test_mixtures_restricted_to_some_presets_and_budgets():
    plan = _plan(mixtures=[{"design": "baselines", "include": ["uniform"]},
                           {"design": "vary_one", "grid": [0.5], "presets": ["cpu-200k"], "tokens": [2000],
                            "heldout": True}])
    runs = plan.expand()
    assert sum(r.mixture == "uniform" for r in runs) == 4  # every preset x budget
    vary = [r for r in runs if r.design == "vary_one"]
    assert len(vary) == 5 and all(r.preset == "cpu-200k" and r.tokens == 2000 and r.heldout for r in vary)
    with pytest.raises(PlanError, match=r"mixtures\[0\].presets: 'cpu-9m'"):
        _plan(mixtures=[{"design": "vary_one", "grid": [0.5], "presets": ["cpu-9m"]}])
