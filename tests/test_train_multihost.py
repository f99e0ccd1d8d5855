"""Two processes (hosts) on localhost train one run: jax.distributed over gloo, each host feeding
its own data shard, give the losses of one process fed the two shards side by side."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.train import Hook, TrainConfig, run_training
from multiscale.train.data_source import RunData

RATIOS = {"germanic": 0.5, "romance": 0.5}
SEQ, BATCH, STEPS = 32, 8, 6


def _config(out, **kw):
    base = dict(corpus="unused", model="cpu-100k", tokens=STEPS * BATCH * SEQ, ratios=RATIOS,
                out=str(out), seq_len=SEQ, batch=BATCH, eval_every=0, checkpoint_every=0,
                eval_batch=8, lr=3e-3)
    return TrainConfig(**{**base, **kw})

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HOST = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{root!r}, {root!r} + "/tests"]  # multiscale and tests/fixtures
    from multiscale.train.loop import maybe_initialize_distributed
    maybe_initialize_distributed()  # before any other jax call, as the CLI does
    import jax
    from multiscale.train import run_training
    from fixtures.synthetic_data import SyntheticData
    from tests.test_train_multihost import _config, _Losses, RATIOS, SEQ

    hook = _Losses()
    summary = run_training(_config({out!r}, mesh="data=2"),
                           data=SyntheticData().run_data(RATIOS, seq_len=SEQ), progress=False,
                           hooks=[hook])
    print("RESULT" + json.dumps({{"process": jax.process_index(), "processes": jax.process_count(),
                                "devices": jax.device_count(), "local": jax.local_device_count(),
                                "losses": hook.losses, "rows": summary["rows"]}}))
    jax.distributed.shutdown()
""")


class _Losses(Hook):
    every = 1

    def __init__(self):
        self.losses = []

    def on_step(self, info):
        self.losses.append(info.loss)


class _SideBySide:
    """One process's view of two hosts: host 0's batch rows, then host 1's."""

    def __init__(self, shards):
        self.shards = shards

    def __iter__(self):
        return self

    def __next__(self):
        parts = [next(s) for s in self.shards]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def get_state(self):
        return [s.get_state() for s in self.shards]

    def set_state(self, state):
        for s, st in zip(self.shards, state):
            s.set_state(st)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two processes (multi-host on localhost)
def test_two_hosts_match_one_process_fed_both_shards(tmp_path):
    port = _free_port()
    out = tmp_path / "two_hosts"
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid),
                   XLA_FLAGS="--xla_force_host_platform_device_count=1")
        procs.append(subprocess.Popen([sys.executable, "-c", _HOST.format(root=ROOT, out=str(out))],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.split("RESULT", 1)[1]))
    assert sorted(r["process"] for r in results) == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 2 and r["local"] == 1 for r in results)
    # the loss is a global reduction: both hosts see the same number every step
    assert results[0]["losses"] == results[1]["losses"]
    assert len(results[0]["losses"]) == 6

    data = SyntheticData().run_data(RATIOS, seq_len=SEQ)

    def both_shards(batch_size, shard_index, shard_count):
        assert (shard_index, shard_count) == (0, 1)
        half = batch_size // 2
        return _SideBySide([data.make_train_iterator(half, i, 2) for i in range(2)])

    side_by_side = RunData(data.family_names, data.vocab_size, both_shards, data.eval_set)
    hook = _Losses()
    one = run_training(_config(tmp_path / "one"), data=side_by_side, progress=False, hooks=[hook])
    np.testing.assert_allclose(results[0]["losses"], hook.losses, rtol=1e-5, atol=1e-6)
    # the eval (same fixed eval set on every host) gives the same rows
    two_rows = {r["family"]: r["loss"] for r in results[0]["rows"]}
    one_rows = {r["family"]: r["loss"] for r in one["rows"]}
    assert two_rows.keys() == one_rows.keys()
    for family, loss in one_rows.items():
        assert abs(two_rows[family] - loss) < 1e-5 * loss, family
    # only host 0 writes the run table
    assert (out / "rows.csv").exists()


def test_process_count_from_the_environment_must_be_an_integer(monkeypatch):
    from multiscale.train.loop import maybe_initialize_distributed

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two'"):
        maybe_initialize_distributed()
