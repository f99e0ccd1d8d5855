"""Accelerator training benchmark: the library's train step at paper scale on every visible device.

Prints ONE JSON object. For each preset (default on GPU/TPU: the four paper scales, 85M to 1.2B
non-embedding parameters; on the CPU: cpu-100k and cpu-3m): the median step time over `--steps`
timed steps (after `--warmup` untimed ones; each step is synced, so the median is one step's wall
time), tokens/s = batch tokens / that median, the ahead-of-time compile time of the step (reported
apart, never inside the step time), model FLOP/s and MFU against the device's dense peak for the
dtype used (PEAK_FLOPS below; null, with the reason, for the CPU or a device not in the table).

The step is multiscale's own (`multiscale.train.step.compiled_steps`: forward, backward, global-norm
clipping, AdamW, f32 parameters and optimizer state, activations in `--dtype`), built the way
`multiscale train` builds it (`multiscale.train.loop.validate` checks preset, mesh and batch; the
optimizer and schedule are `TrainConfig`'s defaults). The batch is synthetic, uniform random token
ids in the vocabulary (no corpus needed), made once and reused every step (throughput does not
depend on the token values, and no host-to-device copy is timed). It is sharded over the mesh's
data axes with the library's rules (`multiscale.models.sharding`); by default every device is on
`data`, so a multi-GPU host or a TPU VM uses every chip, and the global batch is rows per device
times the device count.

Usage: python benchmarks/bench_accel.py [--presets auto|paper-85m,paper-397m,paper-810m,paper-1.2b]
       [--steps 20] [--warmup 3] [--batch ROWS] [--seq LEN] [--dtype auto|bfloat16|float32]
       [--mesh data=4,fsdp=2] [--vocab-size V] [--peak-flops F]
On the CPU (a smoke run; MFU is null there): python benchmarks/bench_accel.py --presets cpu-100k --steps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time

import flax
import jax
import jax.numpy as jnp
from bench_train import synthetic_batch
from machine import cpu_model

from multiscale.errors import InputError
from multiscale.models.config import resolve_compute_dtype
from multiscale.models.params import count_params, flops_per_token
from multiscale.models.presets import get_preset
from multiscale.train.config import TrainConfig
from multiscale.train.loop import maybe_initialize_distributed, validate
from multiscale.train.optim import schedule_scalars
from multiscale.train.step import TRAIN_KEYS, OptimizerSpec, compiled_steps

PAPER_PRESETS = ("paper-85m", "paper-397m", "paper-810m", "paper-1.2b")
CPU_PRESETS = ("cpu-100k", "cpu-3m")  # --presets auto on the CPU: the paper scales take hours there

# (rows per device, sequence length) when --batch / --seq are not given. The paper scales use the
# sequence length of the repository's GPU and TPU sweep plans (examples/gpu/plan.yaml,
# examples/tpu_vm/plan.yaml: 1024). 32 rows of 85M is the H200 run recorded in
# benchmarks/RESULTS.md ("GPU (85M preset, bf16)"); the larger presets take fewer rows. By a rough
# count (bf16 activations of every layer kept for the backward pass, as the step does not
# rematerialise; attention probabilities materialised where no fused kernel applies; f32
# parameters, gradients and two Adam moments) each default needs about 40-60 GB per device: it
# should fit an 80 GB card but has not yet run on one, and a 16 GB TPU v5e chip needs a smaller
# --batch and an fsdp mesh for the larger presets. A preset that does not fit is reported as an
# error row and the next one runs. Other presets (the cpu-* ones) use TrainConfig's default
# batch and seq_len (32 x 128).
DEFAULT_SHAPE = {"paper-85m": (32, 1024), "paper-397m": (16, 1024), "paper-810m": (8, 1024),
                 "paper-1.2b": (8, 1024)}

# Dense (no structured sparsity) peak FLOP/s per device, keyed by jax's `device_kind`, for matmul
# inputs in bfloat16 and in float32. float32 means JAX's default matmul precision, which rounds
# f32 inputs to TF32 on NVIDIA Ampere/Hopper tensor cores and to one bf16 pass on TPU (JAX docs,
# "Matmul precision": docs.jax.dev/en/latest/201/precision.html), so its peak is TF32's on those
# GPUs and bf16's on TPU. NVIDIA's data sheets give tensor-core rates "with sparsity"; dense is half.
# - H100 SXM5 ("NVIDIA H100 80GB HBM3"): BF16 1,979, TF32 989 TFLOPS with sparsity (NVIDIA H100
#   Tensor Core GPU data sheet). H100 PCIe: BF16 1,513, TF32 756 with sparsity (same sheet).
# - H200 SXM ("NVIDIA H200"): BF16 1,979, TF32 989 with sparsity (NVIDIA H200 data sheet).
# - A100 (SXM4 and PCIe, 40 and 80 GB): BF16 312, TF32 156 dense (NVIDIA A100 data sheet).
# - TPU v4: 275 TFLOPS bf16 per chip (Cloud TPU documentation, "TPU v4"); TPU v5e ("TPU v5 lite"):
#   197 ("TPU v5e"); TPU v5p ("TPU v5", also reported as "TPU v5p"): 459 ("TPU v5p");
#   TPU v6e ("TPU v6 lite"): 918 ("TPU v6e"). jax shows one device per chip on all four.
_H100_SXM = {"bfloat16": 1979e12 / 2, "float32": 989e12 / 2}
_A100 = {"bfloat16": 312e12, "float32": 156e12}
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": _H100_SXM,
    "NVIDIA H100 PCIe": {"bfloat16": 1513e12 / 2, "float32": 756e12 / 2},
    "NVIDIA H200": _H100_SXM,
    "NVIDIA A100-SXM4-40GB": _A100, "NVIDIA A100-SXM4-80GB": _A100,
    "NVIDIA A100-PCIE-40GB": _A100, "NVIDIA A100 80GB PCIe": _A100,
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12},
}

FLOPS_FORMULA = "6N + 12*layers*d_model*seq_len"
FLOPS_NOTE = ("N = non-embedding parameters; 6N is the forward (2N) and backward (4N) work of the "
              "weight matmuls, 12*layers*d_model*seq_len the attention scores and weighted values "
              "over the full (not causally halved) context, forward and backward; the embedding and "
              "the output projection (6*d_model*vocab per token) are not counted "
              "(multiscale.models.params.flops_per_token)")


def device_peak(kind: str, platform_name: str, dtype: str,
                override: float | None) -> tuple[float | None, str]:
    """(peak FLOP/s per device or None, where it comes from or why there is none)."""
    if override is not None:
        return override, "--peak-flops"
    if platform_name == "cpu":
        return None, ("no peak for CPUs: it depends on the part's cores, vector width and clock "
                      "(benchmarks/bench_train.py measures a matmul peak on the CPU instead)")
    if kind not in PEAK_FLOPS:
        return None, (f"device kind {kind!r} is not in PEAK_FLOPS (benchmarks/bench_accel.py); "
                      f"pass --peak-flops")
    return PEAK_FLOPS[kind][dtype], f"PEAK_FLOPS[{kind!r}][{dtype!r}] (dense, data sheet)"


@dataclasses.dataclass(frozen=True)
class Shape:
    """One preset's benchmark shape."""

    preset: str
    batch: int       # global rows per step
    seq_len: int


