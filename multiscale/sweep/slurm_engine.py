"""The SLURM engine: one submitit job array per sweep, one array task per pending run.

At most `array_parallelism` tasks at once on `partition`, `gpus_per_task` GPUs each, `time_min`
minutes. A task preempted or at its time limit is checkpointed by submitit (`Checkpointable`: the
same run again) and requeued at most `max_requeues` times; it resumes from its run folder's
checkpoints and takes over its earlier attempt's lease. Logs go to `<sweep folder>/slurm/`;
`executor="local"` runs the array on this machine. See docs/decisions/2026-12-06-sweep-engines.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import submitit

from multiscale.errors import InputError
from multiscale.fileio import as_path, is_remote
from multiscale.sweep.engines import Settle, Settled, needs_accelerator
from multiscale.sweep.plan import PlannedRun

POLL_S = 1.0


class RunJob(submitit.helpers.Checkpointable):
    """One array task: settles its run; on preemption or timeout, requeued to settle it again."""

    def __init__(self, settle: Settle):
        self.settle = settle

    def __call__(self, run: PlannedRun) -> Settled:
        return self.settle(run)


@dataclasses.dataclass(frozen=True)
class SlurmEngine:
    """partition: None for the cluster's default; gpus_per_task: None for 1 when a run's preset
    needs an accelerator (engines.needs_accelerator), else 0; time_min: each task's time limit;
    max_requeues: after preemption or timeout; executor: 'slurm', or 'local' for submitit's
    local executor."""

    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int = 1
    time_min: int = 240
    array_parallelism: int = 32
    max_requeues: int = 3
    executor: str = "slurm"

    def __post_init__(self):
        least = {"gpus_per_task": 0, "cpus_per_task": 1, "time_min": 1, "array_parallelism": 1, "max_requeues": 0}
        for name, low in least.items():
            value = getattr(self, name)
            if not (value is None and name == "gpus_per_task") and not (isinstance(value, int) and value >= low):
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.executor not in ("slurm", "local"):
            raise InputError(f"executor must be 'slurm' or 'local', got {self.executor!r}")

    def _executor(self, folder: Any, runs: Sequence[PlannedRun]):
        if is_remote(folder):
            raise InputError(f"sweep folder {str(folder)!r}: SLURM jobs need a shared file system "
                             f"for their logs, not object storage")
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = int(any(needs_accelerator(run.preset) for run in runs))
        kind = self.executor
        executor = submitit.AutoExecutor(folder=str(as_path(folder) / "slurm"), cluster=kind,
                                         **{f"{kind}_max_num_timeout": self.max_requeues})
        executor.update_parameters(
            name=f"multiscale-sweep-{as_path(folder).name}", timeout_min=self.time_min,
            cpus_per_task=self.cpus_per_task, local_gpus_per_node=gpus, slurm_partition=self.partition,
            slurm_gpus_per_task=gpus or None, slurm_array_parallelism=self.array_parallelism)
        return executor

    def run(self, runs: Sequence[PlannedRun], settle: Settle, folder: Any) -> Iterator[Settled]:
        if not runs:
            return
        jobs = self._executor(folder, runs).map_array(RunJob(settle), list(runs))
        pending = dict(zip(jobs, runs))
        while pending:
            finished = [job for job in pending if job.done()]
            for job in finished:
                run = pending.pop(job)
                try:
                    yield job.result()
                except Exception as err:  # the job died, was cancelled or ran out of requeues
                    yield Settled(run.run_id, "failed", error=err)
            if pending and not finished:
                time.sleep(POLL_S)
