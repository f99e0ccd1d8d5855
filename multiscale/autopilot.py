"""The closed loop: fit -> recommend -> (stop?) -> next -> sweep -> refit.

`run_autopilot` trains the initial plan into OUT/sweep, then per round OUT/rounds/NNN fits the run
table with NUTS, recommends p* at the target, checks the stopping rule and plans the next runs
within the FLOPs left (6 N D per chosen run; the initial plan is not counted). ``stopped.reason``:
"regret_below", "width_below", "budget", "no_runs_chosen" or "max_rounds"; the last round has no
plan. OUT/autopilot.json holds the state; rerunning the command after a kill reuses every step on
disk and takes the decisions of an uninterrupted loop; other settings are refused (the engine may
change). See docs/decisions/2026-12-06-autopilot.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

from multiscale.decisions.candidates import preset_sizes
from multiscale.decisions.next_runs import plan_next
from multiscale.decisions.recommend import optimal_ratios
from multiscale.decisions.regret import ROBUST
from multiscale.errors import DamagedFileError, InputError, MissingFileError, MultiscaleError
from multiscale.fileio import atomic_write_text, check_output_folder, json_safe, read_json, write_json
from multiscale.laws import fit_bayes, load_fit
from multiscale.laws.forms import check_shared, get_law
from multiscale.report import write_report
from multiscale.runs import read_runs
from multiscale.sweep import SweepPlan, plan_runs, run_sweep
from multiscale.sweep.engines import Engine
from multiscale.sweep.next_plan import header, plan_dict, write_plan
from multiscale.sweep.plan import runs_of_configurations
from multiscale.sweep.store import SweepStore

STATE = "autopilot.json"
OBJECTIVES = ("raw", "normalized")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides what the loop trains; a folder is resumed only with the same."""

    plan: str            # SHA-256 of the validated initial plan
    corpus: str | None   # absolute path, or None (the plan's)
    N: float
    D: float
    budget_flops: float
    regret_below: float | None
    width_below: float | None
    max_rounds: int
    k: int
    seed: int
    objective: str
    criterion: str       # what `plan_next` reduces: width under width_below, else regret
    law: str
    shared: tuple[str, ...]
    chains: int
    draws: int
    warmup: int | None
    extrapolation: bool

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # as it reads back (tuples as lists)


@dataclasses.dataclass(frozen=True)
class AutopilotResult:
    """Where the loop stands: rounds fitted, FLOPs, why it stopped (None while it runs) and the
    recommended mixture of the last round."""

    out_dir: str
    rounds: int
    flops_spent: float
    initial_flops: float
    stopped: dict[str, Any] | None
    recommended: dict[str, float]
    report: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(name: str, v, *, optional: bool = False) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a finite positive number, got {v!r}", arg=name)
    return float(v)


