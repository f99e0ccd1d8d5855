"""`multiscale compare RUNS --laws a,b,c --holdout ...`: which law to believe (docs/laws/compare.md).

Fits every law on the training split of a run table, scores it on the held-out runs (MAPE, R^2,
Spearman within each (N, D), 90% coverage, PSIS-LOO with NUTS), and applies the rule of
`multiscale.decisions.compare` naming the law to use. `--json` prints exactly one JSON object.
"""

from __future__ import annotations

from multiscale.cli._common import add_overwrite_argument, check_output, number
from multiscale.errors import InputError, MissingFileError
from multiscale.laws.noise import DEFAULT_NOISE, NOISE_MODELS


def _compare(args) -> int:
    from multiscale.cli.laws import MAX_CHAINS, _compile_cache, _emit, _finite
    from multiscale.decisions.compare import compare_laws, write_comparison
    from multiscale.fileio import as_path
    from multiscale.laws.forms import get_law

    runs = as_path(args.runs)
    if not runs.is_file():
        raise MissingFileError(f"run table {args.runs!r} does not exist or is a folder")
    if args.out:
        check_output(args.out, folder=True, inputs={"table RUNS": args.runs, "table --heldout": args.heldout},
                     marker=("compare.json",), overwrite=args.overwrite, ask="--overwrite")
    names = [s.strip() for s in args.laws.split(",") if s.strip()]
    for name in names:
        get_law(name)  # an unknown law is refused before any work
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--laws names {', '.join(map(repr, twice))} twice; give each law once")
    noises = [s.strip() for s in (args.noise or DEFAULT_NOISE).split(",") if s.strip()]
    unknown = [n for n in noises if n not in NOISE_MODELS]
    if unknown or not noises or len(set(noises)) < len(noises):
        raise InputError(f"--noise must name each of {', '.join(NOISE_MODELS)} at most once, got {args.noise!r}")
    if args.noise is not None and args.method != "nuts":
        raise InputError("--noise applies to --method nuts only (a point fit has no noise model)")
    for flag, value in (("--N", args.N), ("--D", args.D)):
        if value is not None:
            _finite(value, flag)
    if not 1 <= args.chains <= MAX_CHAINS:
        raise InputError(f"--chains must be in 1..{MAX_CHAINS} (one CPU device each), got {args.chains}")
    if args.method == "nuts":
        from multiscale.laws.bayes import host_devices_for_chains

        host_devices_for_chains(args.chains)
    from multiscale.runs import read_runs

    if args.heldout is not None and not as_path(args.heldout).is_file():
        raise MissingFileError(f"--heldout {args.heldout!r} does not exist or is a folder")
    df = read_runs(args.runs)
    test = read_runs(args.heldout) if args.heldout is not None else None
    _compile_cache()
    cmp = compare_laws(df, args.laws, args.holdout, method=args.method, draws=args.draws, chains=args.chains,
                       seed=args.seed, N=args.N, D=args.D, heldout=test, noise=noises)
    if args.out:
        write_comparison(cmp, args.out)
    _emit(cmp, args.json)
    return 0


def register(subparsers) -> None:
    from multiscale.decisions.compare import HOLDOUTS
    from multiscale.laws.forms import LAWS

    p = subparsers.add_parser("compare", help="compare laws on held-out runs and name the one to use",
                              description="Fit several laws on the same runs and score them on held-out ones. "
                                          "Loss in nats/token.")
    p.add_argument("runs", help="run table (CSV or Parquet)")
    p.add_argument("--laws", required=True, metavar="A,B,C", help=f"laws to compare, from {', '.join(LAWS)}")
    p.add_argument("--holdout", default="largest-N", choices=list(HOLDOUTS),
                   help="which runs to hold out (default largest-N)")
    p.add_argument("--heldout", default=None, metavar="TABLE",
                   help="score on this run table instead, fitting on all of RUNS (--holdout is ignored)")
    p.add_argument("--method", default="lbfgs", choices=["lbfgs", "nuts"],
                   help="point fits, or NUTS (adds 90%% coverage and PSIS-LOO)")
    p.add_argument("--draws", type=int, default=500, help="NUTS draws (and warm-up) per chain (default 500)")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", default=None, metavar="A,B",
                   help=f"NUTS: the noise model(s) to fit each law with, from {', '.join(NOISE_MODELS)} "
                        f"(default {DEFAULT_NOISE}); with several, every law/noise pair is compared (PSIS-LOO, "
                        "which leaves out a run, not a model size: judge 'size' by --heldout larger sizes)")
    p.add_argument("--N", type=number(), default=None, help="target N of p* (default: the table's largest)")
    p.add_argument("--D", type=number(), default=None, help="target D of p* (default: the table's largest)")
    p.add_argument("--out", default=None, help="folder for compare.json, compare.md and compare.png")
    add_overwrite_argument(p, "comparison in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_compare)
