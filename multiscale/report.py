"""`multiscale report FIT_DIR --runs RUNS.csv --out REPORT_DIR`: plots and report.md.

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

Which runs are held out: `heldout=` if given; else, given the table the fit saw (`fitted=`, or
`FIT_DIR/runs.csv` as the demo writes), the runs missing from it; else, when the run table sits in
a sweep folder, the runs its plans marked held-out (unless the fit saw every row). The corpus's per-family token counts
(for the proportional, temperature and UniMax baselines) come from the sweep folder's plan.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from multiscale import plots

LOSS_UNITS = "nats/token"
_METHODS = {"nuts": "Bayesian (NUTS)", "lbfgs": "point (Huber + L-BFGS, Hoffmann et al. approach 3)"}


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


# ------------------------------------------------------------------------------ inputs


def _locate_runs(fit_dir: str, runs) -> str:
    if runs is not None:
        if not os.path.exists(runs):
            raise FileNotFoundError(f"run table {runs} does not exist")
        return str(runs)
    own = os.path.join(fit_dir, "runs.csv")
    if os.path.exists(own):
        return own
    raise FileNotFoundError(f"no run table: pass --runs RUNS.csv (FIT_DIR {fit_dir} holds no runs.csv)")


def _sweep_record(runs_path: str) -> dict | None:
    """The plans of the sweep folder holding `runs_path`, if it is one."""
    from multiscale.sweep import read_plan_json

    try:
        return read_plan_json(os.path.dirname(os.path.abspath(runs_path)), full=True)
    except FileNotFoundError:
        return None


def _heldout_runs(fit_dir: str, runs_path: str, df: pd.DataFrame, record: dict | None,
                  heldout: Sequence[str] | None, fit=None, fitted_table: str | None = None) -> list[str]:
    all_runs = list(dict.fromkeys(df["run"]))
    if heldout is not None:
        unknown = sorted(set(heldout) - set(all_runs))
        if unknown:
            raise ValueError(f"--heldout names runs that are not in {runs_path}: {unknown[:5]}")
        return list(heldout)
    fitted = fitted_table or os.path.join(fit_dir, "runs.csv")
    if fitted_table is not None and not os.path.exists(fitted_table):
        raise FileNotFoundError(f"--fitted {fitted_table} does not exist")
    if os.path.exists(fitted) and os.path.abspath(fitted) != os.path.abspath(runs_path):
        seen = set(pd.read_csv(fitted, usecols=["run"])["run"].astype(str))
        return [r for r in all_runs if r not in seen]
    if record is not None:
        flagged = {r["run_id"] for r in record.get("runs", []) if r.get("heldout")}
        held = [r for r in all_runs if r in flagged]
        # a fit of the whole table (e.g. `multiscale fit RUNS.csv`) saw the flagged runs too
        fitted_rows = sum(getattr(fit, "n_runs", {}).values()) if fit is not None else 0
        if held and fitted_rows >= int(df["family"].isin(getattr(fit, "families", ())).sum()):
            return []
        return held
    return []


# ------------------------------------------------------------------------------ numbers


def prediction_table(fit, df: pd.DataFrame, heldout: Sequence[str], *, noise: bool = True,
                     seed: int = 0) -> pd.DataFrame:
    """Observed vs predicted loss per (run, family): median and 90% interval.

    The interval is posterior predictive for a Bayesian fit with an observation scale
    (`multiscale.laws.validation.predictive_draws`); otherwise it is the mean law's interval.
    """
    from multiscale.laws.validation import predictive_draws

    held = set(heldout)
    df = df[df["family"].isin(fit.families)].reset_index(drop=True)
    draws_SxR = predictive_draws(fit, df, noise=noise, seed=seed)
    lo, mid, hi = np.quantile(draws_SxR, [0.05, 0.5, 0.95], axis=0)
    return pd.DataFrame({"run": df["run"], "family": df["family"], "N": df["N"], "D": df["D"], "p": df["p"],
                         "loss": df["loss"], "pred_lo": lo, "pred": mid, "pred_hi": hi,
                         "heldout": df["run"].isin(held).to_numpy()})


def fit_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """R² of loss, MAPE (%), and 90%-interval coverage, for fitted and held-out rows."""
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


def recommend_for_report(fit, N: float, D: float, *, family_tokens: Mapping[str, int] | None = None,
                         objective: str = "normalized") -> dict:
    """p* per family (median, 90% interval) and its predicted gain over the baselines.

    Wraps `optimal_ratios`; adds, per baseline, the difference in mean predicted loss over
    families (nats/token, equal weights) with its 90% interval. Returns a JSON-ready dict
    (`p_star`, `baselines`, `comparison`, `text` lines, and `p_star_draws` for the plot).
    """
    from multiscale.laws import optimal_ratios

    rec = optimal_ratios(fit, N, D, objective=objective, available_tokens=family_tokens)
    fams = list(rec.families)
    w = np.asarray(rec.weights, float)
    table = rec.family_table()
    summary = {f: {**table[f]["p_star"], "recommended": table[f]["recommended"],
                   "prob_above_uniform": table[f]["prob_above_uniform"]} for f in fams}
    L_star_S = (rec.loss_star * w).sum(axis=1)
    comparison = {"p*": {"loss": _q(L_star_S), "objective": _q(rec.objective_star)}}
    for name, b in rec.baselines.items():
        L_b_S = (np.asarray(b["loss"], float) * w).sum(axis=1)
        gain = L_b_S - L_star_S
        comparison[name] = {"loss": _q(L_b_S), "gain_nats": _q(gain), "prob_p_star_better": float(np.mean(gain > 0)),
                            "objective": _q(b["objective"]), "objective_gain": _q(b["objective"] - rec.objective_star)}
    base = {name: {f: float(b["ratios"][f]) for f in fams} for name, b in rec.baselines.items()}
    text = _recommendation_text(summary, base, comparison, rec)
    S = rec.p_star.shape[0]
    keep = np.linspace(0, S - 1, min(S, 2000)).astype(int)
    return {"N": float(N), "D": float(D), "objective": objective, "loss_units": LOSS_UNITS,
            "law": rec.law, "method": rec.method, "families": fams, "p_star": summary,
            "recommended": rec.ratios, "baselines": base, "comparison": comparison, "notes": list(rec.notes),
            "p_star_draws": {f: rec.p_star[keep, j].tolist() for j, f in enumerate(fams)}, "text": text}


def _q(x) -> dict[str, float]:
    x = np.asarray(x, float)
    return {"median": float(np.median(x)), "q05": float(np.quantile(x, 0.05)), "q95": float(np.quantile(x, 0.95))}


def _pretty(name: str) -> str:
    if name.startswith("temperature_"):
        return f"temperature τ={name.split('_', 1)[1]}"
    return {"unimax": "UniMax"}.get(name, name)


def _short(name: str) -> str:
    """Column label for the text table: temperature_0.3 -> 'temp τ=0.3'."""
    if name.startswith("temperature_"):
        return f"temp τ={name.split('_', 1)[1]}"
    return {"unimax": "UniMax"}.get(name, name)[:12]


def _recommendation_text(summary, base, comparison, rec) -> list[str]:
    kind = "median and 90% credible interval" if rec.p_star.shape[0] > 1 else "point fit: no interval"
    lines = [f"Recommended family sampling ratios p* for a model of N = {plots._si(rec.N)} non-embedding "
             f"parameters trained on D = {plots._si(rec.D)} tokens ({rec.objective} objective; {kind}):"]
    lines.append("  " + "family".ljust(14) + "p*".rjust(7) + "   90% interval  " + "".join(
        _short(k).rjust(13) for k in base))
    for f, s in summary.items():
        lines.append("  " + f[:14].ljust(14) + f"{s['median']:7.3f}   [{s['q05']:.3f}, {s['q95']:.3f}]" + "".join(
            f"{base[k][f]:13.3f}" for k in base))
    star = comparison["p*"]["loss"]
    lines.append(f"Predicted mean loss over families at p*: {star['median']:.4f} nats/token "
                 f"(90% interval [{star['q05']:.4f}, {star['q95']:.4f}]).")
    for name, c in comparison.items():
        if name == "p*":
            continue
        g = c["gain_nats"]
        lines.append(f"  vs {_pretty(name)}: {c['loss']['median']:.4f} nats/token, so p* gains "
                     f"{g['median']:+.4f} nats/token [{g['q05']:+.4f}, {g['q95']:+.4f}] "
                     f"(P(p* better) = {c['prob_p_star_better']:.2f})")
    for n in rec.notes:
        lines.append(f"Note: {n}")
    return lines


# ------------------------------------------------------------------------------ the report


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

    fit_dir = os.fspath(fit_dir)
    fit = load_fit(fit_dir)
    runs_path = _locate_runs(fit_dir, runs)
    df = read_runs(runs_path)
    unknown = sorted(set(df["family"]) - set(fit.families))
    if unknown:
        raise ValueError(f"run table {runs_path}: families {unknown} are not in the fit ({list(fit.families)})")
    record = _sweep_record(runs_path)
    held = _heldout_runs(fit_dir, runs_path, df, record, heldout, fit, None if fitted is None else os.fspath(fitted))
    if family_tokens is None and record is not None:
        family_tokens = record.get("family_tokens")
    N = float(N) if N is not None else float(df["N"].max())
    D = float(D) if D is not None else float(df["D"].max())
    os.makedirs(out_dir, exist_ok=True)
    figs = []

    figs.append(plots.plot_loss_vs_p(df, fit, os.path.join(out_dir, "loss_vs_p.png"), heldout=held))

    table = prediction_table(fit, df, held)
    metrics = fit_metrics(table)
    table.to_csv(os.path.join(out_dir, "predictions.csv"), index=False)
    subtitle = "\n".join(f"{k.replace('heldout', 'held-out')} runs: R²={m['r2']:.3f}, MAPE={m['mape_pct']:.2f}%"
                         + ("" if np.isnan(m["coverage90"]) else f", 90% coverage={m['coverage90']:.0%}")
                         for k, m in metrics.items())
    figs.append(plots.plot_pred_vs_obs(table, os.path.join(out_dir, "pred_vs_obs.png"), title_extra=subtitle))

    rec = recommend_for_report(fit, N, D, family_tokens=family_tokens, objective=objective)
    draws = rec.get("p_star_draws") or {f: [s["median"]] for f, s in rec["p_star"].items()}
    figs.append(plots.plot_p_star(
        draws, {_pretty(k): v for k, v in rec["baselines"].items()}, os.path.join(out_dir, "p_star.png"),
        title=f"Optimal ratios p* at N={plots._si(N)}, D={plots._si(D)} ({objective} objective) vs baselines"))

    indep, indep_note = _independence(df)
    if indep is not None:
        figs.append(plots.plot_independence(
            indep["families"], os.path.join(out_dir, "independence.png"), material=indep["material_log_loss"],
            share_min=indep["share_min"], shift=indep["shift"]))
    for f in figs:
        plots.check_png(f)

    md = _markdown(fit, df, runs_path, held, metrics, rec, indep, indep_note, figs, out_dir)
    md_path = os.path.join(out_dir, "report.md")
    with open(md_path, "w") as f:
        f.write(md)
    rec_small = {k: v for k, v in rec.items() if k != "p_star_draws"}
    with open(os.path.join(out_dir, "recommendation.json"), "w") as f:
        json.dump(rec_small, f, indent=2)
    return Report(out_dir=str(out_dir), markdown=md_path, figures=tuple(figs), recommendation=rec_small,
                  metrics=metrics)


def _independence(df: pd.DataFrame):
    """The independence test's dict (`IndependenceResult.to_dict()`), or (None, why not)."""
    from multiscale.laws import independence_test
    from multiscale.runs import mixture_columns

    if len(mixture_columns(df)) < 2:
        return None, "the run table has no p_<family> mixture columns"
    try:
        res = independence_test(df)
    except ValueError as err:
        return None, str(err)
    return res.to_dict(), ""


