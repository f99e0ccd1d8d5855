"""`multiscale sweep`: a plan's runs into a sweep folder, on this machine or an engine (Ray, SLURM)."""

from __future__ import annotations

import argparse

from multiscale.cli._common import (
    add_host_devices_argument,
    apply_host_devices,
    check_corpus_folder,
    check_output,
    check_output_folder,
    number,
    parse_shard,
)
from multiscale.errors import InputError
from multiscale.sweep.lease import DEFAULT_LEASE_S


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep plan (presets x token budgets x mixtures) into one run table",
        description="Runs each planned run of PLAN.yaml once (skipping complete runs, resuming "
                    "half-finished ones) and collects the rows in OUT/runs.csv. Several sweeps may "
                    "run at once on one or several machines sharing OUT, with or without --shard: "
                    "each run is trained by the process holding its lease. A failed run is recorded "
                    "in OUT/failures.jsonl and the sweep goes on; the exit status is then 1.")
    p.add_argument("plan", metavar="PLAN.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (local, shared or gs://)")
    p.add_argument("--corpus", metavar="DIR", help="corpus folder (default: the plan's 'corpus:')")
    p.add_argument("--shard", default="0/1", metavar="i/n", help="run shard i of n (0-based), default 0/1")
    p.add_argument("--dry-run", action="store_true", help="list this shard's runs and their state; train nothing")
    p.add_argument("--train-fn", metavar="MODULE:FUNCTION",
                   help="train runs with another function fn(run, run_dir, corpus, progress) -> rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--lease-seconds", type=number(), default=DEFAULT_LEASE_S, metavar="S",
                   help="a run's lease expires S seconds after its owner's last heartbeat; another sweep "
                        "on the same OUT then takes the run over (default %(default)g)")
    add_engine_arguments(p)
    add_host_devices_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (the sweep's outcome)")
    p.set_defaults(handler=_sweep)


def add_engine_arguments(p) -> None:
    """`--engine` and the flags of the Ray and SLURM engines."""
    p.add_argument("--engine", default="local", choices=["local", "ray", "slurm"],
                   help="who schedules the runs: this process (local, the default), a Ray cluster (one task "
                        "per run) or SLURM (one job array per sweep, through submitit)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster to use (default: RAY_ADDRESS, else the latest "
                                                     "cluster started here, else a new local one)")
    p.add_argument("--max-retries", type=int, metavar="N", help="Ray: retries of a run whose worker died or "
                                                                 "whose training failed; SLURM: requeues after "
                                                                 "preemption or timeout (default 3)")
    p.add_argument("--ray-accelerator", metavar="KIND[:COUNT]", help="what a run of a non-CPU preset asks Ray "
                                                                    "for: gpu[:N] (default gpu) or tpu[:CHIPS], a "
                                                                    "TPU host (default 4 chips)")
    p.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition (default: the cluster's)")
    p.add_argument("--slurm-gpus-per-task", type=int, metavar="N",
                   help="GPUs per array task (default: 1 if the plan has a non-CPU preset, else 0)")
    p.add_argument("--slurm-time", metavar="MIN|H:MM:SS", help="time limit of each array task; a task at its "
                                                               "limit is requeued and resumes (default 4:00:00)")
    p.add_argument("--slurm-array-parallelism", type=int, metavar="N",
                   help="array tasks running at once (default 32)")
    p.add_argument("--slurm-executor", choices=["slurm", "local"], help="local: run the job array on this "
                                                                        "machine with submitit's local executor "
                                                                        "(no SLURM; default slurm)")


def _sweep(args: argparse.Namespace) -> int:
    import json
    import sys

    apply_host_devices(args.host_devices, "sweep")  # before jax starts
    from multiscale import sweep

    check_output_folder(args.out)
    plan = sweep.SweepPlan.load(args.plan)
    shard = parse_shard(args.shard)
    engine = engine_from_args(args)
    corpus = args.corpus or plan.corpus
    if corpus is not None:
        check_corpus_folder(corpus, "--corpus" if args.corpus else "the plan's 'corpus:'")
    if not args.dry_run:  # a sweep folder is continued, never replaced
        check_output(args.out, folder=True, inputs={"plan PLAN.yaml": args.plan, "corpus --corpus": corpus},
                     marker=("plans", "runs.csv"), resumes=True)
    if args.dry_run:
        return _dry_run(plan, args, shard, corpus)
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    train_fn = _load_callable(args.train_fn) if args.train_fn else None
    result = sweep.run_sweep(plan, args.out, corpus=corpus, shard=shard, train_fn=train_fn,
                             progress=False if args.no_progress else None, log=log,
                             lease_s=args.lease_seconds, engine=engine)
    if args.json:
        print(json.dumps(result.to_dict()))
    return 1 if result.failed else 0


_ENGINE_FLAGS = {"ray": ("address", "ray_accelerator"),
                 "slurm": ("slurm_partition", "slurm_gpus_per_task", "slurm_time", "slurm_array_parallelism",
                           "slurm_executor")}


def engine_from_args(args: argparse.Namespace):
    """The engine the flags ask for (None: local), its flags checked before any work."""
    from multiscale.sweep.engines import Accelerator, MissingExtraError, load_engine_module

    for name, dests in _ENGINE_FLAGS.items():
        given = [d for d in dests if getattr(args, d) is not None]
        if given and args.engine != name:
            raise InputError(f"--{given[0].replace('_', '-')} applies only to --engine {name}")
    if args.engine == "local":
        if args.max_retries is not None:
            raise InputError("--max-retries applies only to --engine ray or slurm")
        return None
    _at_least(args.max_retries, 0, "--max-retries")
    try:
        module = load_engine_module(args.engine)
    except MissingExtraError as err:
        raise InputError(f"--engine {args.engine}: {err}") from None
    if args.engine == "ray":
        try:
            accelerator = Accelerator.parse(args.ray_accelerator or "gpu")
        except InputError:
            raise InputError(f"--ray-accelerator {args.ray_accelerator!r}: expected gpu[:N] or tpu[:CHIPS] "
                             f"with N, CHIPS >= 1") from None
        given = {"address": args.address, "max_retries": args.max_retries}
        return module.RayEngine(accelerator=accelerator, **{k: v for k, v in given.items() if v is not None})
    _at_least(args.slurm_gpus_per_task, 0, "--slurm-gpus-per-task")
    _at_least(args.slurm_array_parallelism, 1, "--slurm-array-parallelism")
    given = {"partition": args.slurm_partition, "gpus_per_task": args.slurm_gpus_per_task,
             "time_min": _minutes(args.slurm_time, "--slurm-time") if args.slurm_time else None,
             "array_parallelism": args.slurm_array_parallelism, "max_requeues": args.max_retries,
             "executor": args.slurm_executor}
    return module.SlurmEngine(**{k: v for k, v in given.items() if v is not None})


def _at_least(value: int | None, least: int, flag: str) -> None:
    if value is not None and value < least:
        raise InputError(f"{flag} must be >= {least}, got {value}")


def _minutes(text: str, flag: str) -> int:
    """Minutes of a SLURM time limit: MIN, H:MM:SS or D-H:MM:SS (rounded up to whole minutes)."""
    days, dash, clock = text.strip().rpartition("-")
    fields = clock.split(":")
    ok = (days.isdigit() or not dash) and len(fields) in (1, 3) and all(f.isdigit() for f in fields)
    scale = (60,) if len(fields) == 1 else (3600, 60, 1)
    seconds = 86400 * int(days or 0) + sum(k * int(f) for k, f in zip(scale, fields)) if ok else 0
    if seconds <= 0:
        raise InputError(f"{flag} {text!r}: expected minutes (90) or H:MM:SS (1:30:00), more than zero")
    return -(-seconds // 60)


def _dry_run(plan, args: argparse.Namespace, shard: tuple[int, int], corpus) -> int:
    """Lists this shard's runs and their state (complete, damaged, running, failed, planned)."""
    import json

    from multiscale import sweep

    runs = sweep.plan_runs(plan, corpus)
    mine = sweep.shard_runs(runs, *shard)
    store = sweep.SweepStore(args.out)
    rows = [{"run": r.run_id, "preset": r.preset, "D": r.tokens, "mixture": r.mixture,
             "heldout": r.heldout, "ratios": r.ratio_dict, "state": _state(store, r.run_id, args.lease_seconds)}
            for r in mine]
    if args.json:
        print(json.dumps({"planned": len(runs), "shard": list(shard), "runs": rows}))
        return 0
    print(f"{len(runs)} runs planned; shard {shard[0]}/{shard[1]} would run {len(mine)}:")
    for row in rows:
        ratios = " ".join(f"{f}={p:.3g}" for f, p in row["ratios"].items())
        print(f"  [{row['state']:8s}] {row['run']}  {ratios}" + ("  (held-out)" if row["heldout"] else ""))
    return 0


def _state(store, run_id: str, lease_s: float) -> str:
    if not store.exists():
        return "planned"
    state, _ = store.fragment_state(run_id)
    if state == "intact":
        return "complete"
    if store.claim_state(run_id, lease_s) == "live":
        return "running"
    if state == "damaged":
        return "damaged"
    return "failed" if store.failure(run_id) is not None else "planned"


def _load_callable(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise InputError(f"--train-fn {spec!r}: expected MODULE:FUNCTION")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"--train-fn {spec!r}: {err}") from None
    if not callable(fn):
        raise InputError(f"--train-fn {spec!r} is not a function")
    return fn
