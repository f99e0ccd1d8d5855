"""Sweeps: plans expanded into runs, the sweep folder, and the runner.

- `multiscale.sweep.plan`: `SweepPlan` (YAML plans validated in full at load), `PlannedRun`,
  the run-id contract (`RunId`, `format_run_id`, `parse_run_id`), sharding.
- `multiscale.sweep.store`: `SweepStore(out_dir)`, the sweep folder: plans, checksummed
  fragments, consolidation into runs.csv, failures, quarantine, leases.
- `multiscale.sweep.lease`: per-run leases with a heartbeat and an expiry.
- `multiscale.sweep.runner`: `run_sweep`, the default train function.
- `multiscale.sweep.engines`: who schedules a sweep's runs; `ray_engine.RayEngine` and
  `slurm_engine.SlurmEngine` (optional extras, imported only when used) pass to `run_sweep(engine=)`.

The layout and guarantees are described in docs/design.md, section "Sweeps: plan, runner, store".
"""

from multiscale.sweep.plan import (
    MixtureDesign,
    PlanError,
    PlannedRun,
    RunId,
    SweepPlan,
    format_run_id,
    parse_run_id,
    shard_runs,
)
from multiscale.sweep.runner import (
    SweepResult,
    TrainFn,
    corpus_info,
    default_train_fn,
    finished_rows,
    plan_runs,
    run_sweep,
)
from multiscale.sweep.store import (
    DamagedFragmentWarning,
    FragmentScan,
    SweepStore,
    consolidate,
    read_fragments,
)

__all__ = ["MixtureDesign", "PlanError", "PlannedRun", "RunId", "SweepPlan", "format_run_id",
           "parse_run_id", "shard_runs", "SweepResult", "TrainFn", "corpus_info",
           "default_train_fn", "finished_rows", "plan_runs", "run_sweep", "DamagedFragmentWarning",
           "FragmentScan", "SweepStore", "consolidate", "read_fragments"]
