"""The one summary of a sample of draws: its median and 90% interval.

Every interval the library reports (a parameter's posterior, a prediction, p*, a gain over a
baseline) is the equal-tailed 90% interval of its draws, written `{median, q05, q95}`. A point
fit has one draw, so all three are that value.
"""

from __future__ import annotations

import numpy as np

from multiscale.errors import InputError

#: The quantiles of the interval (the library's "90% interval").
Q_LOW, Q_HIGH = 0.05, 0.95


def interval(x) -> dict[str, float]:
    """`{"median", "q05", "q95"}` of the draws `x` (any shape: all values are pooled), numpy's
    default (linear) quantiles."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        raise InputError("interval: no draws to summarize")
    return {"median": float(np.median(x)), "q05": float(np.quantile(x, Q_LOW)),
            "q95": float(np.quantile(x, Q_HIGH))}
