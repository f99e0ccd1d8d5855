"""report.md: the report's text, one function per section."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multiscale.report.labels import pretty
from multiscale.report.recommend import LOSS_UNITS

_METHODS = {"nuts": "Bayesian (NUTS)", "lbfgs": "point (Huber + L-BFGS, Hoffmann et al. approach 3)"}


@dataclasses.dataclass(frozen=True)
class ReportContent:
    """Everything report.md shows: the fit, its run table, the held-out runs, the scores of
    `fit_metrics`, the recommendation of `recommend_for_report`, the independence test's dict
    (or None and why not), and the figures written."""

    fit: Any
    runs: pd.DataFrame
    runs_path: str
    heldout: Sequence[str]
    metrics: dict
    recommendation: dict
    independence: dict | None
    independence_note: str
    figures: Sequence[str]

    def figure(self, stem: str) -> str | None:
        """The file name of the figure `stem` ('p_star' -> 'p_star.png'), if it was written."""
        names = {os.path.basename(f).split(".")[0]: os.path.basename(f) for f in self.figures}
        return names.get(stem)


def render_markdown(c: ReportContent) -> str:
    lines = (_header(c) + _recommendation(c) + _loss_vs_p(c) + _predicted_vs_observed(c)
             + _independence(c) + _files(c))
    return "\n".join(lines) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def _header(c: ReportContent) -> list[str]:
    fit, df = c.fit, c.runs
    n_runs = df["run"].nunique()
    scales = sorted({(float(a), float(b)) for a, b in zip(df["N"], df["D"])})
    n_fams = len(c.recommendation["p_star"])
    lines = ["# multiscale report", "",
             f"Law **{fit.law.name}**: L = {fit.law.doc}; losses are mean held-out cross-entropy in "
             f"**{LOSS_UNITS}**. Fit: {_METHODS.get(getattr(fit, 'method', ''), '?')} on "
             f"{n_runs - len(c.heldout)} runs ({len(c.heldout)} held out) x {n_fams} families at "
             f"{len(scales)} (N, D) scales, from `{c.runs_path}`."]
    diag = getattr(fit, "diagnostics", {}) or {}
    if diag:
        lines.append(f"Sampler diagnostics: max R-hat {diag.get('max_rhat', float('nan')):.3f}, "
                     f"min bulk ESS {diag.get('min_ess_bulk', float('nan')):.0f}, "
                     f"divergences {diag.get('divergences', 0)}.")
    lines += [f"> **Warning:** {w}" for w in getattr(fit, "warnings", []) or []]
    return lines


def _recommendation(c: ReportContent) -> list[str]:
    rec = c.recommendation
    fams, base = list(rec["p_star"]), rec["baselines"]
    rows = []
    for f in fams:
        s = rec["p_star"][f]
        rows.append([f, f"**{s['recommended']:.3f}**", f"{s['median']:.3f}", f"[{s['q05']:.3f}, {s['q95']:.3f}]"]
                    + [f"{base[b][f]:.3f}" for b in base])
    # text lines: headline, table header, one per family, the predicted loss, then the decisions
    after_table = [line.strip() for line in rec["text"][len(fams) + 2:len(fams) + 3]]
    notes = [line for line in rec["text"] if line.startswith("Note: ")]
    return ["", "## Recommendation", "", rec["text"][0], "",
            markdown_table(["family", "recommended (robust p*)", "p* (median)", "90% interval"]
                           + [pretty(b) for b in base], rows),
            "", *after_table, "", *_decisions(rec), "", *notes, "",
            f"![p* beside the baselines]({c.figure('p_star') or 'p_star.png'})", ""]


def _decisions(rec: dict) -> list[str]:
    """Each choice's gain (beside the baselines) and its expected regret, as a table."""
    rows = []
    for name, e in rec["comparison"].items():
        r, g = e["regret"], e.get("gain_nats")
        gain = "" if g is None else f"{g['median']:+.4f} [{g['q05']:+.4f}, {g['q95']:+.4f}]"
        better = "" if g is None else f"{e['prob_recommended_better']:.2f}"
        rows.append([pretty(name), f"{e['loss']['median']:.4f}", gain, better, f"{e['expected_regret']:.2e}",
                     f"[{r['q05']:.2e}, {r['q95']:.2e}]", f"{e['prob_best']:.2f}"])
    return ["*Gain*: the baseline's mean loss minus the recommended mixture's, per posterior draw "
            f"({LOSS_UNITS}, median [90% interval]). *Regret*: a choice's objective minus the best any "
            "mixture reaches under the same draw (mean, 90% interval); the recommended mixture minimizes its "
            "mean, so it is the Bayes decision. *P(best)*: the share of draws under which the choice is "
            "the best of these.", "",
            markdown_table(["choice", f"mean loss ({LOSS_UNITS})", "gain of the recommendation",
                            "P(recommendation better)", "expected regret", "regret 90% interval", "P(best)"],
                           rows)]


