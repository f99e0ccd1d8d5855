"""Fit and recommend from runs another trainer made: only the run table is needed.

    python examples/fit_your_runs.py                       # the RegMix proxy runs (real data)
    python examples/fit_your_runs.py --runs my_runs.csv --law multilingual --N 1.2e9 --D 5e10

A run table has one row per (run, family) with the columns run, family, N (non-embedding
parameters), D (training tokens of the run), p (the family's sampling ratio), loss (its mean
held-out cross-entropy, nats/token), and optionally loss_sem and one p_<family> column per family
(the whole mixture, for the independence test). Nothing here imports TensorFlow or builds a model.

Without --runs, the script converts the RegMix runs (Liu et al. 2024, arXiv 2407.01492: 512
models of 1M parameters trained on Dirichlet mixtures of 17 Pile domains; files in
../shared/datasets/regmix, read in place) into such a table. All RegMix runs share one N and D, so
the law reduces to `L_i = c_i * p_i^(-gamma_i)` (law `ratio`); a domain with weight 0 in a run has
no row for that run (the law needs p > 0), and only the 13 evaluated domains get rows. It fits the
512 training runs, scores the predictions on the 256 test runs, runs the independence test and
recommends ratios over the evaluated domains.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# read in place (../shared/datasets/regmix beside the project), or from $MULTISCALE_REGMIX / --regmix
REGMIX = os.environ.get("MULTISCALE_REGMIX", os.path.join(os.path.dirname(ROOT), "shared", "datasets", "regmix"))
# RegMix's proxy setup (1M-parameter models); D is not used by the ratio law but the run table needs it.
REGMIX_N, REGMIX_D = 1e6, 1e9


def regmix_table(split: str = "train", folder: str = REGMIX) -> pd.DataFrame:
    """The RegMix `split` ('train' or 'test') runs as a run table (rows with p > 0 only)."""
    mix_path = os.path.join(folder, f"{split}_mixture_1m.csv")
    loss_path = os.path.join(folder, f"{split}_pile_loss_1m.csv")
    for path in (mix_path, loss_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing (RegMix tables expected in {folder})")
    mix = pd.read_csv(mix_path).set_index("index")
    loss = pd.read_csv(loss_path).set_index("index")
    mix.columns = [c.removeprefix("train_the_pile_") for c in mix.columns]
    loss.columns = [c.removeprefix("metric/the_pile_").removesuffix("_val_loss") for c in loss.columns]
    domains = list(mix.columns)
    rows = []
    for idx in loss.index:
        p = mix.loc[idx]
        for dom in loss.columns:
            if p[dom] > 0:
                rows.append({"run": f"regmix-{split}-{idx}", "family": dom, "N": REGMIX_N, "D": REGMIX_D,
                             "p": float(p[dom]), "loss": float(loss.loc[idx, dom]),
                             **{f"p_{d}": float(p[d]) for d in domains}})
    return pd.DataFrame(rows)


def score(fit, df: pd.DataFrame) -> dict:
    """R², MAPE and 90% coverage of the fit's predictions for the rows of `df`."""
    from multiscale.report import fit_metrics, prediction_table

    table = prediction_table(fit, df, heldout=list(df["run"].unique()))
    return fit_metrics(table)["heldout"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", help="your run table (CSV or Parquet); default: the RegMix runs")
    ap.add_argument("--law", default=None, choices=("multilingual", "chinchilla", "ratio"),
                    help="default: ratio for RegMix, multilingual otherwise")
    ap.add_argument("--method", default="lbfgs", choices=("lbfgs", "nuts"))
    ap.add_argument("--N", type=float, help="model size for the recommendation (default: largest in the table)")
    ap.add_argument("--D", type=float, help="training tokens for the recommendation (default: largest)")
    ap.add_argument("--out", default="fit_your_runs_out", help="where the fit and the table go")
    ap.add_argument("--regmix", default=REGMIX, help="folder of the RegMix CSV files (without --runs)")
    args = ap.parse_args(argv)

    from multiscale.laws import fit_bayes, fit_point, independence_test, optimal_ratios
    from multiscale.runs import read_runs, validate_runs

    if args.runs:
        train, test = read_runs(args.runs), None
        law = args.law or "multilingual"
    else:
        train, test = regmix_table("train", args.regmix), regmix_table("test", args.regmix)
        law = args.law or "ratio"
        print(f"RegMix: {train['run'].nunique()} training runs -> {len(train)} rows over "
              f"{train['family'].nunique()} domains; {test['run'].nunique()} test runs held out")
    train = validate_runs(train, law=law)
    os.makedirs(args.out, exist_ok=True)
    train.to_csv(os.path.join(args.out, "runs.csv"), index=False)

    # fit: Hoffmann et al. approach 3 (L-BFGS from a grid) or NUTS
    if args.method == "lbfgs":
        fit = fit_point(train, law=law)
    else:
        fit = fit_bayes(train, law=law, chains=4, draws=500, warmup=500, seed=0)
    fit.save(os.path.join(args.out, "fit"))
    print(fit)

    # how well does it predict runs it never saw?
    if test is not None:
        m = score(fit, validate_runs(test[test["family"].isin(fit.families)]))
        print(f"held-out test runs: R^2 = {m['r2']:.3f}, MAPE = {m['mape_pct']:.2f}% of the loss "
              f"(nats/token), {m['rows']} rows")

    # does each domain's loss depend only on its own ratio?
    if any(c.startswith("p_") for c in train.columns):
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
