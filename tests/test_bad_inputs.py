"""Bad inputs a hostile user tries, one test per kind (docs/design.md, "Command line and errors"):
each checks the exit status, the one-line message naming the offending thing, and that nothing
was written or lost. The CLI runs in-process (`multiscale.cli.main`), so these stay fast."""

from __future__ import annotations

import os

import pytest

from multiscale.cli import main

FAMS = ["germanic", "romance", "slavic"]


def _cli(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of one in-process command (argparse's refusals exit by SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _tree(folder) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (to show that nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


# ------------------------------------------------------------------ a key given twice in YAML

PLAN_WITH_DUPLICATE = """\
name: dup
families: [germanic, romance, slavic]
presets: [cpu-100k]
tokens: [1000]
train: {seq_len: 16, batch: 4}
mixtures:
  - {name: a, ratios: {germanic: 0.3, romance: 0.5, slavic: 0.2, germanic: 0.3}}
"""


def test_a_key_given_twice_in_a_plan_or_a_grouping_is_refused_naming_it(tmp_path, capsys):
    """YAML keeps the last of two equal keys; here the ratios would still sum to 1 and the plan
    would pass `--dry-run` with a mixture the user did not write."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN_WITH_DUPLICATE)
    out = tmp_path / "sweep"
    code, err = _cli(capsys, "sweep", plan, "--out", out, "--dry-run")
    assert code == 2
    assert err.startswith("multiscale sweep: error: ") and len(err.strip().splitlines()) == 1
    assert "plan.yaml" in err and "line 7" in err and "'germanic' twice" in err
    assert not out.exists()

    grouping = tmp_path / "fam.yaml"
    grouping.write_text("germanic: [de]\nromance: [fr]\ngermanic: [ru]\n")
    (tmp_path / "de.txt").write_text("ein kleiner Text " * 20)
    corpus = tmp_path / "corpus"
    code, err = _cli(capsys, "corpus", "build", "--source", "files", "--input", f"de={tmp_path}/de.txt",
                     "--families", grouping, "--out", corpus, "--no-progress")
    assert code == 2
    assert err.startswith("multiscale corpus build: error: ") and "fam.yaml:3" in err
    assert "'germanic' twice" in err
    assert not corpus.exists()


def test_the_yaml_reader_keeps_ordinary_documents():
    from multiscale.fileio import load_yaml

    assert load_yaml("a: {x: 1, y: [1, 2]}\nb: {x: 2}\n") == {"a": {"x": 1, "y": [1, 2]}, "b": {"x": 2}}
    assert load_yaml("") is None


# ------------------------------------------------------------------ resuming on another corpus

def _files_corpus(tmp_path, name, texts):
    """A tiny corpus from text files: texts maps a language to the words of its documents."""
    from multiscale.data.corpus import build_corpus
    from multiscale.data.sources import FilesSource

    globs = {}
    for lang, words in texts.items():
        folder = tmp_path / f"{name}-{lang}"
        folder.mkdir()
        for i in range(6):
            (folder / f"{i}.txt").write_text(" ".join(words[(i + j) % len(words)] for j in range(400)))
        globs[lang] = [str(folder / "*.txt")]
    build_corpus(FilesSource(globs), tmp_path / name, progress=False)
    return tmp_path / name


def test_corpus_fingerprint_follows_the_data_not_the_path(tmp_path):
    import shutil

    from multiscale.data.corpus import Corpus
    from multiscale.mixture import Mixture
    from multiscale.train.data_source import load_run_data

    words = {"de": "der die das und ist nicht".split(), "fr": "le la les et est pas".split()}
    a = _files_corpus(tmp_path, "a", words)
    b = _files_corpus(tmp_path, "b", {"de": words["fr"], "fr": words["de"]})
    shutil.copytree(a, tmp_path / "moved")
    fp = Corpus.open(a).fingerprint
    assert fp == Corpus.open(tmp_path / "moved").fingerprint
    assert fp != Corpus.open(b).fingerprint

    data = load_run_data(str(a), Mixture({"germanic": 1.0}), seq_len=16, seed=0, eval_tokens_per_language=64)
    assert data.fingerprint == fp  # what a run folder records is the corpus's one fingerprint


@pytest.mark.slow
def test_resume_on_another_corpus_is_refused_and_keeps_the_run(tmp_path, capsys):
    """A run folder's checkpoints were trained on one corpus; resuming them on another (same
    families, other text) continued silently and wrote rows claiming the other corpus."""
    words = {"de": "der die das und ist nicht".split(), "fr": "le la les et est pas".split()}
    first = _files_corpus(tmp_path, "first", words)
    other = _files_corpus(tmp_path, "other", {"de": words["fr"], "fr": words["de"]})
    run = tmp_path / "run"
    argv = ["train", "--model", "cpu-100k", "--ratios", "germanic=0.5,romance=0.5", "--seq-len", "16",
            "--batch-size", "4", "--tokens", "320", "--checkpoint-every", "5", "--no-progress", "--out", run]
    assert _cli(capsys, *argv, "--corpus", first)[0] == 0
    before = _tree(run)
    code, err = _cli(capsys, *argv, "--corpus", other)
    assert code == 2 and err.startswith("multiscale train: error: ") and len(err.strip().splitlines()) == 1
    assert "other data" in err and str(other) in err and "run folder" in err
    assert _tree(run) == before


# ------------------------------------------------------------------ damaged checkpoints: what the user reads

def test_damaged_checkpoints_are_named_and_the_warning_says_what_happens_next(tmp_path):
    """With every step damaged the warning used to promise 'resuming from an older checkpoint'
    while the run started over; on the command line it also printed the library's source line."""
    import warnings

    import jax
    import jax.numpy as jnp

    from multiscale.cli import library_warning_format
    from multiscale.train.checkpoint import Checkpointer, DamagedCheckpointWarning

    state = {"w": jnp.arange(4096.0)}
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=3)
    for step in (1, 2):
        ckpt.save(step, state, {"position": step})
    ckpt.close()
    for step in (1, 2):
        folder = tmp_path / "checkpoints" / str(step) / "state"
        largest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        largest.write_bytes(largest.read_bytes()[:10])
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"w": jax.ShapeDtypeStruct((4096,), jnp.float32, sharding=sharding)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Checkpointer(tmp_path / "checkpoints", keep=3).restore_latest(abstract) is None
    named = [str(w.message) for w in caught if issubclass(w.category, DamagedCheckpointWarning)]
    assert len(named) == 2 and "step 2" in named[0] and "step 1" in named[1]
    assert "trying the checkpoint before it" in named[0]
    assert "no intact checkpoint is left: the run starts from step 0" in named[1]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "checkpoints_damaged").iterdir()) == ["1", "2"]

    text = library_warning_format("train")(caught[-1].message, DamagedCheckpointWarning, "loop.py", 1)
    assert text.startswith("multiscale train: warning: checkpoint step 1 ") and text.count("\n") == 1
    assert "loop.py" not in text
    other = library_warning_format("train")(UserWarning("x"), UserWarning, "elsewhere.py", 7)
    assert "elsewhere.py:7" in other  # warnings of other libraries keep their usual format


