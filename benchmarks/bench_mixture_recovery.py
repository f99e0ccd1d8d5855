"""Laws of the whole mixture from known truth: recovery and interval coverage.

Prints ONE JSON object.

- ``coverage``: per law (transfer, repetition, mixing), over `--seeds` synthetic tables, NUTS
  (`--chains` x `--draws` after `--warmup` steps, by default as many as draws): the share of true parameters inside
  their 90% intervals (matrix parameters: off-diagonal entries); tau's non-zero truths apart
  (``tau_nonzero``), and for its zero truths (always under the upper bound of an interval of a
  parameter bounded at 0) the share whose 90% upper bound is below ``ZERO_SMALL``
  (``tau_zero``); the median absolute error of the posterior medians; per seed max R-hat, min
  bulk ESS, min tail ESS (the draws behind an interval's ends) and divergences (also logged to
  stderr as each seed ends); ``coverage90_se``: the standard error of each share, with the values
  of one family of one seed (fitted together, missing together) as one cluster.
- ``--tau-truth sparse``: tau of the truth from `sparse_tau` (exact zeros) instead of the prior.
- ``--t-truth prior``: the mixing law's t of the truth drawn from the law's own prior,
  N(0, EXTRA_PRIORS["t"]) (`prior_t`), as tau's is by default; ``uniform`` (default) keeps
  `mixture_truth`'s U(-0.5, 1.5), whose mean sits half a prior scale off the prior's centre. With
  a truth drawn from the prior, 90% intervals of a calibrated posterior cover it 90% of the time
  on average over the prior (simulation-based calibration), so the two settings tell a
  miscalibrated sampler from a truth the prior finds unlikely.

The repetition case (held-out MAPE, p* regret) is benchmarks/bench_repetition.py.

Usage: python benchmarks/bench_mixture_recovery.py [--seeds 20] [--start 0] [--draws 300] [--warmup N] [--chains 2]
       [--laws transfer,repetition,mixing] [--tau-truth prior|sparse] [--t-truth uniform|prior] [--jobs 1]
       [--raw PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def _log(msg):
    import sys

    print(f"[bench_mixture {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


ZERO_SMALL = 0.02  # a true tau of 0 is "resolved" when its 90% upper bound lies below this


def _interval_hits(truth: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside the 90% interval, the interval's upper bound) per entry."""
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return (truth >= lo) & (truth <= hi), hi


def _score_seed(truth: dict, fit, acc: dict) -> None:
    """Add one seed's hits to `acc`: per parameter the share of true values inside the 90%
    interval; for a matrix parameter, off-diagonal entries only, and for tau the non-zero truths
    apart from the zero ones (for those: the 90% upper bound, which a zero truth is always under)."""
    for n, v in truth.items():
        t = v[0]
        hit, hi = _interval_hits(t, fit.draws[n])
        err = np.abs(np.median(fit.draws[n], axis=0) - t)
        keep = ~np.eye(t.shape[0], dtype=bool) if t.ndim == 2 else np.ones(t.shape, bool)
        fam = np.broadcast_to(np.arange(t.shape[0]).reshape((-1,) + (1,) * (t.ndim - 1)), t.shape)
        if n == "tau":
            nz = keep & (t > 0)
            acc.setdefault("tau_nonzero", []).extend(hit[nz].tolist())
            acc.setdefault("_fam_tau_nonzero", []).extend(fam[nz].tolist())
            acc.setdefault("_tau_zero_upper", []).extend(hi[keep & (t == 0)].tolist())
        else:
            acc.setdefault(n, []).extend(hit[keep].tolist())
            acc.setdefault("_fam_" + n, []).extend(fam[keep].tolist())
        acc.setdefault("_err_" + n, []).extend(err[keep].tolist())


def sparse_tau(F: int, seed: int) -> np.ndarray:
    """The first generator's tau (1, F, F): exact zeros on about two thirds of the pairs, the rest
    U(0.05, 0.4): a truth no continuous prior puts its mass on (`--tau-truth sparse`)."""
    rng = np.random.default_rng(seed + 5000)
    return rng.uniform(0.05, 0.4, size=(1, F, F)) * (rng.uniform(size=(1, F, F)) < 0.35) * (1.0 - np.eye(F))


def prior_t(F: int, seed: int) -> np.ndarray:
    """t of the truth (1, F, F) from the mixing law's prior N(0, EXTRA_PRIORS["t"]), zero on the
    diagonal (the law has no t_ii: a family's own share enters through k)."""
    from multiscale.laws.bayes import EXTRA_PRIORS

    rng = np.random.default_rng(seed + 6000)
    return EXTRA_PRIORS["t"] * rng.standard_normal(size=(1, F, F)) * (1.0 - np.eye(F))


def _min_tail_ess(fit, truth: dict) -> float:
    """The smallest tail ESS (ArviZ) over the scored parameters: the 5% and 95% quantiles that
    make an interval are estimated from about this many independent draws."""
    import arviz as az

    ess = az.ess(fit.idata, var_names=list(truth), method="tail")
    return min(float(np.nanmin(np.where(np.eye(v.shape[-1], dtype=bool), np.nan, v) if v.ndim == 2 else v))
               for v in (ess[n].values for n in truth))


