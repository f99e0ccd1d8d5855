"""The sweep runner: the shared run table, failures, kill-and-restart, concurrent shards.

These tests use a stand-in trainer (a module written into tmp_path) so that they exercise the
sweep's bookkeeping quickly; tests/test_sweep_e2e.py runs a sweep with the real trainer.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from multiscale import sweep
from multiscale.plan import SweepPlan

FAMS = ["germanic", "romance", "slavic"]
ROOT = Path(__file__).resolve().parents[1]

FAKE_TRAINER = '''
"""A stand-in trainer: rows from a known law, written like the real trainer writes them."""
import json, math, os, time
import pandas as pd

def train(run, run_dir, corpus, progress):
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    if run.mixture == os.environ.get("FAKE_FAIL", "-"):
        raise RuntimeError("loss is NaN at step 7")
    n = {"cpu-100k": 1e5, "cpu-200k": 2e5}.get(run.preset, 1e5)
    rows = [dict(run=run.run_id, family=f, N=n, D=run.tokens, p=p,
                 loss=(1.5 + 30 / n ** 0.3 + 40 / run.tokens ** 0.3) * p ** -0.1,
                 **{f"p_{g}": q for g, q in run.ratios})
            for f, p in run.ratios if p > 0]
    os.makedirs(str(run_dir), exist_ok=True)
    pd.DataFrame(rows).to_csv(os.path.join(str(run_dir), "rows.csv"), index=False)
    with open(os.path.join(str(run_dir), "summary.json"), "w") as f:
        json.dump({"run": run.run_id}, f)
    return rows
'''


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    mod = tmp_path / "fakemod"
    mod.mkdir()
    (mod / "fake_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.syspath_prepend(str(mod))
    import importlib

    import fake_trainer
    importlib.reload(fake_trainer)
    return fake_trainer, str(mod)


def _plan(count=4, presets=("cpu-100k",)):
    return SweepPlan.from_dict({"name": "t", "presets": list(presets), "tokens": [1000],
                                "families": FAMS,
                                "mixtures": [{"design": "dirichlet", "count": count, "seed": 0}]})


def _write_plan(tmp_path, count, presets=("cpu-100k",)):
    f = tmp_path / "plan.yaml"
    f.write_text(json.dumps({"name": "t", "presets": list(presets), "tokens": [1000], "families": FAMS,
                             "mixtures": [{"design": "dirichlet", "count": count, "seed": 0}]}))
    return f


def _check_table(out, plan):
    """runs.csv holds exactly one row per (planned run, family with p > 0)."""
    df = pd.read_csv(Path(out) / "runs.csv")
    expected = {(r.run_id, f) for r in plan.expand() for f, p in r.ratios if p > 0}
    got = list(zip(df["run"], df["family"]))
    assert len(got) == len(set(got)), "duplicated rows"
    assert set(got) == expected, f"missing {len(expected - set(got))} rows"
    return df


def test_sweep_runs_each_run_once_and_skips_complete(tmp_path, fake):
    mod, _ = fake
    plan, out = _plan(3), tmp_path / "sw"
    calls = []

    def counting(run, rdir, corpus, progress):
        calls.append(run.run_id)
        return mod.train(run, rdir, corpus, progress)

    res = sweep.run_sweep(plan, out, train_fn=counting, progress=False, log=lambda *a: None)
    assert len(res.completed) == 3 and not res.failed and not res.skipped
    df = _check_table(out, plan)
    assert (df["loss"] > 0).all() and {"p_germanic", "p_slavic"} <= set(df.columns)
    assert len(sweep.read_plan_json(out)) == 3
    res2 = sweep.run_sweep(plan, out, train_fn=counting, progress=False, log=lambda *a: None)
    assert len(res2.skipped) == 3 and not res2.completed
    assert len(calls) == 3  # nothing trained twice
    _check_table(out, plan)


def test_finished_but_unrecorded_run_is_harvested_not_retrained(tmp_path, fake):
    mod, _ = fake
    plan, out = _plan(2), tmp_path / "sw"
    run = plan.expand()[0]
    mod.train(run, sweep.run_dir(out, run.run_id), None, False)  # trainer done, no fragment yet

    def never(run, rdir, corpus, progress):
        if run.run_id == plan.expand()[0].run_id:
            raise AssertionError("retrained a finished run")
        return mod.train(run, rdir, corpus, progress)

    sweep.run_sweep(plan, out, train_fn=never, progress=False, log=lambda *a: None)
    _check_table(out, plan)


def test_failed_run_is_recorded_and_sweep_goes_on(tmp_path, fake, monkeypatch):
    mod, _ = fake
    plan, out = _plan(3), tmp_path / "sw"
    bad = plan.expand()[1]
    monkeypatch.setenv("FAKE_FAIL", bad.mixture)
    res = sweep.run_sweep(plan, out, train_fn=mod.train, progress=False, log=lambda *a: None)
    assert res.failed == (bad.run_id,) and len(res.completed) == 2
    fails = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert fails[0]["run"] == bad.run_id and "NaN at step 7" in fails[0]["error"]
    assert set(pd.read_csv(out / "runs.csv")["run"]) == {r.run_id for r in plan.expand()} - {bad.run_id}
    # fixed: the rerun trains only the failed run and clears its failure
    monkeypatch.delenv("FAKE_FAIL")
    res2 = sweep.run_sweep(plan, out, train_fn=mod.train, progress=False, log=lambda *a: None)
    assert res2.completed == (bad.run_id,)
    assert (out / "failures.jsonl").read_text() == ""
    _check_table(out, plan)


def _cli(args, fakedir, env_extra=None):
    env = dict(os.environ, PYTHONPATH=f"{fakedir}{os.pathsep}{ROOT}", **(env_extra or {}))
    return [sys.executable, "-m", "multiscale", *args], env


def test_killed_sweep_restarts_without_losing_or_duplicating_rows(tmp_path, fake):
    _, fakedir = fake
    plan_file = _write_plan(tmp_path, 12)
    plan = SweepPlan.load(plan_file)
    out = tmp_path / "sw"
    cmd, env = _cli(["sweep", str(plan_file), "--out", str(out), "--train-fn", "fake_trainer:train",
                     "--no-progress"], fakedir, {"FAKE_SLEEP": "0.15"})
    for target in (3, 7):  # kill twice, at different points
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(sweep._fragment_ids(out)) < target and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(sweep._fragment_ids(out)) < 12, "sweep finished before it was killed"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _check_table(out, plan)
    assert "12 runs planned" in done.stdout


def test_two_shards_appending_at_once_lose_no_row(tmp_path, fake):
    _, fakedir = fake
    plan_file = _write_plan(tmp_path, 30, presets=("cpu-100k", "cpu-200k"))
    plan = SweepPlan.load(plan_file)
    out = tmp_path / "sw"
    procs = []
    for i in range(2):
        cmd, env = _cli(["sweep", str(plan_file), "--out", str(out), "--shard", f"{i}/2",
                         "--train-fn", "fake_trainer:train", "--json"], fakedir)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        results.append(json.loads(stdout))
    assert sum(len(r["completed"]) for r in results) == 60
    assert not set(results[0]["completed"]) & set(results[1]["completed"])
    _check_table(out, plan)


def test_consolidate_repairs_a_stale_table(tmp_path, fake):
    mod, _ = fake
    plan, out = _plan(3), tmp_path / "sw"
    sweep.run_sweep(plan, out, train_fn=mod.train, progress=False, log=lambda *a: None)
    full = (out / "runs.csv").read_text()
    # another process replaced runs.csv with an older listing: the next consolidation repairs it
    (out / "runs.csv").write_text(full.splitlines()[0] + "\n")
    assert sweep.consolidate(out) == len(pd.read_csv(out / "runs.csv")) == full.count("\n") - 1
    _check_table(out, plan)


def test_cli_dry_run_and_errors(tmp_path, fake, capsys):
    from multiscale.cli import main

    plan_file = _write_plan(tmp_path, 5)
    assert main(["sweep", str(plan_file), "--out", str(tmp_path / "o"), "--shard", "1/2", "--dry-run",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["planned"] == 5 and len(d["runs"]) == 2 and d["runs"][0]["state"] == "planned"
    assert main(["sweep", str(plan_file), "--out", str(tmp_path / "o"), "--shard", "2/2"]) == 2
    assert "--shard '2/2'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("presets: [cpu-100k]\ntokens: [100]\nmixtures: [{design: vary_one}]\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "mixtures[0].grid" in capsys.readouterr().err


def test_consolidation_survives_an_interleaved_writer(tmp_path, fake, monkeypatch):
    """Process A lists the fragments, B adds one and consolidates, then A replaces runs.csv with
    its stale listing: A's check against a fresh listing must notice and rebuild."""
    mod, _ = fake
    plan, out = _plan(3), tmp_path / "sw"
    first, late = plan.expand()[:2], plan.expand()[2]
    sweep.run_sweep(plan, out, train_fn=mod.train, runs=first, progress=False, log=lambda *a: None)
    real_read = sweep.read_fragments
    raced = []

    def read_then_race(out_dir):
        df = real_read(out_dir)
        if not raced:
            raced.append(True)
            sweep.write_fragment(out, late.run_id, mod.train(late, tmp_path / "r", None, False))
            sweep.consolidate(out)  # B finishes first, with a complete table
        return df

    monkeypatch.setattr(sweep, "read_fragments", read_then_race)
    sweep.consolidate(out)  # A: stale listing, then verification
    assert raced
    _check_table(out, plan)


def test_two_plans_share_one_sweep_folder(tmp_path, fake):
    mod, _ = fake
    out = tmp_path / "sw"
    a = _plan(2)
    b = SweepPlan.from_dict({"name": "b", "presets": ["cpu-200k"], "tokens": [1000], "families": FAMS,
                             "mixtures": [{"design": "vary_one", "grid": [0.5], "heldout": True}]})
    sweep.run_sweep(a, out, train_fn=mod.train, progress=False, log=lambda *a: None)
    sweep.run_sweep(b, out, train_fn=mod.train, progress=False, log=lambda *a: None)
    runs = sweep.read_plan_json(out)
    assert len(runs) == 2 + 3 and sum(r["heldout"] for r in runs) == 3
    assert sorted(sweep.read_plan_json(out, full=True)["names"]) == ["b", "t"]
    assert pd.read_csv(out / "runs.csv")["run"].nunique() == 5
