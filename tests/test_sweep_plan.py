"""Sweep plans: parsing, full validation at load, designs, the run-id contract, sharding."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multiscale.errors import InputError
from multiscale.mixture import temperature, unimax
from multiscale.sweep import PlanError, RunId, SweepPlan, format_run_id, parse_run_id, shard_runs
from multiscale.sweep.plan import run_digest

FAMS = ("germanic", "romance", "slavic", "uralic", "japonic")
ROOT = Path(__file__).resolve().parents[1]
SMALL_TRAIN = {"seq_len": 16, "batch": 4}  # 64 tokens a step, so budgets of 1000 tokens are valid


def _plan(**over):
    raw = {"presets": ["cpu-100k", "cpu-200k"], "tokens": [1000, "2e3"], "families": list(FAMS),
           "train": dict(SMALL_TRAIN), "mixtures": [{"design": "vary_one", "grid": [0.1, 0.5]}]}
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
    changed = _plan(train={**SMALL_TRAIN, "lr": 0.01}).expand()
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
    again = plan.expand()  # same seed -> same mixtures; another seed -> others
    assert runs[1].ratios == again[1].ratios
    other = _plan(presets=["cpu-100k"], tokens=[1000],
                  mixtures=[{"design": "dirichlet", "count": 1, "alpha": 0.5, "seed": 2}]).expand()
    assert other[0].ratios != runs[1].ratios


def test_explicit_ratios_normalized_on_request():
    plan = _plan(presets=["cpu-100k"], tokens=[1000], mixtures=[
        {"name": "w", "ratios": {"germanic": 3, "romance": 1}, "normalize": True}])
    (run,) = plan.expand()
    assert run.ratio_dict == {"germanic": 0.75, "romance": 0.25, "slavic": 0.0, "uralic": 0.0, "japonic": 0.0}


def test_baselines_from_token_counts():
    counts = {"germanic": 8000, "romance": 4000, "slavic": 2000, "uralic": 1000, "japonic": 1000}
    plan = _plan(presets=["cpu-100k"], tokens=[1000], mixtures=[
        {"design": "baselines", "include": ["uniform", "proportional", "temperature"], "taus": [0.3, 0.5]}])
    runs = {r.mixture: r.ratio_dict for r in plan.expand(FAMS, family_tokens=counts)}
    assert set(runs) == {"uniform", "proportional", "temp0.3", "temp0.5"}
    assert runs["proportional"]["germanic"] == pytest.approx(0.5)
    n = np.array([counts[f] for f in FAMS], float)
    q = n ** 0.3 / (n ** 0.3).sum()  # tau is the exponent: q_i ~ n_i^tau
    assert [runs["temp0.3"][f] for f in FAMS] == pytest.approx(q.tolist(), abs=2e-6)
    with pytest.raises(PlanError, match="token counts"):
        plan.expand()


def test_unimax_baseline_depends_on_budget():
    counts = {"germanic": 8000, "romance": 4000, "slavic": 2000, "uralic": 500, "japonic": 100}
    plan = _plan(presets=["cpu-100k"], tokens=[500, 20000], mixtures=[
        {"design": "baselines", "include": ["unimax"], "max_epochs": 2}])
    small, big = [r.ratio_dict for r in plan.expand(FAMS, family_tokens=counts)]
    assert small["japonic"] == pytest.approx(0.2)  # 5 families share 500 tokens evenly (100 <= 2 epochs)
    assert big["japonic"] == pytest.approx(200 / 20000, abs=1e-6)  # capped at 2 epochs = 200 tokens
    for r in (small, big):
        assert sum(r.values()) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(PlanError, match="unimax.* at 100000 tokens"):
        _plan(presets=["cpu-100k"], tokens=[100000], mixtures=[
            {"design": "baselines", "include": ["unimax"], "max_epochs": 2}]).expand(FAMS, family_tokens=counts)


def test_baselines_are_the_mixture_modules():
    counts = {"germanic": 8000, "romance": 4000, "slavic": 2000, "uralic": 500, "japonic": 100}
    plan = _plan(presets=["cpu-100k"], tokens=[20000], mixtures=[
        {"design": "baselines", "include": ["temperature", "unimax"], "taus": [0.7]}])
    got = {r.mixture: r.ratio_dict for r in plan.expand(FAMS, family_tokens=counts)}
    for label, expected in (("temp0.7", temperature(counts, 0.7)), ("unimax", unimax(counts, 20000))):
        assert [got[label][f] for f in FAMS] == pytest.approx([expected[f] for f in FAMS], abs=1.5e-6)


BASE = {"presets": ["cpu-100k"], "tokens": [8192]}
VARY = [{"design": "vary_one", "grid": [0.1]}]


@pytest.mark.parametrize("raw, match", [
    ({"tokens": [8192], "mixtures": VARY}, "'presets' is missing"),
    ({**BASE, "mixtures": VARY, "bogus": 1}, r"unknown plan key\(s\) \['bogus'\]"),
    ({**BASE, "presets": ["cpu-9z"], "mixtures": VARY}, r"presets\[0\]: unknown model preset 'cpu-9z'"),
    ({**BASE, "tokens": [-5], "mixtures": VARY}, r"tokens\[0\]"),
    ({**BASE, "tokens": [1000], "mixtures": VARY}, r"tokens\[0\] = 1000 is less than one training step"),
    ({**BASE, "seeds": [-1], "mixtures": VARY}, r"seeds\[0\] must be >= 0"),
    ({**BASE, "mixtures": [{"design": "vary_one", "grid": [1.5]}]}, r"grid\[0\]"),
    ({**BASE, "mixtures": [{"design": "vary_one", "grid": ["nan"]}]}, r"grid\[0\] must be finite"),
    ({**BASE, "mixtures": [{"design": "magic"}]}, r"mixtures\[0\].design"),
    ({**BASE, "mixtures": [{"ratios": {"germanic": 0.5, "romance": 0.2}}]}, "sum to 0.7"),
    ({**BASE, "mixtures": [{"ratios": {"germanic": float("nan"), "romance": 1.0}}]}, "germanic.*not finite"),
    ({**BASE, "mixtures": [{"ratios": {"germanic": -0.5, "romance": 1.5}}]}, "germanic.* must be >= 0"),
    ({**BASE, "mixtures": [{"ratios": {"germanic": 0.5, " germanic": 0.5}}]}, "germanic.* given twice"),
    ({**BASE, "mixtures": [{"name": "a/b", "ratios": {"germanic": 1.0}}]}, r"mixtures\[0\].name 'a/b'"),
    ({**BASE, "mixtures": [{"design": "dirichlet", "count": 2, "colour": 1}]}, r"unknown key\(s\) \['colour'\]"),
    ({**BASE, "mixtures": [{"design": "baselines", "include": ["magic"]}]}, "unknown baseline 'magic'"),
    ({**BASE, "mixtures": [{"design": "baselines", "temperatures": [0.3]}]}, r"unknown key\(s\) \['temperatures'\]"),
    ({**BASE, "families": list(FAMS), "mixtures": [{"ratios": {"klingon": 1.0}}]}, "klingon"),
    ({**BASE, "train": {"seed": 3}, "mixtures": VARY}, "train.seed"),
    ({**BASE, "train": {"sequence_len": 64}, "mixtures": VARY}, r"train: unknown key\(s\) \['sequence_len'\]"),
    ({**BASE, "train": {"batch": 0}, "mixtures": VARY}, "batch"),
    ({**BASE, "train": {"lr": "3e-3"}, "mixtures": VARY}, r"train: .*\['lr'\] as text"),
    ({**BASE, "holdout_presets": ["cpu-200k"], "mixtures": VARY}, "holdout_presets: 'cpu-200k'"),
])
def test_bad_plans_name_the_key(raw, match):
    with pytest.raises(PlanError, match=match) as err:
        SweepPlan.from_dict(raw)
    assert isinstance(err.value, InputError)


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
    runs = SweepPlan.load(f).expand()
    held = {(r.preset, r.mixture) for r in runs if r.heldout}
    assert ("cpu-400k", "germanic0.25") in held and ("cpu-100k", "half") in held
    assert ("cpu-100k", "germanic0.25") not in held
    (tmp_path / "bad.yaml").write_text("presets: [a\n")
    with pytest.raises(PlanError, match="bad.yaml"):
        SweepPlan.load(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="none.yaml"):
        SweepPlan.load(tmp_path / "none.yaml")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        SweepPlan.load(tmp_path)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_shards_are_disjoint_and_complete(n):
    runs = _plan(mixtures=[{"design": "dirichlet", "count": 10}]).expand()
    shards = [shard_runs(runs, i, n) for i in range(n)]
    ids = [r.run_id for s in shards for r in s]
    assert len(ids) == len(set(ids)) == len(runs)          # disjoint and complete
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert [r.run_id for r in shard_runs(runs, 0, n)] == [r.run_id for r in shards[0]]  # deterministic


def test_mixtures_restricted_to_some_presets_and_budgets():
    plan = _plan(mixtures=[{"design": "baselines", "include": ["uniform"]},
                           {"design": "vary_one", "grid": [0.5], "presets": ["cpu-200k"], "tokens": [2000],
                            "heldout": True}])
    runs = plan.expand()
    assert sum(r.mixture == "uniform" for r in runs) == 4  # every preset x budget
    vary = [r for r in runs if r.design == "vary_one"]
    assert len(vary) == 5 and all(r.preset == "cpu-200k" and r.tokens == 2000 and r.heldout for r in vary)
    with pytest.raises(PlanError, match=r"mixtures\[0\].presets: 'cpu-3m'"):
        _plan(mixtures=[{"design": "vary_one", "grid": [0.5], "presets": ["cpu-3m"]}])


# ------------------------------------------------------------------------------ run ids


@pytest.mark.parametrize("preset, tokens, label, seed, text", [
    ("cpu-100k", 200000, "uniform", 0, "cpu-100k-D200k-uniform-s0-0123abcd"),
    ("cpu-1.6m", 1500000, "dir0-2", 12, "cpu-1.6m-D1.5M-dir0-2-s12-0123abcd"),
    ("paper-1.2b", 50_000_000_000, "pstar-small3", 1, "paper-1.2b-D50B-pstar-small3-s1-0123abcd"),
    ("cpu-3m", 999, "x-s3", 0, "cpu-3m-D999-x-s3-s0-0123abcd"),
    ("cpu-400k", 65536, "germanic1e-05", 3, "cpu-400k-D65.54k-germanic1e-05-s3-0123abcd"),
])
def test_run_id_round_trip(preset, tokens, label, seed, text):
    assert format_run_id(preset, tokens, label, seed, "0123abcd") == text
    rid = parse_run_id(text)
    assert (rid.preset, rid.label, rid.seed, rid.digest) == (preset, label, seed, "0123abcd")
    assert str(rid) == text and RunId.parse(str(rid)) == rid
    assert rid.budget == pytest.approx(tokens, rel=5e-4)


@pytest.mark.parametrize("bad", ["cpu-100k-uniform-s0-0123abcd", "cpu-100k-D200k-uniform-s0-0123abc",
                                 "cpu-100k-D200k-uniform-0123abcd", "", "cpu-100k-D200k--s0-0123abcd"])
def test_parse_run_id_refuses_non_ids(bad):
    with pytest.raises(InputError, match="not a sweep run id"):
        parse_run_id(bad)


def test_format_run_id_refuses_ambiguous_parts():
    with pytest.raises(PlanError, match="ambiguous"):
        format_run_id("cpu-100k", 1000, "a b", 0, "0123abcd")
    with pytest.raises(PlanError, match="ambiguous"):
        format_run_id("my-D5-model", 1000, "x", 0, "0123abcd")


def test_every_planned_id_parses_to_its_run():
    counts = {f: 1000 * (k + 1) for k, f in enumerate(FAMS)}
    plan = _plan(mixtures=[{"design": "vary_one", "grid": [0.05]}, {"design": "baselines"},
                           {"design": "dirichlet", "count": 2}, {"name": "pstar-x", "ratios": {"romance": 1.0}}])
    for run in plan.expand(FAMS, family_tokens=counts):
        rid = run.id
        assert (rid.preset, rid.label, rid.seed) == (run.preset, run.mixture, run.seed)
        assert rid.digest == run_digest(run.preset, run.tokens, run.seed, run.ratios, run.train)


# ------------------------------------------------------------------------------ the CPU study's ids

STUDY = ROOT / "docs" / "cpu_study" / "runs.csv"
STUDY_PLANS = ("small", "large", "noise", "noise_temp", "cpu800k", "cpu800k_s1", "cpu800k_s2")
COUNT_DEPENDENT = ("temp", "proportional", "unimax")  # baselines computed from the corpus's token counts


def _study_table():
    df = pd.read_csv(STUDY)
    return df.drop_duplicates("run").set_index("run")


def _measured_ratios(row, families):
    return tuple((f, round(float(row[f"p_{f}"]), 6)) for f in families)


def test_cpu_study_run_ids_are_unchanged():
    """Expanding examples/cpu_study/*.yaml (and run_study.sh's transfer plans) gives exactly the
    107 run ids of docs/cpu_study/runs.csv. The temperature baselines depend on the corpus's token
    counts, which are not committed: for them the plan gives preset, label and seed, and the digest
    is recomputed from the mixture the table records."""
    table = _study_table()
    planned: dict[str, object] = {}
    for name in STUDY_PLANS:
        plan = SweepPlan.load(ROOT / "examples" / "cpu_study" / f"{name}.yaml")
        # any distinct counts (equal ones would make temperature = uniform): labels are compared
        counts = {f: 1000 * 2 ** k for k, f in enumerate(plan.families)}
        for run in plan.expand(family_tokens=counts):
            planned[run.run_id] = (plan, run)
    exact = {rid for rid, (_, run) in planned.items() if not run.mixture.startswith(COUNT_DEPENDENT)}
    assert exact <= set(table.index)
    for rid, (plan, run) in planned.items():
        if rid in exact:
            continue
        key = (run.preset, run.mixture, run.seed)
        (match,) = [t for t in table.index if (parse_run_id(t).preset, parse_run_id(t).label,
                                               parse_run_id(t).seed) == key]
        ratios = _measured_ratios(table.loc[match], plan.families)
        assert parse_run_id(match).digest == run_digest(run.preset, run.tokens, run.seed, ratios, run.train)
        exact.add(match)
    transfer = _transfer_ids(table)
    assert len(exact | transfer) == len(table) == 107
    assert exact | transfer == set(table.index)


def _transfer_ids(table) -> set[str]:
    """run_study.sh's transfer plans: large.yaml with the recommended ratios (normalize: true) as
    mixtures pstar-small3 and pstar-at1.6m, seeds 0-2."""
    import yaml

    template = yaml.safe_load((ROOT / "examples" / "cpu_study" / "large.yaml").read_text())
    fams = template["families"]
    ids = set()
    for label in ("pstar-small3", "pstar-at1.6m"):
        rows = [t for t in table.index if parse_run_id(t).label == label]
        ratios = dict(_measured_ratios(table.loc[rows[0]], fams))
        plan = SweepPlan.from_dict({**template, "seeds": [0, 1, 2], "mixtures": [
            {"name": label, "ratios": ratios, "normalize": True}]})
        got = {r.run_id for r in plan.expand()}
        assert got == set(rows), label
        ids |= got
    return ids
