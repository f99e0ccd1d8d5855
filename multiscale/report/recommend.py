"""The report's recommendation: p* per family with its 90% interval, and its predicted gain
over each baseline, as numbers (JSON-ready) and as text lines."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from multiscale.laws.summary import interval
from multiscale.report.labels import pretty, short, si

LOSS_UNITS = "nats/token"
_MAX_PLOTTED_DRAWS = 2000


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
    table = rec.family_table()
    summary = {f: {**table[f]["p_star"], "recommended": table[f]["recommended"],
                   "prob_above_uniform": table[f]["prob_above_uniform"]} for f in fams}
    comparison = _comparison(rec)
    base = {name: {f: float(b["ratios"][f]) for f in fams} for name, b in rec.baselines.items()}
    S = rec.p_star.shape[0]
    keep = np.linspace(0, S - 1, min(S, _MAX_PLOTTED_DRAWS)).astype(int)
    return {"N": float(N), "D": float(D), "objective": objective, "loss_units": LOSS_UNITS,
            "law": rec.law, "method": rec.method, "families": fams, "p_star": summary,
            "recommended": rec.ratios, "baselines": base, "comparison": comparison, "notes": list(rec.notes),
            "p_star_draws": {f: rec.p_star[keep, j].tolist() for j, f in enumerate(fams)},
            "text": recommendation_text(summary, base, comparison, rec)}


def _comparison(rec) -> dict[str, dict]:
    """p*'s mean loss over families (equal weights) and, per baseline, its loss, the gain of p*
    and the probability that p* is better, each over the fit's draws."""
    w = np.asarray(rec.weights, float)
    L_star_S = (rec.loss_star * w).sum(axis=1)
    comparison = {"p*": {"loss": interval(L_star_S), "objective": interval(rec.objective_star)}}
    for name, b in rec.baselines.items():
        L_b_S = (np.asarray(b["loss"], float) * w).sum(axis=1)
        gain = L_b_S - L_star_S
        comparison[name] = {"loss": interval(L_b_S), "gain_nats": interval(gain),
                            "prob_p_star_better": float(np.mean(gain > 0)),
                            "objective": interval(b["objective"]),
                            "objective_gain": interval(b["objective"] - rec.objective_star)}
    return comparison


def recommendation_text(summary, base, comparison, rec) -> list[str]:
    """The recommendation in words: the headline, a table of p* beside the baselines, the
    predicted loss at p* and the gain over each baseline, then the optimizer's notes."""
    kind = "median and 90% credible interval" if rec.p_star.shape[0] > 1 else "point fit: no interval"
    lines = [f"Recommended family sampling ratios p* for a model of N = {si(rec.N)} non-embedding "
             f"parameters trained on D = {si(rec.D)} tokens ({rec.objective} objective; {kind}):"]
    lines.append("  " + "family".ljust(14) + "p*".rjust(7) + "   90% interval  " + "".join(
        short(k).rjust(13) for k in base))
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
        lines.append(f"  vs {pretty(name)}: {c['loss']['median']:.4f} nats/token, so p* gains "
                     f"{g['median']:+.4f} nats/token [{g['q05']:+.4f}, {g['q95']:+.4f}] "
                     f"(P(p* better) = {c['prob_p_star_better']:.2f})")
    for n in rec.notes:
        lines.append(f"Note: {n}")
    return lines
