"""How far a fitted law misses when it extrapolates, measured on the public ladders in the package.

For each ladder of `multiscale.datasets.LADDERS` and each window of model sizes [N_lo, N_hi]
(at least 3 sizes, N_hi / N_lo >= MIN_SPAN, the law's minimum runs per family), fit the
chinchilla law with the library's point fit (`fit_point`, default start grid and search) on every
run with N in the window, predict every run of the same family with N > N_hi (`predict`), and
record the log error ``e = log(pred / obs)`` (> 0: over-prediction) of each held-out run against

- ``log_k = max(log N/N_hi, log D/D_hi)``: how far, as a factor, the run lies beyond the largest
  fitted size or budget (N_hi, D_hi of the window's runs of that family). The primary axis: it is
  > 0 for every held-out run, whereas compute 6ND would call a larger model trained on fewer tokens
  than the window's longest budget "inside" the fitted range (about a third of the held-out runs);
- ``d_span``: the same distance as the library's extrapolation term measures it, each axis's
  excess log-distance in units of the window's log-span of that axis, combined by hypot;
- ``log_kN = log N/N_hi`` and ``log_kC = log(N D / max N D of the window)`` (recorded, not fitted).

Summaries (per ladder, pooled, and leave one ladder out), for x = log_k and x = d_span: a weighted
Gaussian fit of ``e ~ Normal(a + b x, c + d x)`` with c > 0, d >= 0 (the spread does not shrink
away from the data); the library's zero-mean form ``e ~ Normal(0, kappa x)`` with, per coverage
q, the smallest kappa that covers a share q of the errors; and binned means and sds. Weights: each
ladder weighs 1 in all, spread equally over its windows and, within a window, equally over the
held-out runs (a window's errors share one fit; ladders with many sizes would otherwise swamp the
rest). The leave-one-ladder-out fit is learned without a ladder and scored on it: the share of its
errors inside the learned central 80% and 90% bands (and inside +-z kappa x). For log k each
summary also holds ``ladder_t``, the library's prior (`multiscale.laws.extrapolation.FieldPrior`):
each ladder's kappa_90 with log k taken as at least the edge c/d, their mean and sd in log, and
the sd of one window's log kappa_90 about its ladder's.

Run time: every window (191 in all) would take about 10 min of CPU time in point fits; by default
each N_hi keeps ``--per-hi 2`` of its windows (the widest and the narrowest span: 54 windows, about
2.5 min of CPU time, 3-6 min on 2 shared cores); ``--per-hi 0`` keeps all; ``--from-errors``
summarises the errors an earlier ``--errors`` wrote, without refitting. Prints one JSON object
and writes the summary to ``--prior`` (default the package's
``multiscale/datasets/ladders/field_prior.json``; empty to skip).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from multiscale.datasets import LADDERS, load_ladder
from multiscale.laws import fit_point, get_law, predict
from multiscale.laws.extrapolation import FieldPrior

LAW = "chinchilla"
MIN_SIZES = 3
MIN_SPAN = 3.0  # N_hi / N_lo of a window
COVERAGE = (0.8, 0.9)
LOG_K_BINS = np.log([1.0, 1.5, 2.5, 5.0, 10.0, np.inf])
D_SPAN_BINS = np.array([0.0, 0.25, 0.5, 1.0, 2.0, np.inf])
XS = {"log_k": LOG_K_BINS, "d_span": D_SPAN_BINS}
PRIOR_PATH = Path(__file__).resolve().parents[1] / "multiscale" / "datasets" / "ladders" / "field_prior.json"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "unknown")


def windows(df: pd.DataFrame, per_hi: int) -> list[tuple[float, float]]:
    """The (N_lo, N_hi) windows of a ladder: >= MIN_SIZES sizes, span >= MIN_SPAN, enough runs per
    family for the law, a larger size left to predict; `per_hi` of them per N_hi (0: all), evenly
    spaced in span from the widest to the narrowest."""
    sizes = np.sort(df["N"].unique())
    need = get_law(LAW).min_runs()
    out = []
    for j in range(MIN_SIZES - 1, len(sizes) - 1):
        ok = []
        for i in range(j - MIN_SIZES + 2):
            rows = df[(df["N"] >= sizes[i]) & (df["N"] <= sizes[j])]
            if sizes[j] / sizes[i] >= MIN_SPAN and rows.groupby("family").size().min() >= need \
                    and rows["family"].nunique() == df["family"].nunique():
                ok.append((float(sizes[i]), float(sizes[j])))
        if per_hi and len(ok) > per_hi:
            ok = [ok[int(round(t))] for t in np.linspace(0, len(ok) - 1, per_hi)]
        out.extend(ok)
    return out


def window_errors(df: pd.DataFrame, n_lo: float, n_hi: float) -> tuple[pd.DataFrame, dict]:
    """Fit the law on the runs with N in [n_lo, n_hi]; the held-out runs (N > n_hi) with their
    log errors and distances, and a record of the fit."""
    fit_rows = df[(df["N"] >= n_lo) & (df["N"] <= n_hi)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_point(fit_rows, law=LAW)
    held = df[df["N"] > n_hi].copy()
    held["pred"] = [float(predict(fit, r.N, r.D, {r.family: 1.0}).draws[0, 0]) for r in held.itertuples()]
    held["e"] = np.log(held["pred"] / held["loss"])
    parts = []
    for fam, rows in held.groupby("family", sort=False):
        f = fit_rows[fit_rows["family"] == fam]
        lN, lD = np.log(f["N"].to_numpy()), np.log(f["D"].to_numpy())
        uN, uD = lN.max() - lN.min(), lD.max() - lD.min()
        uN, uD = (uN or uD or 1.0), (uD or uN or 1.0)
        xN, xD = np.log(rows["N"].to_numpy()), np.log(rows["D"].to_numpy())
        dN = np.maximum(0.0, np.maximum(xN - lN.max(), lN.min() - xN))
        dD = np.maximum(0.0, np.maximum(xD - lD.max(), lD.min() - xD))
        parts.append(rows.assign(log_kN=xN - lN.max(), log_k=np.maximum(xN - lN.max(), xD - lD.max()),
                                 log_kC=xN + xD - (lN + lD).max(), d_span=np.hypot(dN / uN, dD / uD)))
    held = pd.concat(parts)
    record = {"N_lo": n_lo, "N_hi": n_hi, "sizes": int(fit_rows["N"].nunique()), "fit_rows": len(fit_rows),
              "held_out": len(held), "runtime_warnings": sum(issubclass(w.category, RuntimeWarning) for w in caught),
              "params": {fam: {k: float(v[0, j]) for k, v in fit.draws.items()}
                         for j, fam in enumerate(fit.families)},
              "mean_e": float(held["e"].mean())}
    return held, record


def weights(errs: pd.DataFrame) -> np.ndarray:
    """Each ladder weighs 1, spread equally over its windows, then over a window's held-out runs."""
    per_window = errs.groupby(["ladder", "window"])["e"].transform("size").to_numpy(float)
    windows_per_ladder = errs.groupby("ladder")["window"].transform("nunique").to_numpy(float)
    return 1.0 / (per_window * windows_per_ladder)


