"""--host-devices: one CPU host split into several XLA devices, before jax starts."""

import json
import os
import subprocess
import sys

import pytest

from multiscale import host_devices
from multiscale.cli._common import apply_host_devices
from multiscale.errors import InputError


def test_request_is_refused_once_jax_has_started(monkeypatch):
    import jax  # noqa: F401  (the test process has jax already)

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert host_devices.request_host_devices(2) is False
    assert "XLA_FLAGS" not in os.environ


def test_request_sets_the_flag_before_jax_and_respects_the_users_flag(monkeypatch):
    monkeypatch.delitem(sys.modules, "jax")  # as in a fresh process
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert host_devices.request_host_devices(3) is True
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                       "--xla_force_host_platform_device_count=3")
    assert host_devices.request_host_devices(2) is False  # a count is set: left alone
    assert os.environ["XLA_FLAGS"].endswith("count=3")
    assert host_devices.request_host_devices(1) is False


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_counts_are_refused(bad):
    with pytest.raises(InputError, match="positive int"):
        host_devices.request_host_devices(bad)


def test_cli_option_is_checked_and_says_when_it_cannot_apply(monkeypatch, capsys):
    import jax  # noqa: F401  (started: a request can no longer take effect)

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.raises(InputError, match="--host-devices must be >= 1, got 0"):
        apply_host_devices(0, "train")
    apply_host_devices(None, "train")
    assert capsys.readouterr().err == ""
    apply_host_devices(2, "sweep")
    assert "multiscale sweep: --host-devices 2 ignored" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess
def test_train_cli_splits_the_host_and_trains_data_parallel(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "multiscale", "train", "--corpus", str(tiny_corpus.path),
           "--model", "cpu-100k", "--tokens", "2048", "--ratios", "germanic=0.5,romance=0.5",
           "--out", str(out), "--seq-len", "32", "--batch-size", "8",
           "--eval-tokens-per-language", "256", "--no-progress", "--json", "--host-devices", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["devices"] == 2
    assert summary["mesh"] == {"data": 2, "fsdp": 1, "tensor": 1}
    assert [r["family"] for r in summary["rows"]] == ["germanic", "romance"]
