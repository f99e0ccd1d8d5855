"""The closed loop (multiscale/autopilot.py, cli/autopilot.py): stops on the budget and on a
threshold, resumes after a kill mid-round with the decisions of an uninterrupted run, refuses
other settings.

Runs are "trained" by `train`, which writes each run's losses from the multilingual law with known
parameters (3 families) and 1% noise seeded by the run id, so a run trained twice gives the same
rows. Each round fits NUTS (1 chain, 100 draws): the tests that fit are slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures.synthetic import synthetic_truth

from multiscale.autopilot import plan_flops, run_autopilot
from multiscale.cli import main
from multiscale.decisions.candidates import preset_sizes
from multiscale.errors import InputError
from multiscale.laws.forms import get_law, predict_loss
from multiscale.sweep import SweepPlan

ROOT = Path(__file__).resolve().parents[1]
FAMS = ["fam0", "fam1", "fam2"]
TRUTH = synthetic_truth(len(FAMS), seed=1)
PLAN = {"name": "init", "presets": ["cpu-100k", "cpu-200k"], "tokens": [2048, 4096], "families": FAMS,
        "train": {"seq_len": 16, "batch": 4}, "mixtures": [{"design": "dirichlet", "count": 3, "seed": 0}]}
# Target cpu-400k-sized at 16k tokens. The budget buys round 0's runs (k = 2) and leaves less than
# the cheapest candidate run (cpu-100k at 2048 tokens, 1.24e9 FLOPs), so the loop stops on it.
BUDGET = 3e9
SETTINGS = dict(N=4e5, D=16384, budget_flops=BUDGET, max_rounds=3, k=2, seed=0, chains=1, draws=100, warmup=100,
                extrapolation=False)


def train(run, run_dir, corpus, progress):
    """A run's rows from the known law (module docstring)."""
    rng = np.random.default_rng(int(hashlib.sha256(run.run_id.encode()).hexdigest()[:8], 16))
    n, law = preset_sizes()[run.preset], get_law("multilingual")
    rows = []
    for f, p in run.ratios:
        if p > 0:
            mean = float(predict_loss(law, {k: np.float64(v) for k, v in TRUTH[f].items()}, n, run.tokens, p))
            rows.append({"run": run.run_id, "family": f, "N": n, "D": float(run.tokens), "p": p,
                         "loss": mean * float(np.exp(0.01 * rng.standard_normal())),
                         **{f"p_{g}": q for g, q in run.ratios}})
    return rows


def _autopilot(out, train_fn=train, **changes):
    lines = []
    res = run_autopilot(SweepPlan.from_dict(PLAN), out, train_fn=train_fn, log=lambda *a: lines.append(" ".join(
        map(str, a))), **(SETTINGS | changes))
    return res, lines


def _state(out):
    return json.loads((out / "autopilot.json").read_text())


def _interrupt_at(nth: int, of=lambda run: True, kill: bool = False):
    """A trainer that stops the process at its `nth` call for a run that `of` selects: with a
    KeyboardInterrupt (not a failed run), or `kill`ed by SIGKILL mid-run."""
    calls = []

    def train_fn(run, run_dir, corpus, progress):
        if of(run):
            calls.append(run.run_id)
            if len(calls) == nth:
                if kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise KeyboardInterrupt
        return train(run, run_dir, corpus, progress)

    return train_fn


def _chosen(run) -> bool:
    """A run the loop chose (`next` names their mixtures next<rank>-...)."""
    return run.mixture.startswith("next")


