"""A run killed with SIGKILL and resumed reproduces the uninterrupted run's losses exactly."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.train import TrainConfig, read_metrics, run_training

RATIOS = {"germanic": 0.5, "romance": 0.3, "slavic": 0.2}
SEQ, BATCH, STEPS, KILL_AT = 32, 8, 14, 11


def _config(out):
    return TrainConfig(corpus="unused", model="cpu-100k", tokens=STEPS * BATCH * SEQ,
                       ratios=RATIOS, out=str(out), seq_len=SEQ, batch=BATCH, eval_every=5,
                       checkpoint_every=4, eval_batch=8, run_name="r")


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{root!r}, {root!r} + "/tests"]  # multiscale and tests/fixtures
    from tests.test_train_resume import _config, RATIOS, SEQ, KILL_AT
    from multiscale.train import Hook, run_training
    from fixtures.synthetic_data import SyntheticData

    class Kill(Hook):
        def on_step(self, info):
            if info.step == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)

    run_training(_config({out!r}), data=SyntheticData().run_data(RATIOS, seq_len=SEQ),
                 hooks=[Kill()], progress=False)
""")


@pytest.mark.slow  # a subprocess killed with SIGKILL
def test_sigkill_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed_dir = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN.format(root=root, out=str(killed_dir))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    before = [m["step"] for m in read_metrics(killed_dir / "metrics.jsonl") if "loss" in m]
    assert before and before[-1] >= KILL_AT - 1  # it trained past its last checkpoint

    data = SyntheticData().run_data(RATIOS, seq_len=SEQ)
    resumed = run_training(_config(killed_dir), data=data, progress=False)
    assert 4 <= resumed["resumed_from_step"] < KILL_AT

    full = run_training(_config(tmp_path / "full"),
                        data=SyntheticData().run_data(RATIOS, seq_len=SEQ), progress=False)
    assert full["resumed_from_step"] == 0

    def losses(path):
        return [(m["step"], m["loss"]) for m in read_metrics(path / "metrics.jsonl") if "loss" in m]

    assert [s for s, _ in losses(killed_dir)] == list(range(1, STEPS + 1))
    assert losses(killed_dir) == losses(tmp_path / "full")  # bitwise equal
    assert resumed["rows"] == full["rows"]
    assert json.dumps(resumed["languages"]) == json.dumps(full["languages"])
