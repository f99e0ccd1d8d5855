"""`multiscale sweep`, `multiscale report` and `multiscale demo`."""

from __future__ import annotations

import argparse

from multiscale import host_devices


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep plan (presets x token budgets x mixtures) into one run table",
        description="Runs each planned run of PLAN.yaml once (skipping complete runs, resuming "
                    "half-finished ones) and collects the rows in OUT/runs.csv. Shards of one plan "
                    "may run at once on several machines sharing OUT. A failed run is recorded in "
                    "OUT/failures.jsonl and the sweep goes on; the exit status is then 1.")
    p.add_argument("plan", metavar="PLAN.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (local, shared or gs://)")
    p.add_argument("--corpus", metavar="DIR", help="corpus folder (default: the plan's 'corpus:')")
    p.add_argument("--shard", default="0/1", metavar="i/n", help="run shard i of n (0-based), default 0/1")
    p.add_argument("--dry-run", action="store_true", help="list this shard's runs and their state; train nothing")
    p.add_argument("--train-fn", metavar="MODULE:FUNCTION",
                   help="train runs with another function fn(run, run_dir, corpus, progress) -> rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    host_devices.add_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (the sweep's outcome)")
    p.set_defaults(handler=_sweep)

    r = sub.add_parser(
        "report", help="plots and report.md from a fit (and its run table)",
        description="Writes PNG plots and report.md: loss vs p per family with the fitted law and "
                    "credible band, the posterior of p* beside the baselines, predicted vs observed, "
                    "and the independence test.")
    r.add_argument("fit_dir", metavar="FIT_DIR")
    r.add_argument("--runs", metavar="RUNS.csv", help="run table (default: the one the fit recorded)")
    r.add_argument("--out", required=True, metavar="REPORT_DIR")
    r.add_argument("--N", type=float, help="model size (non-embedding params) for the recommendation "
                                           "(default: the largest in the run table)")
    r.add_argument("--D", type=float, help="training tokens for the recommendation (default: the largest)")
    r.add_argument("--heldout", metavar="RUN,RUN,...", help="runs to mark held-out (default: runs not in the fit)")
    r.add_argument("--fitted", metavar="FITTED.csv", help="the run table the fit saw: runs of --runs missing "
                                                          "from it are marked held-out")
    r.add_argument("--corpus", metavar="DIR", help="corpus whose per-family token counts give the proportional, "
                                                   "temperature and UniMax baselines (default: the sweep's plan.json)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=_report)

    d = sub.add_parser(
        "demo", help="the quickstart: corpus, small sweep, Bayesian fit, recommended ratios, report",
        description="Builds the embedded corpus, trains a small sweep of CPU presets, fits the "
                    "Bayesian law, prints recommended ratios with 90%% intervals and their predicted "
                    "gain over uniform and temperature sampling, and writes the report. Re-running "
                    "reuses finished work.")
    d.add_argument("--out", default="demo_out", metavar="DIR")
    d.add_argument("--quick", action="store_true", help="an even smaller demo (for tests; numbers are rough)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=_demo)


def _sweep(args: argparse.Namespace) -> int:
    import json
    import sys

    host_devices.apply_argument(args.host_devices, "sweep")  # before jax starts
    from multiscale.plan import SweepPlan, parse_shard, shard_runs
    from multiscale import sweep

    plan = SweepPlan.load(args.plan)
    shard = parse_shard(args.shard)
    corpus = args.corpus or plan.corpus
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    if args.dry_run:
        runs = sweep.plan_runs(plan, corpus)
        mine = shard_runs(runs, *shard)
        done = set(sweep._fragment_ids(args.out)) if sweep._path(args.out).exists() else set()
        rows = [{"run": r.run_id, "preset": r.preset, "D": r.tokens, "mixture": r.mixture,
                 "heldout": r.heldout, "ratios": r.ratio_dict,
                 "state": "complete" if r.run_id in done else "planned"} for r in mine]
        if args.json:
            print(json.dumps({"planned": len(runs), "shard": list(shard), "runs": rows}))
        else:
            print(f"{len(runs)} runs planned; shard {shard[0]}/{shard[1]} would run {len(mine)}:")
            for row in rows:
                ratios = " ".join(f"{f}={p:.3g}" for f, p in row["ratios"].items())
                print(f"  [{row['state']:8s}] {row['run']}  {ratios}" + ("  (held-out)" if row["heldout"] else ""))
        return 0
    train_fn = _load_callable(args.train_fn) if args.train_fn else None
    result = sweep.run_sweep(plan, args.out, corpus=corpus, shard=shard, train_fn=train_fn,
                             progress=False if args.no_progress else None, log=log)
    if args.json:
        print(json.dumps(result.to_dict()))
    return 1 if result.failed else 0


def _load_callable(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"--train-fn {spec!r}: expected MODULE:FUNCTION")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--train-fn {spec!r}: {err}") from None
    return fn


def _report(args: argparse.Namespace) -> int:
    import json

    from multiscale.report import write_report

    heldout = [s for s in args.heldout.split(",") if s] if args.heldout else None
    tokens = None
    if args.corpus:
        from multiscale.sweep import _corpus_info

        tokens = _corpus_info(args.corpus)[1]
    out = write_report(args.fit_dir, args.out, runs=args.runs, N=args.N, D=args.D, heldout=heldout,
                       family_tokens=tokens, fitted=args.fitted)
    if args.json:
        print(json.dumps(out.to_dict()))
    else:
        print(f"report: {out.markdown}")
        for f in out.figures:
            print(f"  {f}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import json

    from multiscale.demo import run_demo

    import sys

    progress = sys.stderr.isatty() and not args.no_progress and not args.json
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    result = run_demo(args.out, quick=args.quick, progress=progress, log=log)
    if args.json:
        print(json.dumps(result.to_dict()))
    return 0
