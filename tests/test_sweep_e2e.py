"""A two-run sweep end to end: real corpus, real trainer, tiny preset, few steps."""

import json

import numpy as np
import pandas as pd
import pytest

from multiscale import sweep
from multiscale.sweep import SweepPlan


@pytest.mark.slow
def test_two_run_sweep_with_the_real_trainer(tiny_corpus, tmp_path):
    fams = tiny_corpus.grouping.family_names
    skewed = {f: (0.6 if k == 0 else 0.4 / (len(fams) - 1)) for k, f in enumerate(fams)}
    plan = SweepPlan.from_dict({
        "name": "e2e", "presets": ["cpu-100k"], "tokens": [2048],
        "train": {"seq_len": 64, "batch": 8, "eval_batch": 64},
        "mixtures": [{"design": "baselines", "include": ["uniform"]},
                     {"name": "skewed", "ratios": skewed}],
    })
    out = tmp_path / "sweep"
    res = sweep.run_sweep(plan, out, corpus=tiny_corpus.path, progress=False, log=lambda *a: None)
    assert not res.failed, [f["error"] for f in sweep.SweepStore(out).failures()]
    assert len(res.completed) == 2
    df = pd.read_csv(out / "runs.csv")
    # one row per (run, family), in the run-table schema, with the mixture columns
    assert len(df) == 2 * len(fams) and not df.duplicated(["run", "family"]).any()
    assert {"run", "family", "N", "D", "p", "loss", "loss_sem", "bpb"} <= set(df.columns)
    assert {f"p_{f}" for f in fams} <= set(df.columns)
    assert (df["D"] == 2048).all() and (df["N"] > 50_000).all()
    # an untrained byte model sits near ln(259) = 5.56 nats/token; 4 steps move it only a little
    assert np.isfinite(df["loss"]).all() and (df["loss"] > 3).all() and (df["loss"] < 6.5).all()
    sk = df[df["run"].str.contains("skewed")].set_index("family")
    assert sk.loc[fams[0], "p"] == pytest.approx(0.6) and sk.loc[fams[0], f"p_{fams[1]}"] == sk.loc[fams[1], "p"]
    # the trainer's own folder holds its outputs; plan.json records the family token counts
    for run_id in res.completed:
        assert (out / "runs" / run_id / "summary.json").exists()
    meta = json.loads((out / "plan.json").read_text())
    assert set(meta["family_tokens"]) == set(fams)
    # a rerun trains nothing
    again = sweep.run_sweep(plan, out, corpus=tiny_corpus.path, progress=False, log=lambda *a: None)
    assert again.completed == () and len(again.skipped) == 2
    assert pd.read_csv(out / "runs.csv").equals(df)