def _whole(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {v!r}", arg=name)
    return int(v)


def plan_digest(plan: SweepPlan) -> str:
    """SHA-256 of a validated plan's content (its YAML layout and comments do not count)."""
    text = json.dumps(dataclasses.asdict(plan), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_settings(plan: SweepPlan, corpus, *, N, D, budget_flops, regret_below=None, width_below=None,
                  max_rounds=5, k=4, seed=0, objective="raw", law="multilingual", shared=(), chains=4,
                  draws=1000, warmup=None, extrapolation=True) -> Settings:
    """The loop's settings, each checked (errors name the argument)."""
    if regret_below is not None and width_below is not None:
        raise InputError("regret_below and width_below: give one stopping threshold, not both", arg="regret_below")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}", arg="objective")
    law_obj = get_law(law)
    if not (law_obj.uses_scale and law_obj.uses_ratio):
        raise InputError(f"law {law!r} does not depend on both the scale (N, D) and the mixture; the loop needs "
                         "one that does, such as multilingual", arg="law")
    criterion = "width" if width_below is not None else "regret"
    return Settings(plan=plan_digest(plan), corpus=None if corpus is None else os.path.abspath(os.fspath(corpus)),
                    N=_positive("N", N), D=_positive("D", D), budget_flops=_positive("budget_flops", budget_flops),
                    regret_below=_positive("regret_below", regret_below, optional=True),
                    width_below=_positive("width_below", width_below, optional=True),
                    max_rounds=_whole("max_rounds", max_rounds, 1), k=_whole("k", k, 1), seed=_whole("seed", seed, 0),
                    objective=objective, criterion=criterion, law=law, shared=tuple(check_shared(law_obj, shared)),
                    chains=_whole("chains", chains, 1), draws=_whole("draws", draws, 1),
                    warmup=None if warmup is None else _whole("warmup", warmup, 0),
                    extrapolation=bool(extrapolation))


def engine_name(engine: Engine | None) -> str:
    """"local" for the runner's own loop, else the engine's ("ray" for a `RayEngine`)."""
    return "local" if engine is None else type(engine).__name__.removesuffix("Engine").lower()


def plan_flops(plan: SweepPlan, corpus=None) -> float:
    """Training FLOPs of a plan's runs: 6 N D each, N the preset's non-embedding parameters."""
    sizes = preset_sizes()
    return float(sum(6.0 * sizes[r.preset] * r.tokens for r in plan_runs(plan, corpus)))


# ------------------------------------------------------------------------------ the state file


def _load_state(out: str, settings: Settings, engine: str) -> dict[str, Any]:
    """The folder's state, or a fresh one; refuses a folder started with other settings."""
    path = os.path.join(out, STATE)
    try:
        state = read_json(path, what="autopilot state")
    except MissingFileError:
        return {"settings": settings.to_dict(), "engine": engine, "rounds": [], "rounds_done": 0,
                "flops_spent": 0.0, "initial_flops": None, "stopped": None, "report": None}
    old, new = state.get("settings"), settings.to_dict()
    if not isinstance(old, dict) or set(old) != set(new):
        raise DamagedFileError(f"autopilot state {path!r} is damaged (its settings do not read back); "
                               "start in another folder")
    if old["plan"] != new["plan"]:
        raise InputError(f"plan: not the plan the autopilot in {out!r} was started with (its content differs); "
                         "resume with the same plan, or use another out folder", arg="plan")
    for key, value in new.items():
        if old[key] != value:
            raise InputError(f"{key} {value!r} differs from {old[key]!r}, the value the autopilot in {out!r} was "
                             f"started with; resume with the same value, or use another out folder", arg=key)
    return state | {"engine": engine}


def _save(out: str, state: dict[str, Any]) -> None:
    write_json(os.path.join(out, STATE), json_safe(state))


# ------------------------------------------------------------------------------ one round's steps


def _sweep(plan: SweepPlan, sweep_dir: str, corpus, engine: Engine | None, train_fn, progress: bool, log) -> None:
    """Trains `plan` into the sweep folder (finished runs skipped) on `engine` (None: here)."""
    res = run_sweep(plan, sweep_dir, corpus=corpus, train_fn=train_fn, progress=progress, log=log, engine=engine)
    if res.failed:
        raise RuntimeError(f"{len(res.failed)} run(s) of plan {plan.name!r} failed (see {res.out_dir}/failures.jsonl); "
                           "run the autopilot again to retry them")


def _fitted_rows(sweep_dir: str):
    """The sweep's run table less its held-out runs: what each round fits."""
    store = SweepStore(sweep_dir)
    df = read_runs(store.runs_csv)
    held = runs_of_configurations(df["run"].unique(), [r["run_id"] for r in store.planned_runs(heldout=True)])
    return df[~df["run"].isin(held)].reset_index(drop=True)


def _round_fit(fit_dir: str, sweep_dir: str, s: Settings, log):
    """The round's NUTS fit: the saved one when it loads, else fitted now (seed `s.seed`) and
    saved (fit.json last, so a fit killed while saving does not load and is fitted again)."""
    try:
        return load_fit(fit_dir)
    except MultiscaleError:
        pass
    df = _fitted_rows(sweep_dir)
    log(f"fitting {df['run'].nunique()} runs ({s.law}, NUTS {s.chains} x {s.draws}) -> {fit_dir}")
    with warnings.catch_warnings():  # a failed diagnostic is logged below
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law=s.law, shared=s.shared, chains=s.chains, draws=s.draws, warmup=s.warmup,
                        seed=s.seed, extrapolation=s.extrapolation)
    for w in fit.warnings:
        log(f"fit warning: {w}")
    os.makedirs(fit_dir, exist_ok=True)
    atomic_write_text(os.path.join(fit_dir, "runs.csv"), df.to_csv(index=False))
    fit.save(fit_dir)
    return load_fit(fit_dir)  # decisions always from the saved fit: the same whether resumed or not


