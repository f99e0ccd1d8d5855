"""The decoder: causality, document isolation, shapes, dtype policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multiscale.models.config import ModelConfig
from multiscale.models.decoder import attention_mask, build_model, rotary

CFG = ModelConfig(vocab_size=50, d_model=32, num_layers=2, num_heads=2, d_ff=64,
                  compute_dtype="float32")


def _tokens(seed, shape=(2, 16)):
    return jnp.asarray(np.random.default_rng(seed).integers(0, CFG.vocab_size, shape), jnp.int32)


@pytest.mark.parametrize("tie", [False, True])
def test_no_position_sees_the_future(tie):
    import dataclasses

    model = jax.jit(build_model(dataclasses.replace(CFG, tie_embeddings=tie), seed=1))
    x = _tokens(0)
    base = model(x)
    for t in (3, 9, 15):  # change one future token: logits before t are unchanged
        changed = x.at[:, t].set((x[:, t] + 7) % CFG.vocab_size)
        out = model(changed)
        np.testing.assert_array_equal(np.asarray(out[:, :t]), np.asarray(base[:, :t]))
        assert not np.allclose(out[:, t:], base[:, t:])  # ... and later ones do change


def test_packed_documents_do_not_attend_to_each_other():
    decoder = build_model(CFG, seed=2)
    model = jax.jit(lambda x, positions_BxL, segment_ids_BxL: decoder(
        x, positions_BxL=positions_BxL, segment_ids_BxL=segment_ids_BxL))
    length = 16
    segments = jnp.asarray([[1] * 6 + [2] * 10], jnp.int32)
    positions = jnp.asarray([list(range(6)) + list(range(10))], jnp.int32)
    x = _tokens(3, (1, length))
    base = model(x, positions_BxL=positions, segment_ids_BxL=segments)
    # Rewrite the first document: the second document's logits must not move.
    other = x.at[:, :6].set((x[:, :6] + 11) % CFG.vocab_size)
    out = model(other, positions_BxL=positions, segment_ids_BxL=segments)
    np.testing.assert_array_equal(np.asarray(out[:, 6:]), np.asarray(base[:, 6:]))
    # The second document alone, at positions 0..9, gives the same logits as when packed.
    alone = model(x[:, 6:], positions_BxL=positions[:, 6:], segment_ids_BxL=segments[:, 6:])
    np.testing.assert_allclose(np.asarray(alone), np.asarray(base[:, 6:]), atol=1e-5, rtol=1e-5)


def test_attention_mask_is_causal_within_documents():
    seg = jnp.asarray([[1, 1, 2, 2, 0]])
    mask = np.asarray(attention_mask(seg))[0, 0]
    expected = np.array([[1, 0, 0, 0, 0],
                         [1, 1, 0, 0, 0],
                         [0, 0, 1, 0, 0],
                         [0, 0, 1, 1, 0],
                         [0, 0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(mask, expected)


def test_rotary_is_relative():
    # <rot(q, i), rot(k, j)> depends only on i - j.
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)

    def score(i, j):
        qi = rotary(q, jnp.asarray([[i]]), 10_000.0)
        kj = rotary(k, jnp.asarray([[j]]), 10_000.0)
        return float(jnp.sum(qi * kj))

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)


def test_logits_shape_and_initial_loss_near_uniform():
    model = build_model(CFG, seed=0)
    x = _tokens(4, (4, 12))
    logits = model(x)
    assert logits.shape == (4, 12, CFG.vocab_size) and logits.dtype == jnp.float32
    nll = -jax.nn.log_softmax(logits)[..., 0].mean()
    assert abs(float(nll) - np.log(CFG.vocab_size)) < 0.1  # small init: near-uniform predictions


@pytest.mark.slow  # two eager forward passes, one in bf16 (slow on the CPU): ~8 s
def test_bf16_compute_keeps_f32_params_and_f32_logits():
    import dataclasses

    from flax import nnx

    model = build_model(dataclasses.replace(CFG, compute_dtype="bfloat16"), seed=0)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    logits = model(_tokens(5))
    assert logits.dtype == jnp.float32
    ref = build_model(CFG, seed=0)(_tokens(5))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=0.1)


def test_auto_dtype_follows_the_backend():
    """auto: float32 on CPU, bfloat16 on GPU and TPU (checked on an H200: see benchmarks/RESULTS.md)."""
    want = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    assert ModelConfig(compute_dtype="auto").dtype == want
    with pytest.raises(ValueError, match="compute_dtype"):
        ModelConfig(compute_dtype="fp8")
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig(d_model=30, num_heads=4)


def test_heads_first_attention_matches_dot_product_attention():
    """The CPU/TPU attention path equals jax.nn.dot_product_attention (the GPU path). In full f32
    matmul precision: on a GPU the default f32 precision is TF32 (about 1e-3 relative), which made
    the two paths differ by up to 1.2e-3 on an H200."""
    from multiscale.models.decoder import heads_first_attention

    rng = np.random.default_rng(5)
    b, length, h, k = 2, 12, 3, 8
    q, kk, v = (jnp.asarray(rng.standard_normal((b, length, h, k)), jnp.float32) for _ in range(3))
    seg = jnp.asarray([[1] * 5 + [2] * 7, [3] * 12], jnp.int32)
    mask = attention_mask(seg)
    with jax.default_matmul_precision("highest"):
        want = jax.nn.dot_product_attention(q, kk, v, mask=mask)
        heads_first = [jnp.swapaxes(x, 1, 2) for x in (q, kk, v)]
        got = jnp.swapaxes(heads_first_attention(*heads_first, mask), 1, 2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # ~3-4 s on 2 idle cores: keeps `pytest -m 'not slow'` under 2 minutes
def test_both_attention_layouts_give_the_same_logits(monkeypatch):
    """The decoder's logits do not depend on which attention path the backend picks."""
    from multiscale.models import decoder as dec

    model = build_model(CFG, seed=4)
    x = _tokens(6)
    monkeypatch.setattr(dec, "use_fused_attention", lambda: True)
    fused = np.asarray(model(x))
    monkeypatch.setattr(dec, "use_fused_attention", lambda: False)
    heads_first = np.asarray(model(x))
    np.testing.assert_allclose(heads_first, fused, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("heads_first", [False, True])
def test_rotary_matches_the_pairwise_rotation(heads_first):
    """out_i = x_i cos - x_{i+K/2} sin, out_{i+K/2} = x_{i+K/2} cos + x_i sin, theta = pos base^(-2i/K)."""
    from multiscale.models.decoder import rotary_tables

    rng = np.random.default_rng(7)
    b, length, h, k = 2, 5, 3, 8
    x = rng.standard_normal((b, length, h, k)).astype(np.float32)
    pos = rng.integers(0, 100, (b, length))
    theta = pos[..., None] * 10_000.0 ** (-np.arange(0, k, 2) / k)  # [B, L, K/2]
    cos, sin = np.cos(theta)[:, :, None], np.sin(theta)[:, :, None]
    x1, x2 = x[..., : k // 2], x[..., k // 2:]
    want = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    if heads_first:
        tables = rotary_tables(jnp.asarray(pos), k, 10_000.0, heads_first=True)
        got = np.swapaxes(np.asarray(rotary(jnp.asarray(np.swapaxes(x, 1, 2)), None, 10_000.0,
                                            tables)), 1, 2)
    else:
        got = np.asarray(rotary(jnp.asarray(x), jnp.asarray(pos), 10_000.0))
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
