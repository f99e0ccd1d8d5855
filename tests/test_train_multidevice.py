"""One device and eight (data x fsdp x tensor = 2 x 2 x 2) train to the same losses."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.train import TrainConfig, read_metrics, run_training

RATIOS = {"germanic": 0.5, "romance": 0.5}
SEQ, BATCH, STEPS = 32, 8, 6


def _config(out, mesh=None, **kw):
    base = dict(corpus="unused", model="cpu-100k", tokens=STEPS * BATCH * SEQ, ratios=RATIOS,
                out=str(out), seq_len=SEQ, batch=BATCH, eval_every=0, checkpoint_every=0,
                eval_batch=8, mesh=mesh, lr=3e-3)
    return TrainConfig(**{**base, **kw})


_EIGHT = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{root!r}, {root!r} + "/tests"]  # multiscale and tests/fixtures
    import jax
    assert jax.device_count() == 8, jax.devices()
    from tests.test_train_multidevice import _config, RATIOS, SEQ
    from multiscale.models.sharding import MeshError
    from multiscale.train import Hook, run_training
    from fixtures.synthetic_data import SyntheticData

    errors = {{}}
    for name, kw in {{"devices": dict(mesh="data=2,fsdp=2"),
                     "batch": dict(mesh="data=4,fsdp=2", batch=12)}}.items():
        try:
            run_training(_config({out!r} + name, **kw),
                         data=SyntheticData().run_data(RATIOS, seq_len=SEQ), progress=False)
        except MeshError as err:
            errors[name] = str(err)

    class Shapes(Hook):  # the parameters really are spread over the mesh
        shard = None
        def on_step(self, info):
            if info.params is not None:
                w = info.params["blocks"][0]["mlp"]["w_gate_DxF"]
                self.shard = [str(w.sharding.spec), list(w.addressable_shards[0].data.shape)]

    shapes = Shapes()
    summary = run_training(_config({out!r}, mesh="data=2,fsdp=2,tensor=2"),
                           data=SyntheticData().run_data(RATIOS, seq_len=SEQ), progress=False,
                           hooks=[shapes])
    print("RESULT" + json.dumps({{"errors": errors, "rows": summary["rows"], "shard": shapes.shard,
                                "mesh": summary["mesh"], "devices": summary["devices"]}}))
""")


@pytest.mark.slow  # a subprocess with 8 XLA devices
def test_eight_devices_match_one(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    out8 = tmp_path / "eight"
    proc = subprocess.run([sys.executable, "-c", _EIGHT.format(root=root, out=str(out8))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["devices"] == 8
    assert result["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert result["shard"] == ["P('fsdp', 'tensor')", [32, 88]]  # of [64, 176]
    assert "4 devices but 8" in result["errors"]["devices"]
    assert "batch 12 is not divisible by data*fsdp = 8" in result["errors"]["batch"]

    one = run_training(_config(tmp_path / "one"), data=SyntheticData().run_data(RATIOS, seq_len=SEQ),
                       progress=False)
    assert one["devices"] == 1

    def losses(path):
        return [m["loss"] for m in read_metrics(path / "metrics.jsonl") if "loss" in m]

    l1, l8 = losses(tmp_path / "one"), losses(out8)
    assert len(l1) == len(l8) == STEPS
    np.testing.assert_allclose(l8, l1, atol=1e-5, rtol=0)
    assert l1[-1] < l1[0]  # it trained
    for r1, r8 in zip(one["rows"], result["rows"]):
        assert r1["family"] == r8["family"]
        assert abs(r1["loss"] - r8["loss"]) < 1e-5
