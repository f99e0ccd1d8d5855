"""Parameter counts of presets, checked against instantiated parameters; FLOPs per token."""

import numpy as np
import pytest
from flax import nnx

from multiscale.models.decoder import Decoder
from multiscale.models.params import count_params, flops_per_token
from multiscale.models.presets import PRESETS, UnknownPresetError, get_preset


def _actual_counts(cfg):
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(params=0)))
    flat = nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    emb = non = 0
    for path, var in flat:
        size = int(np.prod(var.shape))
        if path[-1] in ("embed_VxD", "unembed_DxV"):
            emb += size
        else:
            non += size
    return non, emb


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("tie", [False, True])
def test_counts_match_instantiated_params(name, tie):
    cfg = get_preset(name, tie_embeddings=tie)
    counts = count_params(cfg)
    assert (counts.non_embedding, counts.embedding) == _actual_counts(cfg)


def test_cpu_presets_span_a_sweep():
    n = {k: count_params(c).non_embedding for k, c in PRESETS.items() if k.startswith("cpu-")}
    assert len(n) >= 6
    sizes = sorted(n.values())
    assert 80_000 <= sizes[0] <= 150_000
    assert 2_000_000 <= sizes[-1] <= 5_000_000
    assert sizes[-1] / sizes[0] >= 8
    # names say the size: cpu-400k has about 400k
    for name, value in n.items():
        label = name.removeprefix("cpu-")
        nominal = float(label[:-1]) * (1e3 if label.endswith("k") else 1e6)
        assert 0.75 <= value / nominal <= 1.35, (name, value)


@pytest.mark.parametrize("name,target", [("paper-85m", 85e6), ("paper-397m", 397e6),
                                         ("paper-810m", 810e6), ("paper-1.2b", 1.2e9)])
def test_paper_scales(name, target):
    # He et al. (2024): 85M, 397M, 810M and 1.2B non-embedding parameters.
    assert abs(count_params(PRESETS[name]).non_embedding / target - 1) < 0.03


def test_flops_per_token_formula():
    cfg = get_preset("cpu-800k")
    n = count_params(cfg).non_embedding
    assert flops_per_token(cfg, 256) == 6 * n + 12 * cfg.num_layers * cfg.d_model * 256


def test_vocab_override_changes_only_embeddings():
    a, b = count_params(get_preset("cpu-100k")), count_params(get_preset("cpu-100k", vocab_size=1000))
    assert a.non_embedding == b.non_embedding and b.embedding == 2 * 1000 * 64


def test_unknown_preset_names_the_choices():
    with pytest.raises(UnknownPresetError, match="cpu-100k"):
        get_preset("cpu-7")
    assert issubclass(UnknownPresetError, ValueError)
