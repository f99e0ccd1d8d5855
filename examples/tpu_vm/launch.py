#!/usr/bin/env python3
"""Launch a multiscale sweep on one or more Cloud TPU VMs (single-host or multi-host slices).

Each TPU VM (or slice) named in --tpus runs one shard of the plan: slice k of K runs
`multiscale sweep PLAN --shard k/K` on *all* its workers at once (`--worker=all`), which makes one
JAX program over the slice's hosts (the trainer calls jax.distributed.initialize()). All shards
write into one gs:// sweep folder; the run table OUT/runs.csv is rebuilt atomically by each shard
(docs/design.md, "Sweeps: plan, runner, store"), so nothing needs merging afterwards. Re-running
the same command skips finished runs and resumes interrupted ones from their checkpoints, so a preempted slice
only needs the command again. There is no scheduler here: a slice is a shard.

Steps (--step, default all):
  setup   clone or update the repository on every worker and install it with jax[tpu]
  corpus  build the corpus once (worker 0 of the first TPU): the paper's 23 languages in
          5 families from TFDS mC4 (c4/multilingual), or a Hugging Face dataset (--corpus-source hf)
  sweep   copy the plan to every worker and run one shard per TPU, in parallel; logs in --logs
Afterwards, on any machine: `multiscale fit OUT/runs.csv --method nuts --out FIT` and
`multiscale report FIT --out REPORT`.

Example:
  python examples/tpu_vm/launch.py --tpus sweep-a,sweep-b --zone us-central2-b \\
      --plan examples/tpu_vm/plan.yaml --out gs://BUCKET/sweeps/paper \\
      --corpus gs://BUCKET/corpora/mc4-paper --dry-run
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

DEFAULT_REPO = "https://github.com/YOUR_ORG/multiscale.git"
REMOTE_DIR = "multiscale"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--tpus", required=True, help="comma-separated TPU VM names; TPU k runs shard k/K")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", help="Google Cloud project (default: gcloud's configured one)")
    p.add_argument("--plan", default="examples/tpu_vm/plan.yaml", help="sweep plan (local file)")
    p.add_argument("--out", required=True, help="sweep folder, a gs:// path every worker can write")
    p.add_argument("--corpus", required=True, help="corpus folder, a gs:// path")
    p.add_argument("--corpus-source", choices=("tfds", "hf"), default="tfds")
    p.add_argument("--max-docs", type=int, default=200_000, help="documents per language for the corpus")
    p.add_argument("--hf-path", default="allenai/c4", help="Hugging Face dataset (with --corpus-source hf)")
    p.add_argument("--vocab", default="byte",
                   help="corpus vocabulary: byte, or spm:SIZE to train a family-balanced SentencePiece model")
    p.add_argument("--repo", default=DEFAULT_REPO, help="git URL of multiscale to install on the workers")
    p.add_argument("--ref", default="main", help="git branch or tag to install")
    p.add_argument("--step", choices=("setup", "corpus", "sweep", "all"), default="all")
    p.add_argument("--logs", default="tpu_logs", help="local folder for each shard's output")
    p.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    args = p.parse_args(argv)
    args.tpu_list = [t.strip() for t in args.tpus.split(",") if t.strip()]
    if not args.tpu_list:
        p.error("--tpus names no TPU VM")
    if len(set(args.tpu_list)) != len(args.tpu_list):
        p.error(f"--tpus names a TPU twice: {args.tpus}")
    for name, value in (("--out", args.out), ("--corpus", args.corpus)):
        if not value.startswith("gs://"):
            p.error(f"{name} {value!r} must be a gs:// path: every worker of every TPU must reach it")
    if not args.dry_run and not os.path.exists(args.plan):
        p.error(f"--plan {args.plan} does not exist")
    return args


def _ssh(args, tpu: str, command: str, worker: str = "all") -> list[str]:
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={args.zone}", f"--worker={worker}"]
    if args.project:
        cmd.append(f"--project={args.project}")
    return cmd + ["--command", command]


def setup_commands(args) -> list[list[str]]:
    script = " && ".join([
        f"(test -d {REMOTE_DIR} || git clone {shlex.quote(args.repo)} {REMOTE_DIR})",
        f"cd {REMOTE_DIR}", f"git fetch -q origin && git checkout -q {shlex.quote(args.ref)}",
        "(git pull -q --ff-only || true)",
        "(test -x .venv/bin/python || python3 -m venv .venv)",
        ".venv/bin/pip install -q -U pip 'jax[tpu]'",
        ".venv/bin/pip install -q -e '.[seqio,hf,sentencepiece]'",
    ])
    return [_ssh(args, tpu, script) for tpu in args.tpu_list]


def corpus_commands(args) -> list[list[str]]:
    build = (f"cd {REMOTE_DIR} && .venv/bin/multiscale corpus build --source {args.corpus_source} "
             f"--grouping paper --max-docs {args.max_docs} --vocab {shlex.quote(args.vocab)} "
             + (f"--hf-path {shlex.quote(args.hf_path)} " if args.corpus_source == "hf" else "")
             + f"--out {shlex.quote(args.corpus)}")
    return [_ssh(args, args.tpu_list[0], build, worker="0")]


def sweep_commands(args) -> list[list[str]]:
    n = len(args.tpu_list)
    cmds = []
    for k, tpu in enumerate(args.tpu_list):
        scp = ["gcloud", "compute", "tpus", "tpu-vm", "scp", args.plan, f"{tpu}:{REMOTE_DIR}/sweep_plan.yaml",
               f"--zone={args.zone}", "--worker=all"] + ([f"--project={args.project}"] if args.project else [])
        run = (f"cd {REMOTE_DIR} && .venv/bin/multiscale sweep sweep_plan.yaml --out {shlex.quote(args.out)} "
               f"--corpus {shlex.quote(args.corpus)} --shard {k}/{n} --no-progress")
        cmds += [scp, _ssh(args, tpu, run)]
    return cmds


def main(argv=None) -> int:
    args = parse_args(argv)
    steps = ("setup", "corpus", "sweep") if args.step == "all" else (args.step,)
    for step in steps:
        cmds = {"setup": setup_commands, "corpus": corpus_commands, "sweep": sweep_commands}[step](args)
        print(f"# step {step}: {len(cmds)} command(s)" + (" (dry run)" if args.dry_run else ""))
        for cmd in cmds:
            print(shlex.join(cmd))
        if args.dry_run:
            continue
        if step == "sweep":
            rc = _run_shards(args, cmds)
        else:
            rc = max(_run_parallel(cmds, None))
        if rc:
            print(f"step {step} failed (exit {rc}); fix it and rerun: finished work is kept", file=sys.stderr)
            return rc
    if not args.dry_run:
        print(f"run table: {args.out}/runs.csv\nnext: multiscale fit {args.out}/runs.csv --method nuts --out FIT "
              f"&& multiscale report FIT --out REPORT")
    return 0


def _run_shards(args, cmds) -> int:
    scps, runs = cmds[0::2], cmds[1::2]
    if max(_run_parallel(scps, None)):
        return 1
    os.makedirs(args.logs, exist_ok=True)
    logs = [os.path.join(args.logs, f"shard-{k}-{tpu}.log") for k, tpu in enumerate(args.tpu_list)]
    codes = _run_parallel(runs, logs)
    for log, code in zip(logs, codes):
        print(f"  {log}: exit {code}")
    return max(codes)


def _run_parallel(cmds, logs) -> list[int]:
    procs = []
    for k, cmd in enumerate(cmds):
        out = open(logs[k], "a") if logs else None
        procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None), out))
    codes = []
    for proc, out in procs:
        codes.append(proc.wait())
        if out:
            out.close()
    return codes


if __name__ == "__main__":
    sys.exit(main())
