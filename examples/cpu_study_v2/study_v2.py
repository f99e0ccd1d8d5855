"""Helpers of the second CPU study (docs/cpu_study_v2/report.md); each prints ONE JSON object.

  python examples/cpu_study_v2/study_v2.py compute PLAN.yaml [PLAN.yaml ...] [--corpus DIR]
      runs, sum of 6 N D (the FLOPs `multiscale next --budget-flops` counts) and an estimate of
      the wall time of every plan, from the steps actually trained (D rounded down to whole
      steps of batch x seq_len) and the tokens/s of each preset on 2 quiet cores (ESTIMATE_TPS)
  python examples/cpu_study_v2/study_v2.py select SWEEP_DIR PLAN.yaml [PLAN.yaml ...] --corpus DIR --out OUT.csv
      the rows of the sweep's runs.csv whose configurations the plans expand to (one stage's runs
      out of the shared table), each configuration once
  python examples/cpu_study_v2/study_v2.py union SWEEP_DIR --out RUNS.csv
      the sweep's runs.csv with each configuration once (the committed runs.csv)
  python examples/cpu_study_v2/study_v2.py final-plan static=REC.json active=REC.json \
        --template stage_d_baselines.yaml --out PLAN.yaml
      the recommended mixtures as a sweep plan with the template's presets, budget and seeds
  python examples/cpu_study_v2/study_v2.py restore RUNS.csv SWEEP_DIR
      a committed run table back into a sweep folder: each run of RUNS.csv that SWEEP_DIR lacks
      gets its fragment (rows/<run>.csv), so a later sweep of the same plans skips it instead of
      training it again (run ids hash the run's whole configuration, so only identical runs match)
  python examples/cpu_study_v2/study_v2.py walltimes SWEEP_DIR [--out walltimes.csv]
      every finished run's wall time (its summary.json) with its preset, tokens and the time
      its rows were written, so the plan's estimates can be checked against what training took
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# tokens/s of one training process on 2 quiet cores, batch 16 x 128: benchmarks/RESULTS.md
# (bench_train.py on a quiet machine: cpu-100k 41.6k, cpu-800k 11.3k in run E; cpu-200k 27.1k,
# cpu-400k 15.2k, cpu-1.6m 6.8k in run B), rounded down
ESTIMATE_TPS = {"cpu-100k": 40_000, "cpu-200k": 27_000, "cpu-400k": 15_000,
                "cpu-800k": 11_000, "cpu-1.6m": 6_800, "cpu-3m": 4_400}
OVERHEAD_S = 15.0  # per run in a sweep process: data pipeline start, compile once per preset, eval


def preset_N() -> dict[str, int]:
    from multiscale.models.params import count_params
    from multiscale.models.presets import PRESETS

    return {name: int(count_params(cfg).non_embedding) for name, cfg in PRESETS.items()}


def trained_tokens(run) -> int:
    """D as training records it: whole steps of batch x seq_len."""
    train = dict(run.train)
    per_step = int(train.get("batch", 32)) * int(train.get("seq_len", 128))
    return (int(run.tokens) // per_step) * per_step


def plan_compute(path: str, corpus: str | None) -> dict:
    from multiscale.sweep import SweepPlan
    from multiscale.sweep.runner import plan_runs

    sizes = preset_N()
    runs = plan_runs(SweepPlan.load(path), corpus)
    flops = flops_trained = seconds = 0.0
    by_preset: dict[str, int] = {}
    for run in runs:
        d = trained_tokens(run)
        flops += 6.0 * sizes[run.preset] * int(run.tokens)  # as `multiscale next` counts: nominal D
        flops_trained += 6.0 * sizes[run.preset] * d
        seconds += d / ESTIMATE_TPS[run.preset] + OVERHEAD_S
        by_preset[run.preset] = by_preset.get(run.preset, 0) + 1
    return {"plan": os.path.basename(path), "runs": len(runs), "runs_per_preset": by_preset,
            "flops_6ND": flops, "flops_6ND_trained": flops_trained, "estimate_minutes_quiet": round(seconds / 60.0, 1)}


def cmd_compute(args) -> dict:
    plans = [plan_compute(p, args.corpus) for p in args.plans]
    return {"plans": plans, "total_runs": sum(p["runs"] for p in plans),
            "total_flops_6ND": sum(p["flops_6ND"] for p in plans),
            "total_estimate_minutes_quiet": round(sum(p["estimate_minutes_quiet"] for p in plans), 1),
            "tokens_per_s_assumed": ESTIMATE_TPS, "overhead_s_per_run": OVERHEAD_S}


def _one_per_configuration(sweep: str, prefer=frozenset()):
    """The sweep folder's runs.csv with one run per configuration: a configuration trained under
    two names (stage C repeated runs of A and B before `next --runs` and the sweep's reuse of
    finished configurations) is one measurement, kept under a name of `prefer`, else the name
    whose fragment was written first."""
    import pandas as pd

    from multiscale.runs import validate_runs
    from multiscale.sweep import SweepStore
    from multiscale.sweep.plan import configuration_digest

    store = SweepStore(sweep)
    df = pd.read_csv(store.runs_csv)
    keep = {}
    for run_id in df["run"].unique():
        rank = (run_id not in prefer, os.path.getmtime(store.fragment_path(run_id)), run_id)
        digest = configuration_digest(run_id)
        if digest not in keep or rank < keep[digest]:
            keep[digest] = rank
    names = {rank[-1] for rank in keep.values()}
    return validate_runs(df[df["run"].isin(names)], source=store.runs_csv)


def cmd_select(args) -> dict:
    from multiscale.runs import write_runs
    from multiscale.sweep import SweepPlan
    from multiscale.sweep.plan import runs_of_configurations
    from multiscale.sweep.runner import plan_runs

    ids = {r.run_id for p in args.plans for r in plan_runs(SweepPlan.load(p), args.corpus)}
    runs = _one_per_configuration(args.sweep, prefer=ids)
    out = runs[runs["run"].isin(runs_of_configurations(runs["run"].unique(), ids))]
    write_runs(out, args.out)
    return {"out": args.out, "rows": int(len(out)), "runs": int(out["run"].nunique()), "planned": len(ids)}


def cmd_union(args) -> dict:
    from multiscale.runs import write_runs

    runs = _one_per_configuration(args.sweep)
    write_runs(runs, args.out)
    return {"out": args.out, "rows": int(len(runs)), "runs": int(runs["run"].nunique())}


def _study_analysis():
    """examples/cpu_study/study_analysis.py (the first study's analysis) as a module, loaded from
    its file (nothing is added to sys.path)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "cpu_study" / "study_analysis.py"
    spec = importlib.util.spec_from_file_location("study_analysis", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cmd_final_plan(args) -> dict:
    import yaml

    from multiscale.fileio import atomic_write_text, read_json

    recs = {}
    for item in args.recs:
        name, _, path = item.partition("=")
        recs[name] = read_json(path, what=f"recommendation {name!r}")
    with open(args.template) as fh:
        template = yaml.safe_load(fh)
    plan = _study_analysis().transfer_plan(recs, template)
    plan["name"] = "cpu-v2-d-" + "+".join(recs)
    atomic_write_text(args.out, yaml.safe_dump(plan, sort_keys=False))
    return {"out": args.out, "mixtures": {m["name"]: m["ratios"] for m in plan["mixtures"]}}


def cmd_restore(args) -> dict:
    from multiscale.runs import read_runs
    from multiscale.sweep import SweepStore

    store = SweepStore(args.sweep)
    store.root.mkdir(parents=True, exist_ok=True)
    done = set(store.scan().intact)
    runs = read_runs(args.runs)
    restored = []
    for run_id, rows in runs.groupby("run", sort=False):
        if run_id not in done:
            store.write_fragment(run_id, rows.reset_index(drop=True))
            restored.append(run_id)
    n_rows = store.consolidate()
    return {"sweep": str(store.root), "restored": len(restored), "already_there": len(done),
            "rows_in_runs_csv": n_rows}


def cmd_walltimes(args) -> dict:
    import pandas as pd

    rows = []
    runs_dir = os.path.join(args.sweep, "runs")
    for run_id in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        path = os.path.join(runs_dir, run_id, "summary.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            s = json.load(f)
        rows.append({"run": s["run"], "model": s["model"], "D": s["D"], "steps": s["steps"],
                     "wall_s": round(float(s["wall_s"]), 1),
                     "finished_utc": pd.Timestamp(os.path.getmtime(path), unit="s").strftime("%Y-%m-%dT%H:%M:%SZ")})
    df = pd.DataFrame(rows)
    if args.out and len(df):
        df.to_csv(args.out, index=False)
    per = {} if not len(df) else {
        m: {"runs": int(len(g)), "mean_wall_s": round(float(g["wall_s"].mean()), 1),
            "s_per_1k_steps": round(float((g["wall_s"] / g["steps"]).median() * 1000), 1)}
        for m, g in df.groupby("model")}
    return {"runs": int(len(df)), "total_wall_s": round(float(df["wall_s"].sum()) if len(df) else 0.0, 1),
            "per_model": per}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compute")
    c.add_argument("plans", nargs="+")
    c.add_argument("--corpus", help="needed by plans with temperature/proportional/unimax baselines")
    c.set_defaults(fn=cmd_compute)
    s = sub.add_parser("select")
    s.add_argument("sweep")
    s.add_argument("plans", nargs="+")
    s.add_argument("--corpus")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_select)
    u = sub.add_parser("union")
    u.add_argument("sweep")
    u.add_argument("--out", required=True)
    u.set_defaults(fn=cmd_union)
    f = sub.add_parser("final-plan")
    f.add_argument("recs", nargs="+", metavar="NAME=REC.json")
    f.add_argument("--template", required=True)
    f.add_argument("--out", required=True)
    f.set_defaults(fn=cmd_final_plan)
    r = sub.add_parser("restore")
    r.add_argument("runs")
    r.add_argument("sweep")
    r.set_defaults(fn=cmd_restore)
    w = sub.add_parser("walltimes")
    w.add_argument("sweep")
    w.add_argument("--out")
    w.set_defaults(fn=cmd_walltimes)
    args = ap.parse_args(argv)
    print(json.dumps(args.fn(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