def fit_band(x: np.ndarray, e: np.ndarray, w: np.ndarray) -> dict:
    """Weighted Gaussian fit e ~ Normal(a + b x, c + d x), c > 0, d >= 0."""
    w = w / w.sum()
    X = np.column_stack([np.ones_like(x), x])
    ab = np.linalg.lstsq(X * np.sqrt(w)[:, None], e * np.sqrt(w), rcond=None)[0]
    c0 = float(np.sqrt(np.sum(w * (e - X @ ab) ** 2)))

    def nll(t):
        s = t[2] + t[3] * x
        return float(np.sum(w * (np.log(s) + 0.5 * ((e - t[0] - t[1] * x) / s) ** 2)))

    res = optimize.minimize(nll, [ab[0], ab[1], max(c0, 1e-3), 0.0], method="L-BFGS-B",
                            bounds=[(None, None), (None, None), (1e-4, None), (0.0, None)])
    a, b, c, d = (float(v) for v in res.x)
    return {"a": a, "b": b, "c": c, "d": d, "rows": int(len(x)), "converged": bool(res.success)}


def shares(dev: np.ndarray, scale, w: np.ndarray) -> dict:
    """Per coverage q: the share of |dev| <= z_q * scale[q] (scale: an array, or a dict of them
    by q), weighted and per row."""
    out = {}
    for q in COVERAGE:
        key = f"{int(q * 100)}"
        inside = np.abs(dev) <= stats.norm.ppf(0.5 + q / 2) * (scale[key] if isinstance(scale, dict) else scale)
        out[key] = {"weighted": round(float(np.sum(w * inside) / np.sum(w)), 3), "rows": round(float(inside.mean()), 3)}
    return out


