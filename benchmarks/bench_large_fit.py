"""Large-table NUTS benchmark: the default Bayesian fit of a 15,000-row, 7-family table.

Prints ONE JSON object: rows, families, wall and CPU (user + system, all threads) seconds per
phase (the point fit that starts the chains, the Laplace whitening around the posterior mode,
NUTS of the final fit, the same three for the extrapolation refits, the pointwise
log-likelihood, saving posterior.nc; `other` is the rest of `fit_bayes`: preparing the table,
ArviZ diagnostics, the refits' predictive draws), the peak resident memory after each phase and
at the end (MB; `ru_maxrss` of the process and of its children), leapfrog steps per draw, the
CPU model, the machine's load and the fit's max R-hat, min bulk ESS and divergences.
The fit is `fit_bayes(df, law="multilingual")` with its defaults
(4 chains x 1,000 draws after 500 warm-up, the extrapolation refits on), the chains in parallel
as `multiscale fit --method nuts` runs them (`host_devices_for_chains`). The table is synthetic:
7 families of the multilingual law at known parameters (tests/fixtures/synthetic.py, 1% noise),
5 model sizes x 4 token budgets x `rows / 140` mixtures, one row per run and family.

``--noise`` picks the fit's noise model (default the library's, "constant").

Usage: python benchmarks/bench_large_fit.py [--rows 15000] [--draws 1000] [--warmup 500] [--noise size]
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


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Phases:
    """Wall and CPU seconds, and the peak RSS after, per phase; a wrapped call nested in another
    counts for its own phase only (its seconds are taken out of the caller's)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peaks: dict[str, dict] = {"table": peak_mb()}
        self.stack: list[list[float]] = []  # per open call: seconds of the calls nested in it
        self.refitting = False

    def wrap(self, module, name: str, phase: str, refit_phase: str | None = None) -> None:
        fn = getattr(module, name)

        def wrapper(*a, **k):
            key = refit_phase if self.refitting and refit_phase else phase
            t0, c0 = time.perf_counter(), cpu_seconds()
            self.stack.append([0.0, 0.0])
            try:
                return fn(*a, **k)
            finally:
                inner_wall, inner_cpu = self.stack.pop()
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                self.add(key, wall - inner_wall, cpu - inner_cpu)
                if self.stack:
                    self.stack[-1][0] += wall
                    self.stack[-1][1] += cpu

        setattr(module, name, wrapper)

    def add(self, key: str, wall: float, cpu: float) -> None:
        self.wall[key] = self.wall.get(key, 0.0) + wall
        self.cpu[key] = self.cpu.get(key, 0.0) + cpu
        self.peaks[key] = peak_mb()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=15000, help="about this many rows (7 families)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=None, help="None: the library's WARMUP")
    ap.add_argument("--noise", default="constant", help="the noise model (multiscale.laws.noise.NOISE_MODELS)")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(4)
    from multiscale.laws import bayes

    df = table(args.rows)
    ph = Phases()
    refits = bayes._refits

    def refits_flagged(*a, **k):
        ph.refitting = True
        try:
            return refits(*a, **k)
        finally:
            ph.refitting = False

    bayes._refits = refits_flagged
    ph.wrap(bayes, "fit_arrays", "point_fit", "refit_point_fit")
    ph.wrap(bayes, "laplace_whitening", "laplace", "refit_laplace")
    ph.wrap(bayes, "run_nuts", "nuts", "refit_nuts")
    ph.wrap(bayes, "pointwise_loglik", "pointwise_loglik")
    t0, c0 = time.perf_counter(), cpu_seconds()
    fit = bayes.fit_bayes(df, law="multilingual", draws=args.draws, warmup=args.warmup, warn=False, noise=args.noise)
    total, total_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    ph.add("other", total - sum(ph.wall.values()), total_cpu - sum(ph.cpu.values()))
    t1, c1 = time.perf_counter(), cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        fit.save(os.path.join(tmp, "fit"))
    ph.add("saving", time.perf_counter() - t1, cpu_seconds() - c1)
    steps = fit.idata.sample_stats["n_steps"].values
    print(json.dumps({"rows": len(df), "families": len(fit.families), "law": fit.law.name, "noise": args.noise,
                      "chains": fit.options["chains"], "draws": fit.options["draws"],
                      "warmup": fit.options["warmup"], "chain_method": fit.options["chain_method"],
                      "whitened": fit.options.get("whitened"), "dense_mass": fit.options["dense_mass"],
                      "seconds_fit": round(total, 1), "seconds_total": round(total + ph.wall["saving"], 1),
                      "cpu_seconds_total": round(total_cpu + ph.cpu["saving"], 1),
                      "seconds": {k: round(v, 1) for k, v in ph.wall.items()},
                      "cpu_seconds": {k: round(v, 1) for k, v in ph.cpu.items()},
                      "peak_rss_mb": peak_mb(), "peak_rss_mb_after": ph.peaks,
                      "leapfrog_steps_per_draw": {"mean": round(float(steps.mean()), 1), "max": int(steps.max())},
                      "max_rhat": fit.diagnostics["max_rhat"], "min_ess_bulk": round(fit.diagnostics["min_ess_bulk"]),
                      "divergences": fit.diagnostics["divergences"],
                      "cpu": cpu_model(), "cores": os.cpu_count(),
                      "load_average": [round(v, 2) for v in os.getloadavg()]}))


if __name__ == "__main__":
    main()
