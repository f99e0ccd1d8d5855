"""Calibration of the multilingual law's Bayesian fit over many seeds; prints ONE JSON object.

Goal (issue 4, "Done means"): over >= 20 seeds the nominal 90% intervals of gamma and of p*
contain the truth in 80-97% of cases. Each seed is an independent synthetic experiment
(3 families, known parameters spread around He et al.'s values, 2% log-loss noise, a small
table: 3 model sizes x 2 budgets x 4 mixtures = 24 runs per family). All seeds are stacked
into one table and fitted in ONE NUTS run (`fixtures.calibration`: without shared
exponents the posterior factorizes, so this equals one fit per seed). p* is checked for the
normalized objective and for the raw objective at a target just above the table
(N = 4e8, D = 1.6e10).

Off the fitted range (issue 13): `--part extrapolation` stacks >= 20 experiments whose truth
drifts mildly with scale (`calibration.drifting_experiments`: 3 families, exponents drifting by
up to 0.02 per e-fold; fitted at 3 sizes x 2 budgets, held out at 1.8x and 3.5x the largest size),
fits them in groups of 5 (per group one NUTS fit and the leave-largest-size-out refit, with few
enough dimensions for the dense mass matrix; the refit with `fit_bayes`'s refit draws,
`bayes.refit_settings`), learns each experiment's
extrapolation term exactly as `fit_bayes` does, and reports the 90% coverage of the held-out
losses with and without it (goal 80-97%).

On the CPU study (issue 13): `--part cpu-study` fits the multilingual law with the library's
default NUTS (4 chains x 1000 draws, 500 warm-up, seed 0, the extrapolation term on) to
docs/cpu_study/runs.csv below N = 5e5 (cpu-100k, cpu-200k, cpu-400k: the study's
`select_runs(runs, max_N=5e5)`), and scores the 90% posterior-predictive intervals of the held-out cpu-800k and
cpu-1.6m rows with and without the term (goal 80-97% at MAPE <= 2.5%, in-range widths <= 1.5x);
`--full-refits` also learns kappa with refits of the fit's own settings, one after another (the
term before the refits were made cheaper), to compare.

Usage: python benchmarks/bench_calibration.py [--part parameters|extrapolation|both|cpu-study]
       [--seeds 24] [--chains 4] [--draws 500] [--mixtures 4] [--full-refits]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

TABLE = dict(N=(2e7, 6e7, 2e8), D=(2e9, 8e9), n_mixtures=4, noise=0.02)
TARGET = dict(N=4e8, D=1.6e10)


def _machine(load0: float) -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_avg_1m": load0, "load_avg_1m_end": os.getloadavg()[0]}


def extrapolation_part(args) -> dict:
    """The leave-largest-size-out calibration of the extrapolation term (module docstring), in
    groups of `--group-size` experiments (each group: one fit and one refit, dense mass)."""
    import numpy as np
    from fixtures.calibration import drifting_experiments, extrapolation_coverage

    from multiscale.laws import fit_bayes
    from multiscale.laws.bayes import refit_settings

    kw = dict(law="multilingual", chains=args.chains, draws=args.draws, warmup=args.warmup, seed=0,
              warn=False, extrapolation=False)
    refit = refit_settings(kw)
    t0 = time.perf_counter()
    parts, rhat, div = [], [], []
    for g0 in range(0, args.seeds, args.group_size):
        n = min(args.group_size, args.seeds - g0)
        fitted, held = drifting_experiments(n, args.families, drift=args.drift, n_mixtures=args.mixtures,
                                            seed0=2000 + g0)
        fit = fit_bayes(fitted, **kw)
        # the refit as fit_bayes runs it: REFIT_DRAWS draws in all after the fit's warm-up
        loo = fit_bayes(fitted[fitted["N"] < fitted["N"].max()], **{**kw, "draws": refit["draws"]})
        parts.append(extrapolation_coverage(fit, loo, fitted, held, n))
        rhat += [round(f.diagnostics["max_rhat"], 4) for f in (fit, loo)]
        div += [f.diagnostics["divergences"] for f in (fit, loo)]
    wall = time.perf_counter() - t0
    rows = np.array([p["heldout_rows"] for p in parts], float)
    cov = {k: float(np.average([p[k] for p in parts], weights=rows))
           for k in ("coverage_heldout", "coverage_heldout_without_term", "coverage_fitted", "mape_heldout_pct")}
    cov.update(coverage_by_seed=sum((p["coverage_by_seed"] for p in parts), []),
               kappa_by_seed=sum((p["kappa_by_seed"] for p in parts), []), n_seeds=args.seeds,
               heldout_rows=int(rows.sum()))
    return {"coverage_90": cov, "goal_80_97": 0.80 <= cov["coverage_heldout"] <= 0.97, "drift": args.drift,
            "refit_draws_per_chain": refit["draws"],
            "group_size": args.group_size, "wall_s": round(wall, 1), "max_rhat": rhat, "divergences": div}


CPU_STUDY_RUNS = "docs/cpu_study/runs.csv"
CPU_STUDY_MAX_N = 5e5  # fitted: cpu-100k, cpu-200k, cpu-400k; held out: cpu-800k, cpu-1.6m


def _width(draws_SxR) -> float:
    """Mean width (nats/token) of the 90% intervals of predictive draws."""
    import numpy as np

    from multiscale.laws.summary import Q_HIGH, Q_LOW

    lo, hi = np.quantile(draws_SxR, [Q_LOW, Q_HIGH], axis=0)
    return float(np.mean(hi - lo))


def _cpu_scores(fit, fitted, held) -> dict:
    """Held-out coverage (overall, per size, per family), MAPE, fitted-row coverage and widths."""
    from multiscale.laws import score
    from multiscale.laws.predict import predictive_draws

    s_held, s_fit = score(fit, held), score(fit, fitted)
    per_size = {m: round(score(fit, held[held["model"] == m]).overall["coverage"], 4)
                for m in sorted(held["model"].unique(), key=lambda m: held.loc[held["model"] == m, "N"].iloc[0])}
    return {"coverage_heldout": round(s_held.overall["coverage"], 4), "coverage_by_size": per_size,
            "coverage_by_family": {f: round(v["coverage"], 4) for f, v in s_held.per_family.items()},
            "mape_heldout_pct": round(s_held.overall["mape"], 3),
            "coverage_fitted": round(s_fit.overall["coverage"], 4),
            "width_fitted": round(_width(predictive_draws(fit, fitted)), 5),
            "width_heldout": round(_width(predictive_draws(fit, held)), 5)}


def cpu_study_part(full_refits: bool) -> dict:
    """The CPU study's held-out calibration (module docstring)."""
    import copy

    import pandas as pd

    from multiscale.laws import fit_bayes

    runs = pd.read_csv(CPU_STUDY_RUNS)
    fitted = runs[runs["N"].to_numpy(float) < CPU_STUDY_MAX_N]
    held = runs[runs["N"].to_numpy(float) >= CPU_STUDY_MAX_N]
    t0 = time.perf_counter()
    fit = fit_bayes(fitted, law="multilingual", seed=0, warn=False)
    wall = time.perf_counter() - t0
    bare = copy.copy(fit)
    bare.extrapolation = {}
    out = {"fitted_rows": int(len(fitted)), "heldout_rows": int(len(held)), "wall_s": round(wall, 1),
           "seconds_fit": round(fit.diagnostics["seconds"], 1),
           "seconds_refits": round(fit.diagnostics["seconds_extrapolation"], 1),
           "max_rhat": round(float(fit.diagnostics["max_rhat"]), 4), "refit": fit.options["extrapolation_refit"],
           "kappa": fit.extrapolation["kappa"], "experiments": fit.extrapolation["experiments"],
           "with_term": _cpu_scores(fit, fitted, held), "without_term": _cpu_scores(bare, fitted, held)}
    out["width_fitted_ratio"] = round(out["with_term"]["width_fitted"] / out["without_term"]["width_fitted"], 4)
    if full_refits:
        out["full_refits"] = _full_refits(fit, fitted, held)
    out["goal_80_97"] = 0.80 <= out["with_term"]["coverage_heldout"] <= 0.97
    out["goal_mape_2_5"] = out["with_term"]["mape_heldout_pct"] <= 2.5
    return out


