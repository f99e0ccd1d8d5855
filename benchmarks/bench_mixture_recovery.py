"""Laws of the whole mixture from known truth: recovery and interval coverage.

Prints ONE JSON object.

- ``coverage``: per law (transfer, repetition, mixing), over `--seeds` synthetic tables, NUTS
  (`--chains` x `--draws` after as many warm-up steps): the share of true parameters inside
  their 90% intervals (matrix parameters: off-diagonal entries); tau's non-zero truths apart
  (``tau_nonzero``), and for its zero truths (always under the upper bound of an interval of a
  parameter bounded at 0) the share whose 90% upper bound is below ``ZERO_SMALL``
  (``tau_zero``); the median absolute error of the posterior medians; per seed max R-hat, min
  bulk ESS and divergences (also logged to stderr as each seed ends).
- ``--tau-truth sparse``: tau of the truth from `sparse_tau` (exact zeros) instead of the prior.
- ``--t-truth prior``: the mixing law's t of the truth drawn from the law's own prior,
  N(0, EXTRA_PRIORS["t"]) (`prior_t`), as tau's is by default; ``uniform`` (default) keeps
  `mixture_truth`'s U(-0.5, 1.5), whose mean sits half a prior scale off the prior's centre. With
  a truth drawn from the prior, 90% intervals of a calibrated posterior cover it 90% of the time
  on average over the prior (simulation-based calibration), so the two settings tell a
  miscalibrated sampler from a truth the prior finds unlikely.

The repetition case (held-out MAPE, p* regret) is benchmarks/bench_repetition.py.

Usage: python benchmarks/bench_mixture_recovery.py [--seeds 20] [--draws 300] [--chains 2]
       [--laws transfer,repetition,mixing] [--tau-truth prior|sparse] [--t-truth uniform|prior] [--jobs 1]
       [--raw PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


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
        if n == "tau":
            nz = keep & (t > 0)
            acc.setdefault("tau_nonzero", []).extend(hit[nz].tolist())
            acc.setdefault("_tau_zero_upper", []).extend(hi[keep & (t == 0)].tolist())
        else:
            acc.setdefault(n, []).extend(hit[keep].tolist())
        acc.setdefault("_err_" + n, []).extend(err[keep].tolist())


def sparse_tau(F: int, seed: int) -> np.ndarray:
    """The first generator's tau (1, F, F): exact zeros on about two thirds of the pairs, the rest
    U(0.05, 0.4): a truth no continuous prior puts its mass on (`--tau-truth sparse`)."""
    rng = np.random.default_rng(seed + 5000)
    return rng.uniform(0.05, 0.4, size=(1, F, F)) * (rng.uniform(size=(1, F, F)) < 0.35) * (1.0 - np.eye(F))


def prior_t(F: int, seed: int) -> np.ndarray:
    """t of the truth (1, F, F) from the mixing law's prior N(0, EXTRA_PRIORS["t"]), zero on the
    diagonal (the law has no t_ii: a family's own share enters through k)."""
    from multiscale.laws.mixture_fit import EXTRA_PRIORS

    rng = np.random.default_rng(seed + 6000)
    return EXTRA_PRIORS["t"] * rng.standard_normal(size=(1, F, F)) * (1.0 - np.eye(F))


def _one_seed(job: tuple) -> dict:
    """One seed's NUTS fit and hits (a worker of `coverage`; may run in a spawned process)."""
    from multiscale.laws.bayes import host_devices_for_chains

    law, s, chains, draws, tau_truth, t_truth = job
    host_devices_for_chains(chains)  # before jax starts in a fresh worker; no-op afterwards
    from multiscale.laws import fit_bayes
    from multiscale.laws.synthetic_mixture import mixture_runs, mixture_truth

    truth = mixture_truth(law, 5, seed=s)
    if "tau" in truth and tau_truth == "sparse":
        truth["tau"] = sparse_tau(5, s)
    if "t" in truth and t_truth == "prior":
        truth["t"] = prior_t(5, s)
    df = mixture_runs(law, truth, seed=s, n_mixtures=8, D=(2e9, 2e10, 1e11))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.perf_counter()
        fit = fit_bayes(df, law=law, chains=chains, draws=draws, warmup=draws, seed=s, warn=False)
        secs = time.perf_counter() - t0
    acc = {}
    _score_seed(truth, fit, acc)
    d = {k: round(float(fit.diagnostics[k]), 3) for k in ("max_rhat", "min_ess_bulk", "divergences")}
    return {"law": law, "seed": s, "s": round(secs, 1), **d, "acc": acc}


def _pool(results: list[dict]) -> dict:
    acc = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        for n, v in r["acc"].items():
            acc.setdefault(n, []).extend(v)
    out = {"nuts_mean_s": float(np.mean([r["s"] for r in results])),
           "coverage90": {n: float(np.mean(h)) for n, h in acc.items() if not n.startswith("_")},
           "n_values": {n: len(h) for n, h in acc.items() if not n.startswith("_")},
           "posterior_median_abs_error": {n[5:]: float(np.median(e)) for n, e in acc.items() if n.startswith("_err_")}}
    for k in ("max_rhat", "min_ess_bulk", "divergences"):
        out[f"{k}_per_seed"] = [r[k] for r in sorted(results, key=lambda r: r["seed"])]
    if acc.get("_tau_zero_upper"):
        up = np.array(acc["_tau_zero_upper"])
        out["tau_zero"] = {"n": int(up.size), "share_upper90_below": float(np.mean(up < ZERO_SMALL)),
                           "threshold": ZERO_SMALL, "median_upper90": float(np.median(up)),
                           "max_upper90": float(up.max())}
    return out


def coverage(law: str, seeds: int, chains: int, draws: int, tau_truth: str = "prior", jobs: int = 1,
             raw: str | None = None, t_truth: str = "uniform") -> dict:
    """`_one_seed` over `seeds` seeds, `jobs` worker processes at a time; each seed's result is
    appended to the JSON-lines file `raw` as it ends."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    todo = [(law, s, chains, draws, tau_truth, t_truth) for s in range(seeds)]
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
    return {"seeds": seeds, "chains": chains, "draws": draws, "warmup": draws, "tau_truth": tau_truth,
            "t_truth": t_truth, **_pool(results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
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
                                args.t_truth)
                       for law in args.laws.split(",")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
