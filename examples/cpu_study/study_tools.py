"""Glue for the CPU-scale study (run_study.sh): argument parsing around the study's analysis
(study_analysis.py beside it: `select_runs`, `transfer_plan`, `summarize_study`).

Everything that trains or fits goes through the `multiscale` commands in run_study.sh; this file
selects rows, turns recommendations into a sweep plan, and writes the headline numbers (loss in
nats/token) to the JSON file that docs/cpu_study/report.md and tests/test_cpu_study.py read.

    python study_tools.py select RUNS.csv --out FIT.csv --max-N 500000
    python study_tools.py transfer-plan pstar-small3=REC.json [pstar-at1.6m=REC2.json] \
        --template large.yaml --seeds 0,1 --out PLAN.yaml
    python study_tools.py summarize --runs RUNS.csv --fit-small DIR --fit-small-point DIR \
        --fit-large DIR --rec-small REC.json [--rec-large REC.json] --fit-max-N 500000 --out summary.json
"""

from __future__ import annotations

import argparse
import sys

from study_analysis import format_study_summary, select_runs, summarize_study, transfer_plan

from multiscale.errors import InputError, MultiscaleError
from multiscale.fileio import atomic_write_text, read_json, write_json
from multiscale.runs import read_runs, write_runs


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("select")
    p.add_argument("runs")
    p.add_argument("--out", required=True)
    p.add_argument("--max-N", type=float)
    p.add_argument("--min-N", type=float)
    p.add_argument("--exclude", default="", help="mixture labels (LABEL or LABEL-sSEED) to leave out, comma-separated")
    p = sub.add_parser("transfer-plan")
    p.add_argument("recs", nargs="+", metavar="NAME=REC.json", help="mixture name and its recommendation")
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default=None, help="seeds of the planned runs, comma-separated (default: the template's)")
    p = sub.add_parser("summarize")
    for flag in ("--runs", "--fit-small", "--fit-small-point", "--fit-large", "--rec-small", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--rec-large")
    p.add_argument("--fit-max-N", type=float,
                   help="rows with N below this were fitted (default: all but the largest N)")
    return ap


def select(args) -> None:
    exclude = [x for x in args.exclude.split(",") if x]
    df = select_runs(read_runs(args.runs), max_N=args.max_N, min_N=args.min_N, exclude=exclude)
    write_runs(df, args.out)
    print(f"{args.out}: {df['run'].nunique()} runs, {len(df)} rows")


def plan(args) -> None:
    import yaml

    recs = {}
    for item in args.recs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"transfer-plan: {item!r} is not NAME=REC.json")
        recs[name] = read_json(path, what=f"recommendation {name!r}")
    with open(args.template) as fh:
        template = yaml.safe_load(fh)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
    out = transfer_plan(recs, template, seeds)
    atomic_write_text(args.out, yaml.safe_dump(out, sort_keys=False))
    for m in out["mixtures"]:
        print(f"{args.out}: {m['name']} = {m['ratios']}")


def summarize(args) -> None:
    from multiscale.laws import load_fit

    recs = {k: read_json(p, what="recommendation") if p else None
            for k, p in (("rec_small", args.rec_small), ("rec_large", args.rec_large))}
    s = summarize_study(read_runs(args.runs), fit_small=load_fit(args.fit_small),
                        fit_small_point=load_fit(args.fit_small_point), fit_large=load_fit(args.fit_large),
                        fit_max_N=args.fit_max_N, **recs)
    write_json(args.out, s, indent=1)
    print(format_study_summary(s))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"select": select, "transfer-plan": plan, "summarize": summarize}[args.cmd](args)
    except MultiscaleError as err:  # a user mistake: one line, no traceback
        print(f"study_tools {args.cmd}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