def kappas(x: np.ndarray, e: np.ndarray, w: np.ndarray) -> dict:
    """The library's form, e ~ Normal(0, kappa x): per coverage q, the smallest kappa whose central
    q interval holds a weighted share q of the errors (a point fit has no interval of its own)."""
    r = np.abs(e) / x
    order = np.argsort(r)
    cum = np.cumsum(w[order]) / w.sum()
    return {f"{int(q * 100)}": float(r[order][np.searchsorted(cum, q)] / stats.norm.ppf(0.5 + q / 2))
            for q in COVERAGE}


def binned(errs: pd.DataFrame, x: str) -> list[dict]:
    """Weighted mean and sd of e per bin of `x`, per ladder and pooled."""
    out = []
    edges = XS[x]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = errs[(errs[x] > lo) & (errs[x] <= hi)] if lo > 0 else errs[errs[x] <= hi]
        for ladder, rows in [*sel.groupby("ladder"), ("pooled", sel)]:
            if len(rows) == 0:
                continue
            w = rows["w"].to_numpy() / rows["w"].sum()
            m = float(np.sum(w * rows["e"]))
            n_windows = len(rows[["ladder", "window"]].drop_duplicates())
            out.append({"x": x, "lo": float(lo), "hi": float(hi) if np.isfinite(hi) else None,
                        "ladder": ladder, "rows": len(rows), "windows": n_windows,
                        "mean": round(m, 4), "sd": round(float(np.sqrt(np.sum(w * (rows["e"] - m) ** 2))), 4)})
    return out


def ladder_t(x: np.ndarray, e: np.ndarray, w: np.ndarray, ladder: np.ndarray, window: np.ndarray,
             edge: float) -> dict:
    """The library's prior (`multiscale.laws.extrapolation.FieldPrior`): per ladder, the kappa_90
    of its errors with the distance taken as at least `edge` (as the library charges its refits);
    the mean and sd over ladders of its log; the sd of one window's log kappa_90 about its ladder's
    (pooled over ladders)."""
    xe = np.maximum(x, edge)
    per, within = {}, []
    for lad in np.unique(ladder):
        m = ladder == lad
        per[str(lad)] = kappas(xe[m], e[m], w[m])["90"]
        logs = [np.log(kappas(xe[m & (window == k)], e[m & (window == k)], w[m & (window == k)])["90"])
                for k in np.unique(window[m])]
        within.extend(np.asarray(logs) - np.mean(logs))
    logs = np.log(list(per.values()))
    n_windows = len(within) - len(per)  # degrees of freedom left after each ladder's mean
    return {"kappa_90_per_ladder": per, "ladders": len(per), "log_mean": float(np.mean(logs)),
            "log_sd": float(np.std(logs, ddof=1)), "within_sd": float(np.sqrt(np.sum(np.square(within)) / n_windows)),
            "edge": float(edge)}


