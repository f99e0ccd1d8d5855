"""A hostile user of the command line (issue 24, second pass), one test per kind: nothing the user
had is destroyed (an output that is or holds an input, an existing result replaced unasked, a
folder of someone else's files), an output that cannot be written is refused before any work,
odd input is refused in one line (no traceback), Ctrl-C ends in one line with exit status 130,
and the library's warnings are one line each. In-process CLI (`multiscale.cli.main`); nothing here
fits or trains, so these stay fast."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
from test_bad_inputs import _files_corpus, _tree

import multiscale.cli as cli
from multiscale.cli import main

WORDS = {"de": "der die das und ist nicht".split(), "fr": "le la les et est pas".split()}
PLAN = ("name: p\nfamilies: [germanic, romance]\npresets: [cpu-100k]\ntokens: [1000]\n"
        "train: {seq_len: 16, batch: 4}\nmixtures: [{design: baselines, include: [uniform]}]\n")


def _cli(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of one in-process command; fails on a traceback."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _refused(code: int, err: str, command: str, *needles: str) -> None:
    """Exit status 2 and one line naming what was refused."""
    assert code == 2, err
    assert err.startswith(f"multiscale {command}: error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with a corpus, a saved fit with its run table, and a sweep plan."""
    from test_report import _write_inputs

    root = tmp_path_factory.mktemp("inputs")
    _files_corpus(root, "corpus", WORDS)
    _write_inputs(root)  # root/fit (fit.json, posterior, runs.csv) and root/all.csv
    (root / "plan.yaml").write_text(PLAN)
    return root


