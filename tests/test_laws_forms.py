"""Law forms: the registry, the formulas and the approach-3 parameterization agree."""

import numpy as np
import pytest

from multiscale.errors import InputError
from multiscale.laws.forms import LAWS, check_shared, get_law, log_loss, natural_from_raw, predict_loss


def test_registry():
    assert list(LAWS)[:3] == ["multilingual", "chinchilla", "ratio"]
    assert {"transfer", "repetition", "transfer_repetition", "mixing", "ratio_transfer",
            "ratio_mixing"} <= set(LAWS)
    separable = {n for n, law in LAWS.items() if law.separable}
    assert separable == {"multilingual", "chinchilla", "ratio", "kaplan"}
    for name, law in LAWS.items():
        assert get_law(name) is law
        if law.separable:
            assert len(law.raw_names) == law.n_params and not law.matrix and not law.base
        else:
            assert law.base in ("multilingual", "ratio") and law.exponents == ()
            assert get_law(law.base).separable and set(get_law(law.base).raw_names) <= set(law.raw_names) | {"gamma"}
    with pytest.raises(InputError, match="unknown law 'quadratic'; choose one of"):
        get_law("quadratic")


def test_multilingual_formula_and_log_form_agree():
    law = get_law("multilingual")
    p = {"E": np.array(1.6), "A": np.array(400.0), "B": np.array(900.0), "alpha": np.array(0.34),
         "beta": np.array(0.3), "gamma": np.array(0.15)}
    N, D, q = 3e8, 2e10, 0.25
    want = (1.6 + 400.0 * N ** -0.34 + 900.0 * D ** -0.3) * q ** -0.15
    assert predict_loss(law, p, N, D, q) == pytest.approx(want, rel=1e-14)
    raw = {"a": np.log(400.0), "b": np.log(900.0), "e": np.log(1.6), "alpha": 0.34, "beta": 0.3, "gamma": 0.15}
    assert np.exp(log_loss(law, raw, np.log(N), np.log(D), np.log(q))) == pytest.approx(want, rel=1e-13)
    back = natural_from_raw(law, raw)
    for k, v in p.items():
        assert back[k] == pytest.approx(float(v), rel=1e-14)
    # chinchilla ignores p; the ratio law ignores N and D
    assert predict_loss(get_law("chinchilla"), p, N, D, q) == pytest.approx(want * q ** 0.15, rel=1e-14)
    r = {"c": np.array(3.0), "gamma": np.array(0.2)}
    assert predict_loss(get_law("ratio"), r, 1e7, 1e9, 0.5) == pytest.approx(3.0 * 0.5 ** -0.2)


def test_shared_exponents_and_minimum_runs():
    law = get_law("multilingual")
    assert check_shared(law, "alpha, beta,alpha") == ("alpha", "beta")
    assert check_shared(law, None) == () == check_shared(law, "")
    with pytest.raises(InputError, match=r"cannot share \['E'\]"):
        check_shared(law, ("E",))
    assert law.min_runs() == 7 and get_law("ratio").min_runs() == 3
    assert law.min_runs(5, ("alpha", "beta")) < law.min_runs(5)


def test_kaplan_is_the_joint_form_in_chinchillas_parameters():
    """kaplan = E + (A'/N^(alpha/beta) + B'/D)^beta (Kaplan et al. 2020 eq. 1.5 plus E) with
    A' = A^(1/beta), B' = B^(1/beta); its log form agrees; where one term dominates it is chinchilla."""
    law, chin = get_law("kaplan"), get_law("chinchilla")
    assert law.raw_names == chin.raw_names and law.separable and not law.uses_ratio
    p = {"E": np.array(1.6), "A": np.array(400.0), "B": np.array(900.0), "alpha": np.array(0.34),
         "beta": np.array(0.3)}
    N, D = np.array([3e7, 3e8, 3e9]), np.array([2e10, 2e9, 2e11])
    want = 1.6 + (400.0 ** (1 / 0.3) / N ** (0.34 / 0.3) + 900.0 ** (1 / 0.3) / D) ** 0.3
    np.testing.assert_allclose(predict_loss(law, p, N, D, 0.5), want, rtol=1e-12)
    raw = {"a": np.log(400.0), "b": np.log(900.0), "e": np.log(1.6), "alpha": 0.34, "beta": 0.3}
    np.testing.assert_allclose(np.exp(log_loss(law, raw, np.log(N), np.log(D), np.log(0.5))), want, rtol=1e-12)
    both = 400.0 * N ** -0.34 + 900.0 * D ** -0.3
    assert np.all(want < 1.6 + both)  # beta < 1: the joint term is below the sum ...
    assert np.all(want - 1.6 > both / 2 ** (1 - 0.3) * (1 - 1e-12))  # ... by at most 2^(1 - beta)
    tiny_D = predict_loss(law, p, 1e9, 1e60, 1.0)  # the D term vanishes: chinchilla's N term alone
    assert tiny_D == pytest.approx(float(predict_loss(chin, p, 1e9, 1e60, 1.0)), rel=1e-12)