def bench_preset(shape: Shape, args) -> dict:
    """Compile (timed apart), warm up and time the train step of one preset; one result row."""
    tokens_per_step = shape.batch * shape.seq_len
    config = TrainConfig(corpus="synthetic", model=shape.preset, ratios={"synthetic": 1.0},
                         tokens=tokens_per_step * (args.warmup + args.steps), out="unused",
                         seq_len=shape.seq_len, batch=shape.batch, compute_dtype=args.dtype,
                         mesh=args.mesh)
    plan = validate(config, vocab_size=args.vocab_size)
    steps = compiled_steps(plan.model_cfg, tuple(plan.mesh_shape.items()), OptimizerSpec(
        config.b1, config.b2, config.eps, config.weight_decay, config.clip, config.grad_accum))
    state = steps.init(config.seed)
    host = synthetic_batch(plan.local_batch, shape.seq_len, plan.model_cfg.vocab_size,
                           seed=jax.process_index())
    batch = {k: jax.make_array_from_process_local_data(steps.batch_sharding, host[k])
             for k in TRAIN_KEYS}
    sched = schedule_scalars(config.lr, config.warmup, config.steps, config.min_lr_ratio)
    t = time.perf_counter()
    train = steps.train.lower(state, batch, sched).compile()
    compile_s = time.perf_counter() - t
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        state, metrics = train(state, batch, sched)
        jax.block_until_ready((state, metrics))
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise RuntimeError(f"{shape.preset}: non-finite training loss {loss}")
    counts = count_params(plan.model_cfg)
    step_s = statistics.median(times)
    fpt = flops_per_token(plan.model_cfg, shape.seq_len)
    return {"preset": shape.preset, "N": counts.non_embedding, "N_embedding": counts.embedding,
            "vocab_size": plan.model_cfg.vocab_size, "batch": shape.batch,
            "seq_len": shape.seq_len, "tokens_per_step": tokens_per_step,
            "mesh": plan.mesh_shape, "compile_s": round(compile_s, 3),
            "step_time_s": step_s, "step_time_min_s": min(times), "step_time_max_s": max(times),
            "tokens_per_s": tokens_per_step / step_s,
            "tokens_per_s_per_device": tokens_per_step / step_s / jax.device_count(),
            "flops_per_token": fpt, "model_flops_per_s": tokens_per_step / step_s * fpt,
            "loss_last": loss}


