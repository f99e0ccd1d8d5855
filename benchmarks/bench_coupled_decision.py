"""Coupled decisions benchmark: what the robust p* and the regret table add to the coupled solver.

Prints ONE JSON object. The transfer law over 4,000 draws x 5 families (the draws of
benchmarks/bench_fit.py's coupled-solver timing, same seed), raw objective, no bounds:

- `per_draw_s`: `solve_coupled` (the per-draw optima), first call (compilation included), then
  a second, compiled call;
- `robust_s`: `solve_coupled_robust` started at the median of the per-draw optima, first call
  (compilation included) and compiled;
- `recommend_s`: `recommend_coupled` end to end (per-draw optima, robust p*, baselines, objectives
  per draw) on a fit holding these draws, with every program already compiled;
- `robust_vs_median`: the posterior mean objective at the robust p* minus at the median p*
  (<= 0: the robust p* is never worse).

Usage: python benchmarks/bench_coupled_decision.py
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np


def _draws(S: int, F: int) -> dict:
    rng = np.random.default_rng(0)
    return {"E": rng.uniform(1, 2, (S, F)), "A": rng.uniform(100, 500, (S, F)), "B": rng.uniform(200, 900, (S, F)),
            "alpha": rng.uniform(0.2, 0.4, (S, F)), "beta": rng.uniform(0.2, 0.4, (S, F)),
            "gamma": rng.uniform(0.05, 0.4, (S, F)), "tau": rng.uniform(0, 0.3, (S, F, F)) * (1 - np.eye(F))}


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, round(time.perf_counter() - t0, 3)


def main() -> None:
    from multiscale.decisions.ratios import solve_coupled, solve_coupled_robust
    from multiscale.decisions.recommend import optimal_ratios as recommend_coupled
    from multiscale.laws import get_law
    from multiscale.laws.fits import PointFit

    S, F = 4000, 5
    law, nat = get_law("transfer"), _draws(S, F)
    args = (law, nat, 1e9, 5e10, np.arange(F), F, np.full(F, 1 / F), np.zeros(F), np.ones(F))
    load0 = os.getloadavg()[0]
    P, first = _timed(lambda: solve_coupled(*args))
    _, again = _timed(lambda: solve_coupled(*args))
    med = np.median(P, axis=0) / np.median(P, axis=0).sum()
    _, r_first = _timed(lambda: solve_coupled_robust(*args, p0=med))
    _, r_again = _timed(lambda: solve_coupled_robust(*args, p0=med))
    fams = tuple(f"fam{i}" for i in range(F))
    fit = PointFit(law=law, families=fams, shared=(), draws=nat, N_ref=1e8, D_ref=1e10,
                   n_runs=dict.fromkeys(fams, 50), mixture_families=fams)
    recommend_coupled(fit, 1e9, 5e10, objective="raw")  # compiles the robust program for the fit's start
    rec, rec_s = _timed(lambda: recommend_coupled(fit, 1e9, 5e10, objective="raw"))
    gap = float(np.mean(rec.candidates["robust p*"]["objective"]) - np.mean(rec.candidates["median p*"]["objective"]))
    print(json.dumps({"benchmark": "coupled_decision", "draws": S, "families": F, "law": "transfer",
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "load_avg_1m_start": load0, "load_avg_1m_end": os.getloadavg()[0],
                      "per_draw_s": {"first": first, "compiled": again},
                      "robust_s": {"first": r_first, "compiled": r_again},
                      "recommend_s": rec_s, "robust_vs_median": gap,
                      "expected_regret": {k: v["expected_regret"] for k, v in rec.decision_table().items()}}))


if __name__ == "__main__":
    main()
