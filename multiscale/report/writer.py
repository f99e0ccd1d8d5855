"""`write_report`: the figures, report.md, predictions.csv and recommendation.json of a fit.

The report shows, for a fitted law and its run table (losses in nats/token):

- `loss_vs_p.png`: per family, loss against its sampling ratio on log-log axes at each (N, D):
  observed runs, the fitted law (posterior median) and its 90% credible band;
- `p_star.png`: the posterior of the optimal ratios p* per family beside the baselines
  (uniform, temperature sampling, UniMax, proportional where the corpus's token counts are known);
- `pred_vs_obs.png`: predicted vs observed loss for every (run, family), with 90% intervals,
  held-out runs marked, with R², MAPE and interval coverage for fitted and held-out rows;
- `independence.png`: the independence test (own-ratio share of variance and cross-family
  effects) when the table has several mixtures at one (N, D);
- `report.md` tying them together, with the recommendation in words and numbers.

Which runs are held out: see `multiscale.report.inputs.heldout_runs`. The corpus's per-family
token counts (for the proportional, temperature and UniMax baselines) are `family_tokens` if
given, else those the sweep folder holding the run table recorded.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

import multiscale.report.plots as plots
from multiscale.decisions import optimal_ratios
from multiscale.errors import InputError
from multiscale.fileio import atomic_write_text, write_json
from multiscale.report.inputs import check_paths, heldout_runs, sweep_facts
from multiscale.report.labels import pretty, si
from multiscale.report.markdown import ReportContent, render_markdown
from multiscale.report.predictions import fit_metrics, prediction_table
from multiscale.report.recommend import recommend_for_report


@dataclasses.dataclass(frozen=True)
class Report:
    """Where a report went and its headline numbers."""

    out_dir: str
    markdown: str
    figures: tuple[str, ...]
    recommendation: dict
    metrics: dict

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["figures"] = list(self.figures)
        return d


def write_report(fit_dir, out_dir, *, runs=None, N: float | None = None, D: float | None = None,
                 heldout: Sequence[str] | None = None, objective: str = "normalized",
                 family_tokens: Mapping[str, int] | None = None, fitted=None) -> Report:
    """Writes the figures and report.md for the fit in `fit_dir` into `out_dir`.

    runs: the run table (default FIT_DIR/runs.csv); N, D: the scale of the recommendation
    (default: the largest N and D in the table); heldout: run names to mark as held out;
    fitted: the run table the fit saw (runs missing from it are held out).
    """
    from multiscale.laws import load_fit
    from multiscale.runs import read_runs

    fit_dir, out_dir = os.fspath(fit_dir), os.fspath(out_dir)
    runs_path = check_paths(fit_dir, out_dir, runs, fitted)
    fit = load_fit(fit_dir)
    df = read_runs(runs_path)
    unknown = sorted(set(df["family"]) - set(fit.families))
    if unknown:
        raise InputError(f"run table {runs_path}: families {unknown} are not in the fit ({list(fit.families)})")
    facts = sweep_facts(runs_path)
    own = os.path.join(fit_dir, "runs.csv")
    fitted_table = os.fspath(fitted) if fitted is not None else own if os.path.exists(own) else None
    held = heldout_runs(fit, df, runs_path, heldout=heldout, fitted_table=fitted_table, facts=facts)
    if family_tokens is None and facts is not None:
        family_tokens = facts.family_tokens
    N = _scale(N, df["N"].max(), "N")
    D = _scale(D, df["D"].max(), "D")
    # Every number first (the recommendation refuses bad caps, tokens or scales), so a refusal
    # leaves no half-written report folder behind.
    table = prediction_table(fit, df, held)
    metrics = fit_metrics(table)
    rec = recommend_for_report(optimal_ratios(fit, N, D, objective=objective, available_tokens=family_tokens))
    os.makedirs(out_dir, exist_ok=True)
    figs = [plots.plot_loss_vs_p(df, fit, os.path.join(out_dir, "loss_vs_p.png"), heldout=held)]
    atomic_write_text(os.path.join(out_dir, "predictions.csv"), table.to_csv(index=False))
    figs.append(plots.plot_pred_vs_obs(table, os.path.join(out_dir, "pred_vs_obs.png"),
                                       title_extra=_metrics_subtitle(metrics)))
    draws = rec.get("p_star_draws") or {f: [s["median"]] for f, s in rec["p_star"].items()}
    figs.append(plots.plot_p_star(
        draws, {pretty(k): v for k, v in rec["baselines"].items()}, os.path.join(out_dir, "p_star.png"),
        title=f"Optimal ratios p* at N={si(N)}, D={si(D)} ({objective} objective) vs baselines"))
    indep, indep_note = _independence(df)
    if indep is not None:
        figs.append(plots.plot_independence(
            indep["families"], os.path.join(out_dir, "independence.png"), material=indep["material_log_loss"],
            share_min=indep["share_min"], shift=indep["shift"]))
    for f in figs:
        plots.check_png(f)
    content = ReportContent(fit=fit, runs=df, runs_path=runs_path, heldout=held, metrics=metrics,
                            recommendation=rec, independence=indep, independence_note=indep_note, figures=figs)
    md_path = os.path.join(out_dir, "report.md")
    atomic_write_text(md_path, render_markdown(content))
    rec_small = {k: v for k, v in rec.items() if k != "p_star_draws"}
    write_json(os.path.join(out_dir, "recommendation.json"), rec_small)
    return Report(out_dir=str(out_dir), markdown=md_path, figures=tuple(figs), recommendation=rec_small,
                  metrics=metrics)


def _scale(value, default, arg: str) -> float:
    """The recommendation's N or D: `value` (finite, > 0) or the table's largest."""
    x = float(default if value is None else value)
    if not math.isfinite(x) or x <= 0:
        raise InputError(f"{arg} must be a finite number > 0, got {value}", arg=arg)
    return x


def _metrics_subtitle(metrics: dict) -> str:
    return "\n".join(f"{k.replace('heldout', 'held-out')} runs: R²={m['r2']:.3f}, MAPE={m['mape_pct']:.2f}%"
                     + ("" if np.isnan(m["coverage90"]) else f", 90% coverage={m['coverage90']:.0%}")
                     for k, m in metrics.items())


def _independence(df: pd.DataFrame):
    """The independence test's dict (`IndependenceResult.to_dict()`), or (None, why not)."""
    from multiscale.laws import independence_test
    from multiscale.runs import mixture_columns

    if len(mixture_columns(df)) < 2:
        return None, "the run table has no p_<family> mixture columns"
    try:
        res = independence_test(df)
    except InputError as err:  # too few runs or mixtures for the regression; a bug keeps its traceback
        return None, str(err)
    return res.to_dict(), ""
