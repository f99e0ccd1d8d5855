"""Choosing among trained candidates, held out on the CPU studies' committed run tables.

For each held-out cell (a larger N, and its budget D) of docs/cpu_study/runs.csv and
docs/cpu_study_v2/runs.csv:

1. the law (multilingual; `METHOD`) is fitted on the runs at the proxy sizes only (N up to a
   largest proxy N below the held-out N; every mixture and budget);
2. the candidates are the mixtures measured in the held-out cell that were also trained at those
   proxy sizes; `choose_candidates` gets their proxy runs only and chooses for the held-out (N, D),
   given the fitted table (tau from leave-one-mixture-out point refits) and without it (tau from the
   fit's own residuals);
3. each pick (the library's, the single-scale one, the law's among the candidates) is scored by
   the objective MEASURED in the held-out cell (raw: mean loss over the families, mean over seeds):
   regret against the measured best candidate, in nats/token.

The seed noise of a measurement in the held-out cell is the pooled sd over seeds of the mixtures
measured there with several seeds (None where none was). The law's continuous p* was not trained
at the held-out size (it is no candidate), so only its predicted objective is shown. Prints one
JSON object. ~10 min on 2 shared cores under load (3 NUTS fits, 40 point fits).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from multiscale.decisions.choose import LAW, LAW_P, LIBRARY, SINGLE, choose_candidates
from multiscale.laws import fit_bayes, fit_point
from multiscale.runs import mixture_columns, read_runs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402  (a sibling script, not a package)

ROOT = Path(__file__).resolve().parent.parent
CELLS = {  # study -> (held-out N, D, largest proxy N): every larger size the study measured several candidates at
    "cpu_study": [(803968.0, 198656.0, 443232.0), (1550560.0, 198656.0, 443232.0), (1550560.0, 198656.0, 803968.0)],
    "cpu_study_v2": [(803968.0, 198656.0, 443232.0)],
}
# the fit per study: cpu_study has two budgets only, where the point fit's B and beta explode (its
# predictions are not finite), so it gets the study's own NUTS fit (at compare's default size);
# the extrapolation term is left out: it shifts every mixture alike at one (N, D)
METHOD = {"cpu_study": "nuts", "cpu_study_v2": "lbfgs"}
NUTS = {"chains": 4, "draws": 500, "warmup": 500, "seed": 0}


def run_objective(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its mixture key, N, D and raw objective (mean loss over its families)."""
    cols = mixture_columns(df)
    runs = df.groupby("run").agg(N=("N", "first"), D=("D", "first"), obj=("loss", "mean"),
                                 **{c: (c, "first") for c in cols})
    runs["mixture"] = runs[cols].round(6).apply(tuple, axis=1)
    return runs


FITS: dict = {}  # (study, largest proxy N) -> fit, shared by the cells that hold out from the same proxies


def holdout_cell(study: str, df: pd.DataFrame, N: float, D: float, proxy_max: float, method: str) -> dict:
    """Fit on N <= proxy_max, choose among the candidates measured at (N, D), score by the measured table."""
    runs = run_objective(df)
    cell = runs[(runs["N"] == N) & (runs["D"] == D)]
    proxy = runs[runs["N"] <= proxy_max]
    mixes = sorted(set(cell["mixture"]) & set(proxy["mixture"]))
    cand = df[df["run"].isin(proxy.index[proxy["mixture"].isin(mixes)])]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = df[df["N"] <= proxy_max]
        if (study, proxy_max) not in FITS:
            FITS[study, proxy_max] = (fit_point(fitted) if method == "lbfgs" else
                                      fit_bayes(fitted, warn=False, extrapolation=False, **NUTS))
        fit = FITS[study, proxy_max]
        own = choose_candidates(fit, cand, N, D)  # tau from the fit's own residuals
        ch = choose_candidates(fit, cand, N, D, fitted=fitted)  # tau from leave-one-mixture-out refits
    seconds = time.perf_counter() - t0
    g = cell[cell["mixture"].isin(mixes)].groupby("mixture")["obj"]
    measured, seeds = g.mean(), g.size()
    by_name = {name: tuple(round(c["ratios"][f[2:]], 6) for f in mixture_columns(df))
               for name, c in ch.candidates.items()}
    meas = {name: float(measured[k]) for name, k in by_name.items()}
    best = min(meas.values())
    sd = cell.groupby("mixture")["obj"].agg(["var", "size"]).dropna()
    dof = int((sd["size"] - 1).sum())
    seed_sd = float(np.sqrt((sd["var"] * (sd["size"] - 1)).sum() / dof)) if dof else None
    table = ch.table()
    picks = {k: {"candidate": table[k]["candidate"], "measured": meas[table[k]["candidate"]],
                 "regret": meas[table[k]["candidate"]] - best, "expected_regret": table[k]["expected_regret"],
                 "prob_best": table[k]["prob_best"]} for k in (LIBRARY, SINGLE, LAW)}
    picks["library, tau from own residuals"] = {
        "candidate": own.pick, "measured": meas[own.pick], "regret": meas[own.pick] - best, "tau": own.tau}
    if LAW_P in table:
        picks[LAW_P] = {"ratios": table[LAW_P]["ratios"], "predicted": table[LAW_P]["objective"],
                        "measured": None}
    return {"N": N, "D": D, "method": method, "fitted_runs": len(proxy), "proxy_N": ch.proxy_N,
            "proxy_D": list(ch.proxy_D), "n_candidates": len(mixes),
            "candidates": {n: {"ratios": ch.candidates[n]["ratios"], "proxy_runs": ch.candidates[n]["runs"],
                               "seeds_at_N": int(seeds[by_name[n]]), "measured": meas[n],
                               "measured_at_proxy": ch.candidates[n]["measured"],
                               "residual": ch.candidates[n]["residual"], "weight": ch.candidates[n]["shrinkage"],
                               "predicted": float(np.mean(ch.objective_SxC[:, i]))}
                           for i, n in enumerate(ch.candidates)},
            "measured_best": min(meas, key=meas.get), "seed_sd": seed_sd, "seed_sd_dof": dof,
            "effects": {"mu": ch.mu, "tau": ch.tau, "noise_sd": ch.noise_sd, "noise_source": ch.noise_source},
            "picks": picks, "advice": ch.advice, "notes": ch.notes, "seconds": seconds}


def main() -> None:
    out = {"machine": cpu_model(), "law": "multilingual", "nuts": NUTS, "objective": "raw",
           "loss_units": "nats/token", "cells": []}
    t0 = time.perf_counter()
    for study, cells in CELLS.items():
        df = read_runs(ROOT / "docs" / study / "runs.csv")
        for N, D, proxy_max in cells:
            out["cells"].append({"study": study, **holdout_cell(study, df, N, D, proxy_max, METHOD[study])})
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
