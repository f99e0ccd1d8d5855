"""The sweep folder: checksummed fragments, damage detection, quarantine, consolidation, plans,
failures."""

import dataclasses
import json

import pandas as pd
import pytest
from sweep_fakes import check_table, install_fake, make_plan, quiet

from multiscale import sweep
from multiscale.errors import DamagedFileError, MissingFileError
from multiscale.sweep import DamagedFragmentWarning, SweepStore
from multiscale.sweep.store import FRAGMENT_MARK, check_fragment, fragment_text

ROWS = [{"family": "germanic", "N": 1e5, "D": 1000, "p": 0.5, "loss": 3.25},
        {"family": "romance", "N": 1e5, "D": 1000, "p": 0.3, "loss": 3.5},
        {"family": "slavic", "N": 1e5, "D": 1000, "p": 0.2, "loss": 4.0}]


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    return install_fake(tmp_path, monkeypatch)


def test_fragment_round_trip_with_checksum_line(tmp_path):
    store = SweepStore(tmp_path / "sw")
    store.write_fragment("r1", ROWS)
    text = store.fragment_path("r1").read_text()
    last = text.splitlines()[-1]
    assert last.startswith(FRAGMENT_MARK + " rows=3 sha256=") and len(last.split("sha256=")[1]) == 64
    df = store.read_fragment("r1")
    assert list(df.columns[:2]) == ["run", "family"] and (df["run"] == "r1").all()
    assert df["loss"].tolist() == [3.25, 3.5, 4.0]
    assert store.fragment_state("r1") == ("intact", None) and store.scan().intact == ("r1",)
    with pytest.raises(ValueError, match="no run-table rows"):
        store.write_fragment("r2", [])


@pytest.mark.parametrize("damage, reason", [
    (lambda t: "".join(t.splitlines(keepends=True)[:3]), "no checksum line"),     # cut to 3 lines
    (lambda t: t[: len(t) - 40], "no final newline"),                              # cut mid-line
    (lambda t: t.replace("3.25", "3.26"), "checksum mismatch"),                    # bytes changed
    (lambda t: t.replace("rows=3", "rows=4"), "says 4"),                           # wrong row count
    (lambda t: t.split(FRAGMENT_MARK)[0], "no checksum line"),                     # older version
    (lambda t: "", "no final newline"),                                            # empty
])
def test_damaged_fragments_are_detected(tmp_path, damage, reason):
    store = SweepStore(tmp_path / "sw")
    store.write_fragment("r1", ROWS)
    store.write_fragment("r2", ROWS)
    path = store.fragment_path("r1")
    path.write_text(damage(path.read_text()))
    state, why = store.fragment_state("r1")
    assert state == "damaged" and reason in why
    with pytest.raises(DamagedFileError, match=r"r1\.csv.*damaged"):
        store.read_fragment("r1")
    with pytest.warns(DamagedFragmentWarning, match=r"r1\.csv.*damaged"):
        scan = store.scan()
    assert scan.intact == ("r2",) and tuple(d[0] for d in scan.damaged) == ("r1",)
    with pytest.warns(DamagedFragmentWarning):
        assert store.consolidate() == 3  # returns at once, without the damaged rows
    assert set(pd.read_csv(store.runs_csv)["run"]) == {"r2"}


def test_a_fragment_of_another_run_is_damaged():
    body = fragment_text("r1", ROWS)
    assert check_fragment("r1", body.encode())
    with pytest.raises(DamagedFileError, match="another run"):
        check_fragment("r9", body.encode())


def test_quarantine_moves_aside_and_keeps_the_bytes(tmp_path):
    store = SweepStore(tmp_path / "sw")
    store.write_fragment("r1", ROWS)
    damaged = store.fragment_path("r1").read_text()[:50]
    store.fragment_path("r1").write_text(damaged)
    moved = store.quarantine("r1", "cut short")
    assert not store.fragment_path("r1").exists()
    assert open(moved).read() == damaged
    note = json.loads(open(moved[: -len(".csv")] + ".json").read())
    assert note["run"] == "r1" and note["reason"] == "cut short"
    assert store.quarantine("r1", "again") is None  # already gone


def test_consolidate_repairs_a_stale_table(tmp_path, fake):
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    sweep.run_sweep(plan, out, train_fn=mod.train, progress=False, log=quiet)
    full = (out / "runs.csv").read_text()
    # another process replaced runs.csv with an older listing: the next consolidation repairs it
    (out / "runs.csv").write_text(full.splitlines()[0] + "\n")
    assert sweep.consolidate(out) == len(pd.read_csv(out / "runs.csv")) == full.count("\n") - 1
    check_table(out, plan)


