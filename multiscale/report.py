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

Which runs are held out: `heldout=` if given; else, when FIT_DIR holds the table it was fitted
on (`FIT_DIR/runs.csv`, as the demo writes), the runs missing from it; else, when the run table
sits in a sweep folder, the runs its plan marked held-out. The corpus's per-family token counts
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
    plan = os.path.join(os.path.dirname(os.path.abspath(runs_path)), "plan.json")
    if os.path.exists(plan):
        with open(plan) as f:
            return json.load(f)
    return None


def _heldout_runs(fit_dir: str, runs_path: str, df: pd.DataFrame, record: dict | None,
                  heldout: Sequence[str] | None) -> list[str]:
    all_runs = list(dict.fromkeys(df["run"]))
    if heldout is not None:
        unknown = sorted(set(heldout) - set(all_runs))
        if unknown:
            raise ValueError(f"--heldout names runs that are not in {runs_path}: {unknown[:5]}")
        return list(heldout)
    fitted = os.path.join(fit_dir, "runs.csv")
    if os.path.exists(fitted) and os.path.abspath(fitted) != os.path.abspath(runs_path):
        seen = set(pd.read_csv(fitted, usecols=["run"])["run"].astype(str))
        return [r for r in all_runs if r not in seen]
    if record is not None:
        flagged = {r["run_id"] for r in record.get("runs", []) if r.get("heldout")}
        return [r for r in all_runs if r in flagged]
    return []


# ------------------------------------------------------------------------------ numbers


def prediction_table(fit, df: pd.DataFrame, heldout: Sequence[str]) -> pd.DataFrame:
    """Observed vs predicted loss (law median and 90% credible interval) per (run, family)."""
    held = set(heldout)
    rows = []
    for fam, sub in df.groupby("family", sort=False):
        if fam not in fit.families:
            continue
        for (N, D), g in sub.groupby(["N", "D"], sort=False):
            q = plots.law_band(fit, fam, N, D, g["p"].to_numpy(float))
            for k, (_, r) in enumerate(g.iterrows()):
                rows.append({"run": r["run"], "family": fam, "N": N, "D": D, "p": r["p"], "loss": r["loss"],
                             "pred_lo": q[0, k], "pred": q[1, k], "pred_hi": q[2, k],
                             "heldout": r["run"] in held})
    return pd.DataFrame(rows)


