"""The report's recommendation: the recommended mixture (the robust p*), p* per family with its
90% interval, its predicted gain over each baseline, and every choice's expected regret and
P(best), as numbers (JSON-ready) and as text lines."""

from __future__ import annotations

import numpy as np

from multiscale.decisions.recommend import Recommendation
from multiscale.decisions.regret import MEDIAN, ROBUST
from multiscale.laws.summary import interval
from multiscale.report.labels import pretty, short, si

LOSS_UNITS = "nats/token"
_MAX_PLOTTED_DRAWS = 2000


def recommend_for_report(rec: Recommendation) -> dict:
    """The report's view of a recommendation (`multiscale.decisions.optimal_ratios`): the
    robust p*, p* per family (median, 90% interval), the decision numbers, and per baseline its
    mean predicted loss minus the recommendation's (nats/token, 90% interval, P(recommendation
    better)). A JSON-ready dict (`p_star`, `baselines`, `comparison`, `text`, `p_star_draws`).
    """
    fams = list(rec.mixture_families)  # the families p* is over (a matrix law's mixture families)
    table = rec.family_table()
    summary = {f: {**table[f]["p_star"], "recommended": table[f]["recommended"],
                   "median_p_star": table[f]["median_p_star"],
                   "prob_above_uniform": table[f]["prob_above_uniform"]} for f in fams}
    # Per candidate: its mean loss over families (the objective's weights) and objective, its
    # regret against the per-draw optimum (mean, interval) and P(best among the candidates); per
    # baseline also the gain of the recommended mixture in nats/token with P(recommendation
    # better), and `objective_gain`, its objective minus the per-draw optimum's.
    w, ok = np.asarray(rec.weights, float), rec.valid  # weights over the families with a loss
    decisions = rec.decision_table()
    L_rec_S = (rec.candidates[ROBUST]["loss"][ok] * w).sum(axis=1)
    comparison = {}
    for name, cand in rec.candidates.items():
        d = decisions[name]
        L_S = (np.asarray(cand["loss"], float)[ok] * w).sum(axis=1)
        key = {ROBUST: "recommended", MEDIAN: "median p*"}.get(name, name)
        entry = {"loss": interval(L_S), "objective": interval(cand["objective"][ok]),
                 "expected_regret": d["expected_regret"], "regret": d["regret"], "prob_best": d["prob_best"]}
        if name not in (ROBUST, MEDIAN):
            gain = L_S - L_rec_S
            entry.update(gain_nats=interval(gain), prob_recommended_better=float(np.mean(gain > 0)),
                         objective_gain=interval(cand["objective"][ok] - rec.objective_star[ok]))
        comparison[key] = entry
    base = {name: {f: float(b["ratios"][f]) for f in fams} for name, b in rec.baselines.items()}
    P = rec.p_star[ok]
    keep = np.linspace(0, len(P) - 1, min(len(P), _MAX_PLOTTED_DRAWS)).astype(int)
    return {"N": rec.N, "D": rec.D, "objective": rec.objective, "loss_units": LOSS_UNITS,
            "law": rec.law, "method": rec.method, "solver": rec.solver, "families": fams, "p_star": summary,
            "recommended": rec.ratios, "recommended_is": "robust p* (least expected regret)",
            "median_p_star": rec.median_ratios, "baselines": base, "comparison": comparison,
            "notes": list(rec.notes),
            "p_star_draws": {f: P[keep, j].tolist() for j, f in enumerate(fams)},
            "text": recommendation_text(summary, base, comparison, rec)}


def recommendation_text(summary, base, comparison, rec) -> list[str]:
    """The recommendation in words: the headline, a table of the recommended mixture and p*
    beside the baselines, the predicted loss, the gain over each baseline with the regret of each
    choice, then the optimizer's notes."""
    kind = "median and 90% credible interval" if rec.p_star.shape[0] > 1 else "point fit: no interval"
    coupled = (f" Law {rec.law} couples the families' losses through the whole mixture, so p* comes from "
               "the coupled solver (projected gradient on the simplex, per draw and on the posterior mean)."
               if rec.solver.startswith("coupled") else "")
    lines = [f"Recommended family sampling ratios for a model of N = {si(rec.N)} non-embedding "
             f"parameters trained on D = {si(rec.D)} tokens ({rec.objective} objective): the robust p*, the "
             f"one mixture with the least expected regret; beside it the per-draw optimum p* ({kind}).{coupled}"]
    lines.append("  " + "family".ljust(14) + "robust".rjust(8) + "p*".rjust(7) + "   90% interval  " + "".join(
        short(k).rjust(13) for k in base))
    for f, s in summary.items():
        lines.append("  " + f[:14].ljust(14) + f"{s['recommended']:8.3f}{s['median']:7.3f}   "
                     f"[{s['q05']:.3f}, {s['q95']:.3f}]" + "".join(f"{base[k][f]:13.3f}" for k in base))
    star = comparison["recommended"]["loss"]
    lines.append(f"Predicted mean loss over families at the recommended mixture: {star['median']:.4f} nats/token "
                 f"(90% interval [{star['q05']:.4f}, {star['q95']:.4f}]).")
    units = LOSS_UNITS if rec.objective == "raw" else "x monolingual loss"
    lines.append(f"Expected regret (objective above each draw's own optimum; {units}), 90% interval, "
                 "and P(best of these choices):")
    for name, c in comparison.items():
        r = c["regret"]
        regret = (f"regret {c['expected_regret']:.2e} [{r['q05']:.2e}, {r['q95']:.2e}], "
                  f"P(best) = {c['prob_best']:.2f}")
        if "gain_nats" not in c:
            lines.append(f"  {name}: {regret}")
            continue
        g = c["gain_nats"]
        lines.append(f"  vs {pretty(name)}: {c['loss']['median']:.4f} nats/token, so the recommendation gains "
                     f"{g['median']:+.4f} nats/token [{g['q05']:+.4f}, {g['q95']:+.4f}] "
                     f"(P(better) = {c['prob_recommended_better']:.2f}); {pretty(name)} {regret}")
    for n in rec.notes:
        lines.append(f"Note: {n}")
    return lines
