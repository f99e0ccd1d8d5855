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

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def request_host_devices(count: int) -> bool:
    """Ask XLA for `count` CPU devices; return whether the request can still take effect.

    False (and nothing changed) when jax has already been imported, when XLA_FLAGS already sets
    a device count (the user's choice wins), or when count is 1.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"host device count must be a positive int, got {count!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    if count == 1 or "jax" in sys.modules or DEVICE_FLAG in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={count}".strip()
    return True


def add_argument(parser) -> None:
    """The CLI's `--host-devices N` option (train, sweep)."""
    parser.add_argument(
        "--host-devices", type=int, default=None, metavar="N",
        help="split this CPU host into N XLA devices and train data-parallel over them (the "
             "default mesh puts every device on `data`); 1.06-1.16x faster for the CPU presets "
             "on 2 cores with N=2. Ignored when XLA_FLAGS already sets a device count; no "
             "effect on GPU/TPU")


def apply_argument(value: int | None, command: str) -> None:
    """Honour `--host-devices` before jax starts; say so on stderr when it cannot."""
    if value is None:
        return
    if value < 1:
        raise ValueError(f"--host-devices must be >= 1, got {value}")
    if value > 1 and not request_host_devices(value):
        print(f"multiscale {command}: --host-devices {value} ignored: XLA_FLAGS already sets "
              f"{DEVICE_FLAG} or jax has already started", file=sys.stderr)
