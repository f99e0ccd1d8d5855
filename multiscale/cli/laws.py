"""`multiscale fit | recommend | predict | independence`: the law engine from the shell.

Losses are in nats/token in every output. `--json` prints exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _pairs(text: str | None, flag: str) -> dict[str, float] | None:
    """'a=0.3,b=0.7' -> {'a': 0.3, 'b': 0.7}; a ValueError naming the flag otherwise."""
    if text is None:
        return None
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"{flag}: expected FAMILY=VALUE pairs separated by commas, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"{flag}: value for {k.strip()!r} is not a number: {v!r}") from None
    if not out:
        raise ValueError(f"{flag}: no FAMILY=VALUE pairs given")
    return out


def _positive(flag):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {s!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{flag} must be positive, got {s!r}")
        return v
    return parse


def _emit(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj.to_dict() if hasattr(obj, "to_dict") else obj, default=_default))
    else:
        print(obj)


def _default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


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


def _fit(args) -> int:
    import warnings

    from multiscale.laws import fit_bayes, fit_point
    from multiscale.runs import read_runs

    if args.method == "nuts":
        from multiscale.laws.bayes import host_devices_for_chains

        host_devices_for_chains(args.chains)  # chains in parallel (before jax starts)
    df = read_runs(args.runs)
    _compile_cache()
    if args.method == "lbfgs":
        fit = fit_point(df, law=args.law, shared=args.shared)
    else:
        progress = sys.stderr.isatty() and not args.json
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # printed from fit.warnings below
            fit = fit_bayes(df, law=args.law, shared=args.shared, chains=args.chains,
                            draws=args.draws, warmup=args.warmup, seed=args.seed, progress=progress)
        for w in fit.warnings:
            print(f"multiscale fit: warning: {w}", file=sys.stderr)
    fit.save(args.out)
    if args.json:
        d = fit.to_dict()
        d["out"] = args.out
        d["params"] = fit.summary() if args.method == "nuts" else d["params"]
        print(json.dumps(d, default=_default))
    else:
        print(fit)
        print(f"saved to {args.out}")
    return 0


def _recommend(args) -> int:
    from multiscale.laws import load_fit, optimal_ratios

    fit = load_fit(args.fit_dir)
    rec = optimal_ratios(fit, args.N, args.D, objective=args.objective,
                         weights=_pairs(args.weights, "--weights"), floor=args.floor,
                         caps=_pairs(args.caps, "--caps"),
                         available_tokens=_pairs(args.tokens, "--tokens"), epochs=args.epochs)
    _emit(rec, args.json)
    return 0


def _predict(args) -> int:
    from multiscale.laws import load_fit, predict

    fit = load_fit(args.fit_dir)
    pred = predict(fit, args.N, args.D, _pairs(args.ratios, "--ratios"))
    _emit(pred, args.json)
    return 0


def _independence(args) -> int:
    from multiscale.laws import independence_test
    from multiscale.runs import read_runs

    res = independence_test(read_runs(args.runs))
    _emit(res, args.json)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit a scaling law to a run table (loss in nats/token)",
                              description="Fit a law: L-BFGS point fit (Hoffmann et al. approach 3) "
                                          "or NUTS posterior. Loss in nats/token.")
    p.add_argument("runs", help="run table (CSV or Parquet)")
    p.add_argument("--law", default="multilingual", choices=["multilingual", "chinchilla", "ratio"])
    p.add_argument("--method", default="lbfgs", choices=["lbfgs", "nuts"])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=None, help="warmup steps per chain, extra to --draws (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared", default=None, help="exponents shared by all families, e.g. alpha,beta")
    p.add_argument("--out", required=True, help="folder to save the fit in")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_fit)

    p = subparsers.add_parser("recommend", help="optimal sampling ratios at a target (N, D)")
    p.add_argument("fit_dir")
    p.add_argument("--N", type=_positive("--N"), required=True, help="non-embedding parameters")
    p.add_argument("--D", type=_positive("--D"), required=True, help="training tokens")
    p.add_argument("--objective", default="normalized", choices=["normalized", "raw"])
    p.add_argument("--weights", default=None, help="FAM=W,... (default equal)")
    p.add_argument("--floor", type=float, default=None, help="minimum ratio of every family")
    p.add_argument("--caps", default=None, help="FAM=MAX,... maximum ratios")
    p.add_argument("--tokens", default=None,
                   help="FAM=TOKENS,... available unique tokens (caps p*D <= epochs*tokens; enables "
                        "proportional, temperature and UniMax baselines)")
    p.add_argument("--epochs", type=float, default=None, help="epoch cap with --tokens (default 4)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_recommend)

    p = subparsers.add_parser("predict", help="predicted loss (nats/token) at (N, D, ratios)")
    p.add_argument("fit_dir")
    p.add_argument("--N", type=_positive("--N"), required=True)
    p.add_argument("--D", type=_positive("--D"), required=True)
    p.add_argument("--ratios", required=True, help="FAM=P,...")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_predict)

    p = subparsers.add_parser("independence",
                              help="does each family's loss depend only on its own ratio?")
    p.add_argument("runs", help="run table with p_<family> mixture columns")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_independence)
