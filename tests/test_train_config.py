"""TrainConfig's ratios: validated by the one Mixture, divided by their sum once."""

import dataclasses

import pytest

from multiscale.errors import InputError
from multiscale.mixture import Mixture
from multiscale.train.config import TrainConfig, TrainConfigError


def _config(ratios, **kw):
    return TrainConfig(corpus="c", model="cpu-100k", tokens=10_000, ratios=ratios, out="runs/a", **kw)


def test_ratios_are_a_normalized_mixture():
    raw = {"germanic": 0.2, "romance": 0.2, "slavic": 0.2, "sino_tibetan": 0.2, "japonic": 0.2 - 3e-7}
    total = 0.0
    for v in raw.values():
        total += v
    cfg = _config(raw)
    assert cfg.ratios.to_dict() == {k: v / total for k, v in raw.items()}  # exactly what training always did
    assert type(cfg.ratios) is Mixture and cfg.ratios.families == tuple(raw)
    assert _config(" germanic = 0.25, romance=0.75").ratios == Mixture({"germanic": 0.25, "romance": 0.75})
    assert _config(Mixture({"germanic": 0.5, "romance": 0.5})).ratios.to_dict() == {"germanic": 0.5, "romance": 0.5}
    assert cfg.to_json()["ratios"] == cfg.ratios.to_dict()  # config.json keeps the plain mapping
    assert dataclasses.replace(cfg, seed=1).ratios.to_dict() == pytest.approx(cfg.ratios.to_dict(), rel=1e-15)


@pytest.mark.parametrize("ratios, needle", [
    ("germanic=0.5,germanic=0.5", "ratios: family 'germanic' is given twice"),
    ("germanic=nan,romance=1", "ratios: the value of family 'germanic' is not finite"),
    ("germanic=inf", "ratios: the value of family 'germanic' is not finite"),
    ("germanic=1.5,romance=-0.5", "ratios: family 'romance' is negative"),
    ("germanic=0.5,romance=0.3", "ratios: the ratios sum to 0.8, not 1"),
    ("germanic0.5", "ratios: entry 'germanic0.5' is not FAMILY=VALUE"),
    ("", "ratios is empty"),
    ({"germanic": 4.0, "romance": 0.5}, "ratios: the ratios sum to 4.5, not 1"),
    ({"germanic": 0.5, " germanic": 0.5}, "ratios: family 'germanic' is given twice"),
])
def test_bad_ratios_are_refused_naming_the_field(ratios, needle):
    with pytest.raises(TrainConfigError) as err:
        _config(ratios)
    assert str(err.value).startswith(needle) and err.value.arg == "ratios" and isinstance(err.value, InputError)