def _recommend(fit, rdir: str, s: Settings) -> dict[str, Any]:
    """p* at the target, written to recommendation.json; returns the numbers the stopping rule reads.
    No data caps: the target's data are not the sweep's corpus (as `next` and `recommend` without
    available tokens; the corpus's tokens would cap a target D beyond it to no mixture at all)."""
    rec = optimal_ratios(fit, s.N, s.D, objective=s.objective)
    widths = {f: row["p_star"]["q95"] - row["p_star"]["q05"] for f, row in rec.family_table().items()}
    numbers = {"expected_regret": rec.decision_table()[ROBUST]["expected_regret"],
               "p_star_width_90": max(widths.values()), "recommended": rec.ratios}
    write_json(os.path.join(rdir, "recommendation.json"), json_safe(rec.to_dict() | {"autopilot": numbers}))
    return numbers


def _round_plan(rdir: str, r: int, fit, sweep_dir: str, s: Settings, left: float, template: SweepPlan, log):
    """(the round's plan, None) from plan.yaml when written, else chosen now and written; or
    (None, (reason, detail)) when no run is chosen within the `left` FLOPs."""
    path = os.path.join(rdir, "plan.yaml")
    if os.path.exists(path):
        return SweepPlan.load(path), None
    if left <= 0:
        return None, ("budget", f"the budget of {s.budget_flops:.4g} FLOPs is spent")
    try:
        result = plan_next(fit, s.N, s.D, left, k=s.k, objective=s.objective, criterion=s.criterion,
                           runs=_fitted_rows(sweep_dir))
    except InputError as err:  # plan_next says so when no candidate run costs at most `left`
        if str(err).startswith("budget_flops"):
            return None, ("budget", f"{left:.4g} of the {s.budget_flops:.4g} FLOPs left; {err}")
        raise
    if not result.chosen:
        return None, ("no_runs_chosen", "next chose no run: no candidate would teach anything about p*")
    plan = plan_dict(result, template=template, seed=s.seed, name=f"autopilot-round{r:03d}")
    write_plan(path, plan, header(result, f"multiscale autopilot, round {r}"))
    log(f"round {r}: {len(result.chosen)} runs chosen -> {path}")
    return SweepPlan.load(path), None  # what a resumed loop reads


# ------------------------------------------------------------------------------ the loop