def summarise(errs: pd.DataFrame, x: str) -> dict:
    """Bands and kappas per ladder and pooled, and the leave-one-ladder-out ones scored on their
    ladder; for log k also the library's prior (`ladder_t`)."""
    def cols(rows):
        return rows[x].to_numpy(), rows["e"].to_numpy(), rows["w"].to_numpy()

    def learn(rows):
        band = fit_band(*cols(rows))
        out = {**band, "kappa": kappas(*cols(rows)), "x_max": float(rows[x].max())}
        if x == "log_k" and rows["ladder"].nunique() > 1:
            t = ladder_t(*cols(rows), rows["ladder"].to_numpy(), rows["window"].to_numpy(), band["c"] / band["d"])
            out["ladder_t"] = {**t, "kappa": FieldPrior.from_summary({"ladder_t": t}, "").kappa}
        return out

    def cover(f, rows):
        x_, e, w = cols(rows)
        out = {"band": shares(e - f["a"] - f["b"] * x_, f["c"] + f["d"] * x_, w),
               "kappa": shares(e, {q: k * x_ for q, k in f["kappa"].items()}, w)}
        if "ladder_t" in f:
            out["ladder_t"] = shares(e, f["ladder_t"]["kappa"] * x_, w)
        return out

    pooled = learn(errs)
    per_ladder, lolo = {}, {}
    for ladder, rows in errs.groupby("ladder"):
        per_ladder[ladder] = {**learn(rows), "coverage_by_pooled": cover(pooled, rows)}
        without = learn(errs[errs["ladder"] != ladder])
        lolo[ladder] = {**without, "coverage_of_left_out": cover(without, rows)}
    return {"pooled": {**pooled, "coverage": cover(pooled, errs)}, "per_ladder": per_ladder,
            "leave_one_ladder_out": lolo, "bins": binned(errs, x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-hi", type=int, default=2, help="windows kept per N_hi (0: all; default 2)")
    ap.add_argument("--prior", default=str(PRIOR_PATH), help="where to write the summary JSON ('' to skip)")
    ap.add_argument("--errors", default="", help="also write every held-out run's error to this CSV")
    ap.add_argument("--from-errors", default="",
                    help="summarise the errors an earlier run wrote with --errors instead of refitting")
    args = ap.parse_args()
    t0 = time.perf_counter()
    records = []
    if args.from_errors:
        errs = pd.read_csv(args.from_errors)
    else:
        parts = []
        for ladder in LADDERS:
            df = load_ladder(ladder)
            for k, (n_lo, n_hi) in enumerate(windows(df, args.per_hi)):
                held, rec = window_errors(df, n_lo, n_hi)
                parts.append(held.assign(ladder=ladder, window=k))
                records.append({"ladder": ladder, **rec})
        errs = pd.concat(parts, ignore_index=True)
    errs["w"] = weights(errs)
    if args.errors:
        errs.to_csv(args.errors, index=False)
    summary = {x: summarise(errs, x) for x in XS}
    prior = {
        "what": "log(pred/obs) of a law fitted on a window of sizes, at runs beyond it (issue 22)",
        "law": LAW, "fit": "multiscale.laws.fit_point, default start grid and search",
        "command": f"python benchmarks/bench_extrapolation_field.py --per-hi {args.per_hi}",
        "ladders": {lad: {"windows": int(errs.loc[errs["ladder"] == lad, "window"].nunique()),
                          "held_out_rows": int((errs["ladder"] == lad).sum())} for lad in LADDERS},
        "windows": {"min_sizes": MIN_SIZES, "min_span_N": MIN_SPAN, "per_N_hi": args.per_hi or "all"},
        "x": {"log_k": "max(log N/N_hi, log D/D_hi)", "d_span": "hypot of each axis' excess log-distance "
              "over the window's log-span of that axis (the library's extrapolation distance)"},
        "band": "e ~ Normal(a + b x, c + d x), c > 0, d >= 0 (weighted maximum likelihood)",
        "kappa": "e ~ Normal(0, kappa x), the library's form: kappa[q] is the smallest kappa whose central q "
                 "interval holds a share q of the errors",
        "weights": "each ladder weighs 1, spread equally over its windows, then over a window's held-out runs",
        "rows": int(len(errs)), "summary": {x: {k: v for k, v in s.items() if k != "bins"}
                                            for x, s in summary.items()}}
    if args.prior:
        Path(args.prior).write_text(json.dumps(prior, indent=1) + "\n")
    print(json.dumps({"benchmark": "extrapolation_field", "cpu": cpu_model(),
                      "wall_s": round(time.perf_counter() - t0, 1), "windows": records,
                      "prior": prior, "bins": {x: s["bins"] for x, s in summary.items()}}))


if __name__ == "__main__":
    main()
