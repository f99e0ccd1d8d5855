"""Point-fit starts of the repetition laws: the seed's law fitted on the effective ratios.

At a fixed R*, the repetition law (`multiscale.laws.mixture_forms`) is exactly the seed's law
evaluated at each row's effective ratio ``p'_i = D'_i / D``. So for every start value of R*, the
base law fitted (full start grid) on the table with ``p`` replaced by ``p'(R*)`` is a start of
the repetition law close to its optimum at that R*. The seed's law fitted on the raw ratios is a
poor start where a family repeats for most of its rows: it bends its D exponent (beta < 0) to
follow a loss that rises with D, and L-BFGS started there stays near it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiscale.laws.data import FitData
from multiscale.laws.forms import Law, get_law
from multiscale.laws.mixture_forms import log_effective_own_ratio
from multiscale.laws.point import ArrayFit, fit_arrays


def effective_ratio_data(data: FitData, lrs: float) -> FitData:
    """The table with each row's ratio replaced by its effective ratio at R* = exp(lrs)."""
    if data.logU_R is None:
        return data
    with np.errstate(over="ignore", invalid="ignore"):
        logp = log_effective_own_ratio(lrs, data.logD_R, data.logp_R, data.logU_R)
    return dataclasses.replace(data, logp_R=np.asarray(logp, dtype=float))


def base_fits(law: Law, data: FitData, lrs_values) -> dict[float, ArrayFit]:
    """lrs -> the base law's fit on `effective_ratio_data` (empty for a law without U)."""
    if not law.uses_unique_tokens or data.logU_R is None or not np.any(data.logp_R + data.logD_R > data.logU_R):
        return {}
    base = get_law(law.base)
    return {float(v): fit_arrays(base, effective_ratio_data(data, float(v))) for v in lrs_values}
