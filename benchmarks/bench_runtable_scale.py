"""Run tables at the scale of real swarms: read, validate and the independence test.

Builds a synthetic run table of `--runs` runs x `--families` families (one row per (run,
family), every run's whole mixture in ``p_<family>`` columns, as README.md "Bring your own runs"
describes), writes it as CSV (or Parquet), then times `multiscale.runs.read_runs` (the file
read and the validation it includes), `multiscale.runs.validate_runs` alone on the table read,
and `multiscale.laws.independence.independence_test` (which validates again, as the CLI does).
Prints one JSON object: rows, seconds per stage, peak RSS of this process (the table is
written by a child process, so the peak is the reading and checking) and the CPU.

    python benchmarks/bench_runtable_scale.py                 # 200,000 runs x 5 families
    python benchmarks/bench_runtable_scale.py --runs 40000    # a smaller table
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from machine import cpu_model

from multiscale.laws.independence import independence_test
from multiscale.runs import read_runs, validate_runs

FAMILIES = ("germanic", "romance", "slavic", "sinitic", "indic")
SCALES = ((2e7, 4e8), (8e7, 1.6e9), (3e8, 6e9), (1e9, 2e10))  # (N, D) of the swarm's model sizes


def synthetic_table(n_runs: int, n_families: int, seed: int = 0) -> pd.DataFrame:
    """`n_runs` runs at 4 (N, D) scales with Dirichlet mixtures over `n_families` families; each
    family's loss follows its own ratio (a power law in p, N and D) with 1% noise."""
    rng = np.random.default_rng(seed)
    fams = [FAMILIES[i] if i < len(FAMILIES) else f"family{i}" for i in range(n_families)]
    P_RxF = rng.dirichlet(np.ones(n_families), size=n_runs)
    scale_R = rng.integers(len(SCALES), size=n_runs)
    N_R = np.array([s[0] for s in SCALES])[scale_R]
    D_R = np.array([s[1] for s in SCALES])[scale_R]
    gamma_F = np.linspace(0.1, 0.3, n_families)
    loss_RxF = ((1.7 + 400 / N_R[:, None] ** 0.34 + 410 / D_R[:, None] ** 0.28)
                * P_RxF ** -gamma_F * np.exp(0.01 * rng.standard_normal((n_runs, n_families))))
    run_R = np.char.add("run", np.arange(n_runs).astype(str))
    df = pd.DataFrame({
        "run": np.repeat(run_R, n_families), "family": np.tile(fams, n_runs),
        "N": np.repeat(N_R, n_families), "D": np.repeat(D_R, n_families),
        "p": P_RxF.ravel(), "loss": loss_RxF.ravel(), "seed": np.repeat(scale_R * 0, n_families)})
    for j, f in enumerate(fams):
        df[f"p_{f}"] = np.repeat(P_RxF[:, j], n_families)
    return df


def write_table(path: str, n_runs: int, n_families: int) -> None:
    df = synthetic_table(n_runs, n_families)
    if path.endswith(".csv"):
        df.to_csv(path, index=False, float_format="%.9g")
    else:
        df.to_parquet(path, index=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200_000)
    ap.add_argument("--families", type=int, default=5)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--skip-independence", action="store_true")
    ap.add_argument("--write-only", metavar="PATH", help=argparse.SUPPRESS)  # the child that writes the table
    args = ap.parse_args(argv)
    if args.write_only:
        write_table(args.write_only, args.runs, args.families)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"runs.{args.format}")
        # written by a child process, so that the peak RSS below is the reading and checking alone
        subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--families", str(args.families),
                        "--write-only", path], check=True)
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        table = read_runs(path)
        t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    validate_runs(table)
    t_validate = time.perf_counter() - t0
    t_indep = None
    if not args.skip_independence:
        t0 = time.perf_counter()
        res = independence_test(table)
        t_indep = time.perf_counter() - t0
        assert len(res.families) == args.families
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    total = t_read + t_validate + (t_indep or 0.0)
    print(json.dumps({
        "rows": len(table), "runs": args.runs, "families": args.families, "format": args.format,
        "file_mb": round(size / 2**20, 1),
        "seconds": {"read_runs (read + validate)": round(t_read, 2), "validate_runs": round(t_validate, 2),
                    "independence_test (validates again)": None if t_indep is None else round(t_indep, 2),
                    "total": round(total, 2)},
        "peak_rss_mb": round(rss / 2**20, 1), "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
        "load_1min": round(os.getloadavg()[0], 2), "python": sys.version.split()[0], "pandas": pd.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