def test_consolidation_survives_an_interleaved_writer(tmp_path, fake, monkeypatch):
    """Process A reads the fragments, B adds one and consolidates, then A replaces runs.csv with
    its stale reading: A's check against a fresh listing must notice and rebuild."""
    mod, _ = fake
    plan, out = make_plan(3), tmp_path / "sw"
    first, late = plan.expand()[:2], plan.expand()[2]
    sweep.run_sweep(plan, out, train_fn=mod.train, runs=first, progress=False, log=quiet)
    real_read = SweepStore._read_all
    raced = []

    def read_then_race(self, ids=None):
        got = real_read(self, ids)
        if not raced:
            raced.append(True)
            other = SweepStore(out)
            other.write_fragment(late.run_id, mod.train(late, tmp_path / "r", None, False))
            monkeypatch.setattr(SweepStore, "_read_all", real_read)
            other.consolidate()  # B finishes first, with a complete table
            monkeypatch.setattr(SweepStore, "_read_all", read_then_race)
        return got

    monkeypatch.setattr(SweepStore, "_read_all", read_then_race)
    SweepStore(out).consolidate()  # A: stale reading, then verification
    assert raced
    check_table(out, plan)


def test_a_damaged_fragment_replaced_meanwhile_is_not_lost(tmp_path, monkeypatch):
    """A saw r1 damaged; before A's check, r1 was rewritten intact (its run was trained again) and
    consolidated by its writer; A's stale table must not be the last word."""
    store = SweepStore(tmp_path / "sw")
    store.write_fragment("r2", ROWS)
    store.fragment_path("r1").parent.mkdir(parents=True, exist_ok=True)
    store.fragment_path("r1").write_text("run,family\nr1,germ")
    real_read = SweepStore._read_all
    calls = []

    def read_then_repair(self, ids=None):
        got = real_read(self, ids)
        if not calls:
            calls.append(1)
            store.write_fragment("r1", ROWS)
        return got

    monkeypatch.setattr(SweepStore, "_read_all", read_then_repair)
    assert SweepStore(tmp_path / "sw").consolidate() == 6  # no warning: the fragment is intact by then
    assert set(pd.read_csv(store.runs_csv)["run"]) == {"r1", "r2"}


def test_plans_planned_runs_and_corpus_tokens(tmp_path, fake):
    mod, _ = fake
    out = tmp_path / "sw"
    store = SweepStore(out)
    with pytest.raises(MissingFileError, match="holds no plan"):
        store.plans()
    plan = make_plan(2)
    runs = plan.expand()
    store.save_plan("t", runs, corpus="/c", family_tokens={"germanic": 5, "romance": 6, "slavic": 7})
    held = [dataclasses.replace(r, heldout=True) for r in make_plan(1, presets=("cpu-200k",)).expand()]
    store.save_plan("h", held, corpus=None, family_tokens=None)
    assert [r["run_id"] for r in store.planned_runs(heldout=True)] == [held[0].run_id]
    assert {r["run_id"] for r in store.planned_runs(heldout=False)} == {r.run_id for r in runs}
    assert store.corpus_tokens() == {"germanic": 5, "romance": 6, "slavic": 7} and store.corpus() == "/c"
    assert sorted(store.plan_names()) == ["h", "t"]
    (out / "plans" / "zz-broken.json").write_text('{"name": "x"')
    with pytest.raises(DamagedFileError, match="zz-broken.json"):
        store.plans()


def test_failures_are_recorded_listed_and_cleared(tmp_path):
    store = SweepStore(tmp_path / "sw")
    try:
        raise RuntimeError("loss is NaN")
    except RuntimeError as err:
        store.record_failure("r1", err)
    (rec,) = store.failures()
    assert rec["run"] == "r1" and "loss is NaN" in rec["error"] and rec["unix"] > 0
    store.consolidate()
    assert json.loads(open(store.failures_jsonl).read())["run"] == "r1"
    store.clear_failure("r1")
    store.clear_failure("r1")
    assert store.failures() == [] and store.failure("r1") is None


@pytest.mark.parametrize("bad, named", [
    ([{k: v for k, v in r.items() if k != "family"} for r in ROWS], "family"),
    ([{**r, "loss": float("nan")} for r in ROWS], "loss"),
    ([{**ROWS[0], "N": 1e5}, {**ROWS[1], "N": 2e5}, ROWS[2]], "N"),
    ([{**r, "p": 0.9} for r in ROWS], "sum"),
])
def test_rows_that_are_not_a_run_table_are_refused(tmp_path, bad, named):
    from multiscale.runs import RunTableError

    store = SweepStore(tmp_path / "sw")
    with pytest.raises(RunTableError, match=named):
        store.write_fragment("r1", bad)
    assert not store.fragment_path("r1").exists()
