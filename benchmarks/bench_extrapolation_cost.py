"""What the extrapolation term costs: NUTS on 5 families x 100 runs with and without it.

`fit_bayes` learns the extrapolation term (`multiscale.laws.extrapolation`) by refitting without
the largest fitted size and budget: on this table (5 sizes, 4 budgets) both refits, run as one
stacked NUTS program with 1,000 draws in all after the fit's warm-up (`bayes.refit_settings`). This times
the library defaults (4 chains x 1000 draws, 500 warm-up, one XLA CPU device per chain) on the
table of `bench_fit.py`, alternating with and without the term in one process, and prints one
JSON object. The goal of the fit benchmark is <= 60 s for the default fit on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from machine import cpu_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1, help="with/without pairs to time (default 1)")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(4)  # before jax starts, as `multiscale fit --method nuts` does
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_fit import _table

    from multiscale.laws import fit_bayes

    df = _table(5, 100)
    out = {"benchmark": "extrapolation_cost", "cpu": cpu_model(), "cpus": os.cpu_count(),
           "rows": int(len(df)), "with_term": [], "without_term": []}
    for _ in range(args.pairs):
        for key, term in (("with_term", True), ("without_term", False)):
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_bayes(df, law="multilingual", extrapolation=term, seed=0)
            out[key].append({"wall_s": round(time.perf_counter() - t0, 1), "load_avg_1m_start": load0,
                             "max_rhat": round(float(fit.diagnostics["max_rhat"]), 4),
                             "seconds_fit": round(float(fit.diagnostics["seconds"]), 1),
                             "seconds_refits": round(float(fit.diagnostics.get("seconds_extrapolation", 0.0)), 1),
                             "refit": fit.options.get("extrapolation_refit"),
                             "kappa": (fit.extrapolation or {}).get("kappa")})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