def _fmt_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _markdown(fit, df, runs_path, held, metrics, rec, indep, indep_note, figs, out_dir) -> str:
    rel = {os.path.basename(f).split(".")[0]: os.path.basename(f) for f in figs}
    fams = list(rec["p_star"])
    n_runs = df["run"].nunique()
    scales = sorted({(float(a), float(b)) for a, b in zip(df["N"], df["D"])})
    diag = getattr(fit, "diagnostics", {}) or {}
    lines = [f"# multiscale report", "",
             f"Law **{fit.law.name}**: L = {fit.law.doc}; losses are mean held-out cross-entropy in "
             f"**{LOSS_UNITS}**. Fit: {_METHODS.get(getattr(fit, 'method', ''), '?')} on {n_runs - len(held)} runs "
             f"({len(held)} held out) x {len(fams)} families at {len(scales)} (N, D) scales, from `{runs_path}`."]
    if diag:
        lines.append(f"Sampler diagnostics: max R-hat {diag.get('max_rhat', float('nan')):.3f}, "
                     f"min bulk ESS {diag.get('min_ess_bulk', float('nan')):.0f}, "
                     f"divergences {diag.get('divergences', 0)}.")
    for w in getattr(fit, "warnings", []) or []:
        lines.append(f"> **Warning:** {w}")
    lines += ["", "## Recommendation", ""]
    lines += [rec["text"][0], ""]
    base = rec["baselines"]
    rows = []
    for f in fams:
        s = rec["p_star"][f]
        rows.append([f, f"{s['median']:.3f}", f"[{s['q05']:.3f}, {s['q95']:.3f}]"] +
                    [f"{base[b][f]:.3f}" for b in base])
    lines.append(_fmt_table(["family", "p* (median)", "90% interval"] + [_pretty(b) for b in base], rows))
    lines += ["", *[line.strip() for line in rec["text"][len(fams) + 2:]], "",
              f"![p* beside the baselines]({rel.get('p_star', 'p_star.png')})", ""]
    lines += ["## Loss vs sampling ratio", "",
              "Each panel is one family: observed runs (dots; held-out runs as squares), the fitted law "
              "(line, posterior median) and its 90% credible band, one colour per (N, D).", "",
              f"![loss vs p]({rel.get('loss_vs_p', 'loss_vs_p.png')})", ""]
    lines += ["## Predicted vs observed", ""]
    mrows = [[k, m["rows"], f"{m['r2']:.3f}", f"{m['mape_pct']:.2f}",
              "n/a (point fit)" if np.isnan(m["coverage90"]) else f"{m['coverage90']:.0%}"]
             for k, m in metrics.items()]
    lines += [_fmt_table(["rows", "count", "R²", "MAPE (%)", "90% interval coverage"], mrows), "",
              "Intervals are 90% posterior predictive intervals (the law's parameter uncertainty plus the "
              "fitted run-to-run noise) for a Bayesian fit, so about 90% of runs should fall inside; a point "
              "fit gives no interval. Held-out runs were not fitted: they test prediction.", "",
              f"![predicted vs observed]({rel.get('pred_vs_obs', 'pred_vs_obs.png')})", ""]
    lines += ["## Independence test", ""]
    if indep is None:
        lines.append(f"Not run: {indep_note}.")
    else:
        irows = []
        for f, e in indep["families"].items():
            lo, hi = e["top_interval"]
            irows.append([f, e["n_runs"], f"{e['r2_own']:.3f}", f"{e['r2_full']:.3f}", f"{e['share_own']:.2f}",
                          f"{e['top_family']}: {e['top_effect']:+.4f} [{lo:+.4f}, {hi:+.4f}]", e["verdict"]])
        lines += [f"Per family, log-loss regressed on its own log-ratio alone (one intercept per (N, D)) "
                  f"vs with the other families' ratios added. *Share*: the own ratio's part of the explainable "
                  f"variance (R² own / R² full; needs ≥ {indep['share_min']:g}). *Largest cross effect*: change "
                  f"in log-loss when {indep['shift']:g} of the mixture moves to that family with the own ratio "
                  f"fixed, with its 90% interval (material above {indep['material_log_loss']:g}).", "",
                  _fmt_table(["family", "runs", "R² own", "R² full", "share", "largest cross effect", "verdict"],
                             irows), ""]
        lines += [f"Note: {n}" for n in indep.get("notes", [])]
        if "independence" in rel:
            lines.append(f"![independence test]({rel['independence']})")
    lines += ["", "## Files", ""] + [f"- `{os.path.basename(f)}`" for f in figs] + [
        "- `predictions.csv`: observed and predicted loss per (run, family)",
        "- `recommendation.json`: the numbers above"]
    return "\n".join(lines) + "\n"
