"""Shared by the sweep tests: a stand-in trainer (written into a folder importable by subprocesses),
small plans, and a check of the consolidated table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd

from multiscale.sweep import SweepPlan

FAMS = ["germanic", "romance", "slavic"]
ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"seq_len": 16, "batch": 4}  # 64 tokens a step: budgets of 1000 tokens are valid

FAKE_TRAINER = '''
"""A stand-in trainer: rows from a known law, written like the real trainer writes them.
FAKE_SLEEP: seconds per run; FAKE_FAIL: the mixture label that fails; FAKE_LOG: a folder where
each training leaves one file (to count trainings across processes)."""
import json, os, time, uuid
import pandas as pd

def train(run, run_dir, corpus, progress):
    log = os.environ.get("FAKE_LOG")
    if log:
        open(os.path.join(log, f"{run.run_id}.{os.getpid()}.{uuid.uuid4().hex[:6]}"), "w").close()
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    if run.mixture == os.environ.get("FAKE_FAIL", "-"):
        raise RuntimeError("loss is NaN at step 7")
    n = {"cpu-100k": 1e5, "cpu-200k": 2e5}.get(run.preset, 1e5)
    rows = [dict(run=run.run_id, family=f, N=n, D=run.tokens, p=p,
                 loss=(1.5 + 30 / n ** 0.3 + 40 / run.tokens ** 0.3) * p ** -0.1,
                 **{f"p_{g}": q for g, q in run.ratios})
            for f, p in run.ratios if p > 0]
    if os.environ.get("FAKE_NO_RUN_DIR"):
        return rows
    os.makedirs(str(run_dir), exist_ok=True)
    pd.DataFrame(rows).to_csv(os.path.join(str(run_dir), "rows.csv"), index=False)
    with open(os.path.join(str(run_dir), "summary.json"), "w") as f:
        json.dump({"run": run.run_id}, f)
    return rows
'''


def install_fake(tmp_path, monkeypatch):
    """Writes the fake trainer module into tmp_path/fakemod and imports it; returns (module, dir)."""
    import importlib

    mod = tmp_path / "fakemod"
    mod.mkdir(exist_ok=True)
    (mod / "fake_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.syspath_prepend(str(mod))
    import fake_trainer

    importlib.reload(fake_trainer)
    return fake_trainer, str(mod)


def plan_dict(count=4, presets=("cpu-100k",), name="t"):
    return {"name": name, "presets": list(presets), "tokens": [1000], "families": FAMS, "train": dict(TRAIN),
            "mixtures": [{"design": "dirichlet", "count": count, "seed": 0}]}


def make_plan(count=4, presets=("cpu-100k",)):
    return SweepPlan.from_dict(plan_dict(count, presets))


def write_plan(tmp_path, count, presets=("cpu-100k",)):
    f = tmp_path / "plan.yaml"
    f.write_text(json.dumps(plan_dict(count, presets)))
    return f


def check_table(out, plan):
    """runs.csv holds exactly one row per (planned run, family with p > 0)."""
    df = pd.read_csv(Path(out) / "runs.csv")
    expected = {(r.run_id, f) for r in plan.expand() for f, p in r.ratios if p > 0}
    got = list(zip(df["run"], df["family"]))
    assert len(got) == len(set(got)), "duplicated rows"
    assert set(got) == expected, f"missing {len(expected - set(got))} rows, extra {len(set(got) - expected)}"
    return df


def cli(args, fakedir, env_extra=None):
    """(command, environment) running `multiscale ARGS` in a subprocess that can import the fake."""
    env = dict(os.environ, PYTHONPATH=f"{fakedir}{os.pathsep}{ROOT}", **(env_extra or {}))
    return [sys.executable, "-m", "multiscale", *args], env


def quiet(*args, **kwargs):
    return None
