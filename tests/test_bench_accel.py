"""benchmarks/bench_accel.py on the CPU: a tiny preset over two simulated devices prints one JSON
object whose numbers are positive and consistent, and a CPU gets no MFU."""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from multiscale.models.presets import get_preset

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH, SEQ, STEPS = 4, 32, 3


@pytest.mark.slow  # a subprocess that compiles and trains: 9-25 s on 2 cores
def test_bench_accel_reports_consistent_numbers_on_two_cpu_devices():
    env = {**os.environ, "PYTHONPATH": str(ROOT),  # this checkout's package, not an installed one
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_accel.py", "--presets", "cpu-100k", "--steps", str(STEPS),
         "--warmup", "1", "--batch", str(BATCH), "--seq", str(SEQ)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)

    assert out["device"] == {"platform": "cpu", "kind": "cpu", "count": 2, "processes": 1}
    assert out["dtype"] == "float32"  # auto on the CPU
    assert out["peak_flops_per_device"] is None and out["mfu_null_reason"]
    assert out["timed_steps"] == STEPS and out["warmup_steps"] == 1
    (row,) = out["presets"]
    assert row["preset"] == "cpu-100k" and row["mesh"] == {"data": 2, "fsdp": 1, "tensor": 1}
    assert row["mfu"] is None
    assert row["batch"] == BATCH and row["seq_len"] == SEQ and row["tokens_per_step"] == BATCH * SEQ

    for key in ("compile_s", "step_time_s", "step_time_min_s", "tokens_per_s", "model_flops_per_s"):
        assert row[key] > 0, key
    assert row["step_time_min_s"] <= row["step_time_s"] <= row["step_time_max_s"]
    # rel 1e-12: the same two floats divided, only JSON's shortest round-trip repr in between
    assert math.isclose(row["tokens_per_s"], BATCH * SEQ / row["step_time_s"], rel_tol=1e-12)
    assert math.isclose(row["tokens_per_s_per_device"], row["tokens_per_s"] / 2, rel_tol=1e-12)

    # 6N + 12 * layers * d_model * seq_len, N counted here from the preset's widths
    cfg = get_preset("cpu-100k")
    d, f, layers = cfg.d_model, cfg.d_ff, cfg.num_layers
    n = layers * (4 * d * d + 3 * d * f + 2 * d) + d
    assert row["N"] == n == 100_672
    assert row["flops_per_token"] == 6 * n + 12 * layers * d * SEQ
    assert math.isclose(row["model_flops_per_s"], row["tokens_per_s"] * row["flops_per_token"],
                        rel_tol=1e-12)
    # Uniform random tokens under a near-uniform initial model: the loss is about ln(vocab) after
    # 4 small steps (peak learning rate 3e-3); 10% leaves room for the optimizer's path and still
    # fails for a step that saw no weighted tokens (loss 0) or diverged.
    assert abs(row["loss_last"] - math.log(row["vocab_size"])) < 0.1 * math.log(row["vocab_size"])


def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import each other by file name
    try:
        import bench_accel
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_accel


def test_peak_table_and_its_gaps():
    bench = _bench_module()
    for kind, peaks in bench.PEAK_FLOPS.items():
        assert set(peaks) == {"bfloat16", "float32"}, kind
        # f32 at JAX's default precision (TF32 or one bf16 pass) is never faster than bf16
        assert 0 < peaks["float32"] <= peaks["bfloat16"], kind
    peak, source = bench.device_peak("NVIDIA H200", "gpu", "bfloat16", None)
    assert peak == 989.5e12 and "NVIDIA H200" in source  # the H200 sheet: 1,979 TFLOPS sparse
    assert bench.device_peak("NVIDIA H200", "gpu", "bfloat16", 5e14) == (5e14, "--peak-flops")
    peak, reason = bench.device_peak("NVIDIA GeForce RTX 9999", "gpu", "bfloat16", None)
    assert peak is None and "NVIDIA GeForce RTX 9999" in reason and "--peak-flops" in reason
    peak, reason = bench.device_peak("cpu", "cpu", "float32", None)
    assert peak is None and "CPU" in reason
