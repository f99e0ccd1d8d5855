"""The baseline mixtures, re-exported from `multiscale.mixture` (their one implementation).

Kept so that ``from multiscale.laws import baselines`` and ``baselines.unimax(...)`` keep working;
new code imports from `multiscale.mixture`. See docs/design.md, section "Mixtures and baselines".
"""

from __future__ import annotations

from multiscale.mixture import (
    DEFAULT_MAX_EPOCHS,
    DEFAULT_TAU,
    TEMPERATURE_TAUS,
    all_baselines,
    proportional,
    temperature,
    uniform,
    unimax,
    unimax_feasible,
)

__all__ = ["DEFAULT_MAX_EPOCHS", "DEFAULT_TAU", "TEMPERATURE_TAUS", "all_baselines", "proportional",
           "temperature", "uniform", "unimax", "unimax_feasible"]
