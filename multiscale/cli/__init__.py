"""The `multiscale` command line.

Each command group lives in its own module under `multiscale/cli/` and exposes
`register(subparsers)`. Registration must stay cheap: heavy imports (jax, tensorflow,
matplotlib) happen inside the handlers, so `multiscale --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order they appear in `multiscale --help`.
_COMMAND_MODULES = (
    "multiscale.cli.corpus",    # corpus build / info
    "multiscale.cli.mixture",   # mixture sample
    "multiscale.cli.train",     # presets, train
    "multiscale.cli.laws",      # fit, recommend, predict, independence
    "multiscale.cli.sweep",     # sweep, report, demo
)


class UsageError(Exception):
    """A bad argument or input file; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiscale",
        description="Find multilingual sampling ratios with a scaling law.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # this command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # e.g. `multiscale ... | head`: stop quietly, as Unix tools do
        sys.stderr.close()
        return 0
    except (UsageError, ValueError, FileNotFoundError, KeyError) as err:
        # Library code raises these with messages that name the offending input.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"multiscale {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
