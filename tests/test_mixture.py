"""multiscale.mixture: the one parser, the Mixture value, and the baselines (UniMax checked against
an independent solver of its definition)."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq, minimize

import multiscale.mixture as mx
from multiscale.errors import InputError
from multiscale.mixture import Mixture, MixtureError, parse_pairs


# -- parse_pairs ----------------------------------------------------------------------------------
def test_parse_pairs_strips_names_and_keeps_order():
    assert parse_pairs(" germanic = 0.5, romance=0.3,slavic=0.2,") == {"germanic": 0.5, "romance": 0.3, "slavic": 0.2}
    assert list(parse_pairs("b=1,a=2")) == ["b", "a"]
    assert parse_pairs({" germanic": 1, "romance": "0.5"}) == {"germanic": 1.0, "romance": 0.5}
    assert parse_pairs("x=-1", allow_negative=True) == {"x": -1.0}
    assert parse_pairs("germanic=1", known=("germanic", "romance")) == {"germanic": 1.0}


@pytest.mark.parametrize("value, needle", [
    ("germanic=0.5,germanic=0.5", "floor: family 'germanic' is given twice"),
    ({"germanic": 0.5, " germanic": 0.5}, "floor: family 'germanic' is given twice"),
    ("germanic=nan,romance=1", "floor: the value of family 'germanic' is not finite"),
    ("germanic=inf", "floor: the value of family 'germanic' is not finite"),
    ({"germanic": float("-inf")}, "floor: the value of family 'germanic' is not finite"),
    ("germanic=-0.1,romance=1.1", "floor: family 'germanic' is negative (-0.1)"),
    ("germanic=x", "floor: the value of family 'germanic' is not a number: 'x'"),
    ({"germanic": None}, "floor: the value of family 'germanic' is not a number: None"),
    ({"germanic": True}, "floor: the value of family 'germanic' is not a number: True"),
    ("germanic", "floor: entry 'germanic' is not FAMILY=VALUE"),
    (" =0.5", "floor: a value has an empty family name"),
    ({1: 0.5}, "floor: family names must be strings"),
    ("", "floor is empty"),
    (" , ", "floor is empty"),
    ({}, "floor is empty"),
    (0.5, "floor must be FAMILY=VALUE pairs or a mapping"),
    ("celtic=1,germanic=0", "floor: unknown family 'celtic'; the known families are: germanic, romance"),
])
def test_parse_pairs_refusals_name_the_argument_and_family(value, needle):
    with pytest.raises(MixtureError) as err:
        parse_pairs(value, arg="floor", known=("germanic", "romance"))
    assert needle in str(err.value) and err.value.arg == "floor"
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)


def test_unknown_families_are_all_listed():
    with pytest.raises(MixtureError, match=r"unknown families 'a', 'b'; the known families are: c"):
        parse_pairs("a=1,b=1,c=1", known=["c"])


# -- Mixture --------------------------------------------------------------------------------------
def test_mixture_sum_is_checked_with_one_tolerance():
    assert Mixture({"a": 0.5, "b": 0.5 + 0.9 * mx.RATIO_TOLERANCE}).get("a") == 0.5  # kept as given
    with pytest.raises(MixtureError, match=r"ratios sum to 0\.8, not 1 \(a=0\.5, b=0\.3\)"):
        Mixture({"a": 0.5, "b": 0.3})
    with pytest.raises(MixtureError, match=r"^ratios: the ratios sum to 4\.5"):
        Mixture.parse("a=4,b=0.5")
    with pytest.raises(MixtureError, match="within 1e-06"):
        Mixture.parse({"a": 0.5, "b": 0.5 + 2 * mx.RATIO_TOLERANCE})


@pytest.mark.parametrize("ratios, needle", [
    ({"a": float("nan"), "b": 1.0}, "'a' is not finite"),
    ({"a": 1.2, "b": -0.2}, "'b' is negative"),
    ({}, "ratios is empty"),
])
def test_mixture_constructor_refuses_bad_values(ratios, needle):
    with pytest.raises(MixtureError, match=needle):
        Mixture(ratios)


def test_normalize():
    m = Mixture.parse("a=2,b=6", normalize=True)
    assert m.to_dict() == {"a": 0.25, "b": 0.75}
    assert Mixture.parse({"a": 1, "b": 0, "c": 3}, normalize=True).to_dict() == {"a": 0.25, "b": 0.0, "c": 0.75}
    with pytest.raises(MixtureError, match="w: the values sum to 0; cannot normalize"):
        Mixture.parse("a=0,b=0", normalize=True, arg="w")


def test_normalized_divides_by_the_left_to_right_sum_once():
    # what training always did: {k: v / sum(values)}; the committed CPU-study table holds its results
    raw = {"germanic": 0.166667, "romance": 0.166667, "slavic": 0.166667, "sino_tibetan": 0.166667,
           "japonic": 0.333332}
    total = 0.0
    for v in raw.values():
        total += v
    assert Mixture(raw).normalized().to_dict() == {k: v / total for k, v in raw.items()}


def test_render_round_trips_and_accessors():
    m = Mixture({"germanic": 0.1, "romance": 0.2, "slavic": 0.30000000000000004, "japonic": 0.39999999999999997})
    text = m.render()
    assert text == "germanic=0.1,romance=0.2,slavic=0.30000000000000004,japonic=0.39999999999999997"
    assert Mixture.parse(text) == m and hash(Mixture.parse(text)) == hash(m)
    assert Mixture(m.to_dict()) == m and Mixture(m) == m
    assert Mixture.parse(m) is m
    assert m.families == ("germanic", "romance", "slavic", "japonic")
    assert m.get("germanic") == 0.1 and m.get("celtic") == 0.0
    with pytest.raises(TypeError):
        m.ratios["germanic"] = 0.5  # read-only
    assert m.over(["japonic", "germanic", "romance", "slavic", "celtic"]) == {
        "japonic": 0.39999999999999997, "germanic": 0.1, "romance": 0.2, "slavic": 0.30000000000000004, "celtic": 0.0}
    np.testing.assert_array_equal(m.vector(["slavic", "germanic", "romance", "japonic"]),
                                  [0.30000000000000004, 0.1, 0.2, 0.39999999999999997])


def test_families_outside_a_known_set_are_refused():
    m = Mixture({"germanic": 0.5, "celtic": 0.5})
    with pytest.raises(mx.UnknownFamilyError, match="^ratios: unknown family 'celtic'"):
        m.check_families(["germanic", "romance"])
    with pytest.raises(MixtureError, match="^ratios: unknown family 'celtic'"):
        m.vector(["germanic", "romance"])
    with pytest.raises(MixtureError, match="^p: unknown family 'celtic'"):
        Mixture.parse(m, known=["germanic"], arg="p")
    with pytest.raises(MixtureError, match="unknown family 'celtic'"):
        Mixture.parse("germanic=0.5,celtic=0.5", known=["germanic"])
    assert m.check_families(["celtic", "germanic"]) is m


def test_module_imports_only_stdlib_numpy_and_errors():
    tree = ast.parse(Path(mx.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module if node.module.startswith("multiscale") else node.module.split(".")[0])
    assert imported <= {"__future__", "contextlib", "dataclasses", "math", "types", "collections", "typing", "numpy",
                        "multiscale.errors"}, imported


# -- baselines ------------------------------------------------------------------------------------
def test_uniform_proportional_temperature():
    tok = {"a": 1e9, "b": 4e9, "c": 16e9}
    assert mx.uniform(list(tok)) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert mx.proportional(tok) == {"a": 1 / 21, "b": 4 / 21, "c": 16 / 21}
    t = mx.temperature(tok, 0.5)  # q ∝ n^0.5: 1 : 2 : 4
    assert t == pytest.approx({"a": 1 / 7, "b": 2 / 7, "c": 4 / 7}, rel=1e-12)
    assert mx.temperature(tok, 1.0) == pytest.approx(mx.proportional(tok), rel=1e-12)
    assert mx.temperature(tok, 0.0) == pytest.approx(mx.uniform(list(tok)), rel=1e-12)
    assert mx.temperature(tok, 2.0) == pytest.approx({"a": 1 / 273, "b": 16 / 273, "c": 256 / 273}, rel=1e-12)
    assert mx.temperature(tok) == mx.temperature(tok, mx.DEFAULT_TAU) and mx.DEFAULT_TAU == 0.3
    assert mx.TEMPERATURE_TAUS == (0.3, 0.5, 0.7) and mx.DEFAULT_MAX_EPOCHS == 4.0


@pytest.mark.parametrize("call, needle", [
    (lambda: mx.uniform([]), "uniform: no families"),
    (lambda: mx.uniform(["a", "a"]), "given twice"),
    (lambda: mx.proportional({}), "tokens: no families"),
    (lambda: mx.proportional({"a": 1, "b": 0}), r"must be positive; not so for \['b'\]"),
    (lambda: mx.proportional({"a": float("nan")}), "'a' is not finite"),
    (lambda: mx.temperature({"a": 1}, -0.1), "tau must be finite and >= 0"),
    (lambda: mx.temperature({"a": 1}, float("nan")), "tau must be finite and >= 0"),
    (lambda: mx.unimax({"a": 1e9, "b": 1e9}, budget=1e11, max_epochs=4), "cannot fill the budget"),
    (lambda: mx.unimax({"a": 1e9}, budget=0), "budget must be finite and positive"),
    (lambda: mx.unimax({"a": 1e9}, budget=1e9, max_epochs=float("inf")), "max_epochs must be finite"),
    (lambda: mx.all_baselines(["a", "b"], {"a": 1.0}), r"available tokens missing for families \['b'\]"),
])
def test_baseline_refusals(call, needle):
    with pytest.raises(MixtureError, match=needle):
        call()


# Characters per language of FineWeb-2 (fao_Latn, isl_Latn, ekk_Latn, swe_Latn, fas_Arab), as listed
# in the README of the `unimax_sampling` package (an implementation of Chung et al. 2023), the source
# of the public test vector: budget 250e9, 4 epochs -> 0.008795, 0.160441, 0.276921 x 3.
FINEWEB2_CHARACTERS = {"fao": 549_707_867, "isl": 10_027_573_389, "ekk": 42_541_080_893,
                       "swe": 179_955_884_499, "fas": 184_595_788_282}


def test_unimax_public_test_vector():
    q = mx.unimax(FINEWEB2_CHARACTERS, budget=250e9, max_epochs=4)
    assert list(q) == list(FINEWEB2_CHARACTERS)
    np.testing.assert_allclose([q[k] for k in FINEWEB2_CHARACTERS],
                               [0.008795, 0.160441, 0.276921, 0.276921, 0.276921], atol=5e-7)
    assert sum(q.values()) == pytest.approx(1.0, abs=1e-12)


def _water_level_unimax(n, budget, epochs):
    """Independent solution of UniMax's definition: every language gets min(its cap, c) tokens, with
    the one level c at which the allocation spends the budget (a root of a monotone function)."""
    caps = epochs * np.asarray(n, float)
    c = brentq(lambda c: np.minimum(caps, c).sum() - budget, 0.0, budget, xtol=1e-9, rtol=1e-15)
    return np.minimum(caps, c) / budget


def _qp_unimax(n, budget, epochs):
    """Another independent solution: the most even allocation under the caps, i.e. the minimum of
    sum x_i^2 with sum x_i = 1 and 0 <= x_i <= epochs * n_i / budget (a small QP, SLSQP)."""
    ub = epochs * np.asarray(n, float) / budget
    res = minimize(lambda x: (x ** 2).sum(), np.full(len(n), 1 / len(n)), jac=lambda x: 2 * x,
                   bounds=[(0, u) for u in ub], constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                   method="SLSQP", options={"ftol": 1e-15, "maxiter": 500})
    assert res.success, res.message
    return res.x


def test_unimax_matches_independent_solvers():
    rng = np.random.default_rng(0)
    cases = [(list(FINEWEB2_CHARACTERS.values()), 250e9, 4.0), ([1, 2, 10, 10], 20, 2.0)]
    for _ in range(40):
        k = int(rng.integers(1, 9))
        n = np.exp(rng.uniform(np.log(1e6), np.log(1e11), k))
        epochs = float(rng.choice([1.0, 2.0, 4.0, 10.0]))
        budget = float(rng.uniform(0.05, 1.0) * epochs * n.sum())
        cases.append((n.tolist(), budget, epochs))
    for n, budget, epochs in cases:
        names = [f"l{i}" for i in range(len(n))]
        q = mx.unimax(dict(zip(names, n)), budget=budget, max_epochs=epochs)
        got = np.array([q[k] for k in names])
        np.testing.assert_allclose(got, _water_level_unimax(n, budget, epochs), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got, _qp_unimax(n, budget, epochs), atol=1e-6)


def test_unimax_by_hand():
    # sizes 1, 2, 10, 10; budget 20; 2 epochs. Smallest: fair share 20/4 = 5, cap 2 -> 2. Next: 18/3 = 6,
    # cap 4 -> 4. The two large ones split the 14 left: 7 each (caps 20). Ratios 0.1, 0.2, 0.35, 0.35.
    q = mx.unimax({"w": 10, "x": 1, "y": 2, "z": 10}, budget=20, max_epochs=2)
    assert q == pytest.approx({"w": 0.35, "x": 0.1, "y": 0.2, "z": 0.35}, rel=1e-15)


def test_all_baselines():
    tok = {"a": 1e9, "b": 4e9, "c": 16e9}
    assert set(mx.all_baselines(list(tok), tok, 1e10)) == {
        "uniform", "proportional", "temperature_0.3", "temperature_0.5", "temperature_0.7", "unimax"}
    assert mx.all_baselines(list(tok), tok, 1e10)["temperature_0.5"] == mx.temperature(tok, 0.5)
    assert mx.all_baselines(list(tok), tok, 1e10, max_epochs=None)["unimax"] == mx.unimax(tok, 1e10)
    assert "unimax" not in mx.all_baselines(list(tok), tok, 1e12)  # 4 epochs cannot fill 1e12
    assert set(mx.all_baselines(list(tok), tok, None, taus=(0.5,))) == {"uniform", "proportional", "temperature_0.5"}
    assert mx.all_baselines(["a", "b"]) == {"uniform": {"a": 0.5, "b": 0.5}}
    for q in mx.all_baselines(list(tok), tok, 1e10).values():
        assert math.isclose(sum(q.values()), 1.0, abs_tol=1e-12)
        Mixture(q)  # every baseline is a valid mixture
