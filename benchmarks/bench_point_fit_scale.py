"""Point-fit scale benchmark: the approach-3 point fit of a 50,000-row table.

Prints ONE JSON object: seconds of `multiscale.laws.fit_point` (default law, full start grid,
compilation included unless --warm), peak resident memory of the process (MB), the CPU model
and the machine's load. The table is synthetic: 5 families of the multilingual law at known
parameters (tests/fixtures/synthetic.py, 1% noise), 5 model sizes x 4 token budgets x 500
mixtures = 10,000 runs, one row per run and family.

Usage: python benchmarks/bench_point_fit_scale.py [--mixtures 500] [--warm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def table(mixtures: int):
    from fixtures.synthetic import synthetic_runs, synthetic_truth

    return synthetic_runs(synthetic_truth(5, seed=0), N=(1e7, 3e7, 1e8, 3e8, 1e9),
                          D=(1e9, 4e9, 1.6e10, 6.4e10), n_mixtures=mixtures, noise=0.01, seed=0, p_min=0.005)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixtures", type=int, default=500, help="mixtures per (N, D) (500: 50,000 rows)")
    ap.add_argument("--warm", action="store_true", help="fit once before timing (compilation excluded)")
    args = ap.parse_args()
    from multiscale.laws import fit_point

    df = table(args.mixtures)
    if args.warm:
        fit_point(df)
    t0 = time.perf_counter()
    fit = fit_point(df)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": len(df), "families": len(fit.families), "law": fit.law.name,
                      "n_starts": fit.n_starts, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1),
                      "warm": args.warm, "cpu": cpu_model(), "cores": os.cpu_count(),
                      "load_average": [round(v, 2) for v in os.getloadavg()],
                      "params": fit.params()}))


if __name__ == "__main__":
    main()
