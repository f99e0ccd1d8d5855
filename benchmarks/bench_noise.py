"""Noise that varies: the "constant" against the "scale" and "size" noise models (`multiscale.laws.noise`).

For each case (a run table, a law, a held-out split of `multiscale.decisions.compare.split`), the
noise models (``--models``, default all of NOISE_MODELS, "constant" first) are fitted with the
library's default NUTS (`fit_bayes` at its defaults: 4 chains x
1,000 draws after 500 warm-up, seed 0 unless ``--seed``; the extrapolation refits on where the held-out rows lie
beyond the fitted N or D, off for in-range hold-outs, where the term is 0) on the training rows,
and scored:

- PSIS-LOO elpd on the training rows (ArviZ ``az.loo``), and the paired difference of each model
  minus "constant" with its SE (sqrt(n) x the sd of the pointwise differences, as
  ``az.compare``'s ``dse``);
- on the held-out rows, the 90% posterior-predictive coverage, MAPE, and the median width of the
  interval in log-loss (`multiscale.laws.validation.score`, `predictive_draws`);
- the slopes of the scale model and the size offsets' sd of the size model (median and 90%
  interval), R-hat, divergences, seconds.

Cases: the CPU studies (docs/cpu_study, docs/cpu_study_v2; law multilingual; held out a third of
the mixtures, and the largest N) and the shipped ladders (`multiscale.datasets.LADDERS`; law
chinchilla; held out the largest N). Prints one JSON object. ``--quick`` runs 2 chains x 300 draws
(for a smoke test, not for the record).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from multiscale.datasets import LADDERS, load_ladder
from multiscale.decisions.compare import split
from multiscale.laws import fit_bayes, score
from multiscale.laws.bayes import host_devices_for_chains
from multiscale.laws.noise import NOISE_MODELS, slope_name
from multiscale.laws.predict import predictive_draws

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402  (a sibling file, not a package)

ROOT = Path(__file__).resolve().parent.parent
CPU_STUDIES = {"cpu_study": ROOT / "docs/cpu_study/runs.csv", "cpu_study_v2": ROOT / "docs/cpu_study_v2/runs.csv"}


def cases() -> list[tuple[str, str, str]]:
    """(table, law, held-out split) of every case."""
    out = [(lad, "chinchilla", "largest-N") for lad in LADDERS]
    return out + [(t, "multilingual", h) for h in ("mixtures", "largest-N") for t in CPU_STUDIES]


def table(name: str) -> pd.DataFrame:
    return pd.read_csv(CPU_STUDIES[name]) if name in CPU_STUDIES else load_ladder(name)


def _loo(fit):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(fit.idata, var_name="y", pointwise=True)
    return res, np.asarray(res.loo_i.values, float)


def run_case(name: str, law: str, holdout: str, nuts: dict, models=NOISE_MODELS) -> dict:
    """The noise models `models` ("constant" among them) on one case."""
    train, test = split(table(name), holdout, seed=0)
    beyond = bool((test["N"] > train["N"].max()).any() or (test["D"] > train["D"].max()).any())
    out = {"table": name, "law": law, "holdout": holdout, "train_rows": len(train), "heldout_rows": len(test),
           "extrapolation": beyond, "models": {}}
    loo_i = {}
    for noise in models:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_bayes(train, law=law, noise=noise, extrapolation=beyond, warn=False, **nuts)
        seconds = time.perf_counter() - t0
        res, loo_i[noise] = _loo(fit)
        sc = score(fit, test, seed=0).overall
        d = predictive_draws(fit, test, seed=0)
        lo, hi = np.quantile(d, [0.05, 0.95], axis=0)
        slopes = {}
        for c in fit.noise.slopes:
            v = fit.idata.posterior[slope_name(c)].values[..., 0].ravel()
            slopes[c] = [round(float(q), 3) for q in np.quantile(v, [0.5, 0.05, 0.95])]
        if noise == "size":
            v = fit.idata.posterior["size_sd"].values.reshape(-1, len(fit.families))
            slopes["size_sd"] = {f: [round(float(q), 4) for q in np.quantile(v[:, j], [0.5, 0.05, 0.95])]
                                 for j, f in enumerate(fit.families)}
        sig = fit.idata.posterior["sigma"].values.reshape(-1, len(fit.families))
        out["models"][noise] = {
            "elpd_loo": round(float(res.elpd_loo), 2), "se": round(float(res.se), 2),
            "p_loo": round(float(res.p_loo), 2), "max_pareto_k": round(float(np.max(res.pareto_k.values)), 3),
            "coverage90": round(float(sc["coverage"]), 3), "mape": round(float(sc["mape"]), 3),
            "width_log_median": round(float(np.median(np.log(hi / lo))), 4),
            "slopes_median_q05_q95": slopes,
            "sigma_median": {f: round(float(np.median(sig[:, j])), 4) for j, f in enumerate(fit.families)},
            "max_rhat": round(float(fit.diagnostics["max_rhat"]), 4),
            "divergences": int(fit.diagnostics["divergences"]), "seconds": round(seconds, 1)}
    for m in models:
        if m != "constant":
            diff_R = loo_i[m] - loo_i["constant"]
            out[f"elpd_diff_{m}_minus_constant"] = round(float(diff_R.sum()), 2)
            out["dse" if m == "scale" else f"dse_{m}"] = round(float(np.sqrt(len(diff_R)) * np.std(diff_R, ddof=1)), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted({c[0] for c in cases()})
    ap.add_argument("--tables", nargs="*", default=names, choices=names)
    ap.add_argument("--holdouts", nargs="*", default=["mixtures", "largest-N"], choices=["mixtures", "largest-N"])
    ap.add_argument("--quick", action="store_true", help="2 chains x 300 draws after 300 warm-up")
    ap.add_argument("--seed", type=int, default=0, help="NUTS seed (default 0, fit_bayes's)")
    ap.add_argument("--models", default=",".join(NOISE_MODELS),
                    help=f"comma-separated noise models among {','.join(NOISE_MODELS)} (constant always fitted)")
    args = ap.parse_args()
    models = ("constant",) + tuple(m for m in dict.fromkeys(args.models.split(",")) if m != "constant")
    if not set(models) <= set(NOISE_MODELS):
        ap.error(f"--models must name models among {','.join(NOISE_MODELS)}, got {args.models!r}")
    nuts = {"chains": 2, "draws": 300, "warmup": 300} if args.quick else {}
    nuts = {**nuts, "seed": args.seed} if args.seed else nuts
    host_devices_for_chains(nuts.get("chains", 4))  # parallel chains, as the CLI runs them
    t0 = time.perf_counter()
    rows = []
    for c in cases():
        if c[0] in args.tables and c[2] in args.holdouts:
            rows.append(run_case(*c, nuts, models))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: one line per case
    summary = {"cases": len(rows)}
    for m in models[1:]:
        dse = "dse" if m == "scale" else f"dse_{m}"
        summary[f"{m}_better_by_2se"] = sum(r[f"elpd_diff_{m}_minus_constant"] > 2 * r[dse] for r in rows)
        summary[f"constant_better_than_{m}_by_2se"] = sum(r[f"elpd_diff_{m}_minus_constant"] < -2 * r[dse]
                                                          for r in rows)
    print(json.dumps({"benchmark": "noise", "cpu": cpu_model(), "nuts": nuts or "fit_bayes defaults",
                      "models": list(models), "wall_s": round(time.perf_counter() - t0, 1),
                      "summary": summary, "cases": rows}))


if __name__ == "__main__":
    main()
