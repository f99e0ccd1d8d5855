"""Helpers shared by several command modules: the one map from library argument names to
flags (`flag_of`, `render_error`), the parser of every number flag (`number`), `--host-devices`,
`--overwrite` and path checks (`check_output` and `check_output_folder` are `multiscale.fileio`'s,
re-exported for the commands).

Cheap to import (no jax): commands register their options at start-up.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Mapping

from multiscale.errors import InputError, MissingFileError, MultiscaleError
from multiscale.fileio import check_output, check_output_folder, is_remote
from multiscale.host_devices import DEVICE_FLAG, request_host_devices

__all__ = ["FLAGS", "add_host_devices_argument", "add_overwrite_argument", "apply_host_devices",
           "check_corpus_folder", "check_output", "check_output_folder", "flag_of", "number",
           "parse_shard", "render_error"]

FLAGS = {"batch": "--batch-size", "eval_batch": "--eval-batch-size", "caps": "--cap",
         "available_tokens": "--tokens", "inputs": "--input", "eval_docs_per_language": "--eval-docs",
         "max_docs_per_language": "--max-docs",
         "p_by_family": "--ratios"}
"""Library argument names whose flag is not `--` + the name with `-` for `_`."""


def flag_of(arg: str) -> str:
    """The flag of a library argument: `FLAGS`, else ``--`` + the name with ``-`` for ``_``."""
    return FLAGS.get(arg) or "--" + arg.replace("_", "-")


def render_error(err: MultiscaleError, names: Mapping[str, str]) -> str:
    """The error's message as the user of a command reads it: an error about a library argument
    (`err.arg`) that the command takes names it as the user typed it instead, at the start of the
    message where the library puts the argument's name (or in front). `names`: the command's
    flags (each to itself) and its positional arguments (dest -> metavar)."""
    text = str(err)
    shown = err.arg and (names.get(flag_of(err.arg)) or names.get(err.arg))
    if not shown:
        return text
    named = re.match(rf"{re.escape(err.arg)}(?![\w-])", text)
    return shown + text[named.end():] if named else f"{shown}: {text}"


def number(low: float = 0.0, *, low_ok: bool = False, high: float = math.inf):
    """The argparse `type` of every number flag: a finite float in (low, high] (low_ok: [low,
    high]); nan, inf and out-of-range values are refused with the flag named by argparse."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not low_ok) or value > high:
            raise argparse.ArgumentTypeError(f"must be a finite {kind}, got {text!r}")
        return value

    kind = ("positive number" if (low, low_ok, high) == (0.0, False, math.inf) else "number" if low == -math.inf
            else f"number in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high < math.inf else ')'}")

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


def add_overwrite_argument(parser, what: str) -> None:
    """The `--overwrite` switch of a command that writes `what` (never an input of it)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace an existing {what} (never an input of the command, nor files it did not write)")


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard i/n` (0-based i) -> (i, n)."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise InputError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def add_host_devices_argument(parser) -> None:
    """The `--host-devices N` option (train, sweep)."""
    parser.add_argument(
        "--host-devices", type=int, default=None, metavar="N",
        help="split this CPU host into N XLA devices and train data-parallel over them (the "
             "default mesh puts every device on `data`); 1.06-1.16x faster for the CPU presets "
             "on 2 cores with N=2. Ignored when XLA_FLAGS already sets a device count; no "
             "effect on GPU/TPU")


def apply_host_devices(value: int | None, command: str) -> None:
    """Honour `--host-devices` before jax starts; say so on stderr when it cannot."""
    if value is None:
        return
    if value < 1:
        raise InputError(f"--host-devices must be >= 1, got {value}")
    if value > 1 and not request_host_devices(value):
        print(f"multiscale {command}: --host-devices {value} ignored: XLA_FLAGS already sets "
              f"{DEVICE_FLAG} or jax has already started", file=sys.stderr)


def check_corpus_folder(path: str, flag: str = "--corpus") -> None:
    """Refuse, before any work, a corpus folder without a manifest."""
    if is_remote(path):
        return
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        raise MissingFileError(f"{flag} {path!r}: no corpus there (no manifest.json); build one with "
                               "`multiscale corpus build`")
