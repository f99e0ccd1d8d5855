"""Fit and recommend from runs another trainer made: only the run table is needed.

    python examples/fit_your_runs.py                       # the RegMix proxy runs (real data)
    python examples/fit_your_runs.py --runs my_runs.csv --law multilingual --N 1.2e9 --D 5e10

A run table has one row per (run, family) with the columns run, family, N (non-embedding
parameters), D (training tokens of the run), p (the family's sampling ratio), loss (its mean
held-out cross-entropy, nats/token), and optionally loss_sem and one p_<family> column per family
(the whole mixture, for the independence test). Nothing here imports TensorFlow or builds a model.

Without --runs, it uses the RegMix runs shipped in the package (Liu et al. 2024, arXiv
2407.01492, MIT licence: 512 models of 1M parameters trained on Dirichlet mixtures of 17 Pile
domains, `multiscale.datasets.load_regmix`). All RegMix runs share one N and D, so the law reduces
to `L_i = c_i * p_i^(-gamma_i)` (law `ratio`); a domain with weight 0 in a run has no row for that
run (the law needs p > 0), and only the 13 evaluated domains get rows. It fits the 512 training
runs, scores the predictions on the 256 test runs, runs the independence test and recommends
ratios over the evaluated domains.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    from multiscale.laws.forms import LAWS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", help="your run table (CSV or Parquet); default: the RegMix runs")
    ap.add_argument("--law", default=None, choices=sorted(LAWS),
                    help="default: ratio for RegMix, multilingual otherwise")
    ap.add_argument("--method", default="lbfgs", choices=("lbfgs", "nuts"))
    ap.add_argument("--N", type=float, help="model size for the recommendation (default: largest in the table)")
    ap.add_argument("--D", type=float, help="training tokens for the recommendation (default: largest)")
    ap.add_argument("--out", default="fit_your_runs_out", help="where the fit and the table go")
    args = ap.parse_args(argv)

    from multiscale.datasets import load_regmix
    from multiscale.decisions import optimal_ratios
    from multiscale.laws import fit_bayes, fit_point, independence_test, score
    from multiscale.runs import mixture_columns, read_runs, validate_runs, write_runs

    if args.runs:
        train, test = read_runs(args.runs), None
        law = args.law or "multilingual"
    else:
        train, test = load_regmix("train"), load_regmix("test")
        law = args.law or "ratio"
        print(f"RegMix: {train['run'].nunique()} training runs -> {len(train)} rows over "
              f"{train['family'].nunique()} domains; {test['run'].nunique()} test runs held out")
    train = validate_runs(train, law=law)
    os.makedirs(args.out, exist_ok=True)
    write_runs(train, os.path.join(args.out, "runs.csv"))

    # fit: Hoffmann et al. approach 3 (L-BFGS from a grid) or NUTS
    if args.method == "lbfgs":
        fit = fit_point(train, law=law)
    else:
        fit = fit_bayes(train, law=law, chains=4, draws=500, warmup=500, seed=0)
    fit.save(os.path.join(args.out, "fit"))
    print(fit)

    # how well does it predict runs it never saw?
    if test is not None:
        m = score(fit, test[test["family"].isin(fit.families)]).overall
        print(f"held-out test runs: R^2 = {m['r2']:.3f}, MAPE = {m['mape']:.2f}% of the loss "
              f"(nats/token), {m['n']} rows")

    # does each domain's loss depend only on its own ratio?
    if mixture_columns(train):
        try:
            print(independence_test(train))
        except ValueError as err:
            print(f"independence test not run: {err}")

    N = args.N or float(train["N"].max())
    D = args.D or float(train["D"].max())
    rec = optimal_ratios(fit, N, D)
    print(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