def _full_refits(fit, fitted, held) -> dict:
    """kappa learned with refits of the fit's own settings, one after another (the term as it was
    before the refits were made cheaper), and the held-out scores with it."""
    import copy

    from multiscale.laws import fit_bayes
    from multiscale.laws.extrapolation import leave_largest_out
    from multiscale.laws.predict import predictive_draws

    t0 = time.perf_counter()
    model = leave_largest_out(
        fitted, lambda sub: fit_bayes(sub, law="multilingual", seed=0, warn=False, extrapolation=False),
        lambda f, rows: predictive_draws(f, rows, extrapolation=False))
    other = copy.copy(fit)
    other.extrapolation = model
    return {"kappa": model["kappa"], "experiments": model["experiments"], "wall_s": round(time.perf_counter() - t0, 1),
            "scores": _cpu_scores(other, fitted, held)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["parameters", "extrapolation", "both", "cpu-study"], default="both")
    ap.add_argument("--full-refits", action="store_true",
                    help="cpu-study part: also learn kappa with refits of the fit's own settings")
    ap.add_argument("--drift", type=float, default=0.02, help="extrapolation part: largest exponent drift")
    ap.add_argument("--group-size", type=int, default=5, help="extrapolation part: experiments per NUTS fit")
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--families", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--mixtures", type=int, default=TABLE["n_mixtures"],
                    help="mixtures per (N, D) cell: runs per family = 6 x this")
    args = ap.parse_args()
    table = {**TABLE, "n_mixtures": args.mixtures}

    from multiscale.laws.bayes import host_devices_for_chains

    # as `multiscale fit --method nuts` does: one XLA CPU device per chain, before jax starts
    host_devices_for_chains(args.chains)
    load0 = os.getloadavg()[0]
    out = {"benchmark": "calibration", "law": "multilingual", "seeds": args.seeds,
           "families_per_seed": args.families, "chains": args.chains, "draws": args.draws,
           "warmup": args.warmup, "mixtures": args.mixtures}
    if args.part == "cpu-study":
        out = {"benchmark": "calibration", "law": "multilingual", "cpu_study": cpu_study_part(args.full_refits)}
    if args.part in ("extrapolation", "both"):
        out["extrapolation"] = extrapolation_part(args)
    if args.part in ("parameters", "both"):
        out["parameters"] = parameters_part(args, table)
    out["machine"] = _machine(load0)
    print(json.dumps(out))


def parameters_part(args, table) -> dict:
    """gamma and p* coverage of the truth (module docstring)."""
    from fixtures.calibration import coverage, stacked_experiments

    from multiscale.laws import fit_bayes

    df, truths = stacked_experiments(args.seeds, args.families, **table)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_bayes(df, law="multilingual", chains=args.chains, draws=args.draws,
                        warmup=args.warmup, seed=0, extrapolation=False)
    wall = time.perf_counter() - t0
    cov = coverage(fit, truths, args.seeds, args.families, level=0.9, **TARGET)
    d = fit.diagnostics
    goal = {k: 0.80 <= cov[k] <= 0.97 for k in ("gamma", "p_star_normalized", "p_star_raw")}
    return {"shared": [], "table": table, "target": TARGET, "coverage_90": cov, "goal_80_97": goal,
            "wall_s": round(wall, 1), "max_rhat": round(d["max_rhat"], 4),
            "min_ess_bulk": round(d["min_ess_bulk"], 1), "divergences": d["divergences"],
            "warnings": fit.warnings, "chain_method": fit.options["chain_method"],
            "dense_mass": fit.options["dense_mass"]}


if __name__ == "__main__":
    main()
