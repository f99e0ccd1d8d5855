"""The repetition law on the repetition table of issue 12: held-out error, p*, coverage.

Prints ONE JSON object (non-finite numbers as null).

- ``case`` (per seed of `--case-seeds`): the table of
  `fixtures.synthetic_mixture.repetition_runs` (five families with 5e9 down to 1e7
  unique tokens, 0.4% noise, truth the repetition law), the multilingual law and
  the repetition law fitted (L-BFGS) on all but the largest N. For each: held-out MAPE (all
  rows, rows past 4 epochs; rows whose prediction is not finite are counted apart), and the
  loss of its p* (raw objective, equal weights, no caps) against the true optimum at a large
  budget (`--N`, `--D`), scored with the true law; also the multilingual law with the library's
  4-epoch caps (``--tokens`` = the unique tokens), uniform sampling, and the truth's own MAPE
  (the noise level).
- ``coverage`` (`--seeds` tables, NUTS `--chains` x `--draws`): the share of the true
  parameters inside their 90% intervals, per parameter (and per family), and the median
  absolute error of the posterior medians.

Usage: python benchmarks/bench_repetition.py [--case-seeds 3] [--seeds 20] [--draws 300]
       [--chains 2] [--skip-coverage] [--skip-case] [--N 1e9] [--D 2e10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

# the synthetic run tables (tests/fixtures), shared with the tests
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

F = 5


def _log(msg):
    print(f"[bench_repetition {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _errors(pred, df) -> dict:
    """Held-out absolute percentage errors: mean over rows with a finite prediction."""
    loss = df["loss"].to_numpy()
    ape = np.abs(pred - loss) / loss * 100
    ok = np.isfinite(ape)
    past = (df["p"] * df["D"] / df["unique_tokens"]).to_numpy() > 4
    return {"heldout_mape_pct": float(ape[ok].mean()), "past_4_epochs_pct": float(ape[ok & past].mean()),
            "rows_not_finite": int((~ok).sum())}


def _truth_pred(truth, df) -> np.ndarray:
    from fixtures.synthetic_mixture import DEFAULT_UNIQUE

    from multiscale.laws import get_law
    from multiscale.laws.forms import mixture_loss

    law = get_law("repetition")
    P = df[[f"p_fam{i}" for i in range(F)]].to_numpy()
    fam = df["family"].str[3:].astype(int).to_numpy()
    return np.array([mixture_loss(law, truth, n, d, p, np.arange(F), np.array(DEFAULT_UNIQUE))[0][j]
                     for n, d, p, j in zip(df["N"], df["D"], P, fam)])


def _regret(truth, N, D, p, opt) -> float:
    from fixtures.synthetic_mixture import DEFAULT_UNIQUE

    from multiscale.decisions.ratios import objective_at
    from multiscale.laws import get_law

    with np.errstate(divide="ignore", invalid="ignore"):
        obj = objective_at(get_law("repetition"), truth, N, D, np.arange(F), np.asarray(p, float),
                           np.full(F, 1.0 / F), np.array(DEFAULT_UNIQUE))[0][0]
    return float(obj - opt)


def case(seed: int, N: float, D: float) -> dict:
    from fixtures.synthetic_mixture import DEFAULT_UNIQUE, repetition_runs

    from multiscale.decisions import optimal_ratios
    from multiscale.decisions.ratios import solve_coupled
    from multiscale.laws import fit_point, get_law
    from multiscale.laws.predict import predict_rows

    truth, df = repetition_runs(seed)
    train, test = df[df["N"] < df["N"].max()], df[df["N"] == df["N"].max()]
    U = np.array(DEFAULT_UNIQUE)
    best = solve_coupled(get_law("repetition"), truth, N, D, np.arange(F), F, np.full(F, 1.0 / F), np.zeros(F),
                         np.ones(F), U)[0]
    opt = _regret(truth, N, D, best, 0.0)
    epochs = (df["p"] * df["D"] / df["unique_tokens"]).to_numpy()
    out = {"seed": seed, "rows": int(len(df)), "heldout_rows": int(len(test)),
           "share_of_rows_past_4_epochs": float(np.mean(epochs > 4)),
           "truth": {"R_star": np.round(truth["R_star"][0], 2).tolist(), "optimum": np.round(best, 4).tolist(),
                     **_errors(_truth_pred(truth, test), test)},
           "uniform_loss_minus_optimum": _regret(truth, N, D, np.full(F, 1.0 / F), opt)}
    tokens, fits = {f"fam{i}": float(u) for i, u in enumerate(U)}, {}
    for name, kw in (("multilingual", {}), ("multilingual_4_epoch_caps", {"available_tokens": tokens}),
                     ("repetition", {})):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            law = name.split("_")[0]
            fit = fits[law] = fits[law] if law in fits else fit_point(train, law=law)
            secs = time.perf_counter() - t0
            rec = optimal_ratios(fit, N, D, objective="raw", baselines=False, **kw)
            pred = np.median(predict_rows(fit, test), axis=0)
        p = np.array([rec.ratios[f"fam{i}"] for i in range(F)])
        out[name] = {**_errors(pred, test), "p_star": np.round(p, 4).tolist(),
                     "loss_minus_optimum": _regret(truth, N, D, p, opt), "point_fit_s": secs}
        _log(f"seed {seed} {name}: {out[name]}")
    return out


def _covered(truth: np.ndarray, draws: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return (truth >= lo) & (truth <= hi)


def coverage(seeds: int, chains: int, draws: int) -> dict:
    from fixtures.synthetic_mixture import repetition_runs

    from multiscale.laws import fit_bayes

    hits, errs, secs, rhat = {}, {}, [], []
    for s in range(seeds):
        truth, df = repetition_runs(s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t0 = time.perf_counter()
            fit = fit_bayes(df, law="repetition", chains=chains, draws=draws, warmup=draws, seed=s, warn=False)
            secs.append(time.perf_counter() - t0)
        rhat.append(fit.diagnostics["max_rhat"])
        for n, v in truth.items():
            hits.setdefault(n, []).extend(_covered(v[0], fit.draws[n]).tolist())
            errs.setdefault(n, []).extend(np.abs(np.median(fit.draws[n], axis=0) - v[0]).tolist())
        _log(f"coverage seed {s}: {secs[-1]:.0f} s, R-hat {rhat[-1]:.3f}, "
             f"{ {n: float(np.mean(h)) for n, h in hits.items()} }")
    return {"seeds": seeds, "chains": chains, "draws": draws, "nuts_mean_s": float(np.mean(secs)),
            "max_rhat": float(np.nanmax(rhat)),
            "coverage90": {n: float(np.mean(h)) for n, h in hits.items()},
            "coverage90_per_family": {n: np.mean(np.reshape(h, (-1, F)), axis=0).round(2).tolist()
                                      for n, h in hits.items()},
            "posterior_median_abs_error": {n: float(np.median(e)) for n, e in errs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case-seeds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--N", type=float, default=1e9)
    ap.add_argument("--D", type=float, default=2e10)
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--skip-case", action="store_true")
    args = ap.parse_args()
    from multiscale.laws.bayes import host_devices_for_chains

    host_devices_for_chains(args.chains)
    out = {"benchmark": "repetition", "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
           "target": {"N": args.N, "D": args.D}}
    if not args.skip_case:
        out["case"] = [case(s, args.N, args.D) for s in range(args.case_seeds)]
    if not args.skip_coverage:
        out["coverage"] = coverage(args.seeds, args.chains, args.draws)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(_clean(out)))


if __name__ == "__main__":
    main()