def _loss_vs_p(c: ReportContent) -> list[str]:
    return ["## Loss vs sampling ratio", "",
            "Each panel is one family: observed runs (dots; held-out runs as squares), the fitted law "
            "(line, posterior median) and its 90% credible band, one colour per (N, D).", "",
            f"![loss vs p]({c.figure('loss_vs_p') or 'loss_vs_p.png'})", ""]


def _predicted_vs_observed(c: ReportContent) -> list[str]:
    rows = [[k, m["rows"], f"{m['r2']:.3f}", f"{m['mape_pct']:.2f}",
             "n/a (point fit)" if np.isnan(m["coverage90"]) else f"{m['coverage90']:.0%}"]
            for k, m in c.metrics.items()]
    return ["## Predicted vs observed", "",
            markdown_table(["rows", "count", "R²", "MAPE (%)", "90% interval coverage"], rows), "",
            "Intervals are 90% posterior predictive intervals (the law's parameter uncertainty plus the "
            "fitted run-to-run noise) for a Bayesian fit, so about 90% of runs should fall inside; a point "
            "fit gives no interval. Held-out runs were not fitted: they test prediction.", "",
            *_extrapolation(c),
            f"![predicted vs observed]({c.figure('pred_vs_obs') or 'pred_vs_obs.png'})", ""]


def _extrapolation(c: ReportContent) -> list[str]:
    """How much of the intervals comes from extrapolation (docs/design.md, "Extrapolation term")."""
    from multiscale.laws.extrapolation import describe, extrapolation_sd

    model = getattr(c.fit, "extrapolation", None)
    if getattr(c.fit, "method", "") != "nuts":
        return []
    line = f"Extrapolation: {describe(model)}."
    sd = extrapolation_sd(model, c.runs["N"].to_numpy(float), c.runs["D"].to_numpy(float))
    beyond = sd > 0
    if beyond.any():
        line += (f" {int(beyond.sum())} of {len(sd)} rows lie beyond the fitted N and D; their intervals include "
                 f"an extrapolation sd of log-loss of {sd[beyond].min():.4f}-{sd[beyond].max():.4f} "
                 "(0 inside the fitted range, whose intervals it leaves unchanged).")
    return [line, ""]


def _independence(c: ReportContent) -> list[str]:
    lines = ["## Independence test", ""]
    indep = c.independence
    if indep is None:
        return lines + [f"Not run: {c.independence_note}."]
    rows = []
    for f, e in indep["families"].items():
        lo, hi = e["top_interval"]
        rows.append([f, e["n_runs"], f"{e['r2_own']:.3f}", f"{e['r2_full']:.3f}", f"{e['share_own']:.2f}",
                     f"{e['top_family']}: {e['top_effect']:+.4f} [{lo:+.4f}, {hi:+.4f}]", e["verdict"]])
    lines += [f"Per family, log-loss regressed on its own log-ratio alone (one intercept per (N, D)) "
              f"vs with the other families' ratios added. *Share*: the own ratio's part of the explainable "
              f"variance (R² own / R² full; needs ≥ {indep['share_min']:g}). *Largest cross effect*: change "
              f"in log-loss when {indep['shift']:g} of the mixture moves to that family with the own ratio "
              f"fixed, with its 90% interval (material above {indep['material_log_loss']:g}).", "",
              markdown_table(["family", "runs", "R² own", "R² full", "share", "largest cross effect", "verdict"],
                             rows), ""]
    lines += [f"Note: {n}" for n in indep.get("notes", [])]
    if c.figure("independence"):
        lines.append(f"![independence test]({c.figure('independence')})")
    return lines


def _files(c: ReportContent) -> list[str]:
    return ["", "## Files", "", *[f"- `{os.path.basename(f)}`" for f in c.figures],
            "- `predictions.csv`: observed and predicted loss per (run, family)",
            "- `recommendation.json`: the numbers above"]
