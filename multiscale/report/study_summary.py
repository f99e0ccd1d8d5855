"""A study's summary: its headline numbers in one JSON-ready dict, and that dict as text.

The study (docs/cpu_study is one) tests He et al.'s three claims on one run table:
1. independence: `independence_test` of the whole table;
2. fit and prediction: a law fitted on the sizes below `fit_max_N` (a Bayesian and a point
   fit), scored on the fitted and the held-out sizes (`multiscale.laws.score`) and its signed
   errors by size (`errors_by_size`);
3. transfer: the mixtures measured at the largest size (`measured_mixtures`, normalized by the
   monolingual losses c of a ratio-law fit there), over seeds and paired by seed against uniform
   and against 'pstar-small3' (p* from the small models), and at the size below it.
Loss in nats/token throughout.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from multiscale.report.predictions import errors_by_size, median_predictions
from multiscale.report.study import measured_mixtures, over_seeds, paired_differences

TRANSFER_REFERENCE = "pstar-small3"  # the study's p* from the small models, a second reference


def summarize_study(runs: pd.DataFrame, *, fit_small, fit_small_point, fit_large,
                    rec_small: Mapping | None = None, rec_large: Mapping | None = None,
                    fit_max_N: float | None = None) -> dict:
    """The study's summary dict (see the module docstring). `runs`: the whole run table;
    `fit_small`, `fit_small_point`: the Bayesian and point fits of the rows with N < fit_max_N
    (default: every size but the largest); `fit_large`: the ratio-law fit at the largest size
    (its draws of c normalize the objective); `rec_small`, `rec_large`: `multiscale recommend
    --json` objects of p* from fit_small and fit_large."""
    from multiscale.laws import independence_test

    n_large = float(runs["N"].max())
    fit_max = float(fit_max_N) if fit_max_N else n_large
    small, held = runs[runs["N"] < fit_max], runs[runs["N"] >= fit_max]
    large = runs[runs["N"] == n_large]
    out: dict = {"loss_units": "nats/token", "n_runs": int(runs["run"].nunique()), "n_rows": int(len(runs)),
                 "N_large": n_large, "D_large": float(large["D"].iloc[0]),
                 "sizes": {str(int(n)): sorted(int(d) for d in g["D"].unique()) for n, g in runs.groupby("N")}}
    out["independence"] = independence_test(runs).to_dict()
    out["fit_small"] = {"method": fit_small.method, "summary": fit_small.summary(),
                        "diagnostics": getattr(fit_small, "diagnostics", {}),
                        "options": getattr(fit_small, "options", {}),
                        "warnings": list(getattr(fit_small, "warnings", []))}
    out["fit_small_point"] = {"params": fit_small_point.params()}
    out["fit_max_N"] = fit_max
    out["scores"] = _scores(fit_small, fit_small_point, small, held)
    out["errors"] = errors_by_size(runs, median_predictions(fit_small, runs))
    out.update(_transfer(fit_large, large, held))
    out.update(_recommendations(rec_small, rec_large))
    return out


def _scores(fit_small, fit_point, small: pd.DataFrame, held: pd.DataFrame) -> dict:
    """`score` of both small-model fits on the held-out and the fitted rows, overall and by size."""
    from multiscale.laws import score

    out = {"nuts_heldout": score(fit_small, held).to_dict(), "nuts_fitted": score(fit_small, small).to_dict(),
           "point_heldout": score(fit_point, held).to_dict(), "point_fitted": score(fit_point, small).to_dict()}
    for n, sub in held.groupby("N"):
        out[f"nuts_heldout_N{int(n)}"] = score(fit_small, sub).to_dict()
        out[f"point_heldout_N{int(n)}"] = score(fit_point, sub).to_dict()
    for n, sub in small.groupby("N"):
        out[f"nuts_fitted_N{int(n)}"] = score(fit_small, sub).to_dict()
    return out


def monolingual_losses(fit_large) -> dict[str, float]:
    """c per family: the median of a ratio-law fit's draws of c (L_i at p_i = 1)."""
    return {f: float(np.median(fit_large.draws["c"][:, j])) for j, f in enumerate(fit_large.families)}