def run_preset(shape: Shape, args, peak_total: float | None) -> dict:
    """`bench_preset` plus MFU; a preset that does not fit the devices' memory becomes a row with
    an error (the next preset still runs)."""
    try:
        row = bench_preset(shape, args)
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        return {"preset": shape.preset, "batch": shape.batch, "seq_len": shape.seq_len,
                "error": f"out of device memory at batch {shape.batch} x {shape.seq_len}; "
                         f"try a smaller --batch or an fsdp mesh (--mesh data=1,fsdp=N): "
                         f"{str(err).splitlines()[0][:300]}"}
    row["mfu"] = None if peak_total is None else round(row["model_flops_per_s"] / peak_total, 4)
    return row


def parse_args(argv):
    def positive(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
        return value

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="auto",
                        help="comma-separated preset names (`multiscale presets`), or auto: "
                             f"{','.join(PAPER_PRESETS)} on GPU/TPU, {','.join(CPU_PRESETS)} on the CPU")
    parser.add_argument("--steps", type=positive, default=20, help="timed steps per preset")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps after compiling, before the timed ones (>= 0)")
    parser.add_argument("--batch", type=positive, default=None,
                        help="global batch in rows (default: the preset's rows per device, "
                             "DEFAULT_SHAPE, times the device count)")
    parser.add_argument("--seq", type=positive, default=None,
                        help="tokens per row (default: 1024 for paper presets, else 128)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"),
                        help="activation and matmul dtype; auto: bfloat16 on GPU/TPU, float32 on CPU")
    parser.add_argument("--mesh", default=None,
                        help="data=N,fsdp=M,tensor=K (default: every device on data)")
    parser.add_argument("--vocab-size", type=positive, default=None,
                        help="vocabulary size (default: the preset's, 259 byte tokens)")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="peak FLOP/s per device for MFU, instead of the PEAK_FLOPS table")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.peak_flops is not None and not args.peak_flops > 0:
        parser.error(f"--peak-flops must be > 0, got {args.peak_flops}")
    return parser, args


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    maybe_initialize_distributed()  # before any other jax call, on a multi-host slice
    load_start = os.getloadavg()[0]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    devices = jax.devices()
    kind, count = devices[0].device_kind, len(devices)
    dtype = jnp.dtype(resolve_compute_dtype(args.dtype)).name
    backend = jax.default_backend()
    peak, peak_basis = device_peak(kind, backend, dtype, args.peak_flops)
    names = ([p.strip() for p in args.presets.split(",") if p.strip()] if args.presets != "auto"
             else list(CPU_PRESETS if backend == "cpu" else PAPER_PRESETS))
    try:
        for name in names:  # every name checked before the first preset's minutes of compute
            get_preset(name)
    except InputError as err:
        parser.error(str(err))
    rows = []
    for name in names:
        per_device, seq = DEFAULT_SHAPE.get(name, (defaults["batch"], defaults["seq_len"]))
        shape = Shape(name, args.batch or per_device * count, args.seq or seq)
        try:
            rows.append(run_preset(shape, args, None if peak is None else peak * count))
        except InputError as err:
            parser.error(str(err))
    if jax.process_index() != 0:
        return 0
    print(json.dumps({
        "benchmark": "accel_train_step",
        "device": {"platform": backend, "kind": kind, "count": count,
                   "processes": jax.process_count()},
        "jax": jax.__version__, "flax": flax.__version__, "python": sys.version.split()[0],
        "host": {"cpu": cpu_model(), "cpu_count": len(os.sched_getaffinity(0)),
                 "platform": platform.platform(),
                 # other jobs on the host skew the numbers: the 1-minute load average
                 "loadavg_start": load_start, "loadavg_end": os.getloadavg()[0]},
        "dtype": dtype, "dtype_flag": args.dtype,
        "peak_flops_per_device": peak,
        "peak_source": peak_basis if peak is not None else None,
        "mfu_null_reason": None if peak is not None else peak_basis,
        "flops_per_token_formula": FLOPS_FORMULA, "flops_per_token_note": FLOPS_NOTE,
        "warmup_steps": args.warmup, "timed_steps": args.steps,
        "timing": "step_time_s is the median wall time of the timed steps, each synced "
                  "(block_until_ready) before the next; compile_s (lowering and compiling the "
                  "step ahead of time) is not part of it; tokens_per_s = tokens_per_step / "
                  "step_time_s; mfu = model_flops_per_s / (peak_flops_per_device * count)",
        "presets": rows,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