def fit_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """R² of loss, MAPE (%), and 90%-interval coverage, for fitted and held-out rows."""
    out = {}
    for name, sub in (("fitted", table[~table["heldout"]]), ("heldout", table[table["heldout"]])):
        if sub.empty:
            continue
        y, yhat = sub["loss"].to_numpy(float), sub["pred"].to_numpy(float)
        ss_res = float(((y - yhat) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        out[name] = {
            "rows": int(len(sub)),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "mape_pct": float(np.mean(np.abs(yhat - y) / y) * 100),
            "coverage90": float(np.mean((y >= sub["pred_lo"]) & (y <= sub["pred_hi"]))),
        }
    return out


def baseline_mixtures(families: Sequence[str], family_tokens: Mapping[str, int] | None, D: float,
                      *, temperatures=(0.3,), max_epochs: float = 4.0) -> dict[str, dict[str, float]]:
    """The baselines the recommendation is compared with; all but uniform need token counts."""
    from multiscale.plan import SweepPlan

    include = ["uniform"] + (["temperature", "unimax"] if family_tokens else [])
    plan = SweepPlan.from_dict({"presets": ["x"], "tokens": [int(D)], "families": list(families),
                                "mixtures": [{"design": "baselines", "include": include,
                                              "temperatures": list(temperatures),
                                              "max_epochs": max_epochs}]})
    runs = plan.expand(list(families), family_tokens=family_tokens)
    names = {"uniform": "uniform", "unimax": f"UniMax ({max_epochs:g} epochs)"}
    out = {}
    for r in runs:
        label = names.get(r.mixture) or f"temperature τ={r.mixture[4:]}"
        out[label] = r.ratio_dict
    return out


def recommend_for_report(fit, N: float, D: float, *, family_tokens: Mapping[str, int] | None = None,
                         objective: str = "normalized") -> dict:
    """p* per family (median, 90% interval) and the predicted loss against the baselines.

    Returns a JSON-ready dict with `p_star`, `baselines`, `comparison` (mean predicted loss over
    families in nats/token, and the difference to p* with a 90% interval) and `text` lines.
    """
    from multiscale.laws.forms import predict_loss

    from multiscale.laws import optimal_ratios

    rec = optimal_ratios(fit, N, D, objective=objective)
    fams = list(fit.families)
    P_SxF = np.asarray(rec.draws, float) if hasattr(rec, "draws") else None
    summary = _p_star_summary(rec, fams)
    base = baseline_mixtures(fams, family_tokens, D)
    # predicted mean loss (equal family weights), per posterior draw, for p* and each baseline
    params = {n: np.asarray(v, float) for n, v in fit.draws.items()}

    def mean_loss(p_F_or_SxF):
        L = predict_loss(fit.law, params, float(N), float(D), np.asarray(p_F_or_SxF, float))
        return np.asarray(L, float).mean(axis=-1)

    p_star_SxF = P_SxF if P_SxF is not None and P_SxF.shape == params[fit.law.params[0]].shape else \
        np.array([[summary[f]["median"] for f in fams]])
    L_star_S = mean_loss(p_star_SxF)
    comparison = {"p*": _q(L_star_S)}
    for name, mix in base.items():
        L_b_S = mean_loss(np.array([[mix[f] for f in fams]]))
        comparison[name] = {**_q(L_b_S), "gain_of_p_star": _q(L_b_S - L_star_S)}
    text = _recommendation_text(summary, base, comparison, N, D, objective)
    return {"N": float(N), "D": float(D), "objective": objective, "loss_units": LOSS_UNITS,
            "families": fams, "p_star": summary, "baselines": base, "comparison": comparison,
            "p_star_draws": {f: p_star_SxF[:, j].tolist() for j, f in enumerate(fams)}
            if p_star_SxF.shape[0] <= 4000 else None, "text": text}


def _p_star_summary(rec, fams) -> dict[str, dict[str, float]]:
    d = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)
    per = d.get("families") or d.get("p_star") or {}
    out = {}
    for f in fams:
        e = per[f] if isinstance(per, Mapping) else next(x for x in per if x.get("family") == f)
        out[f] = {"median": float(e["median"]), "q05": float(e["q05"]), "q95": float(e["q95"])}
        if "prob_above_uniform" in e:
            out[f]["prob_above_uniform"] = float(e["prob_above_uniform"])
    return out


def _q(x) -> dict[str, float]:
    x = np.asarray(x, float)
    return {"median": float(np.median(x)), "q05": float(np.quantile(x, 0.05)), "q95": float(np.quantile(x, 0.95))}


def _recommendation_text(summary, base, comparison, N, D, objective) -> list[str]:
    lines = [f"Recommended family sampling ratios p* for N = {plots._si(N)} non-embedding parameters, "
             f"D = {plots._si(D)} tokens ({objective} objective; median and 90% interval):"]
    lines.append("  " + "family".ljust(16) + "p*".rjust(8) + "   90% interval" + "".join(
        k[:14].rjust(16) for k in base))
    for f, s in summary.items():
        lines.append("  " + f[:16].ljust(16) + f"{s['median']:8.3f}   [{s['q05']:.3f}, {s['q95']:.3f}]" + "".join(
            f"{base[k][f]:16.3f}" for k in base))
    star = comparison["p*"]
    lines.append(f"Predicted mean held-out loss over families at p*: {star['median']:.4f} nats/token "
                 f"[{star['q05']:.4f}, {star['q95']:.4f}].")
    for name, c in comparison.items():
        if name == "p*":
            continue
        g = c["gain_of_p_star"]
        lines.append(f"  vs {name}: {c['median']:.4f} nats/token; p* is better by {g['median']:+.4f} "
                     f"nats/token (90% interval [{g['q05']:+.4f}, {g['q95']:+.4f}])")
    return lines


# ------------------------------------------------------------------------------ the report


def write_report(fit_dir, out_dir, *, runs=None, N: float | None = None, D: float | None = None,
                 heldout: Sequence[str] | None = None, objective: str = "normalized",
                 family_tokens: Mapping[str, int] | None = None) -> Report:
    """Writes the figures and report.md for the fit in `fit_dir` into `out_dir`.

    runs: the run table (default FIT_DIR/runs.csv); N, D: the scale of the recommendation
    (default: the largest N and D in the table); heldout: run names to mark as held out.
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
    held = _heldout_runs(fit_dir, runs_path, df, record, heldout)
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
    subtitle = "; ".join(f"{k}: R²={m['r2']:.3f}, MAPE={m['mape_pct']:.2f}%, 90% coverage={m['coverage90']:.0%}"
                         for k, m in metrics.items())
    figs.append(plots.plot_pred_vs_obs(table, os.path.join(out_dir, "pred_vs_obs.png"), title_extra=subtitle))

    rec = recommend_for_report(fit, N, D, family_tokens=family_tokens, objective=objective)
    draws = rec.get("p_star_draws") or {f: [s["median"]] for f, s in rec["p_star"].items()}
    figs.append(plots.plot_p_star(
        draws, rec["baselines"], os.path.join(out_dir, "p_star.png"),
        title=f"Optimal ratios p* at N={plots._si(N)}, D={plots._si(D)} ({objective} objective) vs baselines"))

    indep, indep_note = _independence(df)
    if indep is not None:
        figs.append(plots.plot_independence(indep["matrix"], indep["own_share"], indep["verdict"],
                                            os.path.join(out_dir, "independence.png")))
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
    """The independence test as plain values, or (None, why not)."""
    from multiscale.laws import independence_test
    from multiscale.runs import mixture_columns

    if not mixture_columns(df):
        return None, "the run table has no p_<family> mixture columns"
    try:
        res = independence_test(df)
    except ValueError as err:
        return None, str(err)
    return _independence_values(res), ""


def _independence_values(res) -> dict:
    d = res.to_dict()
    fams = [f for f in d["families"]] if isinstance(d["families"], list) else list(d["families"])
    per = d["families"] if isinstance(d["families"], Mapping) else {e["family"]: e for e in d["families"]}
    return {"raw": d, "per_family": per, "matrix": pd.DataFrame(d["effects"]).T if "effects" in d else None,
            "own_share": {f: per[f]["own_share"] for f in per}, "verdict": {f: per[f]["verdict"] for f in per},
            "families": fams}


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
             f"**{LOSS_UNITS}**. Fit: {getattr(fit, 'method', '?')} on {n_runs - len(held)} runs "
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
    lines.append(_fmt_table(["family", "p* (median)", "90% interval"] + list(base), rows))
    lines += ["", *[line.strip() for line in rec["text"][len(fams) + 2:]], "",
              f"![p* beside the baselines]({rel.get('p_star', 'p_star.png')})", ""]
    lines += ["## Loss vs sampling ratio", "",
              "Each panel is one family: observed runs (dots; held-out runs as squares), the fitted law "
              "(line, posterior median) and its 90% credible band, one colour per (N, D).", "",
              f"![loss vs p]({rel.get('loss_vs_p', 'loss_vs_p.png')})", ""]
    lines += ["## Predicted vs observed", ""]
    mrows = [[k, m["rows"], f"{m['r2']:.3f}", f"{m['mape_pct']:.2f}", f"{m['coverage90']:.0%}"]
             for k, m in metrics.items()]
    lines += [_fmt_table(["rows", "count", "R²", "MAPE (%)", "90% interval coverage"], mrows), "",
              "Intervals are the law's 90% credible interval (parameter uncertainty only), so coverage of "
              "single noisy runs can fall below 90%. Held-out rows test extrapolation.", "",
              f"![predicted vs observed]({rel.get('pred_vs_obs', 'pred_vs_obs.png')})", ""]
    lines += ["## Independence test", ""]
    if indep is None:
        lines.append(f"Not run: {indep_note}.")
    else:
        per = indep["per_family"]
        irows = []
        for f, e in per.items():
            irows.append([f, f"{e['own_share']:.3f}", str(e.get("max_cross_family", e.get("largest_cross", ""))),
                          e["verdict"]])
        lines += ["Per family: the share of the variance of log-loss that its own ratio explains, the largest "
                  "effect of another family's ratio, and the verdict.", "",
                  _fmt_table(["family", "own-p share", "largest cross-family effect", "verdict"], irows), ""]
        if "independence" in rel:
            lines.append(f"![independence test]({rel['independence']})")
    lines += ["", "## Files", ""] + [f"- `{os.path.basename(f)}`" for f in figs] + [
        "- `predictions.csv`: observed and predicted loss per (run, family)",
        "- `recommendation.json`: the numbers above"]
    return "\n".join(lines) + "\n"
