"""The `multiscale` command line.

Each command group lives in its own module under `multiscale/cli/` and exposes
`register(subparsers)`. Registration must stay cheap: heavy imports (jax, tensorflow,
matplotlib) happen inside the handlers, so `multiscale --help` is instant.

Errors (docs/design.md, "Command line and errors"): a `multiscale.errors.MultiscaleError`
raised by a handler is a user's mistake and is printed as one line,
`multiscale COMMAND: error: MESSAGE`, with exit status 2; an error about a library argument
names the command's flag for it (`multiscale.cli._common.render_error`); a mistake argparse finds
(an unknown flag, a value of the wrong type) is one line too. Ctrl-C ends the command with one
line, `multiscale COMMAND: interrupted`, and exit status 130 (every write of the library is atomic,
so an interrupted one leaves the old file). The library's warnings are printed as one line each,
`multiscale COMMAND: warning: MESSAGE`. Every other exception is a bug and propagates with its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings

from multiscale.cli._common import render_error
from multiscale.errors import InputError, MultiscaleError

# Command modules, in the order they appear in `multiscale --help`.
COMMAND_MODULES = (
    "multiscale.cli.corpus",    # corpus build / info / verify
    "multiscale.cli.mixture",   # mixture sample
    "multiscale.cli.train",     # presets, train
    "multiscale.cli.laws",      # fit, laws, recommend, predict, independence
    "multiscale.cli.compare",   # compare
    "multiscale.cli.next",      # next
    "multiscale.cli.sweep",     # sweep
    "multiscale.cli.autopilot",  # autopilot
    "multiscale.cli.report",    # report
    "multiscale.cli.demo",      # demo
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UsageError(InputError):
    """A bad combination of command-line arguments; printed without a traceback. `prog`: the
    command whose arguments they are ('multiscale corpus build')."""

    def __init__(self, message: str, *, prog: str = "multiscale"):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes (an unknown flag, a value of the wrong type) raise
    `UsageError`, printed by `main` as one line as the library's are."""

    def error(self, message: str):
        number = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (must be .*)", message, flags=re.S)  # `number`'s refusal
        message = f"{number[1]} {number[2]}" if number else message
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _import_command(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:  # the package is incomplete: a bug of the installation, not of the user
            raise ImportError(f"multiscale command module {name!r} is missing; reinstall multiscale") from err
        raise


def build_parser(modules: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The parser with every command group of `modules` (default `COMMAND_MODULES`) registered;
    a missing module raises ImportError."""
    parser = _Parser(
        prog="multiscale",
        description="Find multilingual sampling ratios with a scaling law.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if modules is None else modules:
        _import_command(name).register(sub)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """'corpus build', 'fit', ...: the command as the user typed it (for error messages)."""
    words = [args.command, getattr(args, f"{args.command}_command", None)]
    return " ".join(w for w in words if w)


def command_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The arguments of the command `args` ran (e.g. of `corpus build`) as its user writes them:
    each option string to itself, each positional argument's dest to its metavar."""
    for word in command_name(args).split():  # (the builtin `next` is this package's `next` module)
        parser = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0][word]
    names = {a.dest: a.metavar or a.dest.upper() for a in parser._actions if not a.option_strings}
    return names | {s: s for a in parser._actions for s in a.option_strings}


def one_line(err: BaseException | str) -> str:
    """The error's message on one line (a multi-line message is joined with '; ')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


def library_warning_format(command: str, default=warnings.formatwarning):
    """A `warnings.formatwarning` that prints the library's own warnings (a damaged checkpoint or
    sweep fragment set aside, data repeated; of a multiscale category or warned from multiscale's
    code) as one line, `multiscale COMMAND: warning: MESSAGE`, without the source line of the
    library; other warnings keep `default`'s format."""
    def format_warning(message, category, filename, lineno, line=None):
        ours = os.path.abspath(filename or "").startswith(_PACKAGE_DIR + os.sep)
        if ours or category.__module__.split(".")[0] == "multiscale":
            return f"multiscale {command}: warning: {one_line(message)}\n"
        return default(message, category, filename, lineno, line)

    return format_warning


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"{err.prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # Ctrl-C while the commands load: nothing has started
        print("multiscale: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    default_format = warnings.formatwarning  # the format only, so that warnings recorded by a caller stay recorded
    warnings.formatwarning = library_warning_format(command_name(args))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: the writes are atomic, so nothing is left half-written
        print(f"multiscale {command_name(args)}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `multiscale ... | head`: stop quietly, as Unix tools do
        sys.stderr.close()
        return 0
    except MultiscaleError as err:  # the user's mistake; anything else is a bug and keeps its traceback
        message = render_error(err, command_names(parser, args)) or type(err).__name__
        print(f"multiscale {command_name(args)}: error: {one_line(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        warnings.formatwarning = default_format


if __name__ == "__main__":
    sys.exit(main())
