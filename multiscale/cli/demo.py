"""`multiscale demo`: the quickstart (corpus, small sweep, Bayesian fit, ratios, report)."""

from __future__ import annotations

import argparse

from multiscale.cli._common import check_output


def register(sub) -> None:
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


def _demo(args: argparse.Namespace) -> int:
    import sys

    from multiscale.demo import run_demo
    from multiscale.fileio import dumps, json_safe

    check_output(args.out, folder=True, resumes=True,
                 marker=("corpus", "sweep", "fit", "report", "recommendation.json"))  # a demo folder is continued
    progress = sys.stderr.isatty() and not args.no_progress and not args.json
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    result = run_demo(args.out, quick=args.quick, progress=progress, log=log)
    if args.json:
        print(dumps(json_safe(result.to_dict())))
    return 0