def _one_seed(job: tuple) -> dict:
    """One seed's NUTS fit and hits (a worker of `coverage`; may run in a spawned process)."""
    from multiscale.laws.bayes import host_devices_for_chains

    law, s, chains, draws, tau_truth, t_truth, warmup = job
    host_devices_for_chains(chains)  # before jax starts in a fresh worker; no-op afterwards
    from fixtures.synthetic_mixture import mixture_runs, mixture_truth

    from multiscale.laws import fit_bayes

    truth = mixture_truth(law, 5, seed=s)
    if "tau" in truth and tau_truth == "sparse":
        truth["tau"] = sparse_tau(5, s)
    if "t" in truth and t_truth == "prior":
        truth["t"] = prior_t(5, s)
    df = mixture_runs(law, truth, seed=s, n_mixtures=8, D=(2e9, 2e10, 1e11))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.perf_counter()
        fit = fit_bayes(df, law=law, chains=chains, draws=draws, warmup=warmup, seed=s, warn=False)
        secs = time.perf_counter() - t0
    import jax

    jax.clear_caches()  # each seed compiles its own model: 88 seeds in one process ran out of memory
    acc = {}
    _score_seed(truth, fit, acc)
    d = {k: round(float(fit.diagnostics[k]), 3) for k in ("max_rhat", "min_ess_bulk", "divergences")}
    d["min_ess_tail"] = round(_min_tail_ess(fit, truth), 1)
    return {"law": law, "seed": s, "s": round(secs, 1), **d, "acc": acc}


def _cluster_se(hits: np.ndarray, cluster: np.ndarray) -> float:
    """Standard error of the share of hits when the values of one cluster (a family of one seed:
    its E, k and row of t are fitted together and miss together) are not independent: the
    cluster-robust (ratio-estimator) variance sum_c (h_c - share n_c)^2 / n^2."""
    share = hits.mean()
    _, c = np.unique(cluster, return_inverse=True)
    h_c, n_c = np.bincount(c, weights=hits), np.bincount(c)
    return float(np.sqrt(np.sum((h_c - share * n_c) ** 2)) / hits.size)


def _pool(results: list[dict]) -> dict:
    acc = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        for n, v in r["acc"].items():
            acc.setdefault(n, []).extend(v)
        for n in [n for n in r["acc"] if n.startswith("_fam_")]:  # cluster ids: (seed, family)
            acc.setdefault("_cl_" + n[5:], []).extend([r["seed"] * 1000 + f for f in r["acc"][n]])
    names = [n for n in acc if not n.startswith("_")]
    out = {"nuts_mean_s": float(np.mean([r["s"] for r in results])),
           "coverage90": {n: float(np.mean(acc[n])) for n in names},
           "coverage90_se": {n: round(_cluster_se(np.asarray(acc[n], float), np.asarray(acc["_cl_" + n])), 4)
                             for n in names},
           "n_values": {n: len(acc[n]) for n in names},
           "posterior_median_abs_error": {n[5:]: float(np.median(e)) for n, e in acc.items() if n.startswith("_err_")}}
    for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"):
        out[f"{k}_per_seed"] = [r[k] for r in sorted(results, key=lambda r: r["seed"])]
    if acc.get("_tau_zero_upper"):
        up = np.array(acc["_tau_zero_upper"])
        out["tau_zero"] = {"n": int(up.size), "share_upper90_below": float(np.mean(up < ZERO_SMALL)),
                           "threshold": ZERO_SMALL, "median_upper90": float(np.median(up)),
                           "max_upper90": float(up.max())}
    return out


def coverage(law: str, seeds: int, chains: int, draws: int, tau_truth: str = "prior", jobs: int = 1,
             raw: str | None = None, t_truth: str = "uniform", warmup: int | None = None, start: int = 0) -> dict:
    """`_one_seed` over `seeds` seeds, `jobs` worker processes at a time; each seed's result is
    appended to the JSON-lines file `raw` as it ends."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    warmup = draws if warmup is None else warmup
    todo = [(law, s, chains, draws, tau_truth, t_truth, warmup) for s in range(start, start + seeds)]
    results = []

    def done(r):
        results.append(r)
        _log(f"{law} seed {r['seed']}: {r['s']:.0f} s, R-hat {r['max_rhat']}, ESS {r['min_ess_bulk']}, "
             f"{r['divergences']:.0f} divergences")
        if raw:
            with open(raw, "a") as fh:
                fh.write(json.dumps(r) + "\n")

    if jobs <= 1:
        for job in todo:
            done(_one_seed(job))
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as ex:
            for fut in as_completed([ex.submit(_one_seed, job) for job in todo]):
                done(fut.result())
    return {"seeds": seeds, "chains": chains, "draws": draws, "warmup": warmup, "tau_truth": tau_truth,
            "t_truth": t_truth, **_pool(results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--start", type=int, default=0, help="first seed (to resume a run from its --raw file)")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, help="warm-up steps per chain (default: as many as --draws)")
    ap.add_argument("--laws", default="transfer,repetition,mixing")
    ap.add_argument("--tau-truth", choices=("prior", "sparse"), default="prior",
                    help="tau of the truth: mixture_truth's (the prior's HalfCauchy) or `sparse_tau`")
    ap.add_argument("--t-truth", choices=("uniform", "prior"), default="uniform",
                    help="t of the mixing law's truth: mixture_truth's U(-0.5, 1.5) or the prior's N(0, 1) (`prior_t`)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds fitted at a time, each in its own process")
    ap.add_argument("--raw", help="append each seed's result to this JSON-lines file as it ends")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(args.chains)
    out = {"benchmark": "mixture_laws", "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    out["coverage"] = {law: coverage(law, args.seeds, args.chains, args.draws, args.tau_truth, args.jobs, args.raw,
                                     args.t_truth, args.warmup, args.start)
                       for law in args.laws.split(",")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