def _transfer(fit_large, large: pd.DataFrame, held: pd.DataFrame) -> dict:
    """Claim 3: the largest size's mixtures measured, over seeds and paired by seed; the size
    below it (the largest held-out size under the transfer size) in raw mean loss only."""
    out: dict = {"fit_large": {"method": fit_large.method, "summary": fit_large.summary(),
                               "n_runs": int(next(iter(fit_large.n_runs.values()))),
                               "diagnostics": getattr(fit_large, "diagnostics", {}),
                               "options": getattr(fit_large, "options", {})}}
    out["measured_large"] = measured_mixtures(large, monolingual_losses(fit_large))
    out["measured_large_over_seeds"] = over_seeds(out["measured_large"])
    out["paired_vs_uniform"] = paired_differences(out["measured_large"], "uniform")
    if TRANSFER_REFERENCE in out["measured_large_over_seeds"]:
        out["paired_vs_pstar_small3"] = paired_differences(out["measured_large"], TRANSFER_REFERENCE)
    sizes = sorted(held["N"].unique())
    if len(sizes) > 1:
        out["N_mid"] = float(sizes[-2])
        out["measured_mid"] = measured_mixtures(held[held["N"] == sizes[-2]], None)
        out["measured_mid_over_seeds"] = over_seeds(out["measured_mid"])
    return out


def _recommendations(rec_small: Mapping | None, rec_large: Mapping | None) -> dict:
    out: dict = {}
    for key, rec in (("rec_small", rec_small), ("rec_large", rec_large)):
        if rec:
            out[key] = {"ratios": rec["ratios"],
                        "p_star": {f: v["p_star"] for f, v in rec["families"].items()},
                        "objective_at_p_star": rec["objective_at_p_star"],
                        "baselines": rec.get("baselines", {})}
    if "rec_small" in out and "rec_large" in out:
        a, b = out["rec_small"]["ratios"], out["rec_large"]["ratios"]
        out["pstar_l1_small_vs_large"] = float(sum(abs(a[f] - b[f]) for f in a))
    return out


def format_study_summary(s: Mapping) -> str:
    """The summary as text: scores, level shifts, measured mixtures, seeds, paired differences."""
    lines = [f"# {s['n_runs']} runs, {s['n_rows']} rows; sizes (N: D values) {s['sizes']}"]
    lines += _format_scores(s)
    lines += ["", "held-out level shift (mean (pred - obs) / obs) and Spearman per family:"]
    for key, e in s["errors"].items():
        lines.append(f"  {key:10s} {100 * e['mean_rel_error']:+.2f}%  " + " ".join(
            f"{f}={v['spearman']:.2f}" for f, v in e["per_family"].items() if v["spearman"] is not None))
    lines += _format_transfer(s)
    for key in ("rec_small", "rec_large"):
        if key in s:
            lines += ["", f"{key}: " + ", ".join(f"{f}={p:.3f}" for f, p in s[key]["ratios"].items())]
    if "pstar_l1_small_vs_large" in s:
        lines.append(f"L1(p*_small, p*_large) = {s['pstar_l1_small_vs_large']:.3f}")
    return "\n".join(lines)


def _format_scores(s: Mapping) -> list[str]:
    lines = []
    for name in [k for k in s["scores"] if k.startswith(("nuts", "point_heldout"))]:
        sc = s["scores"][name]
        lines += ["", f"{name}: overall R2 {sc['overall']['r2']:.3f} MAPE {sc['overall']['mape']:.2f}% "
                  f"cov90 {sc['overall']['coverage']:.2f} (n={sc['overall']['n']})"]
        for f, v in sc["per_family"].items():
            lines.append(f"  {f:14s} R2 {v['r2']:7.3f}  MAPE {v['mape']:6.2f}%  cov90 {v['coverage']:.2f}  n={v['n']}")
    return lines


def _format_transfer(s: Mapping) -> list[str]:
    lines = ["", "measured at the largest size (mean loss nats/token, normalized objective):"]
    for label, m in sorted(s["measured_large"].items(), key=lambda kv: kv[1]["normalized_objective"]):
        lines.append(f"  {label:22s} {m['mean_loss']:.4f}  {m['normalized_objective']:.5f}  "
                     + " ".join(f"{f}={p:.3f}" for f, p in m["ratios"].items()))
    lines += ["", "over seeds (mean loss: mean, SD; normalized: mean):"]
    for label, g in sorted(s["measured_large_over_seeds"].items(), key=lambda kv: kv[1]["mean_loss_mean"]):
        sd = g["mean_loss_sd"]
        lines.append(f"  {label:22s} seeds {g['seeds']}  {g['mean_loss_mean']:.4f}  "
                     f"{'-' if sd is None else f'{sd:.4f}'}  {g['normalized_objective_mean']:.5f}")
    lines += ["", "paired by seed, minus uniform (mean loss: mean diff, SE, per-seed diffs):"]
    for label, e in sorted(s["paired_vs_uniform"].items(), key=lambda kv: kv[1]["mean_loss"]["mean"]):
        ml = e["mean_loss"]
        se = "-" if ml["se"] is None else f"{ml['se']:.4f}"
        lines.append(f"  {label:22s} seeds {e['seeds']}  {ml['mean']:+.4f}  {se}  "
                     + " ".join(f"{d:+.4f}" for d in ml["diffs"]))
    return lines
