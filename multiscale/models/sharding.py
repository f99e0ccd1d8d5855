"""Meshes and the one table that maps logical axes to mesh axes.

Parameters name their dimensions with *logical* axes (`vocab`, `embed`, `heads`, `kv`, `mlp`,
`norm`) in their `out_sharding` metadata; batches use `batch` and `length`. `AXIS_RULES` maps
them to a 3-axis mesh: `data` (parameters replicated), `fsdp` (parameters and optimizer state
sharded along `embed`) and `tensor` (Megatron-style over heads, MLP width and vocabulary). The
batch is split over `data` x `fsdp`; axis types are `Auto`, so XLA places the activations.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Mapping

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from multiscale.errors import InputError

MESH_AXES = ("data", "fsdp", "tensor")

AXIS_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "length": None,
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv": None,
    "mlp": "tensor",
    "norm": None,
    "act_embed": None,  # the residual stream: replicated over `tensor`, split over the batch
    "act_heads": "tensor",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
}

_ACTIVATION_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "multiscale_activation_mesh", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh):
    """While tracing inside this context, `constrain` pins activations to `mesh`."""
    token = _ACTIVATION_MESH.set(mesh)
    try:
        yield
    finally:
        _ACTIVATION_MESH.reset(token)


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """Sharding constraint from logical axes; the identity outside `activation_sharding`
    (so model code names axes but never sees a mesh)."""
    mesh = _ACTIVATION_MESH.get()
    if mesh is None:
        return x
    spec = _fits(logical_to_spec(axes), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


class MeshError(InputError):
    """A mesh that does not fit the devices, the batch or the model."""


def parse_mesh(spec: str | Mapping[str, int] | None) -> dict[str, int]:
    """'data=2,fsdp=2,tensor=2' (or a dict) -> {'data': 2, 'fsdp': 2, 'tensor': 2}; missing axes
    have size 1; None means all devices on `data`."""
    if spec is None:
        return {"data": jax.device_count(), "fsdp": 1, "tensor": 1}
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise MeshError(f"mesh entry {part!r} is not AXIS=SIZE (e.g. data=2,fsdp=2,tensor=2)")
            try:
                items[name.strip()] = int(value)
            except ValueError:
                raise MeshError(f"mesh axis {name.strip()!r} has non-integer size {value!r}") from None
        spec = items
    out = {axis: 1 for axis in MESH_AXES}
    for name, size in spec.items():
        if name not in MESH_AXES:
            raise MeshError(f"unknown mesh axis {name!r}; axes are {', '.join(MESH_AXES)}")
        if int(size) < 1:
            raise MeshError(f"mesh axis {name!r} has size {size}; sizes must be >= 1")
        out[name] = int(size)
    return out


def check_mesh(shape: Mapping[str, int], *, device_count: int, global_batch: int,
               process_count: int = 1) -> None:
    """Raise `MeshError` unless the mesh uses all devices and divides the batch."""
    total = math.prod(shape.values())
    if total != device_count:
        raise MeshError(
            f"mesh {format_mesh(shape)} has {total} devices but {device_count} are available; "
            f"the product of the axis sizes must equal the device count")
    batch_ways = shape["data"] * shape["fsdp"]
    if global_batch % batch_ways:
        raise MeshError(f"batch {global_batch} is not divisible by data*fsdp = {batch_ways} "
                        f"of mesh {format_mesh(shape)}")
    if global_batch % process_count:
        raise MeshError(f"batch {global_batch} is not divisible across {process_count} hosts")


def format_mesh(shape: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in shape.items())


def make_mesh(shape: Mapping[str, int]) -> Mesh:
    """A (data, fsdp, tensor) mesh over all devices, with explicit (Auto) axis types."""
    sizes = tuple(shape[a] for a in MESH_AXES)
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(axes: tuple[str | None, ...] | None,
                    rules: Mapping[str, str | tuple[str, ...] | None] = AXIS_RULES,
                    ) -> PartitionSpec:
    """Logical axis names -> PartitionSpec via the rules table (a mesh axis is used once)."""
    if not axes:
        return PartitionSpec()
    used: set[str] = set()
    out = []
    for axis in axes:
        target = rules.get(axis) if axis is not None else None
        if axis is not None and axis not in rules:
            raise KeyError(f"logical axis {axis!r} has no entry in the sharding rules")
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(n for n in names if n not in used)
        used.update(names)
        out.append(None if not names else names[0] if len(names) == 1 else names)
    return PartitionSpec(*out)


def _fits(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drop mesh axes that do not divide a dimension (e.g. vocab 259 over tensor=2)."""
    out = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        ways = math.prod(mesh.shape[n] for n in names)
        out.append(entry if ways and dim % ways == 0 else None)
    return PartitionSpec(*out)


def param_shardings(state: nnx.State, mesh: Mesh) -> dict:
    """NamedShardings for a model's parameters, as a pure-dict tree matching
    `state.to_pure_dict()`, from `AXIS_RULES`."""
    def one(var):
        spec = logical_to_spec(var.get_metadata().get("out_sharding"))
        return NamedSharding(mesh, _fits(spec, var.shape, mesh))
    return nnx.to_pure_dict(jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable)))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Rows over data x fsdp, everything else replicated."""
    return NamedSharding(mesh, logical_to_spec(("batch",) + ("length",) * (ndim - 1)))