@pytest.fixture
def work(inputs, tmp_path, monkeypatch):
    """A fresh copy of `inputs` as the current folder."""
    import shutil

    shutil.copytree(inputs, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    return tmp_path / "w"


NEXT = ["next", "fit", "--N", "1e6", "--D", "1e8", "--budget-flops", "1e14"]
TRAIN = ["train", "--corpus", "corpus", "--model", "cpu-100k", "--ratios", "germanic=0.5,romance=0.5",
         "--tokens", "320", "--seq-len", "16", "--batch-size", "4", "--no-progress"]
AUTOPILOT = ["autopilot", "plan.yaml", "--N", "1e6", "--D", "1e8", "--budget-flops", "1e14", "--no-progress"]
BUILD = ["corpus", "build", "--source", "files", "--input", "de=corpus-de/*.txt", "--no-progress"]


# ------------------------------------------------------------------ an output that is, or holds, an input

@pytest.mark.parametrize("argv, needle", [
    (NEXT + ["--runs", "all.csv", "--out", "all.csv"], "is the input table --runs"),
    (NEXT + ["--out", "fit/fit.json"], "is a file of the fit FIT"),
    (["predict", "fit", "--runs", "all.csv", "--out", "all.csv"], "is the input table --runs"),
    (["fit", "fit/runs.csv", "--out", "fit", "--overwrite"], "holds the input table RUNS"),
    (["compare", "fit/runs.csv", "--laws", "multilingual", "--out", "fit"], "holds the input table RUNS"),
    (["report", "fit", "--runs", "all.csv", "--out", "fit", "--overwrite"], "is the input fit FIT_DIR"),
    (["report", "fit", "--runs", "all.csv", "--out", ".", "--overwrite"], "holds the input"),
    (["sweep", "plan.yaml", "--out", "corpus", "--corpus", "corpus", "--no-progress"], "is the input corpus --corpus"),
    (["sweep", "plan.yaml", "--out", ".", "--corpus", "corpus", "--no-progress"], "holds the input"),
    (AUTOPILOT + ["--out", "."], "holds the input plan PLAN"),
    (TRAIN + ["--out", "corpus"], "is the input corpus --corpus"),
    (BUILD + ["--out", "corpus-de"], "holds the input files --input"),
    (BUILD + ["--out", "corpus", "--overwrite", "--vocab", "corpus/vocab.model"], "holds the input vocabulary"),
], ids=lambda v: " ".join(v[:1] + v[-3:]) if isinstance(v, list) else None)
def test_an_output_that_is_or_holds_an_input_is_refused(work, capsys, argv, needle):
    """`next --runs T.csv --out T.csv` wrote its plan over the run table (exit 0); every command that
    writes compares its output with each of its inputs, symbolic links resolved, before any work."""
    if "corpus/vocab.model" in argv:
        (work / "corpus" / "vocab.model").write_bytes(b"not a model")
    before = _tree(work)
    code, err = _cli(capsys, *argv)
    command = " ".join(argv[:2]) if argv[0] == "corpus" else argv[0]
    _refused(code, err, command, "--out", needle)
    assert _tree(work) == before


def test_an_output_reached_through_a_symbolic_link_to_an_input_is_refused(work, capsys):
    os.symlink("all.csv", work / "link.csv")
    before = _tree(work)
    code, err = _cli(capsys, *NEXT, "--runs", "all.csv", "--out", "link.csv")
    _refused(code, err, "next", "is the input table --runs")
    assert _tree(work) == before


# ------------------------------------------------------------------ replacing a result only when asked

@pytest.mark.parametrize("argv, existing", [
    (["fit", "all.csv", "--out", "fit"], None),
    (["predict", "fit", "--runs", "all.csv", "--out", "old.csv"], "old.csv"),
    (NEXT + ["--out", "old.yaml"], "old.yaml"),
    (["compare", "all.csv", "--laws", "multilingual", "--out", "cmp"], "cmp/compare.json"),
    (["report", "fit", "--runs", "all.csv", "--out", "rep"], "rep/report.md"),
    (BUILD + ["--out", "corpus"], None),
])
def test_an_existing_result_is_replaced_only_with_overwrite(work, capsys, argv, existing):
    if existing:
        (work / existing).parent.mkdir(exist_ok=True)
        (work / existing).write_text("mine\n")
    before = _tree(work)
    code, err = _cli(capsys, *argv)
    command = " ".join(argv[:2]) if argv[0] == "corpus" else argv[0]
    _refused(code, err, command, "--out", "--overwrite")
    assert _tree(work) == before


@pytest.mark.parametrize("argv", [
    ["fit", "all.csv", "--out", "mine", "--overwrite"],
    ["compare", "all.csv", "--laws", "multilingual", "--out", "mine", "--overwrite"],
    ["report", "fit", "--runs", "all.csv", "--out", "mine", "--overwrite"],
    ["sweep", "plan.yaml", "--out", "mine", "--corpus", "corpus", "--no-progress"],
    TRAIN + ["--out", "mine"],
    ["demo", "--out", "mine", "--quick", "--no-progress"],
    AUTOPILOT + ["--out", "mine"],
    BUILD + ["--out", "mine", "--overwrite"],
], ids=lambda v: v[0] if v[0] != "corpus" else "corpus build")
def test_a_folder_of_files_the_command_did_not_write_is_refused_even_with_overwrite(work, capsys, argv):
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("years of work")
    before = _tree(work)
    code, err = _cli(capsys, *argv)
    command = " ".join(argv[:2]) if argv[0] == "corpus" else argv[0]
    _refused(code, err, command, "--out", "not empty", "thesis.tex")
    assert _tree(work) == before


# ------------------------------------------------------------------ corpus build deletes only its own files

def test_corpus_build_replaces_only_its_own_corpus_and_only_its_own_files(work, capsys):
    """Any folder with a manifest.json was taken for a corpus: its train/ was deleted, and an
    existing corpus was replaced unasked."""
    foreign = work / "foreign"
    (foreign / "train").mkdir(parents=True)
    (foreign / "manifest.json").write_text("{}")
    (foreign / "train" / "mine.txt").write_text("precious")
    before = _tree(work)
    for extra in ([], ["--overwrite"]):
        code, err = _cli(capsys, *BUILD, "--out", foreign, *extra)
        _refused(code, err, "corpus build", "--out")
    assert "not an intact corpus manifest" in err
    assert _tree(work) == before

    corpus = work / "corpus"
    (corpus / "notes.txt").write_text("mine")
    (corpus / "train" / "mine.txt").write_text("mine too")
    code, err = _cli(capsys, *BUILD, "--out", corpus, "--overwrite")
    assert code == 0, err
    from multiscale.data.corpus import Corpus

    rebuilt = Corpus.open(corpus)
    assert rebuilt.languages == ("de",) and rebuilt.check(full=True) == []
    assert not list((corpus / "train").glob("fr-*"))  # the old corpus's own files went
    assert (corpus / "notes.txt").read_text() == "mine" and (corpus / "train" / "mine.txt").read_text() == "mine too"

    (corpus / "train" / "de-00000-of-00003.tokens").write_text("not the corpus's")
    before = _tree(work)
    code, err = _cli(capsys, *BUILD, "--out", corpus, "--overwrite")
    _refused(code, err, "corpus build", "--out", "de-00000-of-00003.tokens", "did not write")
    assert _tree(work) == before


def test_corpus_build_interrupted_leaves_the_old_corpus(work, capsys, monkeypatch):
    import multiscale.data.corpus as corpus_lib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_lib, "_read_splits", interrupted)
    before = _tree(work)
    code, err = _cli(capsys, *BUILD, "--out", "corpus", "--overwrite")
    assert code == 130 and err == "multiscale corpus build: interrupted\n"
    assert _tree(work) == before and not [p for p in os.listdir(work) if p.startswith(".")]


