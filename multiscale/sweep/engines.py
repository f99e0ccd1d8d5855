"""Sweep engines: who schedules a sweep's runs, and what every engine hands back.

The runner keeps the plan, the run ids and the store; an engine only decides where and when each
pending run is settled, by calling `settle` (picklable: claim, train or harvest into the store,
release; returns a `Settled`) in some process. Local (no engine object) is the runner's own loop;
`RayEngine` (ray_engine.py) and `SlurmEngine` (slurm_engine.py) are optional extras whose modules
`load_engine_module` imports only when asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from multiscale.errors import InputError
from multiscale.sweep.plan import PlannedRun

OUTCOMES = ("completed", "elsewhere", "failed")
ENGINES = ("local", "ray", "slurm")
# engine -> (its module, the package it needs, the extra that installs it)
_MODULES = {"ray": ("multiscale.sweep.ray_engine", "ray", "ray"),
            "slurm": ("multiscale.sweep.slurm_engine", "submitit", "slurm")}


class MissingExtraError(InputError):
    """An engine's optional dependency is not installed."""


@dataclasses.dataclass(frozen=True)
class Settled:
    """What happened to one run: trained or harvested here ('completed'), found complete
    ('elsewhere': another process finished it), or 'failed'; `repaired`: its damaged fragment
    was quarantined first; `error`: why a run failed outside the trainer (its worker died, its
    job was cancelled), which the runner records in the sweep folder."""

    run_id: str
    outcome: str
    repaired: bool = False
    error: BaseException | None = None

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


Settle = Callable[[PlannedRun], Settled]


class Engine(Protocol):
    """Settles every run of `runs` once by calling `settle(run)` in its workers, yielding each
    `Settled` as it arrives; `folder` is the sweep folder (an engine may keep its logs there)."""

    def run(self, runs: Sequence[PlannedRun], settle: Settle, folder: Any) -> Iterator[Settled]: ...


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """What a run of a non-CPU preset asks its scheduler for: `count` GPUs, or a TPU host of
    `count` chips."""

    kind: str = "gpu"
    count: int = 1

    def __post_init__(self):
        if self.kind not in ("gpu", "tpu"):
            raise InputError(f"accelerator kind must be 'gpu' or 'tpu', got {self.kind!r}")
        if not (isinstance(self.count, int) and self.count >= 1):
            raise InputError(f"accelerator count must be an integer >= 1, got {self.count!r}")

    @classmethod
    def parse(cls, text: str) -> Accelerator:
        """'gpu', 'gpu:2', 'tpu:4' (a TPU host of 4 chips); a bare 'tpu' is a host of 4 chips."""
        kind, _, count = text.strip().lower().partition(":")
        try:
            n = int(count) if count else (4 if kind == "tpu" else 1)
        except ValueError:
            raise InputError(f"accelerator {text!r}: expected KIND[:COUNT], e.g. gpu, gpu:2, tpu:4") from None
        return cls(kind, n)


def needs_accelerator(preset: str) -> bool:
    """The CPU presets (`cpu-*`) train on one CPU core; every other preset on an accelerator."""
    return not preset.startswith("cpu-")


def load_engine_module(name: str):
    """The module of engine `name` ('ray' or 'slurm'); MissingExtraError, saying which extra to
    install, when its dependency is missing."""
    if name not in _MODULES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    module, package, extra = _MODULES[name]
    try:
        importlib.import_module(package)
    except ImportError:
        raise MissingExtraError(f"the {name} engine needs {package}, which is not installed: "
                                f"pip install 'multiscale[{extra}]'") from None
    return importlib.import_module(module)
