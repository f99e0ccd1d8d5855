"""`multiscale next`: the runs to train next, by what they would teach about p* per FLOP.

`multiscale.decisions.next_runs.plan_next` values candidate runs (generated from the fit, or every run of
`--candidates PLAN.yaml`) by a Bayes-linear preposterior analysis of the fit's posterior draws and
chooses greedy batches within a FLOP budget; `--out` writes them as a sweep plan
(`multiscale.sweep.next_plan`). Every argument is checked before any work; a mistake is one line
(exit 2). `--json` prints exactly one JSON object.
"""

from __future__ import annotations

import os
import shlex

from multiscale.cli._common import add_overwrite_argument, check_output, number
from multiscale.errors import InputError, MissingFileError


def _check_out(args) -> None:
    """--out, before any work: a new file (an existing one only with --overwrite), never an input."""
    if args.out is not None:
        check_output(args.out, folder=False, overwrite=args.overwrite, ask="--overwrite",
                     inputs={"fit FIT": args.fit_dir, "table --runs": args.runs, "plan --candidates": args.candidates,
                             "plan --like": args.like, "corpus --corpus": args.corpus})


def _load_plan(path: str | None, flag: str):
    from multiscale.sweep.plan import PlanError, SweepPlan

    if path is None:
        return None
    try:
        return SweepPlan.load(path)
    except (PlanError, MissingFileError) as err:
        raise type(err)(f"{flag}: {err}") from None


def _inputs(args):
    """(fit, candidates or None, template plan or None, fitted runs or None), checked."""
    from multiscale.laws import load_fit
    from multiscale.runs import read_runs
    from multiscale.sweep.next_plan import from_plan

    _check_out(args)
    cand_plan = _load_plan(args.candidates, "--candidates")
    like = _load_plan(args.like, "--like")
    if args.runs is not None and not os.path.isfile(args.runs):
        raise MissingFileError(f"--runs {args.runs!r}: no such file")
    fit = load_fit(args.fit_dir)
    runs = read_runs(args.runs) if args.runs is not None else None
    cands = None
    if cand_plan is not None:
        from multiscale.decisions import decision_families

        cands = from_plan(cand_plan, decision_families(fit), corpus=args.corpus or cand_plan.corpus)
    return fit, cands, like or cand_plan, runs


def _command(args) -> str:
    """The command line that chose the runs, for the plan's header."""
    words = [args.fit_dir, "--N", f"{args.N:g}", "--D", f"{args.D:g}", "--budget-flops", f"{args.budget_flops:g}",
             "--k", str(args.k), "--objective", args.objective, "--criterion", args.criterion]
    for flag in ("candidates", "runs", "like", "corpus"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", getattr(args, flag)]
    return "multiscale next " + shlex.join(words)


def _next(args) -> int:
    from multiscale.decisions.next_runs import plan_next
    from multiscale.fileio import dumps, json_safe
    from multiscale.sweep.next_plan import header, plan_dict, write_plan

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    fit, cands, template, runs = _inputs(args)
    result = plan_next(fit, args.N, args.D, args.budget_flops, candidates=cands, k=args.k,
                       objective=args.objective, criterion=args.criterion, runs=runs,
                       progress=not (args.no_progress or args.json))
    plan = plan_dict(result, template=template, seed=args.seed, name=args.name) if result.chosen else None
    if args.out is not None and plan is not None:
        write_plan(args.out, plan, header(result, _command(args)))
    if args.json:
        print(dumps(json_safe(result.to_dict() | {"out": args.out, "plan": plan})))
        return 0
    print(result)
    if args.out is not None and plan is not None:
        print(f"plan written to {args.out}: multiscale sweep {args.out} --out DIR --dry-run lists its runs")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "next", help="choose the next runs: what each would teach about p* at a target, per FLOP",
        description="Ranks candidate runs (preset, token budget, mixture) by the expected reduction of the "
                    "posterior uncertainty of p* at the target N, D per training FLOP (6 N D), chooses greedy "
                    "batches that do not repeat each other's information, and writes them as a sweep plan. "
                    "Needs a NUTS fit. Candidates: every run of --candidates, else generated from the fit "
                    "(presets in and just above the fitted N, the fitted budgets and x2, x4, uniform, vary-one, "
                    "the robust p*, Dirichlet mixtures).")
    p.add_argument("fit_dir", metavar="FIT", help="a saved NUTS fit (folder)")
    p.add_argument("--N", type=number(), required=True, help="target non-embedding parameters")
    p.add_argument("--D", type=number(), required=True, help="target training tokens")
    p.add_argument("--budget-flops", dest="budget_flops", type=number(), required=True,
                   help="training FLOPs (6 N D per run) to spend on the chosen runs in all")
    p.add_argument("--k", type=int, default=8, help="at most this many runs (default 8)")
    p.add_argument("--candidates", default=None, metavar="PLAN.yaml", help="a sweep plan: its runs are the candidates")
    p.add_argument("--corpus", default=None, help="corpus for --candidates baselines that need token counts")
    p.add_argument("--runs", default=None, metavar="TABLE",
                   help="the fitted run table: its N, D and ratio levels shape the generated candidates "
                        "(default: the fitted ranges the fit records), and candidates that repeat one of its "
                        "runs are left out")
    p.add_argument("--like", default=None, metavar="PLAN.yaml",
                   help="copy corpus, families and train: settings into the written plan from this plan "
                        "(default: from --candidates)")
    p.add_argument("--objective", default="raw", choices=["raw", "normalized"],
                   help="p*'s objective (default raw: mean loss in nats/token; under normalized the "
                        "multilingual law's p* depends on gamma only, so budgets teach it nothing)")
    p.add_argument("--criterion", default="regret", choices=["regret", "width"],
                   help="uncertainty to reduce: regret (expected regret of the recommended mixture, 2nd order; "
                        "default) or width (summed variance of p*)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every chosen run (default 0)")
    p.add_argument("--name", default="next", help="the plan's name (default next)")
    p.add_argument("--out", default=None, metavar="PLAN.yaml", help="write the chosen runs as a sweep plan")
    add_overwrite_argument(p, "--out file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_next)
