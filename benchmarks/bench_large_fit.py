"""Large-table NUTS benchmark: the default Bayesian fit of a 15,000-row, 7-family table.

Prints ONE JSON object: rows, families, seconds per phase (the point fit that starts the chains,
NUTS of the final fit, the extrapolation refits (their point fits and NUTS), the pointwise
log-likelihood, saving posterior.nc; `other` is the rest of `fit_bayes`: preparing the table,
ArviZ diagnostics, the refits' predictive draws), the peak resident memory after each phase and
at the end (MB; `ru_maxrss` of the process and of its children), the CPU model, the machine's
load and the fit's max R-hat. The fit is `fit_bayes(df, law="multilingual")` with its defaults
(4 chains x 1,000 draws after 500 warm-up, the extrapolation refits on), the chains in parallel
as `multiscale fit --method nuts` runs them (`host_devices_for_chains`). The table is synthetic:
7 families of the multilingual law at known parameters (tests/fixtures/synthetic.py, 1% noise),
5 model sizes x 4 token budgets x `rows / 140` mixtures, one row per run and family.

Usage: python benchmarks/bench_large_fit.py [--rows 15000] [--draws 1000] [--warmup 500]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

from machine import cpu_model

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

N_GRID, D_GRID, FAMILIES = (1e7, 3e7, 1e8, 3e8, 1e9), (1e9, 4e9, 1.6e10, 6.4e10), 7


def table(rows: int):
    from fixtures.synthetic import synthetic_runs, synthetic_truth

    mixtures = max(1, round(rows / (FAMILIES * len(N_GRID) * len(D_GRID))))
    return synthetic_runs(synthetic_truth(FAMILIES, seed=0), N=N_GRID, D=D_GRID, n_mixtures=mixtures,
                          noise=0.01, seed=0, p_min=0.005)


def peak_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "children": round(kids, 1)}


def timed(module, name: str, phase: str, seconds: dict, peaks: dict, inside: str | None = None):
    """Wrap module.name so that its seconds add to `phase` (and are taken out of `inside`)."""
    fn = getattr(module, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t0
            seconds[phase] = seconds.get(phase, 0.0) + dt
            if inside is not None:
                seconds[inside] = seconds.get(inside, 0.0) - dt
            peaks[phase] = peak_mb()

    setattr(module, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=15000, help="about this many rows (7 families)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=None, help="None: the library's WARMUP")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(4)
    from multiscale.laws import bayes

    df = table(args.rows)
    seconds: dict[str, float] = {}
    peaks: dict[str, dict] = {"table": peak_mb()}
    state = {"refitting": False}
    refits = bayes._refits

    def refits_flagged(*a, **k):
        state["refitting"] = True
        try:
            return refits(*a, **k)
        finally:
            state["refitting"] = False

    bayes._refits = refits_flagged
    point, nuts = bayes.fit_arrays, bayes.run_nuts

    def point_split(*a, **k):
        t0 = time.perf_counter()
        out = point(*a, **k)
        dt = time.perf_counter() - t0
        key = "refit_point_fit" if state["refitting"] else "point_fit"
        seconds[key] = seconds.get(key, 0.0) + dt
        seconds["_in_nuts"] = seconds.get("_in_nuts", 0.0) + dt
        peaks[key] = peak_mb()
        return out

    def nuts_split(*a, **k):
        t0 = time.perf_counter()
        out = nuts(*a, **k)
        dt = time.perf_counter() - t0 - seconds.pop("_in_nuts", 0.0)
        key = "refit_nuts" if state["refitting"] else "nuts"
        seconds[key] = seconds.get(key, 0.0) + dt
        peaks[key] = peak_mb()
        return out

    bayes.fit_arrays, bayes.run_nuts = point_split, nuts_split
    timed(bayes, "pointwise_loglik", "pointwise_loglik", seconds, peaks)
    t0 = time.perf_counter()
    fit = bayes.fit_bayes(df, law="multilingual", draws=args.draws, warmup=args.warmup, warn=False)
    total = time.perf_counter() - t0
    peaks["fit"] = peak_mb()
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fit.save(os.path.join(tmp, "fit"))
    seconds["saving"] = time.perf_counter() - t1
    peaks["saving"] = peak_mb()
    seconds["other"] = total - sum(v for k, v in seconds.items() if k != "saving")
    print(json.dumps({"rows": len(df), "families": len(fit.families), "law": fit.law.name,
                      "chains": fit.options["chains"], "draws": fit.options["draws"],
                      "warmup": fit.options["warmup"], "chain_method": fit.options["chain_method"],
                      "seconds_fit": round(total, 1), "seconds_total": round(total + seconds["saving"], 1),
                      "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      "peak_rss_mb": peak_mb(), "peak_rss_mb_after": peaks,
                      "max_rhat": fit.diagnostics["max_rhat"], "divergences": fit.diagnostics["divergences"],
                      "cpu": cpu_model(), "cores": os.cpu_count(),
                      "load_average": [round(v, 2) for v in os.getloadavg()]}))


if __name__ == "__main__":
    main()
