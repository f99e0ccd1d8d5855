"""Laws of the whole mixture from known truth: recovery, interval coverage, and the repetition case.

Prints ONE JSON object.

- ``repetition_case``: a table from the repetition law (five families with 5e9 down to 1e7
  unique tokens, 0.4% noise), the seed's law and the repetition law fitted (L-BFGS) on all but
  the largest N: each one's held-out MAPE (all rows, and rows past 4 epochs), and the loss of
  its p* against the true optimum at a large budget (raw objective, equal weights, evaluated
  with the true law), beside uniform sampling's.
- ``coverage``: per law (transfer, repetition, mixing), over `--seeds` synthetic tables, NUTS
  (`--chains` x `--draws`): the share of true parameters inside their 90% intervals (tau's zero
  entries counted as covered when 0 lies below the 95% quantile: the interval of a parameter
  bounded at 0), and the point fit's median absolute error.

Usage: python benchmarks/bench_mixture_recovery.py [--seeds 20] [--draws 500] [--chains 2]
       [--laws transfer,repetition,mixing] [--skip-coverage] [--skip-repetition]
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


def _mape(fit, df) -> tuple[float, float]:
    from multiscale.laws.predict import predict_rows

    pred = np.median(predict_rows(fit, df), axis=0)
    ape = np.abs(pred - df["loss"].to_numpy()) / df["loss"].to_numpy() * 100
    epochs = df["p"] * df["D"] / df["unique_tokens"]
    return float(ape.mean()), float(ape[(epochs > 4).to_numpy()].mean())


def repetition_case(N_target: float = 1e9, D_target: float = 1e12) -> dict:
    from multiscale.laws import fit_point, get_law, optimal_ratios
    from multiscale.laws.coupled import objective_at, solve_coupled
    from multiscale.laws.synthetic_mixture import DEFAULT_UNIQUE, mixture_runs, mixture_truth

    law = get_law("repetition")
    truth = mixture_truth("repetition", 5, seed=0)
    df = mixture_runs("repetition", truth, seed=0, n_mixtures=10, N=(2e7, 5e7, 1.2e8, 3e8),
                      D=(2e9, 1e10, 5e10), noise=0.004)
    train, test = df[df["N"] < df["N"].max()], df[df["N"] == df["N"].max()]
    U, F, w = np.array(DEFAULT_UNIQUE), 5, np.full(5, 0.2)
    best = solve_coupled(law, truth, N_target, D_target, np.arange(F), F, w, np.zeros(F), np.ones(F), U)
    opt = objective_at(law, truth, N_target, D_target, np.arange(F), best, w, U)[0][0]
    out = {"rows": int(len(df)), "heldout_rows": int(len(test)), "target": {"N": N_target, "D": D_target},
           "true_optimum": dict(zip([f"fam{i}" for i in range(F)], np.round(best[0], 4).tolist())),
           "uniform_loss_minus_optimum": float(objective_at(law, truth, N_target, D_target, np.arange(F),
                                                            np.full(F, 0.2), w, U)[0][0] - opt)}
    for name in ("multilingual", "repetition"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_point(train, law=name)
            rec = optimal_ratios(fit, N_target, D_target, objective="raw", baselines=False)
        p = np.array([rec.ratios[f"fam{i}"] for i in range(F)])
        m_all, m_rep = _mape(fit, test)
        out[name] = {"heldout_mape_pct": m_all, "heldout_mape_past_4_epochs_pct": m_rep,
                     "p_star": np.round(p, 4).tolist(),
                     "loss_minus_optimum": float(objective_at(law, truth, N_target, D_target, np.arange(F), p, w,
                                                              U)[0][0] - opt)}
    return out


def _covered(truth: np.ndarray, draws: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    zero = truth == 0
    return np.where(zero, hi >= 0, (truth >= lo) & (truth <= hi))


def coverage(law: str, seeds: int, chains: int, draws: int) -> dict:
    from multiscale.laws import fit_bayes, fit_point
    from multiscale.laws.synthetic_mixture import mixture_runs, mixture_truth

    hits, errs, secs = {}, {}, []
    for s in range(seeds):
        truth = mixture_truth(law, 5, seed=s)
        df = mixture_runs(law, truth, seed=s, n_mixtures=8, D=(2e9, 2e10, 1e11))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            point = fit_point(df, law=law)
            t0 = time.perf_counter()
            fit = fit_bayes(df, law=law, chains=chains, draws=draws, warmup=draws, seed=s, warn=False)
            secs.append(time.perf_counter() - t0)
        for n, v in truth.items():
            off = np.ones(v.shape[1:], bool) if v.ndim == 2 else ~np.eye(v.shape[1], dtype=bool)[None]
            c = _covered(v[0], fit.draws[n])[off[0] if v.ndim == 3 else slice(None)]
            hits.setdefault(n, []).extend(np.ravel(c).tolist())
            errs.setdefault(n, []).extend(np.ravel(np.abs(point.draws[n][0] - v[0])).tolist())
        _log(f"{law} seed {s}: {time.perf_counter() - t0:.0f} s")
    return {"seeds": seeds, "chains": chains, "draws": draws, "nuts_mean_s": float(np.mean(secs)),
            "coverage90": {n: float(np.mean(h)) for n, h in hits.items()},
            "point_median_abs_error": {n: float(np.median(e)) for n, e in errs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--laws", default="transfer,repetition,mixing")
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--skip-repetition", action="store_true")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(args.chains)
    out = {"benchmark": "mixture_laws", "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    if not args.skip_repetition:
        _log("repetition case")
        out["repetition_case"] = repetition_case()
    if not args.skip_coverage:
        out["coverage"] = {law: coverage(law, args.seeds, args.chains, args.draws) for law in args.laws.split(",")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
