"""Decisions from fitted laws: which mixture to train and which runs to train next.

- `recommend` (`optimal_ratios`, `Recommendation`): p* per posterior draw, the robust p* (the
  recommended mixture), and every candidate's expected regret and P(best), the baselines'
  included; the solvers are in `ratios`, the regret and P(best) in `regret`.
- `next_runs` (`plan_next`): the runs that teach the most about p* per FLOP, among the
  `candidates`.
- `choose` (`choose_candidates`, `Choice`): which of the mixtures measured at proxy scale to train at
  the target: the law's prediction plus each mixture's residual, shrunk by empirical Bayes.
- `compare` (`compare_laws`): which law to believe, by held-out scores.

Decisions sit above the law engine (`multiscale.laws`) and below sweeps, reports and the CLI.
"""

from multiscale.decisions.choose import Choice, choose_candidates
from multiscale.decisions.recommend import Recommendation, decision_families, optimal_ratios

__all__ = ["Choice", "Recommendation", "choose_candidates", "decision_families", "optimal_ratios"]
