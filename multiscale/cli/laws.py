"""`multiscale fit | recommend | predict | independence`: the law engine from the shell.

Losses are in nats/token in every output. `--json` prints exactly one JSON object.
Every argument is checked before any work (paths first); a mistake raises a
`multiscale.errors` error naming the flag, which the CLI prints as one line (exit 2).
FAMILY=VALUE flags are passed to the library as text, which reads them once
(`multiscale.mixture.parse_pairs`); its errors name its arguments, which `multiscale.cli`
renders as flags.
"""

from __future__ import annotations

import math
import os
import sys

from multiscale.cli._common import add_overwrite_argument, check_output, number
from multiscale.errors import InputError, MissingFileError
from multiscale.fileio import is_remote
from multiscale.laws.forms import LAWS
from multiscale.laws.noise import DEFAULT_NOISE, NOISE_MODELS

MAX_CHAINS = 1024  # NUTS chains: each asks XLA for a CPU device


def _finite(value: float, flag: str, *, positive: bool = True) -> float:
    if not math.isfinite(value) or (positive and value <= 0):
        raise InputError(f"{flag} must be a finite{' positive' if positive else ''} number, got {value!r}")
    return value


def _at_least(value: int, flag: str, low: int) -> int:
    if value < low:
        raise InputError(f"{flag} must be >= {low}, got {value}")
    return value


def _emit(obj, as_json: bool) -> None:
    """`obj` as text, or as one strict JSON object (NaN and inf written as null)."""
    from multiscale.fileio import dumps, json_safe

    print(dumps(json_safe(obj.to_dict() if hasattr(obj, "to_dict") else obj)) if as_json else obj)


