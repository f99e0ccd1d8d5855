"""Fit benchmark: NUTS wall time and ESS/s vs a 1,000-resample bootstrap of the point fit.

Prints ONE JSON object. Tables are synthetic (known multilingual-law parameters, 1% noise):

- 5 families x 100 runs: NUTS (4 chains x 1000 draws, 1000 warmup, chains vectorized on one
  CPU device) -- wall time including compilation, min bulk ESS over all parameters, ESS/s;
  the approach-3 point fit on the full DESIGN.md start grid; a bootstrap of the point fit
  (1,000 resamples of whole runs). Restarting the full grid for every resample is
  unaffordable, so the measured bootstrap restarts each resample from the full-data optimum
  (the usual warm-start bootstrap); the full-grid bootstrap time is reported as an
  extrapolation (1,000 x the measured full-grid fit), labelled as such.
- 25 families x 500 runs: NUTS time with the same settings (`--skip-large` to leave it out).

Usage: python benchmarks/bench_fit.py [--draws 1000] [--chains 4] [--resamples 1000] [--skip-large | --only-large]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np


def _table(n_fam: int, n_runs: int, seed: int = 0):
    from multiscale.laws.synthetic import synthetic_runs, synthetic_truth

    N = (1e7, 3e7, 1e8, 3e8, 1e9)
    D = (1e9, 4e9, 1.6e10, 6.4e10)
    per_cell = max(1, n_runs // (len(N) * len(D)))
    truth = synthetic_truth(n_fam, seed=seed)
    return synthetic_runs(truth, N=N, D=D, n_mixtures=per_cell, noise=0.01, seed=seed, p_min=0.005)


def _log(msg):
    import sys

    print(f"[bench_fit {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _nuts(df, chains, draws):
    from multiscale.laws import fit_bayes

    _log(f"NUTS on {df['family'].nunique()} families x {df['run'].nunique()} runs")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law="multilingual", chains=chains, draws=draws, seed=0)
    wall = time.perf_counter() - t0
    d = fit.diagnostics
    return {"rows": int(len(df)), "families": len(fit.families), "chains": chains, "draws": draws,
            "wall_s": round(wall, 2), "sampling_s": round(d["seconds"], 2),
            "min_ess_bulk": round(d["min_ess_bulk"], 1),
            "ess_per_s": round(d["min_ess_bulk"] / wall, 2), "max_rhat": round(d["max_rhat"], 4),
            "divergences": d["divergences"], "warnings": fit.warnings}


def _bootstrap(df, resamples, seed=0):
    import pandas as pd

    from multiscale.laws.data import FitData, prepare
    from multiscale.laws.forms import get_law
    from multiscale.laws.point import fit_arrays, fit_point

    law = get_law("multilingual")
    _log("point fit, full grid")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = fit_point(df)
    t_full = time.perf_counter() - t0
    p = full.draws
    best = np.stack([np.log(p["A"][0]), np.log(p["B"][0]), np.log(p["E"][0]), p["alpha"][0],
                     p["beta"][0], p["gamma"][0]], axis=1)  # one start per family's optimum
    # Resample whole runs with numpy on the prepared arrays (no pandas in the loop).
    _, data, _ = prepare(df, law)
    run_of_row = pd.factorize(df["run"])[0]
    rows_of_run = [np.flatnonzero(run_of_row == r) for r in range(run_of_row.max() + 1)]
    rng = np.random.default_rng(seed)
    gam = []
    _log(f"bootstrap, {resamples} resamples")
    t0 = time.perf_counter()
    for _ in range(resamples):
        pick = rng.integers(0, len(rows_of_run), size=len(rows_of_run))
        idx = np.concatenate([rows_of_run[r] for r in pick])
        sub = FitData(families=data.families, fam_R=data.fam_R[idx], logN_R=data.logN_R[idx],
                      logD_R=data.logD_R[idx], logp_R=data.logp_R[idx], logL_R=data.logL_R[idx],
                      sem_rel_R=data.sem_rel_R[idx], N_ref=data.N_ref, D_ref=data.D_ref)
        out = fit_arrays(law, sub, (), starts=best)
        gam.append(out["raw"]["gamma"])
    t_boot = time.perf_counter() - t0
    gam = np.array(gam)
    return {"full_grid_fit_s": round(t_full, 2), "full_grid_starts": full.n_starts,
            "bootstrap_resamples": resamples, "bootstrap_warm_start_s": round(t_boot, 2),
            "bootstrap_full_grid_s_extrapolated": round(resamples * t_full, 1),
            "bootstrap_gamma_sd_mean": float(gam.std(axis=0).mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--only-large", action="store_true", help="only the 25 x 500 NUTS timing")
    ap.add_argument("--only-point", action="store_true", help="only the point fit and bootstrap")
    args = ap.parse_args()
    out = {"benchmark": "fit", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_avg_1m": os.getloadavg()[0]},
           "units": "seconds; ESS = min bulk ESS over all parameters and families"}
    if args.only_large:
        out["nuts_25x500"] = _nuts(_table(25, 500, seed=1), args.chains, args.draws)
        print(json.dumps(out))
        return
    small = _table(5, 100)
    if args.only_point:
        out["point_5x100"] = _bootstrap(small, args.resamples)
        print(json.dumps(out))
        return
    out["nuts_5x100"] = _nuts(small, args.chains, args.draws)
    out["point_5x100"] = _bootstrap(small, args.resamples)
    b = out["point_5x100"]
    out["nuts_vs_bootstrap"] = {
        "nuts_wall_s": out["nuts_5x100"]["wall_s"],
        "bootstrap_warm_start_s": b["bootstrap_warm_start_s"],
        "bootstrap_full_grid_s_extrapolated": b["bootstrap_full_grid_s_extrapolated"],
        "nuts_faster_than_warm_bootstrap": out["nuts_5x100"]["wall_s"] < b["bootstrap_warm_start_s"],
        "goal_nuts_under_60s": out["nuts_5x100"]["wall_s"] < 60}
    if not args.skip_large:
        out["nuts_25x500"] = _nuts(_table(25, 500, seed=1), args.chains, args.draws)
    out["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
