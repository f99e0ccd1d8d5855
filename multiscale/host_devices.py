"""Splitting one CPU host into several XLA devices.

XLA:CPU runs a train step (or a NUTS chain) on one device; asking it for N host devices lets N
data-parallel shards (or N chains) run side by side in one process. On 2 cores, training the CPU
presets data-parallel over 2 host devices ran 1.06-1.16x faster (benchmarks/RESULTS.md, runs H1
and H3), and 4 NUTS chains 2.6x faster than one after another (benchmarks/FIT_RESULTS.md).
The device count is read once, when jax starts, so this must run before jax is imported. It has
no effect on GPU or TPU devices.
"""

from __future__ import annotations

import os
import sys

from multiscale.errors import InputError

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def request_host_devices(count: int) -> bool:
    """Ask XLA for `count` CPU devices; return whether the request can still take effect.

    False (and nothing changed) when jax has already been imported, when XLA_FLAGS already sets
    a device count (the user's choice wins), or when count is 1.
    """
    if not isinstance(count, int) or count < 1:
        raise InputError(f"host device count must be a positive int, got {count!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    if count == 1 or "jax" in sys.modules or DEVICE_FLAG in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={count}".strip()
    return True
