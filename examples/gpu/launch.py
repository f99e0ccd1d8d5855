#!/usr/bin/env python3
"""Launch a multiscale sweep on GPUs: one machine (one or many cards) or a SLURM cluster.

Modes:
  local --mode per-gpu   one sweep process per card (CUDA_VISIBLE_DEVICES=k runs shard k/K).
                         Best for models that fit one card (85M-397M): K runs at a time.
  local --mode all-gpus  one process over all cards; the plan's `train.mesh` (e.g. "data=4,fsdp=2")
                         spreads each run over them. For 810M-1.2B.
  slurm                  a job array: array task k runs shard k/K (`sbatch --array=0-(K-1)`);
                         with --nodes > 1 every task is one JAX program over several nodes
                         (srun starts one process per node; jax.distributed.initialize() reads
                         SLURM's environment).

Every shard writes into the same sweep folder (a shared file system path, or gs://); the run
table OUT/runs.csv is rebuilt atomically by each shard, so shards never lose each other's rows.
Re-running the same command skips finished runs and resumes interrupted ones, which makes a
preempted or timed-out job array safe to resubmit as is.

Examples:
  python examples/gpu/launch.py local --plan examples/gpu/plan.yaml --out sweeps/paper \\
      --corpus corpora/mc4-paper --gpus 0,1,2,3 --dry-run
  python examples/gpu/launch.py slurm --plan examples/gpu/plan.yaml --out /shared/sweeps/paper \\
      --corpus /shared/corpora/mc4-paper --shards 32 --partition gpu --time 12:00:00 --dry-run
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

MULTISCALE = os.environ.get("MULTISCALE", "multiscale")  # the CLI (e.g. .venv/bin/multiscale)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="where", required=True)
    for name in ("local", "slurm"):
        s = sub.add_parser(name)
        s.add_argument("--plan", default="examples/gpu/plan.yaml")
        s.add_argument("--out", required=True, help="sweep folder every shard can write")
        s.add_argument("--corpus", required=True, help="corpus folder (build it with `multiscale corpus build`)")
        s.add_argument("--dry-run", action="store_true", help="print what would be launched; launch nothing")
    loc = sub.choices["local"]
    loc.add_argument("--gpus", default=None, help="comma-separated card ids (default: all, from nvidia-smi)")
    loc.add_argument("--mode", choices=("per-gpu", "all-gpus"), default="per-gpu")
    loc.add_argument("--logs", default="gpu_logs")
    sl = sub.choices["slurm"]
    sl.add_argument("--shards", type=int, required=True, help="array size K: task k runs shard k/K")
    sl.add_argument("--nodes", type=int, default=1, help="nodes per shard (one JAX program over them)")
    sl.add_argument("--gpus-per-node", type=int, default=1)
    sl.add_argument("--partition", default=None)
    sl.add_argument("--time", default="24:00:00")
    sl.add_argument("--max-parallel", type=int, default=None, help="at most this many array tasks at once")
    sl.add_argument("--script", default="sweep_array.sbatch", help="where to write the batch script")
    args = p.parse_args(argv)
    if not args.dry_run and not os.path.exists(args.plan):
        p.error(f"--plan {args.plan} does not exist")
    if args.where == "local":
        if args.gpus is not None:
            try:
                args.gpu_list = [int(g) for g in args.gpus.split(",") if g.strip()]
            except ValueError:
                p.error(f"--gpus {args.gpus!r}: expected card ids like 0,1,2,3")
            if not args.gpu_list or len(set(args.gpu_list)) != len(args.gpu_list):
                p.error(f"--gpus {args.gpus!r}: give each card once")
        else:
            args.gpu_list = None if args.dry_run else _detect_gpus()
            if args.gpu_list is None:
                args.gpu_list = [0]  # dry run without nvidia-smi: show one card
    else:
        for name in ("shards", "nodes", "gpus_per_node"):
            if getattr(args, name) < 1:
                p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _detect_gpus() -> list[int]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"launch.py: cannot list GPUs with nvidia-smi ({err}); pass --gpus")
    return [int(x) for x in out.split()]


def _sweep(args, shard: str) -> list[str]:
    return [MULTISCALE, "sweep", args.plan, "--out", args.out, "--corpus", args.corpus,
            "--shard", shard, "--no-progress"]


def local_commands(args) -> list[tuple[dict[str, str], list[str]]]:
    """(environment additions, command) per process."""
    gpus = args.gpu_list
    if args.mode == "all-gpus":
        return [({"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}, _sweep(args, "0/1"))]
    return [({"CUDA_VISIBLE_DEVICES": str(g)}, _sweep(args, f"{k}/{len(gpus)}")) for k, g in enumerate(gpus)]


def slurm_script(args) -> str:
    array = f"0-{args.shards - 1}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    lines = ["#!/bin/bash", "#SBATCH --job-name=multiscale-sweep", f"#SBATCH --array={array}",
             f"#SBATCH --nodes={args.nodes}", "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --gpus-per-node={args.gpus_per_node}", f"#SBATCH --time={args.time}",
             "#SBATCH --output=slurm-%A_%a.out"]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    sweep = shlex.join(_sweep(args, "PLACEHOLDER")).replace(
        "PLACEHOLDER", "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}")
    lines += ["set -euo pipefail",
              "# each array task is one shard; the shards share the sweep folder",
              "export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}",
              ("srun " if args.nodes > 1 else "") + sweep, ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.where == "slurm":
        script = slurm_script(args)
        cmd = ["sbatch", args.script]
        if args.dry_run:
            print(f"# would write {args.script}:\n{script}\n# and run:\n{shlex.join(cmd)}")
            return 0
        with open(args.script, "w") as f:
            f.write(script)
        return subprocess.run(cmd).returncode
    procs = local_commands(args)
    for env, cmd in procs:
        print(" ".join(f"{k}={v}" for k, v in env.items()), shlex.join(cmd))
    if args.dry_run:
        return 0
    os.makedirs(args.logs, exist_ok=True)
    running = []
    for k, (env, cmd) in enumerate(procs):
        log = open(os.path.join(args.logs, f"shard-{k}.log"), "a")
        running.append((subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for proc, log in running:
        codes.append(proc.wait())
        log.close()
    print(f"exit codes {codes}; run table: {args.out}/runs.csv (logs in {args.logs}/)")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
