"""Leave one ladder out: does the field prior give honest intervals on a ladder it has not seen?

For each public ladder of `multiscale.datasets.LADDERS` and each ``--hold`` H:

1. the field prior learned WITHOUT it: the ``leave_one_ladder_out`` log-k summary that
   benchmarks/bench_extrapolation_field.py stored in the package's field_prior.json (its
   ``ladder_t`` block is the library's `FieldPrior`); ``--recompute`` refits the windows and
   recomputes it (3-6 min more on 2 shared cores);
2. the library's default NUTS fit (`fit_bayes` at its defaults: 4 chains, 1,000 draws, 500 warm-up,
   as ``multiscale fit --method nuts`` runs) of the chinchilla law on the ladder's runs with
   N <= N_max / H, and its leave-largest-out refits (one per axis with >= 3 levels, 4 chains x 250
   draws after the same warm-up, as `refit_settings`; here one after another rather than as one
   stacked program). ``--cache DIR`` keeps the predictive draws of both (NUTS with a fixed seed is
   deterministic), so the terms can be scored again without refitting;
3. the runs with larger N predicted with 90% intervals, from the SAME posterior draws and refits:
   ``no_term`` (the posterior alone); ``span_term`` (main before 2026-12-06: the refits' kappa per
   fitted span); ``before`` (main at 2026-12-06: the pooled kappa_90 weighing one experiment per
   other ladder, updated as kappa^2 = (w k0^2 + sum k_e^2) / (w + n)); ``prior_only`` (the new
   prior, no update); ``field_prior`` (the library's term now: `leave_largest_out` with the prior
   learned without the ladder); ``with_drift`` (a variant the library does not ship: the same
   term, and the medians moved by the table's own signed drift, `drift`).

Scores per ladder and H: coverage of the 90% intervals, MAPE and bias (mean log(median /
observed)) of the medians (a symmetric term leaves the medians, hence MAPE and bias, as they
were up to the Monte Carlo of the widening), the median interval width in log-loss. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from multiscale.datasets import LADDERS, load_ladder
from multiscale.laws.bayes import REFIT_DRAWS, fit_bayes
from multiscale.laws.extrapolation import (
    FIELD_PRIOR_PATH,
    KAPPA_QUANTILE,
    FieldPrior,
    distance,
    extrapolation_sd,
    fitted_ranges,
    leave_largest_out,
    required_kappa,
)
from multiscale.laws.noise import DEFAULT_NOISE, NOISE_MODELS
from multiscale.laws.predict import predictive_draws

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_extrapolation_field as field  # noqa: E402  (a sibling script, not a package)

LAW = "chinchilla"
HOLD = 4.0  # default: fit on N <= N_max / HOLD, predict the larger sizes
CHAINS, DRAWS, SEED = 4, 1000, 0  # fit_bayes's defaults (warm-up: its WARMUP)


def loo_priors(recompute: bool, per_hi: int) -> dict[str, dict]:
    """Per ladder, the log-k summary of the field learned on the other ladders."""
    if not recompute:
        return json.loads(FIELD_PRIOR_PATH.read_text())["summary"]["log_k"]["leave_one_ladder_out"]
    parts = []
    for lad in LADDERS:
        df = load_ladder(lad)
        for k, (n_lo, n_hi) in enumerate(field.windows(df, per_hi)):
            parts.append(field.window_errors(df, n_lo, n_hi)[0].assign(ladder=lad, window=k))
    errs = pd.concat(parts, ignore_index=True)
    errs["w"] = field.weights(errs)
    return {lad: field.summarise(errs[errs["ladder"] != lad], "log_k")["pooled"] for lad in LADDERS}


def span_distance(train: pd.DataFrame, N, D) -> np.ndarray:
    """The retired distance: each axis's excess log-distance in units of its fitted log-span."""
    r = fitted_ranges(train)
    ex, units = [], []
    for x, (lo, hi) in ((N, r["log_N_range"]), (D, r["log_D_range"])):
        lx = np.log(np.asarray(x, float))
        ex.append(np.maximum(0.0, np.maximum(lx - hi, lo - lx)))
        units.append(hi - lo)
    uN, uD = (units[0] or units[1] or 1.0), (units[1] or units[0] or 1.0)
    return np.hypot(ex[0] / uN, ex[1] / uD)


