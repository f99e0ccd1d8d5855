"""The `multiscale` entry point: every command's --help, unknown commands, and the error contract
(a MultiscaleError is one line on stderr and exit status 2; any other exception keeps its traceback;
a missing command module is an error)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import pytest

import multiscale.cli as cli
from multiscale.errors import DamagedFileError, InputError, MissingFileError, MultiscaleError


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(prefix + (name,))
                found.extend(_subcommands(sub, prefix + (name,)))
    return found


COMMANDS = _subcommands(cli.build_parser())


def test_every_command_group_is_registered():
    top = {c[0] for c in COMMANDS}
    expected = {"corpus", "mixture", "presets", "train", "fit", "laws", "recommend", "predict",
                "independence", "compare", "sweep", "report", "demo"}
    assert expected <= top, sorted(expected - top)
    assert ("corpus", "build") in COMMANDS and ("mixture", "sample") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: multiscale " + " ".join(command))


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert capsys.readouterr().out.startswith("usage: multiscale")


def test_unknown_command_is_refused(capsys):
    assert cli.main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err and err.startswith("multiscale: error: ")
    assert len(err.splitlines()) == 1


def _install_fake_command(monkeypatch, error: BaseException) -> None:
    """A command module `multiscale_fake_cli` whose `boom` and `group sub` handlers raise `error`."""

    def handler(args):
        raise error

    def register(sub):
        boom = sub.add_parser("boom")
        boom.add_argument("--batch-size")
        boom.add_argument("--eval-every")
        boom.add_argument("fit_dir", metavar="FIT_DIR", nargs="?")
        boom.set_defaults(handler=handler)
        group = sub.add_parser("group").add_subparsers(dest="group_command")
        group.add_parser("sub").set_defaults(handler=handler)

    module = types.ModuleType("multiscale_fake_cli")
    module.register = register
    monkeypatch.setitem(sys.modules, "multiscale_fake_cli", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("multiscale_fake_cli",))


@pytest.mark.parametrize("error", [
    InputError("--ratios: family 'germanic' given twice"),
    MissingFileError("run table 'x.csv' does not exist"),
    DamagedFileError("fit/posterior.nc is truncated"),
])
def test_library_error_is_one_line_and_exit_2(monkeypatch, capsys, error):
    _install_fake_command(monkeypatch, error)
    assert cli.main(["boom"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"multiscale boom: error: {error}\n"
    assert "Traceback" not in captured.err


def test_error_names_the_subcommand_and_joins_lines(monkeypatch, capsys):
    _install_fake_command(monkeypatch, InputError("first line\n  second line\n"))
    assert cli.main(["group", "sub"]) == 2
    assert capsys.readouterr().err == "multiscale group sub: error: first line; second line\n"


@pytest.mark.parametrize("error, boom, sub", [
    (InputError("batch=9 is not divisible by grad_accum=2", arg="batch"),
     "--batch-size=9 is not divisible by grad_accum=2", "batch=9 is not divisible by grad_accum=2"),
    (InputError("eval_every must be an int >= 0, got -1", arg="eval_every"),
     "--eval-every must be an int >= 0, got -1", "eval_every must be an int >= 0, got -1"),
    (InputError("a run folder holds other checkpoints", arg="eval_every"),
     "--eval-every: a run folder holds other checkpoints", "a run folder holds other checkpoints"),
    (InputError("batches must be positive", arg="batch"),  # the name only as a word of its own
     "--batch-size: batches must be positive", "batches must be positive"),
    (MissingFileError("fit_dir 'x' is not a folder", arg="fit_dir"),  # a positional argument
     "FIT_DIR 'x' is not a folder", "fit_dir 'x' is not a folder"),
])
def test_an_error_about_a_library_argument_names_the_commands_flag(monkeypatch, capsys, error, boom, sub):
    """The library names its own argument (`arg`); the command line names the flag of the command
    that has one, and leaves the library's words to a command without it."""
    _install_fake_command(monkeypatch, error)
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == f"multiscale boom: error: {boom}\n"
    assert cli.main(["group", "sub"]) == 2
    assert capsys.readouterr().err == f"multiscale group sub: error: {sub}\n"


def test_every_exception_in_the_flag_table_is_a_flag_of_a_command():
    from multiscale.cli._common import FLAGS, flag_of

    flags = {option for command in COMMANDS for option in _options(command)}
    assert all(flag_of(arg) == flag and flag in flags for arg, flag in FLAGS.items())
    assert flag_of("eval_tokens_per_language") == "--eval-tokens-per-language"


def test_input_errors_keep_their_argument_through_pickling():
    import pickle

    from multiscale.mixture import UnknownFamilyError

    err = pickle.loads(pickle.dumps(UnknownFamilyError("ratios: unknown family 'x'", arg="ratios")))
    assert type(err) is UnknownFamilyError and err.arg == "ratios" and str(err) == "ratios: unknown family 'x'"


def test_usage_error_is_an_input_error():
    assert issubclass(cli.UsageError, InputError) and issubclass(cli.UsageError, MultiscaleError)
    assert issubclass(cli.UsageError, ValueError)


