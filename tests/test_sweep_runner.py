"""The sweep runner: each run once, failures, kill and restart, damaged fragments, leases,
concurrent sweeps on one folder (sharded and not), the `sweep` command.

These tests use a stand-in trainer (tests/sweep_fakes.py) so that they exercise the sweep's
bookkeeping quickly; tests/test_sweep_e2e.py runs a sweep with the real trainer.
"""

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_fakes import FAMS, check_table, cli, install_fake, make_plan, quiet, write_plan
from sweep_fakes import plan_dict as sweep_plan_dict

from multiscale import sweep
from multiscale.sweep import SweepPlan, SweepStore
from multiscale.sweep.lease import new_owner


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    return install_fake(tmp_path, monkeypatch)


def _sweep(plan, out, train_fn, **kw):
    return sweep.run_sweep(plan, out, train_fn=train_fn, progress=False, log=kw.pop("log", quiet), **kw)


def test_sweep_runs_each_run_once_and_skips_complete(tmp_path, fake):
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    calls = []

    def counting(run, rdir, corpus, progress):
        calls.append(run.run_id)
        return mod.train(run, rdir, corpus, progress)

    res = _sweep(plan, out, counting)
    assert len(res.completed) == 3 and not res.failed and not res.skipped
    df = check_table(out, plan)
    assert (df["loss"] > 0).all() and {"p_germanic", "p_slavic"} <= set(df.columns)
    assert len(SweepStore(out).planned_runs()) == 3
    res2 = _sweep(plan, out, counting)
    assert len(res2.skipped) == 3 and not res2.completed
    assert len(calls) == 3  # nothing trained twice
    assert not list((out / "claims").iterdir())  # every lease given back
    check_table(out, plan)


def test_finished_but_unrecorded_run_is_harvested_not_retrained(tmp_path, fake):
    mod, _ = fake
    plan, out = make_plan(2), tmp_path / "sw"
    first = plan.expand()[0]
    mod.train(first, SweepStore(out).run_dir(first.run_id), None, False)  # trainer done, no fragment yet

    def never(run, rdir, corpus, progress):
        if run.run_id == first.run_id:
            raise AssertionError("retrained a finished run")
        return mod.train(run, rdir, corpus, progress)

    _sweep(plan, out, never)
    check_table(out, plan)


def test_failed_run_is_recorded_and_sweep_goes_on(tmp_path, fake, monkeypatch):
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    bad = plan.expand()[1]
    monkeypatch.setenv("FAKE_FAIL", bad.mixture)
    res = _sweep(plan, out, mod.train)
    assert res.failed == (bad.run_id,) and len(res.completed) == 2
    fails = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert fails[0]["run"] == bad.run_id and "NaN at step 7" in fails[0]["error"]
    assert set(pd.read_csv(out / "runs.csv")["run"]) == {r.run_id for r in plan.expand()} - {bad.run_id}
    monkeypatch.delenv("FAKE_FAIL")  # fixed: the rerun trains only the failed run and clears its failure
    res2 = _sweep(plan, out, mod.train)
    assert res2.completed == (bad.run_id,)
    assert (out / "failures.jsonl").read_text() == ""
    check_table(out, plan)


def _cut_three_lines(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))


def _cut_mid_line(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2 + 3])


