"""Observed vs predicted loss per (run, family) and the fit's scores on those rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from multiscale.laws.summary import Q_HIGH, Q_LOW


def prediction_table(fit, df: pd.DataFrame, heldout: Sequence[str], *, noise: bool = True,
                     seed: int = 0) -> pd.DataFrame:
    """Observed vs predicted loss (nats/token) per (run, family): median and 90% interval
    (`predictive_draws`); families the fit does not know are left out, `heldout` runs flagged."""
    from multiscale.laws.validation import predictive_draws

    held = set(heldout)
    df = df[df["family"].isin(fit.families)].reset_index(drop=True)
    draws_SxR = predictive_draws(fit, df, noise=noise, seed=seed)
    lo, mid, hi = np.quantile(draws_SxR, [Q_LOW, 0.5, Q_HIGH], axis=0)
    return pd.DataFrame({"run": df["run"], "family": df["family"], "N": df["N"], "D": df["D"], "p": df["p"],
                         "loss": df["loss"], "pred_lo": lo, "pred": mid, "pred_hi": hi,
                         "heldout": df["run"].isin(held).to_numpy()})


def fit_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """R² of loss, MAPE (%), and 90%-interval coverage, for the fitted and the held-out rows of
    a `prediction_table` (a group with no rows is left out; coverage is NaN for a point fit)."""
    out = {}
    for name, sub in (("fitted", table[~table["heldout"]]), ("heldout", table[table["heldout"]])):
        if sub.empty:
            continue
        y, yhat = sub["loss"].to_numpy(float), sub["pred"].to_numpy(float)
        ss_res = float(((y - yhat) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        has_interval = bool((sub["pred_hi"] > sub["pred_lo"]).any())  # a point fit has none
        out[name] = {
            "rows": int(len(sub)),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "mape_pct": float(np.mean(np.abs(yhat - y) / y) * 100),
            "coverage90": float(np.mean((y >= sub["pred_lo"]) & (y <= sub["pred_hi"]))) if has_interval
            else float("nan"),
        }
    return out
