"""`multiscale report`: plots and report.md from a fit."""

from __future__ import annotations

import argparse
import math

from multiscale.cli._common import add_overwrite_argument, check_output, number


def register(sub) -> None:
    r = sub.add_parser(
        "report", help="plots and report.md from a fit (and its run table)",
        description="Writes PNG plots and report.md: loss vs p per family with the fitted law and "
                    "credible band, the posterior of p* beside the baselines, predicted vs observed, "
                    "and the independence test.")
    r.add_argument("fit_dir", metavar="FIT_DIR")
    r.add_argument("--runs", metavar="RUNS.csv", help="run table (default: the one the fit recorded)")
    r.add_argument("--out", required=True, metavar="REPORT_DIR")
    add_overwrite_argument(r, "report in --out")
    r.add_argument("--N", type=number(-math.inf), help="model size (non-embedding params) for the recommendation "
                                           "(default: the largest in the run table)")
    r.add_argument("--D", type=number(-math.inf), help="training tokens for the recommendation (default: the largest)")
    r.add_argument("--heldout", metavar="RUN,RUN,...", help="runs to mark held-out (default: runs not in the fit)")
    r.add_argument("--fitted", metavar="FITTED.csv", help="the run table the fit saw: runs of --runs missing "
                                                          "from it are marked held-out")
    r.add_argument("--corpus", metavar="DIR", help="corpus whose per-family token counts give the proportional, "
                                                   "temperature and UniMax baselines (default: the counts the "
                                                   "sweep folder holding --runs recorded)")
    r.add_argument("--objective", default="normalized", choices=["normalized", "raw"],
                   help="what p* minimizes, as for `recommend` (default normalized)")
    r.add_argument("--json", action="store_true", help="print one JSON object (where the report went, its numbers)")
    r.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from multiscale.fileio import dumps, json_safe
    from multiscale.report import write_report

    heldout = [s.strip() for s in args.heldout.split(",") if s.strip()] if args.heldout else None
    check_output(args.out, folder=True, marker=("report.md",), overwrite=args.overwrite, ask="--overwrite",
                 inputs={"fit FIT_DIR": args.fit_dir, "table --runs": args.runs, "table --fitted": args.fitted,
                         "corpus --corpus": args.corpus})
    tokens = None
    if args.corpus:
        from multiscale.sweep import corpus_info

        tokens = corpus_info(args.corpus)[1]
    out = write_report(args.fit_dir, args.out, runs=args.runs, N=args.N, D=args.D, heldout=heldout,
                       objective=args.objective, family_tokens=tokens, fitted=args.fitted)
    if args.json:
        print(dumps(json_safe(out.to_dict())))
    else:
        print(f"report: {out.markdown}")
        for f in out.figures:
            print(f"  {f}")
    return 0
