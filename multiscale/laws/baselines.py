"""Baseline sampling ratios to compare an optimal mixture with.

Each function takes family (or language) names and returns ``name -> ratio`` summing to 1.

- `uniform`: 1/F each.
- `proportional`: proportional to available tokens ``n_i``.
- `temperature`: ``q_i ∝ n_i^tau`` with ``tau = 1/T``; tau = 0.3 as in mT5 and XLM-R, also
  0.5 and 0.7 (DESIGN.md section 5).
- `unimax`: Chung et al. (2023, "UniMax: Fairer and more effective language sampling for
  large-scale multilingual pretraining"): walk languages from smallest to largest; each gets
  the smaller of its fair share of the budget left (budget left / languages left) and its
  size times the epoch cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TEMPERATURE_TAUS = (0.3, 0.5, 0.7)


def _sizes(tokens: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    if not tokens:
        raise ValueError("available tokens: no families given")
    names = list(tokens)
    n = np.array([float(tokens[k]) for k in names])
    bad = [k for k, v in zip(names, n) if not np.isfinite(v) or v <= 0]
    if bad:
        raise ValueError(f"available tokens must be positive and finite; bad for {bad}")
    return names, n


def uniform(families: Sequence[str]) -> dict[str, float]:
    """Equal ratios."""
    families = list(families)
    if not families:
        raise ValueError("uniform: no families given")
    return {f: 1.0 / len(families) for f in families}


def proportional(tokens: Mapping[str, float]) -> dict[str, float]:
    """Ratios proportional to available tokens."""
    names, n = _sizes(tokens)
    return dict(zip(names, (n / n.sum()).tolist()))


def temperature(tokens: Mapping[str, float], tau: float = 0.3) -> dict[str, float]:
    """Temperature sampling ``q_i ∝ n_i^tau`` (tau = 1/T; tau = 1 is proportional, 0 uniform)."""
    if not (0.0 <= tau <= 1.0):
        raise ValueError(f"temperature: tau must lie in [0, 1], got {tau}")
    names, n = _sizes(tokens)
    logq = tau * np.log(n)
    q = np.exp(logq - logq.max())
    return dict(zip(names, (q / q.sum()).tolist()))


def unimax(tokens: Mapping[str, float], budget: float, max_epochs: float = 4.0) -> dict[str, float]:
    """UniMax ratios for a training budget of `budget` tokens and at most `max_epochs` epochs
    of any language. Raises ValueError when even `max_epochs` of everything cannot fill the
    budget."""
    names, n = _sizes(tokens)
    if not budget > 0:
        raise ValueError(f"unimax: budget must be positive, got {budget}")
    if not max_epochs > 0:
        raise ValueError(f"unimax: max_epochs must be positive, got {max_epochs}")
    if max_epochs * n.sum() < budget * (1 - 1e-12):
        raise ValueError(
            f"unimax: {max_epochs} epochs of all {n.sum():.4g} available tokens cannot fill the "
            f"budget of {budget:.4g} tokens")
    order = np.argsort(n, kind="stable")
    alloc = np.zeros_like(n)
    left = float(budget)
    for k, i in enumerate(order):
        share = left / (len(order) - k)
        alloc[i] = min(share, n[i] * max_epochs)
        left -= alloc[i]
    return dict(zip(names, (alloc / budget).tolist()))


def all_baselines(families: Sequence[str], tokens: Mapping[str, float] | None = None,
                  budget: float | None = None, max_epochs: float = 4.0) -> dict[str, dict[str, float]]:
    """Every baseline that the inputs allow: uniform always; proportional, temperature
    (tau 0.3/0.5/0.7) and UniMax when available tokens are given (UniMax also needs a budget
    that the epoch cap can fill)."""
    out = {"uniform": uniform(families)}
    if tokens:
        missing = [f for f in families if f not in tokens]
        if missing:
            raise ValueError(f"available tokens missing for families {missing}")
        tok = {f: tokens[f] for f in families}
        out["proportional"] = proportional(tok)
        for tau in TEMPERATURE_TAUS:
            out[f"temperature_{tau:g}"] = temperature(tok, tau)
        if budget is not None:
            try:
                out["unimax"] = unimax(tok, budget, max_epochs)
            except ValueError:
                pass  # the budget exceeds what the epoch cap allows: no UniMax mixture
    return out
