"""multiscale.laws.summary.interval: the one {median, q05, q95} summary."""

import numpy as np
import pytest

from multiscale.errors import InputError
from multiscale.laws.summary import interval


def test_interval_of_a_known_sample():
    # 0, 1, ..., 100: linear interpolation puts q05 at 5 and q95 at 95 exactly
    out = interval(np.arange(101))
    assert out == {"median": 50.0, "q05": 5.0, "q95": 95.0}
    assert all(type(v) is float for v in out.values())


def test_interval_interpolates_between_draws_and_pools_all_axes():
    x = np.array([[4.0, 1.0], [3.0, 2.0]])  # pooled: 1, 2, 3, 4
    out = interval(x)
    assert out["median"] == pytest.approx(2.5)
    assert out["q05"] == pytest.approx(1.15)   # 1 + 0.05 * 3 * (2 - 1)
    assert out["q95"] == pytest.approx(3.85)


def test_interval_of_one_draw_is_that_value_and_empty_is_refused():
    assert interval([0.25]) == {"median": 0.25, "q05": 0.25, "q95": 0.25}
    with pytest.raises(InputError, match="no draws"):
        interval([])
