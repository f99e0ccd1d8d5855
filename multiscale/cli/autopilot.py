"""`multiscale autopilot`: the closed loop (fit -> recommend -> next -> sweep -> refit) until the
FLOP budget is spent, a stopping threshold is met or the rounds run out
(`multiscale.autopilot.run_autopilot`). Running the same command again resumes the folder; other
settings are refused (one line naming the flag). `--json` prints exactly one JSON object.
"""

from __future__ import annotations

import sys

from multiscale.cli._common import check_corpus_folder, check_output, number
from multiscale.cli.laws import MAX_CHAINS
from multiscale.cli.sweep import add_engine_arguments, engine_from_args
from multiscale.errors import InputError
from multiscale.laws.forms import LAWS


def _autopilot(args) -> int:
    from multiscale.autopilot import run_autopilot
    from multiscale.fileio import dumps, json_safe
    from multiscale.laws.bayes import host_devices_for_chains

    check_output(args.out, folder=True, inputs={"plan PLAN": args.plan, "corpus --corpus": args.corpus},
                 marker=("autopilot.json",), resumes=True)  # an autopilot folder is resumed
    engine = engine_from_args(args)
    if args.corpus is not None:
        check_corpus_folder(args.corpus)
    if not 1 <= args.chains <= MAX_CHAINS:
        raise InputError(f"--chains must be in 1..{MAX_CHAINS} (one CPU device each), got {args.chains}")
    host_devices_for_chains(args.chains)  # chains in parallel (before jax starts)
    quiet = args.json
    res = run_autopilot(args.plan, args.out, corpus=args.corpus, N=args.N, D=args.D, budget_flops=args.budget_flops,
                        regret_below=args.regret_below, width_below=args.width_below, max_rounds=args.max_rounds,
                        k=args.k, seed=args.seed, objective=args.objective, law=args.law, shared=args.shared or (),
                        chains=args.chains, draws=args.draws, warmup=args.num_warmup,
                        extrapolation=not args.no_extrapolation, engine=engine,
                        progress=sys.stderr.isatty() and not (quiet or args.no_progress),
                        log=(lambda *a: print(*a, file=sys.stderr)) if quiet else print)
    if quiet:
        print(dumps(json_safe(res.to_dict())))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "autopilot", help="the closed loop: fit, recommend, choose and train the next runs, refit, until done",
        description="Trains PLAN into DIR/sweep, then repeats rounds: a NUTS fit of the run table "
                    "(DIR/rounds/NNN/fit), p* at the target (recommendation.json), the stopping rule, the next "
                    "runs within the FLOPs left (plan.yaml), their training. Stops when the recommended "
                    "mixture's expected regret falls below --regret-below or p*'s widest 90%% interval below "
                    "--width-below, when --budget-flops (6 N D over the runs the loop chose; the initial plan's "
                    "runs are not counted) is spent, or after --max-rounds; then writes DIR/report. "
                    "DIR/autopilot.json holds the loop's state: run the same command again to resume it.")
    p.add_argument("plan", metavar="PLAN", help="the initial sweep plan (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="the autopilot's folder (local)")
    p.add_argument("--corpus", default=None, metavar="DIR", help="corpus folder (default: the plan's 'corpus:')")
    p.add_argument("--N", type=number(), required=True, help="target non-embedding parameters")
    p.add_argument("--D", type=number(), required=True, help="target training tokens")
    p.add_argument("--budget-flops", dest="budget_flops", type=number(), required=True,
                   help="training FLOPs (6 N D per run) the loop may spend on the runs it chooses")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--regret-below", dest="regret_below", type=number(), default=None, metavar="R",
                      help="stop when the recommended mixture's expected regret (objective units) is below R")
    stop.add_argument("--width-below", dest="width_below", type=number(), default=None, metavar="W",
                      help="stop when p*'s widest 90%% interval is below W (the next runs then reduce p*'s width)")
    p.add_argument("--max-rounds", dest="max_rounds", type=int, default=5, help="at most this many plans (default 5)")
    p.add_argument("--k", type=int, default=4, help="at most this many runs a round (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of every fit and every chosen run (default 0)")
    p.add_argument("--objective", default="raw", choices=["raw", "normalized"], help="p*'s objective (default raw)")
    p.add_argument("--law", default="multilingual", choices=list(LAWS), help="the law fitted (default multilingual)")
    p.add_argument("--shared", default=None, help="exponents shared by all families, e.g. alpha,beta")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default 1000)")
    p.add_argument("--num-warmup", dest="num_warmup", type=int, default=None,
                   help="NUTS warm-up steps per chain (default 500)")
    p.add_argument("--no-extrapolation", action="store_true", help="fits skip the extrapolation term")
    add_engine_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (the loop's outcome); log to stderr")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_autopilot)