def run_autopilot(plan, out, *, corpus=None, N: float, D: float, budget_flops: float,
                  regret_below: float | None = None, width_below: float | None = None, max_rounds: int = 5,
                  k: int = 4, seed: int = 0, objective: str = "raw", law: str = "multilingual", shared=(),
                  chains: int = 4, draws: int = 1000, warmup: int | None = None, extrapolation: bool = True,
                  engine: Engine | None = None, train_fn=None, progress: bool = False,
                  log: Callable[..., Any] = print) -> AutopilotResult:
    """Runs (or resumes) the loop of the module docstring in the folder `out`, towards the target
    (N, D). At most one threshold: `regret_below` (objective units) or `width_below` (p*'s widest
    90% interval). `seed` is every fit's and chosen run's; law ... extrapolation go to `fit_bayes`.
    """
    plan = plan if isinstance(plan, SweepPlan) else SweepPlan.load(plan)
    s = make_settings(plan, corpus, N=N, D=D, budget_flops=budget_flops, regret_below=regret_below,
                      width_below=width_below, max_rounds=max_rounds, k=k, seed=seed, objective=objective,
                      law=law, shared=shared, chains=chains, draws=draws, warmup=warmup, extrapolation=extrapolation)
    out = os.path.abspath(os.fspath(out))
    check_output_folder(out)
    os.makedirs(out, exist_ok=True)
    state = _load_state(out, s, engine_name(engine))
    _save(out, state)  # the settings are the folder's from the first call on
    sweep_dir = os.path.join(out, "sweep")
    if state["stopped"] is None:
        _sweep(plan, sweep_dir, s.corpus, engine, train_fn, progress, log)
        state["initial_flops"] = plan_flops(plan, s.corpus)
        _rounds(out, state, s, plan, sweep_dir,
                lambda p: _sweep(p, sweep_dir, s.corpus, engine, train_fn, progress, log), log)
    if state["report"] is None:
        state["report"] = _report(out, state, sweep_dir, s)
        _save(out, state)
    last = state["rounds"][-1]
    report = os.path.join(out, state["report"])
    log(f"autopilot stopped ({state['stopped']['reason']}): {state['stopped']['detail']}; report {report}")
    return AutopilotResult(out_dir=out, rounds=len(state["rounds"]), flops_spent=state["flops_spent"],
                           initial_flops=state["initial_flops"], stopped=state["stopped"],
                           recommended=last["recommended"], report=report)


def _rounds(out: str, state: dict, s: Settings, template: SweepPlan, sweep_dir: str, sweep, log) -> None:
    """Rounds from the first not done until one stops the loop (recorded in `state`)."""
    r = state["rounds_done"]
    while True:
        rel = f"rounds/{r:03d}"  # paths in the state are relative to `out`
        rdir = os.path.join(out, rel)
        os.makedirs(rdir, exist_ok=True)
        fit = _round_fit(os.path.join(rdir, "fit"), sweep_dir, s, log)
        numbers = _recommend(fit, rdir, s)
        entry = {"round": r, "fit": f"{rel}/fit", "plan": None, "plan_flops": 0.0, **numbers}
        log(f"round {r}: expected regret {numbers['expected_regret']:.3g}, widest 90% interval of p* "
            f"{numbers['p_star_width_90']:.3g}")
        spent = sum(e["plan_flops"] for e in state["rounds"] if e["round"] < r)
        stop = next((name for name, key in (("regret_below", "expected_regret"), ("width_below", "p_star_width_90"))
                     if getattr(s, name) is not None and numbers[key] < getattr(s, name)), None)
        stop = (stop, f"{stop.replace('_', ' ')} {getattr(s, stop):g}") if stop else None
        if stop is None and r >= s.max_rounds:
            stop = ("max_rounds", f"max_rounds {s.max_rounds} reached: the runs of {r} plans trained")
        plan = None
        if stop is None:
            plan, stop = _round_plan(rdir, r, fit, sweep_dir, s, s.budget_flops - spent, template, log)
        if plan is not None:
            entry |= {"plan": f"{rel}/plan.yaml", "plan_flops": plan_flops(plan, s.corpus)}
        state["rounds"] = sorted([e for e in state["rounds"] if e["round"] != r] + [entry], key=lambda e: e["round"])
        state["flops_spent"] = spent + entry["plan_flops"]
        if stop is not None:
            state["stopped"] = {"reason": stop[0], "round": r, "detail": stop[1]}
            _save(out, state)
            return
        _save(out, state)
        sweep(plan)
        state["rounds_done"] = r = r + 1
        _save(out, state)


def _report(out: str, state: dict, sweep_dir: str, s: Settings) -> str:
    """The last round's fit reported into OUT/report at the target; returns report.md's path
    relative to `out`."""
    fit_dir = os.path.join(out, state["rounds"][-1]["fit"])
    rep = write_report(fit_dir, os.path.join(out, "report"), runs=SweepStore(sweep_dir).runs_csv, N=s.N, D=s.D,
                       objective=s.objective, fitted=os.path.join(fit_dir, "runs.csv"),
                       family_tokens={})  # no data caps at the target, as in the rounds (`_recommend`)
    return os.path.relpath(rep.markdown, out)
