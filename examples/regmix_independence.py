"""Does a domain's loss depend only on its own sampling ratio? The real RegMix runs answer.

RegMix (Liu et al. 2024, arXiv 2407.01492) trained 512 (+256 held-out) 1M-parameter models on
random mixtures of 17 Pile domains. multiscale ships their tables (`multiscale.datasets`, MIT
licence) as a run table (one row per run and evaluated domain; rows where the domain had weight 0
are dropped, since ``c * p^(-gamma)`` cannot describe a domain absent from training). This example
runs the independence test, fits the ratio law on the training runs and scores it on the held-out
runs.

Run from the project root:  .venv/bin/python examples/regmix_independence.py [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

from multiscale.datasets import REGMIX_FOLDER, regmix_run_table
from multiscale.laws import fit_point, independence_test, score


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REGMIX_FOLDER),
                    help="folder with the RegMix CSV files (default: the copies shipped in multiscale)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    train, dropped = regmix_run_table(args.data, "train")
    test, dropped_test = regmix_run_table(args.data, "test")
    indep = independence_test(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_point(train, law="ratio")
    held = score(fit, test)
    if args.json:
        print(json.dumps({"rows": len(train), "dropped_zero_weight": dropped,
                          "independence": indep.to_dict(), "ratio_fit": fit.to_dict(),
                          "heldout": held.to_dict()}))
        return
    print(f"RegMix train runs: {train['run'].nunique()} runs x {train['family'].nunique()} evaluated "
          f"domains = {len(train)} rows; {dropped} (run, domain) pairs dropped (weight 0)")
    print()
    print(indep)
    print()
    print(fit)
    print()
    print(f"held-out RegMix runs ({test['run'].nunique()} runs, {dropped_test} zero-weight pairs dropped):")
    print(held)
    own = [f for f, r in indep.families.items() if r.verdict == "own ratio suffices"]
    dep = [f for f, r in indep.families.items() if r.verdict != "own ratio suffices"]
    print()
    print(f"own ratio suffices for {len(own)} domains ({', '.join(own)}); "
          f"{len(dep)} domains also depend on other domains' ratios ({', '.join(dep)}).")


if __name__ == "__main__":
    main()
