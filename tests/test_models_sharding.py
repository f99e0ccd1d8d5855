"""Logical axis rules, mesh parsing and mesh checks."""

import jax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from multiscale.models import sharding as S
from multiscale.models.decoder import Decoder
from multiscale.models.presets import get_preset


def test_rules_map_logical_axes_to_mesh_axes():
    assert S.logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert S.logical_to_spec(("embed", "heads", "kv")) == P("fsdp", "tensor", None)
    assert S.logical_to_spec(("batch", "length")) == P(("data", "fsdp"), None)
    assert S.logical_to_spec(("norm",)) == P(None)
    assert S.logical_to_spec(None) == P()
    # a mesh axis is never used twice in one spec
    assert S.logical_to_spec(("vocab", "heads")) == P("tensor", None)
    with pytest.raises(KeyError, match="sequence"):
        S.logical_to_spec(("sequence",))


def test_every_parameter_has_logical_axes_of_its_rank():
    abstract = nnx.eval_shape(lambda: Decoder(get_preset("cpu-100k"), rngs=nnx.Rngs(params=0)))
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == len(var.shape), path
        assert all(a in S.AXIS_RULES for a in axes), path


def test_parse_mesh():
    assert S.parse_mesh("data=2,fsdp=2,tensor=2") == {"data": 2, "fsdp": 2, "tensor": 2}
    assert S.parse_mesh("tensor=4") == {"data": 1, "fsdp": 1, "tensor": 4}
    assert S.parse_mesh(None) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}
    with pytest.raises(S.MeshError, match="pipeline"):
        S.parse_mesh("pipeline=2")
    with pytest.raises(S.MeshError, match="AXIS=SIZE"):
        S.parse_mesh("data2")
    with pytest.raises(S.MeshError, match="'data'"):
        S.parse_mesh("data=x")


def test_check_mesh_errors_name_the_problem():
    shape = {"data": 2, "fsdp": 2, "tensor": 2}
    S.check_mesh(shape, device_count=8, global_batch=8)
    with pytest.raises(S.MeshError, match="8 devices but 4"):
        S.check_mesh(shape, device_count=4, global_batch=8)
    with pytest.raises(S.MeshError, match="batch 6 is not divisible by data\\*fsdp = 4"):
        S.check_mesh(shape, device_count=8, global_batch=6)
    with pytest.raises(S.MeshError, match="across 3 hosts"):
        S.check_mesh({"data": 1, "fsdp": 1, "tensor": 1}, device_count=1, global_batch=4,
                     process_count=3)


def test_make_mesh_has_explicit_axis_types():
    mesh = S.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    assert mesh.axis_names == S.MESH_AXES
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_param_shardings_drop_axes_that_do_not_divide():
    # vocab 259 cannot be split; the spec falls back to replication on that dimension
    import types

    mesh8 = types.SimpleNamespace(shape={"data": 2, "fsdp": 2, "tensor": 2})
    assert S._fits(P("tensor", "fsdp"), (259, 64), mesh8) == P(None, "fsdp")
    assert S._fits(P(("data", "fsdp"), None), (6, 64), mesh8) == P(None, None)
    assert S._fits(P(("data", "fsdp"), None), (8, 64), mesh8) == P(("data", "fsdp"), None)
    mesh = S.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})
    abstract = nnx.eval_shape(lambda: Decoder(get_preset("cpu-100k"), rngs=nnx.Rngs(params=0)))
    shardings = S.param_shardings(nnx.state(abstract, nnx.Param), mesh)
    assert shardings["embed_VxD"].spec == P("tensor", "fsdp")


def test_constrain_is_the_identity_outside_a_mesh_context():
    import jax.numpy as jnp

    x = jnp.ones((4, 3, 8))
    assert S.constrain(x, ("batch", "length", "act_embed")) is x
    mesh = S.make_mesh({"data": 1, "fsdp": 1, "tensor": 1})

    @jax.jit
    def f(x):
        with S.activation_sharding(mesh):
            return S.constrain(x * 2, ("batch", "length", "act_embed"))

    assert float(f(x).sum()) == 2 * x.size
    assert S._ACTIVATION_MESH.get() is None  # the context does not leak
