"""The Ray engine: every pending run of a sweep is one Ray task, named by its run id.

Each task asks for its preset's resources (one CPU for `cpu-*`; GPUs, or a TPU host as the custom
resource `TPU`) and settles its run into the sweep folder; Ray retries it at most `max_retries`
times, and a retry resumes from the run folder's checkpoints and takes over its dead attempt's
lease. The cluster: `address`, else `ray.init()`'s discovery, else a new local one; an open Ray
session is used as is. See docs/decisions/2026-12-06-sweep-engines.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import ray

from multiscale.errors import InputError
from multiscale.sweep.engines import Accelerator, Settle, Settled, needs_accelerator
from multiscale.sweep.plan import PlannedRun


class RunFailed(RuntimeError):
    """Raised by a task whose run failed (recorded in the sweep folder), so that Ray retries it."""


def _settle_task(settle: Settle, run: PlannedRun) -> Settled:
    settled = settle(run)
    if settled.outcome == "failed":
        raise RunFailed(f"run {run.run_id} failed; see failures/{run.run_id}.json in the sweep folder")
    return settled


@dataclasses.dataclass(frozen=True)
class RayEngine:
    """address: a Ray cluster ('auto', 'ray://head:10001', 'head:6379'; None: discovery);
    max_retries: attempts after the first; accelerator: what a non-CPU preset's run asks for."""

    address: str | None = None
    max_retries: int = 3
    accelerator: Accelerator = Accelerator()

    def __post_init__(self):
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise InputError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")

    def resources(self, run: PlannedRun) -> dict[str, Any]:
        """The task options that reserve what `run`'s preset needs."""
        if not needs_accelerator(run.preset):
            return {"num_cpus": 1}
        if self.accelerator.kind == "gpu":
            return {"num_cpus": 1, "num_gpus": self.accelerator.count}
        return {"num_cpus": 1, "resources": {"TPU": self.accelerator.count}}

    def run(self, runs: Sequence[PlannedRun], settle: Settle, folder: Any) -> Iterator[Settled]:
        opened_here = not ray.is_initialized()
        if opened_here:
            ray.init(address=self.address)
        try:
            # A run on an accelerator gets a worker process of its own: JAX binds the devices it
            # sees once (Ray sets CUDA_VISIBLE_DEVICES per task), and an idle worker would keep a TPU.
            tasks = {False: ray.remote(_settle_task), True: ray.remote(max_calls=1)(_settle_task)}
            shared = ray.put(settle)  # stored once, not once per task
            pending = {tasks[needs_accelerator(run.preset)].options(
                name=run.run_id, max_retries=self.max_retries, retry_exceptions=True, **self.resources(run)
            ).remote(shared, run): run for run in runs}
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                run = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as err:  # out of retries: the run failed
                    yield Settled(run.run_id, "failed", error=err)
        finally:
            if opened_here:
                ray.shutdown()