def _compile_cache() -> None:
    """Keep jax's compiled fit programs on disk between CLI calls (the point fit's two
    programs take seconds to compile). Directory: $MULTISCALE_JAX_CACHE, default
    ~/.cache/multiscale/jax; set it to an empty string to turn the cache off."""
    import os

    import jax

    path = os.environ.get("MULTISCALE_JAX_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "multiscale", "jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _check_fit_args(args) -> None:
    """Everything `fit` needs, checked before any work: the table, the output folder, the
    NUTS settings and the shared exponents."""
    from multiscale.fileio import as_path
    from multiscale.laws.fits import check_fit_dir
    from multiscale.laws.forms import check_shared

    runs = as_path(args.runs)  # local or gs://, as read_runs reads it
    if not runs.exists():
        raise MissingFileError(f"run table {args.runs!r} does not exist")
    if not runs.is_file():
        raise MissingFileError(f"run table {args.runs!r} is a folder, not a CSV or Parquet file")
    check_fit_dir(args.out, what="--out")
    check_output(args.out, folder=True, inputs={"table RUNS": args.runs}, marker=("fit.json",),
                 overwrite=args.overwrite, ask="--overwrite")
    _at_least(args.chains, "--chains", 1)
    if args.chains > MAX_CHAINS:
        raise InputError(f"--chains must be <= {MAX_CHAINS} (one CPU device each), got {args.chains}")
    _at_least(args.draws, "--draws", 1)
    if args.num_warmup is not None:
        _at_least(args.num_warmup, "--num-warmup", 0)
    check_shared(LAWS[args.law], args.shared)
    if args.noise is not None and args.method != "nuts":
        raise InputError("--noise applies to --method nuts only (a point fit has no noise model)")


def _fit_bayes(df, args):
    import warnings

    from multiscale.laws import fit_bayes

    progress = sys.stderr.isatty() and not (args.json or args.no_progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # printed from fit.warnings below
        fit = fit_bayes(df, law=args.law, shared=args.shared, chains=args.chains, draws=args.draws,
                        warmup=args.num_warmup, seed=args.seed, progress=progress,
                        extrapolation=not args.no_extrapolation, strict=args.strict,
                        noise=args.noise or DEFAULT_NOISE)
    for w in fit.warnings:
        print(f"multiscale fit: warning: {w}", file=sys.stderr)
    return fit


def _fit(args) -> int:
    from multiscale.laws import fit_point
    from multiscale.runs import read_runs

    _check_fit_args(args)
    if args.method == "nuts":
        from multiscale.laws.bayes import host_devices_for_chains

        host_devices_for_chains(args.chains)  # chains in parallel (before jax starts)
    df = read_runs(args.runs)
    _compile_cache()
    if args.method == "lbfgs":
        fit = fit_point(df, law=args.law, shared=args.shared, strict=args.strict)
    else:
        fit = _fit_bayes(df, args)
    fit.save(args.out)  # refuses a fit that does not load back
    if args.json:
        d = fit.to_dict()
        d["out"] = args.out
        d["params"] = fit.summary() if args.method == "nuts" else d["params"]
        _emit(d, True)
    else:
        print(fit)
        if args.method == "nuts":
            from multiscale.laws.extrapolation import describe

            print(describe(fit.extrapolation))
        print(f"saved to {args.out}")
    return 0


def _recommend(args) -> int:
    from multiscale.decisions.recommend import decision_families, optimal_ratios
    from multiscale.laws import load_fit

    fit = load_fit(args.fit_dir)
    if args.candidates is not None:
        from multiscale.decisions.choose import choose_candidates
        from multiscale.runs import read_runs

        if args.objective not in (None, "raw"):
            raise InputError("--candidates chooses by the raw objective (weighted mean loss); give --objective raw")
        unused = [flag for flag, v in (("--floor", args.floor), ("--cap", args.cap), ("--tokens", args.tokens),
                                       ("--epochs", args.epochs), ("--unique-tokens", args.unique_tokens)) if v]
        if unused:
            raise InputError(f"--candidates chooses among measured mixtures; {', '.join(unused)} do not apply")
        fitted = read_runs(args.fitted) if args.fitted is not None else None
        _emit(choose_candidates(fit, read_runs(args.candidates), args.N, args.D, weights=args.weights, fitted=fitted),
              args.json)
        return 0
    if args.fitted is not None:
        raise InputError("--fitted goes with --candidates (it corrects the candidates' effects)")
    if args.epochs is not None and args.tokens is None and not all(
            f in fit.unique_tokens for f in decision_families(fit)):
        raise InputError("--epochs caps the ratios at epochs * tokens / D, which needs --tokens (the fit has no "
                         "unique tokens of every family); give --tokens FAM=TOKENS,... or drop --epochs")
    rec = optimal_ratios(fit, args.N, args.D, objective=args.objective or "normalized", weights=args.weights,
                         floor=args.floor,
                         caps=args.cap, available_tokens=args.tokens, epochs=args.epochs,
                         unique_tokens=args.unique_tokens)
    rec.notes.extend(_weights_notes(fit.families, args.weights))
    _emit(rec, args.json)
    return 0


def _weights_notes(fams, weights) -> list[str]:
    """A note naming the families that --weights left out (they get weight 1)."""
    if weights is None or "=" not in weights:
        return []
    from multiscale.mixture import parse_pairs

    named = parse_pairs(weights, arg="weights", known=fams)
    left = [f for f in fams if f not in named]
    return [f"--weights: {', '.join(left)} not named, so weight 1 each (before normalizing to sum 1)"] if left else []


def _predict(args) -> int:
    from multiscale.laws import load_fit, predict

    if args.runs is not None:
        return _predict_table(args)
    missing = [flag for flag, v in (("--N", args.N), ("--D", args.D), ("--ratios", args.ratios)) if v is None]
    if missing:
        raise InputError(f"predict needs {', '.join(missing)} (or --runs TABLE --out PRED.csv)")
    _finite(args.N, "--N")
    _finite(args.D, "--D")
    fit = load_fit(args.fit_dir)
    pred = predict(fit, args.N, args.D, args.ratios)
    _emit(pred, args.json)
    return 0


def _predict_table(args) -> int:
    """`predict FIT --runs TABLE --out PRED.csv`: the 90% posterior-predictive loss of every row."""
    from multiscale.fileio import atomic_write_text
    from multiscale.laws import load_fit
    from multiscale.laws.predict import predict_table
    from multiscale.runs import read_runs

    given = [flag for flag, v in (("--N", args.N), ("--D", args.D), ("--ratios", args.ratios)) if v is not None]
    if given:
        raise InputError(f"predict --runs predicts the table's rows; drop {', '.join(given)}")
    if args.out is None:
        raise InputError("predict --runs needs --out PRED.csv")
    if not os.path.isfile(args.runs) and not is_remote(args.runs):
        raise MissingFileError(f"run table {args.runs!r} does not exist or is a folder")
    check_output(args.out, folder=False, inputs={"table --runs": args.runs, "fit FIT_DIR": args.fit_dir},
                 overwrite=args.overwrite, ask="--overwrite")  # never an input; a result only when asked
    fit = load_fit(args.fit_dir)
    fit.warn_unidentified()
    table = predict_table(fit, read_runs(args.runs))
    atomic_write_text(args.out, table.to_csv(index=False))
    summary = {"out": args.out, "rows": int(len(table)), "law": fit.law.name, "method": fit.method,
               "loss_units": "nats/token",
               "rows_beyond_fitted_range": int((table["extrapolation_sd_log"] > 0).sum())}
    _emit(summary if args.json else f"{len(table)} predictions (median, 90% interval, nats/token) "
          f"written to {args.out}", args.json)
    return 0


def _independence(args) -> int:
    from multiscale.laws import independence_test
    from multiscale.runs import read_runs

    res = independence_test(read_runs(args.runs))
    _emit(res, args.json)
    return 0


def _laws(args) -> int:
    from multiscale.laws.forms import law_info

    infos = [law_info(law) for law in LAWS.values()]
    if args.json:
        _emit({"laws": infos}, True)
        return 0
    for i in infos:
        uses = [k[len("uses_"):] for k in ("uses_scale", "uses_ratio", "uses_mixture", "uses_unique_tokens") if i[k]]
        print(f"{i['name']:20s} {i['form']}\n{'':20s} params {', '.join(i['params'])}; uses {', '.join(uses)}")
    return 0


def _register_fit(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit a scaling law to a run table (loss in nats/token)",
                              description="Fit a law: L-BFGS point fit (Hoffmann et al. approach 3) "
                                          "or NUTS posterior. Loss in nats/token.")
    p.add_argument("runs", help="run table (CSV or Parquet)")
    p.add_argument("--law", default="multilingual", choices=list(LAWS),
                   help="; ".join(f"{name}: {law.doc}" for name, law in LAWS.items()))
    p.add_argument("--method", default="lbfgs", choices=["lbfgs", "nuts"])
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default 1000)")
    p.add_argument("--num-warmup", dest="num_warmup", type=int, default=None,
                   help="NUTS warm-up steps per chain, extra to --draws (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared", default=None, help="exponents shared by all families, e.g. alpha,beta")
    p.add_argument("--out", required=True, help="folder to save the fit in")
    add_overwrite_argument(p, "fit in --out")
    p.add_argument("--strict", action="store_true",
                   help="refuse a fit whose parameters the runs cannot pin down (too few distinct N, D or p "
                        "per family, a parameter at a bound) instead of warning")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no NUTS progress bar")
    p.add_argument("--no-extrapolation", action="store_true",
                   help="NUTS: skip the extrapolation term (the leave-largest-size-out refits that widen "
                        "intervals beyond the fitted N and D)")
    p.add_argument("--noise", default=None, choices=list(NOISE_MODELS),
                   help=f"NUTS: the noise model (default {DEFAULT_NOISE}): constant, one noise scale per family; "
                        "scale, the noise scale also a power of N and of the family's share p "
                        "(benchmarks/FIT_RESULTS.md, 'Noise that varies'); size, the runs of one model size "
                        "share an offset (benchmarks/FIELD_PRIOR.md, 'per-size offsets')")
    p.set_defaults(handler=_fit)


def register(subparsers) -> None:
    _register_fit(subparsers)
    p = subparsers.add_parser("laws", help="the registered scaling laws and what each reads",
                              description="Every law that fit, predict, recommend and compare accept.")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: laws with name, form, params, uses_scale, uses_ratio, uses_mixture, "
                        "uses_unique_tokens")
    p.set_defaults(handler=_laws)
    p = subparsers.add_parser(
        "recommend", help="optimal sampling ratios at a target (N, D)",
        description="Optimal sampling ratios at a target (N, D) from a saved fit: the robust p* (least expected "
                    "regret), the per-draw p*, baselines, expected regret and P(best); with --candidates, the "
                    "choice among mixtures trained at proxy scale. Beyond the fitted sizes and budgets the losses "
                    "carry the fit's extrapolation term: log-loss widened by kappa * log k (k how far N or D lies "
                    "beyond the largest fitted), kappa a field prior measured on four public scaling ladders "
                    "shipped with the package (Gadre et al. 2024, Porian et al. 2024, Gemstone 2025, OLMo 2; "
                    "0.024 per unit log k before the table's own evidence, recomputed by "
                    "benchmarks/bench_extrapolation_field.py), updated by a NUTS fit's own leave-largest-out "
                    "refits and saved in fit.json; p* and regrets do not depend on it. Loss in nats/token.")
    p.add_argument("fit_dir")
    p.add_argument("--N", type=number(), required=True, help="non-embedding parameters")
    p.add_argument("--D", type=number(), required=True, help="training tokens")
    p.add_argument("--objective", default=None, choices=["normalized", "raw"],
                   help="default: normalized; raw with --candidates")
    p.add_argument("--candidates", default=None, metavar="TABLE",
                   help="a run table of candidate mixtures trained at proxy scale (p_<family> columns): choose "
                        "among them for (N, D) by the law's prediction times each one's measured residual, shrunk "
                        "by empirical Bayes toward the candidates' mean (a per-mixture effect shared across "
                        "scales), beside the single-scale choice (least measured loss at the largest proxy N) and "
                        "the law's p*, each with expected regret and P(best). The single-scale choice is advised "
                        "over the law's when the effects outweigh the run noise (weight on the measured effects "
                        "> 0.5) or the law's pick is not better in expectation")
    p.add_argument("--fitted", default=None, metavar="TABLE",
                   help="with --candidates: the run table the fit was fitted on; the effects' spread is then "
                        "estimated from leave-one-mixture-out point refits (a fit that saw the candidates' runs "
                        "absorbs part of their effects); one refit per candidate")
    p.add_argument("--weights", default=None, metavar="W|FAM=W,...",
                   help="family weights of the objective: one number for every family, or per family; a "
                        "family not named gets 1 (default: all 1); normalized to sum 1 (shown in --json)")
    p.add_argument("--floor", default=None, metavar="P|FAM=P,...",
                   help="minimum ratio: one number for every family, or per family")
    p.add_argument("--cap", dest="cap", default=None, metavar="P|FAM=P,...",
                   help="maximum ratio: one number for every family, or per family")
    p.add_argument("--tokens", default=None,
                   help="FAM=TOKENS,... available unique tokens (caps p*D <= epochs*tokens; enables "
                        "proportional, temperature and UniMax baselines; default: the unique tokens of the "
                        "fitted table, where it has them)")
    p.add_argument("--epochs", type=number(), default=None,
                   help="epoch cap with --tokens, or with the unique tokens the fit saw (default 4)")
    p.add_argument("--unique-tokens", dest="unique_tokens", default=None, metavar="FAM=U,...",
                   help="unique tokens of each family at the target, for laws that read them "
                        "(repetition; default: the U the fit saw)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_recommend)

    p = subparsers.add_parser("predict", help="predicted loss (nats/token) at (N, D, ratios), or for "
                                              "every row of a run table (--runs, --out)")
    p.add_argument("fit_dir")
    p.add_argument("--N", type=number(), default=None, help="non-embedding parameters")
    p.add_argument("--D", type=number(), default=None, help="training tokens")
    p.add_argument("--ratios", default=None, metavar="FAM=P,...",
                   help="ratios of some families (summing to at most 1) or of all (summing to 1)")
    p.add_argument("--runs", default=None, metavar="TABLE",
                   help="a run table: predict each row (90%% posterior predictive) into --out")
    p.add_argument("--out", default=None, metavar="PRED.csv",
                   help="with --runs: CSV of run, family, N, D, p, median, q05, q95, sd_log, "
                        "extrapolation_sd_log, loss (never --runs itself or a file of the fit)")
    add_overwrite_argument(p, "--out file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_predict)

    p = subparsers.add_parser("independence",
                              help="does each family's loss depend only on its own ratio?")
    p.add_argument("runs", help="run table with p_<family> mixture columns")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_independence)