# ------------------------------------------------------------------ a report refused late writes nothing

def test_a_report_refused_by_its_recommendation_or_its_flags_writes_no_folder(tmp_path, capsys):
    """Too few unique tokens for the budget is found by the recommendation, after the figures
    and predictions.csv were written: the refusal left a half-written report folder."""
    from test_report import _write_inputs

    from multiscale.errors import InputError
    from multiscale.report import write_report

    fit_dir, table = _write_inputs(tmp_path)
    out = tmp_path / "report"
    with pytest.raises(InputError, match="not enough data"):
        write_report(fit_dir, out, runs=table, family_tokens={"fam0": 10, "fam1": 10, "fam2": 10})
    assert not out.exists()

    code, err = _cli(capsys, "report", fit_dir, "--runs", table, "--out", out, "--heldout", "r18,r19,r18")
    assert code == 2 and err.startswith("multiscale report: error: --heldout") and "'r18'" in err
    assert not out.exists()


# ------------------------------------------------------------------ a sweep on a damaged corpus

def test_a_sweep_on_a_damaged_corpus_is_refused_before_any_run(tmp_path, capsys):
    """Every run failed on the cut shard one after another (exit 1, a failures file per run);
    the damage is known from the manifest before the first run."""
    corpus = _files_corpus(tmp_path, "corpus", {"de": "der die das und".split(), "fr": "le la les et".split()})
    shard = next((corpus / "train").glob("fr-*.tokens"))
    shard.write_bytes(shard.read_bytes()[:100])
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nfamilies: [germanic, romance]\npresets: [cpu-100k]\ntokens: [1000]\n"
                    "train: {seq_len: 16, batch: 4}\nmixtures: [{design: baselines, include: [uniform]}]\n")
    out = tmp_path / "sweep"
    code, err = _cli(capsys, "sweep", plan, "--out", out, "--corpus", corpus, "--no-progress")
    assert code == 2 and err.startswith("multiscale sweep: error: corpus ") and "is damaged" in err
    assert shard.name in err and "truncated" in err
    assert not out.exists()


@pytest.mark.parametrize("key", ["files", "manifest_sha256"])
def test_a_corpus_manifest_without_checksums_is_refused_with_how_to_rebuild(tmp_path, capsys, key):
    import json

    corpus = _files_corpus(tmp_path, "corpus", {"de": "der die das und".split(), "fr": "le la les et".split()})
    manifest = json.loads((corpus / "manifest.json").read_text())
    del manifest[key]
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    before = _tree(corpus)
    for command in ("info", "verify"):
        code, err = _cli(capsys, "corpus", command, corpus)
        assert code == 2 and err.startswith(f"multiscale corpus {command}: error: corpus manifest "), err
        assert len(err.strip().splitlines()) == 1 and "manifest.json" in err
        assert "records no checksums" in err and "multiscale corpus build" in err
    assert _tree(corpus) == before