def test_engine_flags_are_the_sweeps_and_checked_before_any_work(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    out = tmp_path / "ap"
    argv = ["autopilot", str(plan), "--out", str(out), "--N", "4e5", "--D", "16384", "--budget-flops", "3e9"]
    assert main(argv + ["--slurm-partition", "gpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "multiscale autopilot: error: --slurm-partition applies only to --engine slurm"]
    assert main(argv + ["--engine", "local", "--max-retries", "2"]) == 2
    assert "--max-retries applies only to --engine ray or slurm" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("changes,arg", [
    (dict(regret_below=0.1, width_below=0.1), "regret_below"),
    (dict(k=0), "k"), (dict(budget_flops=-1.0), "budget_flops"), (dict(max_rounds=0), "max_rounds"),
    (dict(objective="mean"), "objective"), (dict(law="chinchilla"), "law"), (dict(draws=0), "draws"),
    (dict(warmup=-1), "warmup"),
])
def test_settings_are_checked_before_any_work(tmp_path, changes, arg):
    with pytest.raises(InputError) as err:
        _autopilot(tmp_path / "ap", **changes)
    assert err.value.arg == arg and not (tmp_path / "ap").exists()


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "ap"
    with pytest.raises(KeyboardInterrupt):  # killed in the initial sweep: the settings are kept already
        _autopilot(out, train_fn=_interrupt_at(3))
    assert _state(out)["settings"]["budget_flops"] == BUDGET and _state(out)["rounds_done"] == 0
    with pytest.raises(InputError, match=r"^budget_flops 6000000000.0 differs from 3000000000.0") as err:
        _autopilot(out, budget_flops=2 * BUDGET)
    assert err.value.arg == "budget_flops"
    with pytest.raises(InputError) as err:
        run_autopilot(SweepPlan.from_dict(PLAN | {"tokens": [2048, 8192]}), out, train_fn=train, **SETTINGS)
    assert err.value.arg == "plan"
    # the command line names the flag, in one line
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    argv = ["autopilot", str(plan), "--out", str(out), "--N", "4e5", "--D", "16384", "--budget-flops", "3e9",
            "--max-rounds", "3", "--k", "2", "--chains", "1", "--draws", "100", "--num-warmup", "100",
            "--no-extrapolation", "--no-progress"]
    assert main(argv[:-1] + ["--k", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"multiscale autopilot: error: --k 3 differs from 2, the value the autopilot in {str(out)!r} was started "
        "with; resume with the same value, or use another out folder"]


def test_command_refuses_a_missing_plan_in_one_line(tmp_path, capsys):
    out = tmp_path / "ap"
    assert main(["autopilot", str(tmp_path / "none.yaml"), "--out", str(out), "--N", "4e5", "--D", "16384",
                 "--budget-flops", "3e9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("multiscale autopilot: error: sweep plan") and "does not exist" in err[0]
    assert not out.exists()


@pytest.fixture(scope="module")
def on_budget(tmp_path_factory):
    """The loop run uninterrupted until its budget stops it."""
    out = tmp_path_factory.mktemp("budget") / "ap"
    res, lines = _autopilot(out)
    return out, res, lines


def _decisions(out):
    """Everything the loop decided, as files and state (paths are relative to `out`)."""
    state = _state(out)
    plans = {e["plan"]: (out / e["plan"]).read_text() for e in state["rounds"] if e["plan"]}
    recs = [json.loads((out / e["fit"]).parent.joinpath("recommendation.json").read_text()) for e in state["rounds"]]
    return {k: state[k] for k in ("rounds", "rounds_done", "flops_spent", "initial_flops", "stopped")}, plans, recs


@pytest.mark.slow
def test_stops_when_the_budget_is_spent(on_budget):
    out, res, _ = on_budget
    state = _state(out)
    assert res.stopped["reason"] == "budget" and state["stopped"] == res.stopped
    rounds = state["rounds"]
    assert len(rounds) == res.rounds >= 2 and state["rounds_done"] == len(rounds) - 1
    sizes = preset_sizes()
    spent = 0.0
    for e in rounds[:-1]:  # every round but the last chose runs; they were trained into the sweep
        plan = SweepPlan.load(out / e["plan"])
        flops = sum(6 * sizes[r.preset] * r.tokens for r in plan.expand())
        assert e["plan_flops"] == pytest.approx(flops) and flops > 0
        spent += flops
        trained = {p.stem for p in (out / "sweep" / "rows").glob("*.csv")}
        assert {r.run_id for r in plan.expand()} <= trained
    assert rounds[-1]["plan"] is None and not (out / "rounds" / f"{len(rounds) - 1:03d}" / "plan.yaml").exists()
    assert res.flops_spent == pytest.approx(spent) and spent <= BUDGET
    assert BUDGET - spent < 6 * sizes["cpu-100k"] * 2048  # what is left buys no candidate run
    assert res.initial_flops == pytest.approx(plan_flops(SweepPlan.from_dict(PLAN)))  # reported, not counted
    for e in rounds:
        rec = json.loads((out / e["fit"]).parent.joinpath("recommendation.json").read_text())
        assert rec["ratios"] == e["recommended"] and (out / e["fit"] / "fit.json").exists()
        assert rec["decisions"]["robust p*"]["expected_regret"] == pytest.approx(e["expected_regret"])
    assert res.recommended == rounds[-1]["recommended"] and os.path.isfile(res.report)


@pytest.mark.slow
def test_restart_after_it_stopped_changes_nothing(on_budget):
    out, res, _ = on_budget
    before = _decisions(out)
    again, lines = _autopilot(out, train_fn=_interrupt_at(1))  # it trains nothing
    assert again == res and _decisions(out) == before
    assert not any(line.startswith("fitting") for line in lines)


@pytest.mark.slow
def test_killed_mid_round_finishes_with_the_decisions_of_an_uninterrupted_run(on_budget, tmp_path):
    """Killed in round 0's sweep (its fit and plan written, one of its two runs trained) and
    restarted: round 0 is not refit nor replanned, and every decision equals the uninterrupted run's."""
    out = tmp_path / "ap"
    with pytest.raises(KeyboardInterrupt):
        _autopilot(out, train_fn=_interrupt_at(2, of=_chosen))
    assert _state(out)["rounds_done"] == 0 and (out / "rounds" / "000" / "plan.yaml").exists()
    kept = {p: os.stat(out / "rounds" / "000" / p).st_mtime_ns for p in ("fit/fit.json", "plan.yaml")}
    res, lines = _autopilot(out)
    assert {p: os.stat(out / "rounds" / "000" / p).st_mtime_ns for p in kept} == kept
    assert sum(line.startswith("fitting") for line in lines) == res.rounds - 1  # round 0's fit reused
    assert _decisions(out) == _decisions(on_budget[0])
    assert res.recommended == on_budget[1].recommended and res.stopped == on_budget[1].stopped


@pytest.mark.slow
def test_stops_when_the_expected_regret_is_below_the_threshold(tmp_path):
    out = tmp_path / "ap"
    res, _ = _autopilot(out, regret_below=1.0)  # nats/token: met by the first fit
    state = _state(out)
    assert res.stopped["reason"] == "regret_below" and res.rounds == 1 and res.flops_spent == 0
    assert state["rounds"][0]["expected_regret"] < 1.0 and state["rounds"][0]["plan"] is None
    assert not (out / "rounds" / "000" / "plan.yaml").exists() and os.path.isfile(res.report)


@pytest.mark.slow
def test_sigkilled_mid_run_and_restarted_finishes_with_the_same_decisions(on_budget, tmp_path):
    """A process killed (SIGKILL) while training the second run of round 0's plan leaves that run's
    lease behind; the restarted loop takes the run over at once and ends as the uninterrupted one."""
    out = tmp_path / "ap"
    code = ("import pathlib, test_autopilot as t; "
            f"t._autopilot(pathlib.Path({str(out)!r}), train_fn=t._interrupt_at(2, of=t._chosen, kill=True))")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list((out / "sweep" / "claims").glob("*.json")), "the killed run's lease is left behind"
    res, _ = _autopilot(out)
    assert _decisions(out) == _decisions(on_budget[0]) and res.stopped == on_budget[1].stopped
