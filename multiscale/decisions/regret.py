"""Decisions by expected regret: what a `multiscale.decisions.recommend.Recommendation` reports.

A recommendation holds the per-draw optima p*_s (S, M) over its mixture families, the objective
there per draw, ``min_p Obj_s(p)`` (S,), and *candidates*: name -> {"ratios", "objective" draws
(S,), "loss" draws (S, F)} for the robust p* (the one mixture minimizing the posterior mean
objective), the median p* (per-family medians of p*_s, renormalized) and every baseline.

For a candidate q and draw s, ``regret_s(q) = Obj_s(q) - min_p Obj_s(p)``. Since
``E_s[Obj_s(q)] = E_s[regret_s(q)] + E_s[min_p Obj_s(p)]``, the robust p* minimizes the expected
regret: the Bayes decision, the RECOMMENDED mixture (`ratios`). Draws whose objective at p*_s is
not finite are left out of every decision number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiscale.laws.fits import LOSS_UNITS
from multiscale.laws.summary import interval

ROBUST = "robust p*"
MEDIAN = "median p*"


def median_mixture(P_SxM) -> np.ndarray:
    """Per-family medians of the per-draw optima (NaN draws left out), renormalized to sum 1."""
    P = np.asarray(P_SxM, float)
    ok = np.isfinite(P).all(axis=1)
    med = np.median(P[ok], axis=0)
    return med / med.sum()


class Decisions:
    """The decision methods of a recommendation; the class needs the attributes `families`,
    `mixture_families`, `weights` (F,), `lower`, `upper` (M,), `p_star` (S, M), `loss_star`
    (S, F), `objective_star` (S,), `candidates`, `law`, `method`, `N`, `D`, `objective`, `notes`."""

    @property
    def valid(self) -> np.ndarray:
        """(S,) the draws the decisions use: those with a finite objective at p*_s."""
        return np.isfinite(self.objective_star)

    @property
    def ratios(self) -> dict[str, float]:
        """The recommended mixture: the robust p*."""
        return dict(self.candidates[ROBUST]["ratios"])

    @property
    def median_ratios(self) -> dict[str, float]:
        """Per-family posterior medians of p*_s, renormalized to sum to 1."""
        return dict(self.candidates[MEDIAN]["ratios"])

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.candidates.items() if k not in (ROBUST, MEDIAN)}

    def regret(self, name: str) -> np.ndarray:
        """Draws (S,) of the regret of candidate `name` (>= 0 up to rounding), aligned with
        `p_star`; NaN at the draws left out (see `valid`)."""
        with np.errstate(invalid="ignore"):
            diff = self.candidates[name]["objective"] - self.objective_star
        return np.where(self.valid, diff, np.nan)

    def prob_best(self) -> dict[str, float]:
        """Per candidate, the share of draws under which it has the lowest objective among the
        candidates (ties share the draw)."""
        names = list(self.candidates)
        obj = np.stack([self.candidates[n]["objective"][self.valid] for n in names])  # (C, S)
        obj = np.where(np.isfinite(obj), obj, np.inf)
        best = obj.min(axis=0)
        tie = obj <= best + 1e-12 * np.maximum(1.0, np.abs(best))
        share = tie / tie.sum(axis=0)
        return dict(zip(names, share.mean(axis=1).tolist()))

    def decision_table(self) -> dict[str, dict[str, Any]]:
        """Per candidate: ratios, objective, expected regret (mean) with the regret's median and
        90% interval, and P(best among the candidates)."""
        pb = self.prob_best()
        out = {}
        for name, cand in self.candidates.items():
            r = self.regret(name)[self.valid]
            out[name] = {"ratios": dict(cand["ratios"]), "objective": interval(cand["objective"][self.valid]),
                         "expected_regret": float(np.mean(r)), "regret": interval(r),
                         "prob_best": pb[name]}
        return out

    def baseline_table(self) -> dict[str, dict[str, Any]]:
        """Per baseline: its objective; minus the per-draw optimum's (its regret) with
        P(p*_s better); minus the recommended mixture's with P(recommended better)."""
        ok = self.valid
        rec = self.candidates[ROBUST]["objective"][ok]
        out = {}
        for name, b in self.baselines.items():
            diff = b["objective"][ok] - self.objective_star[ok]
            gain = b["objective"][ok] - rec
            out[name] = {"ratios": b["ratios"], "objective": interval(b["objective"][ok]),
                         "minus_p_star": interval(diff),
                         "prob_p_star_better": float(np.mean(diff > 0)),
                         "minus_recommended": interval(gain),
                         "prob_recommended_better": float(np.mean(gain > 0))}
        return out

    def family_table(self) -> dict[str, dict[str, Any]]:
        """Per mixture family: p*_s (interval), the recommended and median ratios, P(p*_s above
        uniform), floor and cap; with, for a family whose loss the objective weighs, its weight
        and its loss at p*_s and at the recommended mixture (weight 0 and None otherwise)."""
        ok, M = self.valid, len(self.mixture_families)
        rec, med = self.ratios, self.median_ratios
        out = {}
        for m, f in enumerate(self.mixture_families):
            ps = self.p_star[ok, m]
            row = {"p_star": interval(ps), "recommended": rec[f], "median_p_star": med[f],
                   "prob_above_uniform": float(np.mean(ps > 1.0 / M)),
                   "loss_at_p_star": None, "loss_at_recommended": None, "weight": 0.0,
                   "floor": float(self.lower[m]), "cap": float(self.upper[m])}
            if f in self.families:
                j = self.families.index(f)
                row.update(loss_at_p_star=interval(self.loss_star[ok, j]),
                           loss_at_recommended=interval(self.candidates[ROBUST]["loss"][ok, j]),
                           weight=float(self.weights[j]))
            out[f] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        ok = self.valid
        return {"law": self.law, "method": self.method, "N": self.N, "D": self.D,
                "objective": self.objective, "loss_units": LOSS_UNITS,
                "objective_units": LOSS_UNITS if self.objective == "raw" else "ratio to monolingual loss",
                "weights": dict(zip(self.families, np.asarray(self.weights).tolist())),
                "recommended": ROBUST, "ratios": self.ratios, "median_ratios": self.median_ratios,
                "families": self.family_table(),
                "objective_at_p_star": interval(self.objective_star[ok]),
                "decisions": self.decision_table(),
                "baselines": self.baseline_table(), "n_draws": int(self.p_star.shape[0]),
                "notes": list(self.notes)}

    def decision_lines(self) -> list[str]:
        """The text of the decisions: the objective at p*_s, then each candidate's regret and P(best)."""
        units = LOSS_UNITS if self.objective == "raw" else "x monolingual loss"
        o = interval(self.objective_star[self.valid])
        lines = [f"objective at p*_s: {o['median']:.5f} [{o['q05']:.5f}, {o['q95']:.5f}] {units}",
                 f"regret vs p*_s ({units}): mean, median [5%, 95%]; P(best of these)"]
        for name, d in self.decision_table().items():
            r = d["regret"]
            lines.append(f"  {name:18s} objective {d['objective']['median']:.5f}; regret {d['expected_regret']:.2e}, "
                         f"{r['median']:.2e} [{r['q05']:.2e}, {r['q95']:.2e}]; P(best) {d['prob_best']:.2f}")
        return lines