def _flip_a_digit(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    row = lines[1]
    k = max(i for i, c in enumerate(row) if c.isdigit())
    lines[1] = row[:k] + ("1" if row[k] != "1" else "2") + row[k + 1:]
    path.write_text("".join(lines))


@pytest.mark.parametrize("damage", [_cut_three_lines, _cut_mid_line, _flip_a_digit])
@pytest.mark.parametrize("run_dir_kept", [False, True])
def test_damaged_fragment_is_quarantined_and_run_again(tmp_path, fake, damage, run_dir_kept):
    mod, _ = fake
    plan, out = make_plan(4, presets=("cpu-100k", "cpu-200k")), tmp_path / "sw"  # 8 runs, 3 rows each
    _sweep(plan, out, mod.train)
    store = SweepStore(out)
    victim = plan.expand()[2].run_id
    original = store.fragment_path(victim).read_text()
    damage(Path(store.fragment_path(victim)))
    if not run_dir_kept:  # nothing to harvest: the run must be trained again
        import shutil

        shutil.rmtree(store.run_dir(victim))
    with pytest.warns(UserWarning, match=f"{victim}.csv.* is damaged"):
        assert store.consolidate() == 7 * 3
    assert victim not in set(pd.read_csv(store.runs_csv)["run"])  # no junk row, no loop
    trained, lines = [], []

    def counting(run, rdir, corpus, progress):
        trained.append(run.run_id)
        return mod.train(run, rdir, corpus, progress)

    with pytest.warns(UserWarning, match="is damaged"):
        res = _sweep(plan, out, counting, log=lines.append)
    assert res.repaired == (victim,) and res.completed == (victim,) and not res.failed
    assert trained == ([] if run_dir_kept else [victim])  # harvested from its run folder when it can be
    assert any(victim in line and "damaged" in line and "quarantine" in line for line in lines)
    assert store.fragment_path(victim).read_text() == original  # the same rows, written whole again
    (moved,) = (out / "quarantine").glob(f"{victim}.*.csv")  # kept, not deleted
    note = json.loads(moved.with_suffix(".json").read_text())
    assert note["run"] == victim and note["reason"]
    check_table(out, plan)


def test_a_run_held_by_a_live_process_is_waited_for(tmp_path, fake):
    """Another process holds run X (its heartbeat keeps the lease alive) and finishes it while this
    sweep runs: the sweep trains the others, comes back to X and finds it done."""
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    store = SweepStore(out)
    x = plan.expand()[0]
    other = store.claim(x.run_id, new_owner(), lease_s=0.5)
    assert other is not None

    def finish_later():
        time.sleep(1.0)
        store.write_fragment(x.run_id, mod.train(x, tmp_path / "elsewhere", None, False))
        other.release()

    t = threading.Thread(target=finish_later)
    t.start()
    trained = []
    res = _sweep(plan, out, lambda run, *a: trained.append(run.run_id) or mod.train(run, *a),
                 lease_s=0.5, poll_s=0.05)
    t.join()
    assert x.run_id not in trained and res.elsewhere == (x.run_id,) and len(res.completed) == 2
    check_table(out, plan)


def test_an_expired_lease_is_taken_over_at_the_end(tmp_path, fake):
    """A killed process left run X claimed: the sweep trains the other runs first, then takes X over
    once its lease has expired."""
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    store = SweepStore(out)
    x = plan.expand()[0]
    dead = store.claim(x.run_id, new_owner(), lease_s=1.0)
    dead._stop.set()  # the owner dies: no more heartbeats, the claim stays behind
    lines = []
    res = _sweep(plan, out, mod.train, lease_s=1.0, poll_s=0.05, log=lines.append)
    assert res.completed[-1] == x.run_id and len(res.completed) == 3
    assert any("taking it over" in line for line in lines)
    check_table(out, plan)


def test_two_plans_share_one_sweep_folder(tmp_path, fake):
    mod, _ = fake
    out = tmp_path / "sw"
    a = make_plan(2)
    b = SweepPlan.from_dict({"name": "b", "presets": ["cpu-200k"], "tokens": [1000], "families": ["germanic",
                             "romance", "slavic"], "train": {"seq_len": 16, "batch": 4},
                             "mixtures": [{"design": "vary_one", "grid": [0.5], "heldout": True}]})
    _sweep(a, out, mod.train)
    _sweep(b, out, mod.train)
    store = SweepStore(out)
    assert len(store.planned_runs()) == 2 + 3 and len(store.planned_runs(heldout=True)) == 3
    assert sorted(store.plan_names()) == ["b", "t"]
    assert pd.read_csv(out / "runs.csv")["run"].nunique() == 5


def test_cli_dry_run_and_errors(tmp_path, fake, capsys):
    from multiscale.cli import main

    plan_file = write_plan(tmp_path, 5)
    assert main(["sweep", str(plan_file), "--out", str(tmp_path / "o"), "--shard", "1/2", "--dry-run",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["planned"] == 5 and len(d["runs"]) == 2 and d["runs"][0]["state"] == "planned"
    assert main(["sweep", str(plan_file), "--out", str(tmp_path / "o"), "--shard", "2/2"]) == 2
    assert "--shard '2/2'" in capsys.readouterr().err
    assert main(["sweep", str(plan_file), "--out", str(tmp_path / "o"), "--train-fn", "nowhere"]) == 2
    assert "--train-fn 'nowhere'" in capsys.readouterr().err


@pytest.mark.parametrize("text, named", [
    ("mixtures: [{design: vary_one}]\n", "mixtures[0].grid"),
    ("mixtures: [{design: vary_one, grid: [0.5]}]\ncolour: red\n", "unknown plan key(s) ['colour']"),
    ("mixtures: [{design: vary_one, grid: [0.5]}]\ntrain: {sequence_len: 64}\n",
     "train: unknown key(s) ['sequence_len']"),
    ("mixtures: [{design: vary_one, grid: [0.5], presets: [cpu-100k]}]\n", None),
])
def test_dry_run_catches_plan_mistakes(tmp_path, capsys, text, named):
    from multiscale.cli import main

    f = tmp_path / "p.yaml"
    f.write_text("presets: [cpu-100k]\ntokens: [8192]\nfamilies: [germanic, romance]\n" + text)
    rc = main(["sweep", str(f), "--out", str(tmp_path / "o"), "--dry-run"])
    err = capsys.readouterr().err
    if named is None:
        assert rc == 0 and not err
        return
    assert rc == 2 and named in err and str(f) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written


def test_dry_run_names_an_unknown_preset(tmp_path, capsys):
    from multiscale.cli import main

    f = tmp_path / "p.yaml"
    f.write_text("presets: [cpu-100k, gpt-5]\ntokens: [8192]\nfamilies: [germanic, romance]\n"
                 "mixtures: [{design: vary_one, grid: [0.5]}]\n")
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "presets[1]: unknown model preset 'gpt-5'" in err and "cpu-100k" in err


# ------------------------------------------------------------------------------ several processes


@pytest.mark.slow
def test_killed_sweep_restarts_without_losing_or_duplicating_rows(tmp_path, fake):
    _, fakedir = fake
    plan_file = write_plan(tmp_path, 12)
    plan = SweepPlan.load(plan_file)
    out = tmp_path / "sw"
    store = SweepStore(out)
    cmd, env = cli(["sweep", str(plan_file), "--out", str(out), "--train-fn", "fake_trainer:train",
                    "--no-progress", "--lease-seconds", "1"], fakedir, {"FAKE_SLEEP": "0.15"})
    for target in (3, 7):  # kill twice, at different points
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(store.fragment_ids()) < target and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(store.fragment_ids()) < 12, "sweep finished before it was killed"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check_table(out, plan)
    assert "12 runs planned" in done.stdout


def _run_together(commands):
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd, env in commands]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        results.append(json.loads(stdout))
    return results


@pytest.mark.slow
def test_two_shards_appending_at_once_lose_no_row(tmp_path, fake):
    _, fakedir = fake
    plan_file = write_plan(tmp_path, 30, presets=("cpu-100k", "cpu-200k"))
    out = tmp_path / "sw"
    results = _run_together([cli(["sweep", str(plan_file), "--out", str(out), "--shard", f"{i}/2",
                                  "--train-fn", "fake_trainer:train", "--json"], fakedir) for i in range(2)])
    assert sum(len(r["completed"]) for r in results) == 60
    assert not set(results[0]["completed"]) & set(results[1]["completed"])
    check_table(out, SweepPlan.load(plan_file))


@pytest.mark.slow
def test_two_unsharded_sweeps_on_one_folder_train_each_run_once(tmp_path, fake):
    _, fakedir = fake
    plan_file = write_plan(tmp_path, 12)
    plan = SweepPlan.load(plan_file)
    out, trained = tmp_path / "sw", tmp_path / "trained"
    trained.mkdir()
    env = {"FAKE_SLEEP": "0.1", "FAKE_LOG": str(trained)}
    results = _run_together([cli(["sweep", str(plan_file), "--out", str(out), "--train-fn",
                                  "fake_trainer:train", "--json", "--no-progress"], fakedir, env)
                             for _ in range(2)])
    ids = {r.run_id for r in plan.expand()}
    done = [set(r["completed"]) for r in results]
    assert not done[0] & done[1] and done[0] | done[1] == ids  # each run completed by exactly one
    assert all(done), "one process did all the work: the test did not run them at once"
    assert sorted(p.name.rsplit(".", 2)[0] for p in trained.iterdir()) == sorted(ids)  # trained once each
    for r, mine in zip(results, done):
        assert set(r["elsewhere"]) | set(r["skipped"]) | mine == ids and not r["failed"]
    check_table(out, plan)


def test_cli_checks_paths_and_flags_before_any_work(tmp_path, capsys):
    from multiscale.cli import main

    plan_file = write_plan(tmp_path, 2)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(["--out", str(a_file)], "is a file"),
             (["--out", str(a_file / "sub")], "which is a file"),
             (["--out", str(tmp_path / "o"), "--corpus", str(tmp_path / "nowhere")], "no corpus there"),
             (["--out", str(tmp_path / "o"), "--lease-seconds", "nan"], "--lease-seconds"),
             (["--out", str(tmp_path / "o"), "--lease-seconds", "0"], "--lease-seconds")]
    for extra, named in cases:
        assert main(["sweep", str(plan_file), *extra, "--train-fn", "fake_trainer:train"]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    assert main(["sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def _small_corpus(tmp_path, name, cap=None):
    """A corpus of three one-language families (germanic, romance, slavic), 12 short documents
    each, in tmp_path/name; `cap`: max_train_tokens per family."""
    from multiscale.data.corpus import build_corpus
    from multiscale.data.sources import FilesSource

    inputs = {}
    for lang, word in (("de", "Haus"), ("fr", "maison"), ("ru", "dom")):
        d = tmp_path / "docs" / lang
        d.mkdir(parents=True, exist_ok=True)
        for i in range(12):
            (d / f"{i}.txt").write_text(f"{word} {i} " * 40)
        inputs[lang] = str(d / "*.txt")
    grouping = {"germanic": ["de"], "romance": ["fr"], "slavic": ["ru"]}
    return build_corpus(FilesSource(inputs), tmp_path / name, grouping=grouping, eval_docs_per_language=2,
                        max_train_tokens=cap)


def test_rows_carry_the_corpus_unique_tokens(tmp_path, fake):
    """Every row the sweep writes has `unique_tokens` = its family's training tokens in the corpus
    (a capped family: the capped count); the mixture fits read it as log U."""
    from multiscale.laws.data import mixture_arrays
    from multiscale.runs import UNIQUE_TOKENS, validate_runs

    mod, _ = fake
    corpus = _small_corpus(tmp_path, "c", cap={"germanic": 1000})
    plan, out = make_plan(3), tmp_path / "sw"
    first = plan.expand(list(FAMS), family_tokens={f: corpus.train_tokens(f) for f in FAMS})[0]
    mod.train(first, SweepStore(out).run_dir(first.run_id), None, False)  # harvested, not trained
    _sweep(plan, out, mod.train, corpus=corpus)
    df = validate_runs(check_table(out, plan))
    expected = df["family"].map({f: corpus.train_tokens(f) for f in FAMS})
    assert (df[UNIQUE_TOKENS] == expected).all() and df[UNIQUE_TOKENS].min() <= 1000
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert header.index(UNIQUE_TOKENS) < header.index("p_germanic")
    logU = mixture_arrays(df, tuple(FAMS))["logU_R"]
    assert logU == pytest.approx(np.log(expected.to_numpy(dtype=float)))
    # without a corpus (a stand-in trainer and no --corpus) there is nothing to write
    _sweep(make_plan(2), tmp_path / "bare", mod.train)
    assert UNIQUE_TOKENS not in pd.read_csv(tmp_path / "bare" / "runs.csv").columns


def test_a_configuration_finished_under_another_name_is_not_trained_again(tmp_path, fake):
    """Two plans that name one configuration differently (the second CPU study's stage C named a
    run of stage A 'next7-slavic0.5') share one training and one measurement in runs.csv."""
    mod, _ = fake
    out = tmp_path / "sw"
    ratios = {f: 1.0 / len(FAMS) for f in FAMS}
    first = SweepPlan.from_dict({**sweep_plan_dict(), "mixtures": [{"name": "even", "ratios": ratios}]})
    again = SweepPlan.from_dict({**sweep_plan_dict(), "name": "t2",
                                 "mixtures": [{"name": "next1-even", "ratios": ratios},
                                              {"name": "skewed", "ratios": {**ratios, FAMS[0]: 0.5},
                                               "normalize": True}]})
    calls = []

    def counting(run, rdir, corpus, progress):
        calls.append(run.run_id)
        return mod.train(run, rdir, corpus, progress)

    lines = []
    _sweep(first, out, counting)
    res = _sweep(again, out, counting, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    (even,), (renamed, skewed) = first.expand(), again.expand()
    assert renamed.run_id != even.run_id
    assert calls == [even.run_id, skewed.run_id]  # the renamed copy was not trained
    assert res.same_as == ((renamed.run_id, even.run_id),) and res.completed == (skewed.run_id,)
    assert res.to_dict()["same_as"] == {renamed.run_id: even.run_id}
    assert any(f"run {renamed.run_id}: the configuration of finished run {even.run_id}" in ln for ln in lines)
    assert set(pd.read_csv(out / "runs.csv")["run"]) == {even.run_id, skewed.run_id}
    # another seed is another configuration, and is trained
    seeded = SweepPlan.from_dict({**sweep_plan_dict(), "name": "t3", "seeds": [1],
                                  "mixtures": [{"name": "even", "ratios": ratios}]})
    assert _sweep(seeded, out, counting).completed == (seeded.expand()[0].run_id,)


def test_a_sweep_folder_refuses_a_second_corpus(tmp_path, fake):
    """Run ids name a configuration, not its data: a folder swept on one corpus refuses another
    (here: the same documents with germanic capped), naming both, and keeps its runs; the same
    corpus built again elsewhere has the same fingerprint and is accepted."""
    from multiscale.errors import InputError

    mod, _ = fake
    first = _small_corpus(tmp_path, "c1")
    again = _small_corpus(tmp_path, "c2")
    capped = _small_corpus(tmp_path, "c3", cap={"germanic": 1000})
    assert first.fingerprint == again.fingerprint != capped.fingerprint
    plan, out = make_plan(2), tmp_path / "sw"
    assert len(_sweep(plan, out, mod.train, corpus=first).completed) == 2
    before = (out / "runs.csv").read_bytes()
    with pytest.raises(InputError, match=r"(?s)sweep folder .*c1.*fingerprint.*c3.*new folder"):
        _sweep(plan, out, mod.train, corpus=capped)
    assert (out / "runs.csv").read_bytes() == before
    assert {r.get("corpus_fingerprint") for r in SweepStore(out).plans()} == {first.fingerprint}
    assert len(_sweep(plan, out, mod.train, corpus=again).skipped) == 2