# ------------------------------------------------------------------ an output that cannot be written

@pytest.mark.parametrize("argv", [
    ["fit", "all.csv", "--out", "OUT"],
    ["predict", "fit", "--runs", "all.csv", "--out", "OUT"],
    NEXT + ["--out", "OUT"],
    ["compare", "all.csv", "--laws", "multilingual", "--out", "OUT"],
    ["report", "fit", "--runs", "all.csv", "--out", "OUT"],
    ["sweep", "plan.yaml", "--out", "OUT", "--corpus", "corpus", "--no-progress"],
    TRAIN + ["--out", "OUT"],
    ["demo", "--out", "OUT", "--quick", "--no-progress"],
    AUTOPILOT + ["--out", "OUT"],
    BUILD + ["--out", "OUT"],
], ids=lambda v: v[0] if v[0] != "corpus" else "corpus build")
@pytest.mark.parametrize("where", ["dangling link", "unwritable"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(work, capsys, monkeypatch, argv, where):
    """`fit --out` to a dangling symbolic link failed with a traceback after the whole fit."""
    import multiscale.laws

    def no_work(*args, **kwargs):
        raise AssertionError("the command started its work")

    monkeypatch.setattr(multiscale.laws, "fit_point", no_work)
    before = _tree(work)
    if where == "dangling link":
        os.symlink(work / "gone" / "away", work / "OUT")
        out, needle = "OUT", "symbolic link"
    else:
        out, needle = "/proc/self/OUT", "cannot be written"  # no file can be created there, even by root
    code, err = _cli(capsys, *[out if a == "OUT" else a for a in argv])
    command = " ".join(argv[:2]) if argv[0] == "corpus" else argv[0]
    _refused(code, err, command, "--out", needle)
    if where == "dangling link":
        os.unlink(work / "OUT")
    assert _tree(work) == before


def test_the_output_check_is_the_librarys_and_names_its_own_arguments(tmp_path):
    from multiscale.errors import InputError
    from multiscale.fileio import check_output

    (tmp_path / "t.csv").write_text("x")
    with pytest.raises(InputError, match="^out .* is the input table runs") as err:
        check_output(tmp_path / "t.csv", folder=False, inputs={"table runs": tmp_path / "t.csv"}, overwrite=True)
    assert err.value.arg == "out"
    with pytest.raises(InputError, match="pass overwrite=True"):
        check_output(tmp_path / "t.csv", folder=False)
    check_output(tmp_path / "new.csv", folder=False)
    check_output(tmp_path / "new" / "deeper", folder=True)
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]  # the writability probe leaves nothing


# ------------------------------------------------------------------ numbers, vocabularies, plans

def test_every_number_flag_is_read_by_the_one_finite_parser():
    """A float flag read by `float` took nan, inf and 1e308 (`--tau 1e308` ended in a traceback)."""
    import argparse

    def actions(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from actions(sub)
            else:
                yield action

    floats = [a.option_strings for a in actions(cli.build_parser()) if a.type is float]
    assert floats == []
    typed = [a for a in actions(cli.build_parser()) if getattr(a.type, "__name__", "") == "number"]
    assert len(typed) >= 15


@pytest.mark.parametrize("argv, flag", [
    (["mixture", "sample", "--corpus", "corpus", "--ratios", "germanic=0.5,romance=0.5", "--within",
      "temperature", "--tau", "1e308"], "--tau"),
    (["mixture", "sample", "--corpus", "corpus", "--ratios", "germanic=1", "--tau", "nan"], "--tau"),
    (["recommend", "fit", "--N", "inf", "--D", "1e9"], "--N"),
    (["predict", "fit", "--N", "1e6", "--D", "-1", "--ratios", "fam0=1"], "--D"),
    (NEXT[:-2] + ["--budget-flops", "1e400"], "--budget-flops"),
    (["compare", "all.csv", "--laws", "multilingual", "--N", "nan"], "--N"),
    (["sweep", "plan.yaml", "--out", "s", "--lease-seconds", "-inf", "--dry-run"], "--lease-seconds"),
    (BUILD + ["--out", "c2", "--eval-fraction", "nan"], "--eval-fraction"),
    (TRAIN + ["--out", "r", "--lr", "inf"], "--lr"),
    (TRAIN + ["--out", "r", "--tokens", "1e308"], "--tokens"),
    (["fit", "all.csv", "--out", "f", "--method", "nuts", "--chains", "100000000000"], "--chains"),
    (["mixture", "sample", "--corpus", "corpus", "--ratios", "germanic=1", "--batch-size", "1" + "0" * 20],
     "--batch-size"),
    (["presets", "--seq-len", "0"], "--seq-len"),
    (AUTOPILOT + ["--out", "a", "--regret-below", "-inf"], "--regret-below"),
    (AUTOPILOT + ["--out", "a", "--chains", "100000000000"], "--chains"),
])
def test_huge_infinite_and_negative_numbers_are_refused_in_one_line(work, capsys, argv, flag):
    before = _tree(work)
    code, err = _cli(capsys, *argv)
    command = " ".join(argv[:2]) if argv[0] in ("corpus", "mixture") else argv[0]
    _refused(code, err, command, flag)
    assert _tree(work) == before


@pytest.mark.parametrize("content", [b"run,family\n1,2\n", b""])
def test_a_vocab_that_is_not_a_sentencepiece_model_is_refused_in_one_line(work, capsys, content):
    (work / "v.model").write_bytes(content)
    code, err = _cli(capsys, *BUILD, "--out", "c2", "--vocab", "v.model")
    _refused(code, err, "corpus build", "v.model", "not a SentencePiece model")
    assert not (work / "c2").exists()


@pytest.mark.parametrize("old, new, key", [
    ("tokens: [1000]", "tokens: []", "'tokens'"),
    ("presets: [cpu-100k]", "presets: [cpu-100k]\nseeds: []", "'seeds'"),
    ("include: [uniform]", "include: [temperature], taus: []", "'mixtures[0].taus'"),
    ("include: [uniform]", "include: [uniform], tokens: []", "'mixtures[0].tokens'"),
])
def test_a_plan_list_left_empty_is_refused_naming_its_key(work, capsys, old, new, key):
    """`tokens: []` planned 0 runs and the sweep exited 0."""
    (work / "p.yaml").write_text(PLAN.replace(old, new))
    code, err = _cli(capsys, "sweep", "p.yaml", "--out", "s", "--corpus", "corpus", "--dry-run")
    _refused(code, err, "sweep", key, "is empty")
    assert not (work / "s").exists()


# ------------------------------------------------------------------ a manifest pointing outside its corpus

@pytest.mark.parametrize("escape", ["../../../../etc/hostname", "/etc/hostname", "train/../../outside"])
def test_a_manifest_naming_a_file_outside_its_corpus_is_refused(work, capsys, escape):
    """A manifest is a file anyone can edit (its checksum is of itself): a shard path climbing
    out of the corpus folder had `corpus verify` read /etc/hostname."""
    from multiscale.data.corpus import Corpus, manifest_digest
    from multiscale.errors import DamagedFileError

    path = work / "corpus" / "manifest.json"
    manifest = json.loads(path.read_text())
    name = next(iter(manifest["files"]))
    manifest["files"][escape] = manifest["files"].pop(name)
    for info in manifest["languages"].values():
        for split in ("train", "eval"):
            for key in ("shards", "text_shards"):
                info[split][key] = [escape if s == name else s for s in info[split][key]]
    del manifest["manifest_sha256"]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(DamagedFileError, match="not inside the corpus folder"):
        Corpus.open(work / "corpus")
    for command in ("info", "verify"):
        code, err = _cli(capsys, "corpus", command, "corpus")
        _refused(code, err, f"corpus {command}", escape, "not inside the corpus folder")


# ------------------------------------------------------------------ Ctrl-C and warnings

def _fake_command(monkeypatch, handler) -> None:
    def register(sub):
        sub.add_parser("boom").set_defaults(handler=handler)

    module = types.ModuleType("multiscale_fake_cli")
    module.register = register
    monkeypatch.setitem(sys.modules, "multiscale_fake_cli", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("multiscale_fake_cli",))


def test_ctrl_c_ends_a_command_in_one_line_with_status_130(monkeypatch, capsys):
    def handler(*args):
        raise KeyboardInterrupt

    _fake_command(monkeypatch, handler)
    assert main(["boom"]) == 130
    assert capsys.readouterr().err == "multiscale boom: interrupted\n"
    monkeypatch.setattr(cli, "build_parser", handler)  # while the commands load
    assert main(["boom"]) == 130
    assert capsys.readouterr().err == "multiscale: interrupted\n"


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    from multiscale import fileio

    target = tmp_path / "runs.csv"
    target.write_text("old\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["runs.csv"]


@pytest.mark.slow  # a fresh process
def test_library_warnings_are_one_line_and_other_warnings_keep_their_format(tmp_path):
    """A `warnings.warn(..., RuntimeWarning)` of the library printed the file, line and source
    line of the library under the message; the CLI prints it as one line. Run in a fresh process,
    since pytest records warnings instead of printing them."""
    import subprocess
    import textwrap

    script = tmp_path / "boom.py"
    script.write_text(textwrap.dedent("""
        import os, sys, types, warnings
        import multiscale
        from multiscale import cli

        library_file = os.path.join(os.path.dirname(multiscale.__file__), "laws", "validation.py")
        warn_in_library = compile("warnings.warn('predicted loss not finite\\\\n for fam0', RuntimeWarning)",
                                  library_file, "exec")

        def handler(args):
            exec(warn_in_library, {"warnings": warnings})  # as if warned from the library's own code
            warnings.warn("an other library's warning", UserWarning, stacklevel=1)
            return 0

        module = types.ModuleType("fake_cli")
        module.register = lambda sub: sub.add_parser("boom").set_defaults(handler=handler)
        sys.modules["fake_cli"] = module
        cli.COMMAND_MODULES = ("fake_cli",)
        before = warnings.formatwarning
        code = cli.main(["boom"])
        assert warnings.formatwarning is before  # installed by main for the command only
        sys.exit(code)
    """))
    done = subprocess.run([sys.executable, "-W", "always", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert lines[0] == "multiscale boom: warning: predicted loss not finite; for fam0"
    assert "UserWarning: an other library's warning" in lines[1] and str(script) in lines[1]


# ------------------------------------------------------------------ odd files and paths, in one line

@pytest.mark.parametrize("argv, prep", [
    (BUILD + ["--out", "c2", "--vocab", "corpus-de"], None),
    (BUILD + ["--out", "c2", "--families", "corpus-de"], None),
    (BUILD + ["--out", "c2", "--families", "e.yaml"], ("e.yaml", "")),
    (BUILD + ["--out", "c2", "--families", "b.yaml"], ("b.yaml", b"\xff\xfe\x00")),
    (BUILD + ["--out", "c2", "--families", "u.yaml"], ("u.yaml", "germanisch\u00e9\U0001F600: [de]\n")),
    (["corpus", "build", "--source", "files", "--input", "de=nothing/*.txt", "--out", "c2"], None),
    (["corpus", "build", "--source", "files", "--input", "de=corpus-de", "--out", "c2"], None),
    (["corpus", "build", "--source", "files", "--input", "de=b/*.txt", "--out", "c2"], ("b/a.txt", b"\xff\x81" * 9)),
    (["corpus", "build", "--source", "files", "--input", "d\u00e9=corpus-de/*.txt", "--out", "c2"], None),
    (["fit", "e.csv", "--out", "f2"], ("e.csv", "")),
    (["fit", "corpus", "--out", "f2"], None),
    (["fit", "b.parquet", "--out", "f2"], ("b.parquet", "not parquet")),
    (["recommend", "all.csv", "--N", "1e6", "--D", "1e9"], None),
    (["recommend", "corpus", "--N", "1e6", "--D", "1e9"], None),
    (["independence", "corpus"], None),
    (["corpus", "info", "all.csv"], None),
    (["corpus", "verify", "m"], ("m/manifest.json", "[]")),
    (["sweep", "corpus", "--out", "s", "--dry-run"], None),
    (["sweep", "e.yaml", "--out", "s", "--dry-run"], ("e.yaml", "[1, 2]\n")),
    (NEXT + ["--candidates", "corpus"], None),
    (NEXT + ["--runs", "corpus"], None),
    (["report", "fit", "--runs", "all.csv", "--out", "rep", "--fitted", "corpus"], None),
    (TRAIN + ["--corpus", "all.csv", "--out", "r"], None),
    (["mixture", "sample", "--corpus", "nope", "--ratios", "germanic=1"], None),
    (["compare", "all.csv", "--laws", ","], None),
    (["predict", "fit", "--N", "1e6", "--D", "1e9", "--ratios", "fam0=0.5,fam0=0.5"], None),
    (["fit", "all.csv", "--out", "f2", "--no-such-flag"], None),
], ids=lambda v: " ".join(map(str, v[:2] + v[-2:])) if isinstance(v, list) else None)
def test_odd_files_and_paths_are_refused_in_one_line(work, capsys, argv, prep):
    if prep is not None:
        path, content = work / prep[0], prep[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = _tree(work)
    code, err = _cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and ": error: " in err, err
    assert "Traceback" not in err and _tree(work) == before


def test_ctrl_c_while_a_corpus_is_replaced_waits_for_the_new_corpus(work, capsys, monkeypatch):
    """Replacing a corpus removes the old files before moving the new in: Ctrl-C there would
    leave neither."""
    import signal

    import multiscale.data.corpus as corpus_lib

    replace = os.replace

    def replace_after_ctrl_c(src, dst):
        os.kill(os.getpid(), signal.SIGINT)
        replace(src, dst)

    monkeypatch.setattr(corpus_lib.os, "replace", replace_after_ctrl_c)
    code, err = _cli(capsys, *BUILD, "--out", "corpus", "--overwrite")
    assert code == 130 and err == "multiscale corpus build: interrupted\n"
    from multiscale.data.corpus import Corpus

    rebuilt = Corpus.open(work / "corpus")
    assert rebuilt.languages == ("de",) and rebuilt.check(full=True) == []
