"""Fit benchmark: NUTS wall time and ESS/s vs a 1,000-resample bootstrap of the point fit.

Prints ONE JSON object. Tables are synthetic (known multilingual-law parameters, 1% noise):

- 5 families x 100 runs: NUTS with the library defaults (4 chains x 1000 draws after 500
  warm-up steps per chain; dense mass matrix; chains run one after another on one CPU
  device) -- wall time including compilation, leapfrog steps per draw, min bulk ESS over
  all parameters, ESS/s.
- The approach-3 point fit on the full start grid (9,000 starts per family; docs/design.md,
  "Laws: forms, fits, optimal ratios"): the
  first call (compilation included), a second call (compiled), and the exhaustive search
  (every start to convergence) with a check that both reach the same optimum.
- The bootstrap comparator, as specified: the full-grid point fit on each resample of whole
  runs. It is timed on `--boot-sample` resamples and extrapolated to `--resamples`. Beside
  it, as extra information, the warm-started bootstrap (each resample restarts from the
  full-data optimum only), timed on all `--resamples` resamples.
- 25 families x 500 runs: NUTS time with the same settings (`--skip-large` to leave it out).
- `--only-mixture`: the laws of the whole mixture (point fits, NUTS of transfer, the coupled
  solver); `--only-transfer-nuts`: only NUTS of the transfer law on 5 families x 96 runs with
  the library defaults (issue 12's goal: <= 60 s on 2 cores).

Usage: python benchmarks/bench_fit.py [--draws 1000] [--chains 4] [--resamples 1000]
       [--boot-sample 5] [--skip-large | --only-large | --only-point | --only-mixture |
       --only-transfer-nuts]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def _table(n_fam: int, n_runs: int, seed: int = 0):
    from fixtures.synthetic import synthetic_runs, synthetic_truth

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
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law="multilingual", chains=chains, draws=draws, seed=0)
    wall = time.perf_counter() - t0
    d = fit.diagnostics
    steps = fit.idata.sample_stats["n_steps"].values
    return {"rows": int(len(df)), "families": len(fit.families), "chains": chains, "draws": draws,
            "warmup": fit.options["warmup"], "dense_mass": fit.options["dense_mass"],
            "chain_method": fit.options["chain_method"],
            "wall_s": round(wall, 2), "sampling_s": round(d["seconds"], 2),
            "leapfrog_steps_per_draw_mean": round(float(steps.mean()), 1),
            "min_ess_bulk": round(d["min_ess_bulk"], 1),
            "ess_per_s": round(d["min_ess_bulk"] / wall, 2), "max_rhat": round(d["max_rhat"], 4),
            "divergences": d["divergences"], "warnings": fit.warnings,
            "load_avg_1m_start": load0, "load_avg_1m_end": os.getloadavg()[0]}


def _point(df, resamples, boot_sample, seed=0):
    import pandas as pd

    from multiscale.laws.data import prepare
    from multiscale.laws.forms import get_law
    from multiscale.laws.point import fit_arrays, fit_point

    law = get_law("multilingual")
    out = {"load_avg_1m_start": os.getloadavg()[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _log("point fit, full grid (first call: compilation included)")
        t0 = time.perf_counter()
        full = fit_point(df)
        out["full_grid_first_call_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        full = fit_point(df)
        t_full = time.perf_counter() - t0
        out["full_grid_s"] = round(t_full, 2)
        out["full_grid_starts_per_family"] = full.n_starts
        out["search"] = full.search
        _log("point fit, exhaustive (every start to convergence)")
        t0 = time.perf_counter()
        ex = fit_point(df, keep=None)
        out["exhaustive_s"] = round(time.perf_counter() - t0, 2)
    rel = max(abs(full.objective[f] / ex.objective[f] - 1) for f in full.families)
    out["max_rel_objective_diff_vs_exhaustive"] = rel
    out["same_optimum_as_exhaustive"] = bool(rel <= 1e-9)
    p = full.draws
    best = np.stack([np.log(p["A"][0]), np.log(p["B"][0]), np.log(p["E"][0]), p["alpha"][0],
                     p["beta"][0], p["gamma"][0]], axis=1)  # one start per family's optimum
    # Resample whole runs with numpy on the prepared arrays (no pandas in the loop).
    df_ok, data, _ = prepare(df, law)
    run_of_row = pd.factorize(df_ok["run"])[0]
    rows_of_run = np.arange(run_of_row.max() + 1)
    rng = np.random.default_rng(seed)

    def resample():
        # whole runs drawn with replacement: each row weighted by its run's draw count
        counts = np.bincount(rng.integers(0, len(rows_of_run), size=len(rows_of_run)),
                             minlength=len(rows_of_run))
        return dataclasses.replace(data, weight_R=counts[run_of_row].astype(float))

    _log(f"bootstrap as specified (full grid per resample), {boot_sample} resamples timed")
    t0 = time.perf_counter()
    for _ in range(boot_sample):
        fit_arrays(law, resample(), ())
    per = (time.perf_counter() - t0) / boot_sample
    out["bootstrap_full_grid_s_per_resample"] = round(per, 2)
    out["bootstrap_full_grid_resamples_timed"] = boot_sample
    out["bootstrap_full_grid_s_extrapolated"] = round(per * resamples, 1)
    _log(f"warm-started bootstrap, {resamples} resamples")
    gam = []
    t0 = time.perf_counter()
    for _ in range(resamples):
        gam.append(fit_arrays(law, resample(), (), starts=best).raw["gamma"])
    out["bootstrap_resamples"] = resamples
    out["bootstrap_warm_start_s"] = round(time.perf_counter() - t0, 2)
    out["bootstrap_gamma_sd_mean"] = float(np.array(gam).std(axis=0).mean())
    out["load_avg_1m_end"] = os.getloadavg()[0]
    return out


def _nuts_transfer(chains: int, draws: int) -> dict:
    """The goal of issue 12: NUTS of the transfer law on 5 families x 96 runs with the library
    defaults (`fit_bayes`: warm-up, dense mass, chains started at the point fit), wall time
    including the point fit of the start and compilation."""
    from fixtures.synthetic_mixture import mixture_runs, mixture_truth

    from multiscale.laws import fit_bayes

    df = mixture_runs("transfer", mixture_truth("transfer", 5, seed=0), seed=0, n_mixtures=8)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    fit = fit_bayes(df, law="transfer", chains=chains, draws=draws, seed=0, warn=False)
    wall = time.perf_counter() - t0
    return {"rows": int(len(df)), "wall_s": round(wall, 2),
            "sampling_s": round(fit.diagnostics["seconds"], 2), "chains": chains, "draws": draws,
            "warmup": fit.options["warmup"], "dense_mass": fit.options["dense_mass"],
            "chain_method": fit.options["chain_method"], "max_rhat": fit.diagnostics["max_rhat"],
            "min_ess_bulk": fit.diagnostics["min_ess_bulk"], "divergences": fit.diagnostics["divergences"],
            "goal_under_60s": wall <= 60, "load_avg_1m_start": load0,
            "load_avg_1m_end": os.getloadavg()[0]}


def _mixture(chains: int, draws: int) -> dict:
    """Laws of the whole mixture on 5 families x ~100 runs (their synthetic tables): each point
    fit (full seed grid + extra starts, compilation included), NUTS of transfer (library
    defaults), and the coupled p* solver over 4,000 draws x 5 families (compilation included)."""
    from fixtures.synthetic_mixture import mixture_runs, mixture_truth

    from multiscale.decisions.ratios import solve_coupled
    from multiscale.laws import fit_point
    from multiscale.laws.forms import get_law

    out = {}
    for law in ("transfer", "repetition", "mixing"):
        df = mixture_runs(law, mixture_truth(law, 5, seed=0), seed=0, n_mixtures=8, D=(2e9, 2e10, 1e11))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit_point(df, law=law)
        out[f"point_{law}_s"] = round(time.perf_counter() - t0, 2)
        out["rows"] = int(len(df))
    out["nuts_transfer"] = _nuts_transfer(chains, draws)
    rng = np.random.default_rng(0)
    S, F = 4000, 5
    nat = {"E": rng.uniform(1, 2, (S, F)), "A": rng.uniform(100, 500, (S, F)), "B": rng.uniform(200, 900, (S, F)),
           "alpha": rng.uniform(0.2, 0.4, (S, F)), "beta": rng.uniform(0.2, 0.4, (S, F)),
           "gamma": rng.uniform(0.05, 0.4, (S, F)), "tau": rng.uniform(0, 0.3, (S, F, F)) * (1 - np.eye(F))}
    t0 = time.perf_counter()
    solve_coupled(get_law("transfer"), nat, 1e9, 5e10, np.arange(F), F, np.full(F, 0.2), np.zeros(F), np.ones(F))
    out["coupled_solver_4000x5_s"] = round(time.perf_counter() - t0, 2)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--boot-sample", type=int, default=5,
                    help="resamples timed for the full-grid bootstrap (then extrapolated)")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--only-large", action="store_true", help="only the 25 x 500 NUTS timing")
    ap.add_argument("--only-point", action="store_true", help="only the point fit and bootstrap")
    ap.add_argument("--only-mixture", action="store_true",
                    help="only the laws of the whole mixture: point fits, NUTS of transfer, the coupled solver")
    ap.add_argument("--only-transfer-nuts", action="store_true",
                    help="only NUTS of the transfer law on 5 families x 96 runs (issue 12's <= 60 s goal)")
    args = ap.parse_args()

    from multiscale.laws.bayes import host_devices_for_chains

    # as `multiscale fit --method nuts` does: one XLA CPU device per chain, before jax starts
    parallel = host_devices_for_chains(args.chains)

    out = {"benchmark": "fit", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_avg_1m": os.getloadavg()[0]},
           "units": "seconds; ESS = min bulk ESS over all parameters and families",
           "host_devices_for_chains": parallel}
    if args.only_transfer_nuts:
        out["nuts_transfer_5x96"] = _nuts_transfer(args.chains, args.draws)
        print(json.dumps(out))
        return
    if args.only_mixture:
        out["mixture_laws_5x100"] = _mixture(args.chains, args.draws)
        print(json.dumps(out))
        return
    if args.only_large:
        out["nuts_25x500"] = _nuts(_table(25, 500, seed=1), args.chains, args.draws)
        print(json.dumps(out))
        return
    small = _table(5, 100)
    if args.only_point:
        out["point_5x100"] = _point(small, args.resamples, args.boot_sample)
        print(json.dumps(out))
        return
    out["nuts_5x100"] = _nuts(small, args.chains, args.draws)
    out["point_5x100"] = _point(small, args.resamples, args.boot_sample)
    b = out["point_5x100"]
    nuts_s = out["nuts_5x100"]["wall_s"]
    out["nuts_vs_bootstrap"] = {
        "nuts_wall_s": nuts_s,
        "bootstrap_full_grid_s_extrapolated": b["bootstrap_full_grid_s_extrapolated"],
        "bootstrap_warm_start_s": b["bootstrap_warm_start_s"],
        "goal_nuts_faster_than_bootstrap": nuts_s < b["bootstrap_full_grid_s_extrapolated"],
        "nuts_faster_than_warm_bootstrap": nuts_s < b["bootstrap_warm_start_s"],
        "goal_nuts_under_60s": nuts_s < 60}
    if not args.skip_large:
        out["nuts_25x500"] = _nuts(_table(25, 500, seed=1), args.chains, args.draws)
    out["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