@pytest.mark.parametrize("error", [KeyError("params"), ValueError("a bug"), FileNotFoundError("bug")])
def test_other_exceptions_propagate(monkeypatch, capsys, error):
    """Builtin exceptions are bugs, not user errors: main() does not swallow them."""
    _install_fake_command(monkeypatch, error)
    with pytest.raises(type(error)) as exc:
        cli.main(["boom"])
    assert exc.value is error
    assert capsys.readouterr().err == ""


def test_missing_command_module_raises(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "multiscale.cli.no_such_module"))
    with pytest.raises(ImportError, match="multiscale.cli.no_such_module"):
        cli.build_parser()


def test_broken_import_inside_a_command_module_is_not_hidden(monkeypatch):
    module = types.ModuleType("multiscale_fake_cli")

    def register(sub):
        import multiscale_dependency_that_does_not_exist  # noqa: F401

    module.register = register
    monkeypatch.setitem(sys.modules, "multiscale_fake_cli", module)
    with pytest.raises(ModuleNotFoundError, match="multiscale_dependency_that_does_not_exist"):
        cli.build_parser(("multiscale_fake_cli",))


@pytest.mark.slow
def test_python_dash_m_error_contract(tmp_path):
    """Through a real process: a user error is one line on stderr, exit 2; a bug exits 1 with a traceback."""
    missing = tmp_path / "missing.csv"
    done = subprocess.run([sys.executable, "-m", "multiscale", "independence", str(missing)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiscale independence: error: ")
    assert str(missing) in lines[0]
    code = ("import multiscale.cli as c, sys, types\n"
            "m = types.ModuleType('fake')\n"
            "def h(a): raise KeyError('bug')\n"
            "m.register = lambda s: s.add_parser('boom').set_defaults(handler=h)\n"
            "sys.modules['fake'] = m\n"
            "c.COMMAND_MODULES = ('fake',)\n"
            "sys.exit(c.main(['boom']))\n")
    bug = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "KeyError: 'bug'" in bug.stderr


# The flag decisions of docs/design.md ("Command line and errors"), checked on every command.

def _options(command: tuple[str, ...]) -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    for word in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return {option: action for action in parser._actions for option in action.option_strings}


def _train_config_default(name: str):
    import dataclasses

    from multiscale.train.config import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_flags_have_one_name_and_one_default(command):
    options = _options(command)
    assert "--temperature" not in options, "temperature flags say --tau (q ∝ n^tau)"
    if "--seq-len" in options:
        assert options["--seq-len"].default == _train_config_default("seq_len")
    if "--checkpoint-every" in options:
        assert options["--checkpoint-every"].default == _train_config_default("checkpoint_every")
    if "--batch-size" in options and command == ("train",):
        assert options["--batch-size"].default == _train_config_default("batch")
    assert not {"--batch", "--warmup", "--caps"} & set(options), "no older flag names"
    assert all(a.help != argparse.SUPPRESS for a in options.values()), "no hidden flags"


def test_batch_size_and_warmup_names():
    assert "--batch-size" in _options(("train",)) and "--batch-size" in _options(("mixture", "sample"))
    assert "--warmup-steps" in _options(("train",)) and "--num-warmup" in _options(("fit",))


def test_law_choices_come_from_the_registry():
    from multiscale.laws.forms import LAWS

    assert sorted(_options(("fit",))["--law"].choices) == sorted(LAWS)


@pytest.mark.parametrize("command", [("corpus", "build"), ("mixture", "sample"), ("train",), ("fit",),
                                     ("sweep",), ("demo",)], ids=" ".join)
def test_long_commands_take_no_progress_and_json(command):
    options = _options(command)
    assert "--no-progress" in options and "--json" in options


# Every command refuses a missing or wrong input path with one line naming it, before any work.

MISSING = "no-such-input"


@pytest.mark.parametrize("argv", [
    ["corpus", "info", MISSING],
    ["corpus", "verify", MISSING],
    ["mixture", "sample", "--corpus", MISSING, "--ratios", "germanic=1"],
    ["train", "--corpus", MISSING, "--model", "cpu-100k", "--tokens", "1e4", "--ratios", "germanic=1",
     "--out", "OUT"],
    ["fit", MISSING, "--out", "OUT"],
    ["recommend", MISSING, "--N", "1e9", "--D", "1e10"],
    ["predict", MISSING, "--N", "1e9", "--D", "1e10", "--ratios", "germanic=1"],
    ["independence", MISSING],
    ["compare", MISSING, "--laws", "multilingual,ratio", "--out", "OUT"],
    ["sweep", MISSING, "--out", "OUT"],
    ["report", MISSING, "--out", "OUT"],
], ids=lambda argv: " ".join(argv[:2]))
def test_missing_input_is_one_line_naming_it(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"multiscale {cli.command_name(cli.build_parser().parse_args(argv))}: error: ")
    assert MISSING in err
    assert not (tmp_path / "OUT").exists(), "nothing is written when the input is missing"


def test_parse_shard():
    from multiscale.cli._common import parse_shard

    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "-1/2", "1/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)