def test_a_sweep_folder_whose_plans_lack_the_corpus_fingerprint_is_refused(tmp_path, monkeypatch, capsys):
    """A plan record without 'corpus_fingerprint' cannot tell which corpus the folder's runs were
    trained on: the sweep refuses the folder, naming the record, and says to use a new one."""
    import json

    from sweep_fakes import install_fake, quiet

    from multiscale.errors import InputError
    from multiscale.sweep import SweepPlan, SweepStore, run_sweep

    fake, _ = install_fake(tmp_path, monkeypatch)
    corpus = _files_corpus(tmp_path, "corpus", {"de": "der die das und".split(), "fr": "le la les et".split()})
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nfamilies: [germanic, romance]\npresets: [cpu-100k]\ntokens: [1000]\n"
                    "train: {seq_len: 16, batch: 4}\nmixtures: [{design: baselines, include: [uniform]}]\n")
    out = tmp_path / "sweep"
    run_sweep(SweepPlan.load(plan), out, corpus=corpus, train_fn=fake.train, progress=False, log=quiet)
    (record,) = (out / "plans").glob("*.json")
    rec = json.loads(record.read_text())
    del rec["corpus_fingerprint"]
    record.write_text(json.dumps(rec))
    before = _tree(out)
    code, err = _cli(capsys, "sweep", plan, "--out", out, "--corpus", corpus, "--no-progress")
    assert code == 2 and err.startswith("multiscale sweep: error: sweep plan record ") and len(err.splitlines()) == 1
    assert record.name in err and "'corpus_fingerprint'" in err and "sweep into a new folder" in err
    assert _tree(out) == before
    with pytest.raises(InputError, match="sweep into a new folder"):
        SweepStore(out).plans()


# ------------------------------------------------------------------ messages name the flag

def test_out_of_range_eval_flags_are_named_as_the_user_typed_them(tmp_path, capsys):
    corpus = _files_corpus(tmp_path, "corpus", {"de": "der die das und".split(), "fr": "le la les et".split()})
    run = tmp_path / "run"
    code, err = _cli(capsys, "train", "--corpus", corpus, "--model", "cpu-100k", "--ratios", "germanic=0.5,romance=0.5",
                     "--tokens", "640", "--seq-len", "16", "--batch-size", "4", "--eval-tokens-per-language", "1",
                     "--no-progress", "--out", run)
    assert code == 2 and "--eval-tokens-per-language" in err and "got 1" in err
    assert not run.exists()
    (tmp_path / "de.txt").write_text("ein Text " * 50)
    code, err = _cli(capsys, "corpus", "build", "--source", "files", "--input", f"de={tmp_path}/de.txt",
                     "--eval-fraction", "1.5", "--out", tmp_path / "c2", "--no-progress")
    assert code == 2 and "--eval-fraction" in err and "1.5" in err
    assert not (tmp_path / "c2").exists()


# ------------------------------------------------------------------ a sweep's run folder cut short

@pytest.mark.parametrize("damage", ["rows_cut_at_a_line", "summary_damaged", "rows_contradict"])
def test_a_damaged_run_folder_without_its_fragment_is_trained_again(tmp_path, monkeypatch, damage):
    """With the fragment gone, the sweep rebuilt it from the run folder's rows.csv: one cut at a
    line boundary lost a family unnoticed (the run counted complete), a contradicting one failed
    the run on every later sweep instead of training it again."""
    import json

    import pandas as pd
    from sweep_fakes import check_table, install_fake, make_plan, quiet

    from multiscale.sweep import run_sweep

    fake, _ = install_fake(tmp_path, monkeypatch)
    plan, out = make_plan(count=2), tmp_path / "sweep"
    run_sweep(plan, out, train_fn=fake.train, progress=False, log=quiet)
    run = plan.expand()[0].run_id
    rdir = out / "runs" / run
    rows = pd.read_csv(rdir / "rows.csv")
    (rdir / "summary.json").write_text(json.dumps({"run": run, "rows": rows.to_dict("records")}))
    (out / "rows" / f"{run}.csv").unlink()
    if damage == "rows_cut_at_a_line":
        rows.iloc[:-1].to_csv(rdir / "rows.csv", index=False)
    elif damage == "summary_damaged":
        (rdir / "summary.json").write_text('{"run": ')
    else:
        rows.assign(p=rows["p"] * 2).to_csv(rdir / "rows.csv", index=False)
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setenv("FAKE_LOG", str(log))
    result = run_sweep(plan, out, train_fn=fake.train, progress=False, log=quiet)
    assert [p.name.split(".")[0] for p in log.iterdir()] == [run.split(".")[0]]  # trained once again
    assert result.failed == () and run in result.completed
    check_table(out, plan)