def scores(y: np.ndarray, draws_SxR: np.ndarray, sd_R: np.ndarray, z_SxR: np.ndarray, shift_R=0.0) -> dict:
    """Coverage of the 90% interval of the draws widened by exp(sd z) (and moved by exp(-shift)),
    MAPE and bias of the median."""
    wide = draws_SxR * np.exp(sd_R[None, :] * z_SxR - np.asarray(shift_R)[None] * np.ones_like(sd_R)[None, :])
    lo, med, hi = np.quantile(wide, [0.05, 0.5, 0.95], axis=0)
    return {"coverage90": round(float(np.mean((y >= lo) & (y <= hi))), 3),
            "mape": round(float(np.mean(np.abs(med / y - 1))), 4),
            "bias": round(float(np.mean(np.log(med / y))), 4),
            "width_log_median": round(float(np.median(np.log(hi / lo))), 4)}


def nuts_draws(name: str, hold: float, cache: Path | None, noise: str = DEFAULT_NOISE) -> dict:
    """The default NUTS fit of the ladder's runs with N <= N_max / `hold` and its leave-largest-out
    refits, as arrays: the fit's predictive draws for the larger runs and each refit's for its
    left-out rows (keyed by `rows_key`), with diagnostics. Read from `cache` when it holds them (the
    same fit: NUTS with a fixed seed is deterministic), else fitted and written there."""
    tag = "" if noise == DEFAULT_NOISE else f"-{noise}"
    path = cache / f"{name}-H{hold:g}{tag}.npz" if cache else None
    if path and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    df = load_ladder(name)
    train, test = split(df, hold)
    t0 = time.perf_counter()
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_bayes(train, law=LAW, chains=CHAINS, draws=DRAWS, seed=SEED, extrapolation=False, noise=noise)
        per_chain = min(DRAWS, -(-REFIT_DRAWS // CHAINS))

        def fit_fn(sub):
            return fit_bayes(sub, law=LAW, chains=CHAINS, draws=per_chain, seed=SEED, extrapolation=False,
                             warn=False, noise=noise)

        def draws_fn(f_sub, rows):
            d = predictive_draws(f_sub, rows, extrapolation=False)
            out[rows_key(rows)] = d
            return d

        leave_largest_out(train, fit_fn, draws_fn, prior=FieldPrior(0.0, 1.0, 2, 1.0, 0.0, "unused"))
    out["test"] = predictive_draws(fit, test, extrapolation=False)
    diag = {k: fit.diagnostics[k] for k in ("max_rhat", "min_ess_bulk", "divergences") if k in fit.diagnostics}
    out["meta"] = np.array(json.dumps({"diagnostics": diag, "seconds": round(time.perf_counter() - t0, 1),
                                       "warnings": sorted({str(w.message)[:120] for w in caught})}))
    if path:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **out)
    return out


def split(df: pd.DataFrame, hold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs with N <= N_max / hold, the larger runs)."""
    cut = df["N"].max() / hold
    return df[df["N"] <= cut], df[df["N"] > cut]


def rows_key(rows: pd.DataFrame) -> str:
    """A refit's key: the run names of the rows it predicts."""
    return "refit:" + hashlib.sha1("\n".join(rows["run"]).encode()).hexdigest()[:16]


def kappas_for(y: np.ndarray, draws_SxR: np.ndarray, dist_R: np.ndarray, z_SxR: np.ndarray) -> dict:
    """On a grid of kappa (0 to 0.2 per unit log k): the smallest whose 90% intervals cover 80% of
    the held-out runs, and the largest that covers at most 95% (None where none does)."""
    grid = np.linspace(0.0, 0.2, 401)
    cov = np.array([scores(y, draws_SxR, k * dist_R, z_SxR)["coverage90"] for k in grid])
    hi = grid[cov <= 0.95]
    return {"cover_80": float(grid[np.argmax(cov >= 0.8)]) if np.any(cov >= 0.8) else None,
            "cover_95_at_most": float(hi.max()) if hi.size else None}


def drift(seen: list, edge: float) -> float:
    """The table's own signed drift: the least-squares slope through 0 of the refits' log errors
    log(median / observed) on their log k (at least `edge`), all experiments' rows together."""
    e, x = [], []
    for sub, rows, d in seen:
        e.append(np.log(np.median(d, axis=0) / rows["loss"].to_numpy(float)))
        x.append(np.maximum(distance(fitted_ranges(sub), rows["N"].to_numpy(float), rows["D"].to_numpy(float)), edge))
    if not e:
        return 0.0
    e, x = np.concatenate(e), np.concatenate(x)
    return float(np.sum(e * x) / np.sum(x * x))


def holdout(name: str, summary: dict, hold: float = HOLD, cache: Path | None = None,
            noise: str = DEFAULT_NOISE) -> dict:
    """Fit the ladder's smaller sizes, score the terms on its larger ones (`summary`: the field
    learned without the ladder)."""
    prior = FieldPrior.from_summary(summary, f"field_prior.json without {name}")
    arrays = nuts_draws(name, hold, cache, noise)
    meta = json.loads(str(arrays["meta"]))
    train, test = split(load_ladder(name), hold)
    seen = []  # (refit's train, left-out rows, their predictive draws)

    def draws_fn(sub, rows):
        d = arrays[rows_key(rows)]
        seen.append((sub, rows, d))
        return d

    model = leave_largest_out(train, lambda sub: sub, draws_fn, prior=prior)
    ks = [required_kappa(rows["loss"], d, span_distance(sub, rows["N"], rows["D"])) for sub, rows, d in seen]
    kappa_today = float(np.quantile(np.concatenate(ks), KAPPA_QUANTILE)) if ks else 0.0
    # main at 209d28f: the pooled kappa_90 (no edge floor), weighing one experiment per ladder
    k0, w, k_e = summary["kappa"]["90"], len(LADDERS) - 1, [e["kappa"] for e in model["experiments"]]
    kappa_before = float(np.sqrt((w * k0 ** 2 + np.sum(np.square(k_e))) / (w + len(k_e))))
    b = drift(seen, prior.edge)
    draws = arrays["test"]
    z = np.random.default_rng(SEED).standard_normal(draws.shape)
    y = test["loss"].to_numpy(float)
    N, D = test["N"].to_numpy(float), test["D"].to_numpy(float)
    dist = distance(fitted_ranges(train), N, D)
    log_k = np.log(np.maximum(N / train["N"].max(), D / train["D"].max()))
    return {"ladder": name, "hold": hold, "noise": noise, "fit_sizes": int(train["N"].nunique()),
            "fit_rows": len(train),
            "fit_N": [float(train["N"].min()), float(train["N"].max())],
            "held_out_sizes": int(test["N"].nunique()), "held_out_rows": len(test),
            "held_out_N": [float(test["N"].min()), float(test["N"].max())],
            "log_k": [round(float(log_k.min()), 3), round(float(log_k.max()), 3)],
            "kappa_span_per_span": kappa_today, "kappa_before": kappa_before, "prior": prior.to_dict(),
            "kappa_table": model["kappa_table"], "kappa": model["kappa"], "drift": b,
            "experiments": model["experiments"], "skipped": model["skipped"],
            "no_term": scores(y, draws, np.zeros(len(y)), z),
            "span_term": scores(y, draws, kappa_today * span_distance(train, N, D), z),
            "before": scores(y, draws, kappa_before * dist, z),
            "prior_only": scores(y, draws, prior.kappa * dist, z),
            "field_prior": scores(y, draws, extrapolation_sd(model, N, D), z),
            "with_drift": scores(y, draws, extrapolation_sd(model, N, D), z, b * dist),
            "kappa_for": kappas_for(y, draws, dist, z), **meta}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ladders", nargs="*", default=list(LADDERS), choices=list(LADDERS))
    ap.add_argument("--hold", type=float, nargs="+", default=[HOLD],
                    help=f"fit N <= N_max / HOLD, one split per value (default {HOLD:g})")
    ap.add_argument("--cache", default="", help="read and write the NUTS draws in this folder")
    ap.add_argument("--noise", default=DEFAULT_NOISE, choices=list(NOISE_MODELS),
                    help=f"the fits' noise model (default {DEFAULT_NOISE}, the library's)")
    ap.add_argument("--recompute", action="store_true", help="refit the field windows for the priors")
    ap.add_argument("--per-hi", type=int, default=2, help="with --recompute: windows per N_hi (default 2)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    priors = loo_priors(args.recompute, args.per_hi)
    cache = Path(args.cache) if args.cache else None
    rows = [holdout(name, priors[name], h, cache, args.noise) for h in args.hold for name in args.ladders]
    print(json.dumps({"benchmark": "ladder_holdout", "cpu": field.cpu_model(), "law": LAW, "hold": args.hold,
                      "noise": args.noise,
                      "nuts": {"chains": CHAINS, "draws": DRAWS, "seed": SEED},
                      "wall_s": round(time.perf_counter() - t0, 1), "ladders": rows}))


if __name__ == "__main__":
    main()
