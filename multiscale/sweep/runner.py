"""Running a sweep: every planned run once, into one shared run table.

Any number of processes, on one machine or several, may sweep one folder at once: each run is
trained by the holder of its lease (lease.py), written as an atomic checksummed fragment
(store.py) and consolidated into runs.csv without a lock. A killed run resumes from its
checkpoints; a finished run without a fragment is harvested. An engine (engines.py: Ray, SLURM)
may schedule the runs instead of plan order. The protocol: docs/design.md, "Sweeps: plan, runner,
store" and docs/decisions/2026-11-30-sweep-leases-and-fragments.md.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from multiscale.errors import InputError
from multiscale.fileio import as_path
from multiscale.sweep.engines import Engine, Settled
from multiscale.sweep.lease import DEFAULT_LEASE_S, new_owner
from multiscale.sweep.plan import PlannedRun, SweepPlan, configuration_digest, shard_runs
from multiscale.sweep.store import SweepStore

# train_fn(run, run_dir, corpus, progress) -> rows (a DataFrame or a list of dicts)
TrainFn = Callable[[PlannedRun, Any, Any, bool], Any]


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What one `run_sweep` call did; `runs_csv` is the consolidated table's path."""

    out_dir: str
    shard: tuple[int, int]
    planned: int            # runs in the whole plan
    assigned: int           # runs of this shard
    skipped: tuple[str, ...]   # already complete before this call
    completed: tuple[str, ...]  # trained (or harvested) by this call
    failed: tuple[str, ...]     # failed in this call (see failures.jsonl)
    runs_csv: str
    wall_s: float
    elsewhere: tuple[str, ...] = ()  # completed by another process during this call
    repaired: tuple[str, ...] = ()   # had a damaged fragment, quarantined (and run again)
    same_as: tuple[tuple[str, str], ...] = ()  # (planned run, finished run of the same configuration)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("skipped", "completed", "failed", "shard", "elsewhere", "repaired"):
            d[k] = list(d[k])
        d["same_as"] = {planned: finished for planned, finished in self.same_as}
        return d


def finished_configurations(done: Iterable[str]) -> dict[str, str]:
    """Configuration digest -> the first (sorted) finished run id that has it."""
    out: dict[str, str] = {}
    for run_id in sorted(done):
        digest = configuration_digest(run_id)
        if digest is not None:
            out.setdefault(digest, run_id)
    return out


def _split_unfinished(mine: Sequence[PlannedRun], done: set[str]):
    """The runs of `mine` not finished under their own id, as (pairs (planned id, finished id)
    of a run whose configuration (the id's digest) a finished run of another name has, runs to
    train). The trainer is deterministic, so such a run is not trained again."""
    configs = finished_configurations(done)
    same_as, todo = [], []
    for r in mine:
        if r.run_id not in done:
            finished = configs.get(configuration_digest(r.run_id))
            if finished is None:
                todo.append(r)
            else:
                same_as.append((r.run_id, finished))
    return tuple(same_as), todo


# ------------------------------------------------------------------------------ training


def default_train_fn(run: PlannedRun, rdir, corpus, progress: bool):
    """Trains one planned run with multiscale.train.run_training; returns its rows."""
    import pandas as pd

    from multiscale.train import TrainConfig, run_training

    config = TrainConfig(corpus=str(corpus), model=run.preset, tokens=run.tokens,
                         ratios=dict(run.ratios), seed=run.seed, run_name=run.run_id,
                         out=str(rdir), **dict(run.train))
    summary = run_training(config, progress=progress)
    rows_path = as_path(rdir) / "rows.csv"
    if rows_path.exists():
        return pd.read_csv(io.StringIO(rows_path.read_text()))
    return pd.DataFrame(summary["rows"])


def with_unique_tokens(rows, unique_tokens):
    """A run's rows as a DataFrame with each row's family's unique training tokens in the corpus
    as the ``unique_tokens`` column (empty for a family the corpus lacks), in
    `multiscale.runs.column_order`. Unchanged when `unique_tokens` is None (no corpus)."""
    import pandas as pd

    from multiscale.runs import MIXTURE_PREFIX, UNIQUE_TOKENS

    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if unique_tokens is None or "family" not in df.columns:
        return df
    values = df["family"].astype(str).str.strip().map(
        {f: float(u) for f, u in unique_tokens.items()})
    df = df.drop(columns=[UNIQUE_TOKENS], errors="ignore")
    cols = list(df.columns)
    at = next((i for i, c in enumerate(cols) if str(c).startswith(MIXTURE_PREFIX)), len(cols))
    df.insert(at, UNIQUE_TOKENS, values.astype("Int64") if values.notna().all() else values)
    return df


def finished_rows(rdir):
    """Rows of a run whose trainer already finished, else None (trained again, from its last
    checkpoint). Finished: summary.json readable; rows.csv whole and a valid run table, with the
    (run, family) pairs summary.json lists (a rows.csv cut at a line boundary loses a family)."""
    import pandas as pd

    from multiscale.runs import validate_runs

    rdir = as_path(rdir)
    rows, summary = rdir / "rows.csv", rdir / "summary.json"
    if not (rows.exists() and summary.exists()):
        return None
    text = rows.read_text()
    records = list(csv.reader(io.StringIO(text)))
    if not text.endswith("\n") or len(records) < 2 or any(len(r) != len(records[0]) for r in records):
        return None
    try:
        listed = json.loads(summary.read_text()).get("rows")
        df = pd.read_csv(io.StringIO(text))
        validate_runs(df, source=str(rows))
    except (ValueError, AttributeError, UnicodeDecodeError):  # InputError is a ValueError
        return None
    if isinstance(listed, list) and _pairs(listed) != _pairs(df.to_dict("records")):
        return None
    return df


def _pairs(rows) -> set[tuple[str, str]]:
    return {(str(r.get("run")).strip(), str(r.get("family")).strip()) for r in rows if isinstance(r, dict)}


def _open_corpus(corpus):
    """A Corpus from a corpus folder or a Corpus."""
    from multiscale.data.corpus import Corpus

    return corpus if hasattr(corpus, "grouping") else Corpus.open(str(corpus))


def corpus_info(corpus) -> tuple[tuple[str, ...], dict[str, int]]:
    """(family names, unique training tokens per family) of a corpus folder or Corpus."""
    c = _open_corpus(corpus)
    fams = tuple(c.grouping.family_names)
    return fams, {f: int(c.train_tokens(f)) for f in fams}


def plan_runs(plan: SweepPlan, corpus=None) -> list[PlannedRun]:
    """Expands `plan` against a corpus (path or Corpus) or, without one, the plan's families."""
    return _expand(plan, corpus)[0]


def _expand(plan: SweepPlan, corpus) -> tuple[list[PlannedRun], dict[str, int] | None]:
    if corpus is None:
        return plan.expand(), None
    fams, counts = corpus_info(corpus)
    return plan.expand(fams, family_tokens=counts), counts


# ------------------------------------------------------------------------------ one session


@dataclasses.dataclass
class _Session:
    """One `run_sweep` call's work on a folder: claims, trains, records."""

    store: SweepStore
    train_fn: TrainFn
    corpus: Any
    progress: bool
    log: Callable[..., Any]
    lease_s: float
    unique_tokens: dict[str, int] | None = None  # family -> unique training tokens of the corpus
    owner: dict[str, Any] = dataclasses.field(default_factory=new_owner)
    started: float = dataclasses.field(default_factory=time.time)
    completed: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    elsewhere: list[str] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)

    def attempt(self, run: PlannedRun) -> bool:
        """Settles `run` if this process can claim it now; False while another live process
        holds it."""
        lease = self.store.claim(run.run_id, self.owner, self.lease_s)
        if lease is None:
            return False
        with lease:
            if lease.taken_over:
                self.log(f"  run {run.run_id}: its lease expired (owner gone); taking it over")
            self._settle(run)
        return True

    def _settle(self, run: PlannedRun) -> None:
        state, reason = self.store.fragment_state(run.run_id)
        if state == "intact":
            self.elsewhere.append(run.run_id)
            return
        if state == "damaged":
            moved = self.store.quarantine(run.run_id, reason)
            self.log(f"  run {run.run_id}: fragment {self.store.fragment_path(run.run_id)} is damaged "
                     f"({reason}); moved to {moved}; running it again")
            self.repaired.append(run.run_id)
        fail = self.store.failure(run.run_id)
        if fail is not None and float(fail.get("unix", 0)) >= self.started and run.run_id not in self.failed:
            self.failed.append(run.run_id)  # failed in another process during this call
            return
        self._train(run)

    def _train(self, run: PlannedRun) -> None:
        rdir = self.store.run_dir(run.run_id)
        try:
            rows = finished_rows(rdir)
            if rows is None:
                rows = self.train_fn(run, rdir, self.corpus, self.progress)
            self.store.write_fragment(run.run_id, with_unique_tokens(rows, self.unique_tokens))
        except Exception as err:  # a failed run is recorded and the sweep goes on
            self.store.record_failure(run.run_id, err)
            self.failed.append(run.run_id)
            self.log(f"  run {run.run_id} FAILED: {type(err).__name__}: {err}")
            self.store.consolidate()
            return
        self.store.clear_failure(run.run_id)
        self.completed.append(run.run_id)
        self.store.consolidate()

    def work(self, todo: Sequence[PlannedRun], poll_s: float) -> None:
        """Every run of `todo` once: first those free now, then those other processes held."""
        waiting = []
        for k, run in enumerate(_progress(todo, self.progress, "runs")):
            self.log(f"[{k + 1}/{len(todo)}] {run.run_id}  ({run.preset}, D={run.tokens:,} tokens, "
                     f"p={{{', '.join(f'{f}: {p:.3g}' for f, p in run.ratios)}}})")
            if not self.attempt(run):
                self.log(f"  run {run.run_id} is being trained by another process; back to it at the end")
                waiting.append(run)
        while waiting:
            time.sleep(poll_s)
            waiting = [run for run in waiting if not self.attempt(run)]

    def delegate(self, engine: Engine, todo: Sequence[PlannedRun], poll_s: float) -> None:
        """Every run of `todo` once, scheduled by `engine`. Its workers settle runs on copies of
        this session that share one sweep token: a retried attempt takes over the lease of its
        own dead attempt at once (the engine guarantees that attempt is gone; lease.py)."""
        corpus = None if self.corpus is None else str(getattr(self.corpus, "path", self.corpus))
        remote = dataclasses.replace(self, corpus=corpus, progress=False, log=print,
                                     owner={"sweep": uuid.uuid4().hex})
        settle = functools.partial(remote.settle, poll_s=poll_s)
        with contextlib.closing(engine.run(todo, settle, self.store.root)) as settled:
            for _ in _progress(todo, self.progress, "runs"):
                self._record(next(settled))

    def settle(self, run: PlannedRun, poll_s: float) -> Settled:
        """Settles `run` in the calling process (an engine's worker), waiting while another sweep
        holds it; a failure recorded before this attempt is retried."""
        here = dataclasses.replace(self, owner={**new_owner(), "sweep": self.owner["sweep"]},
                                   started=time.time(), completed=[], failed=[], elsewhere=[], repaired=[])
        while not here.attempt(run):
            time.sleep(poll_s)
        outcome = ("completed" if run.run_id in here.completed else
                   "failed" if run.run_id in here.failed else "elsewhere")
        return Settled(run.run_id, outcome, repaired=run.run_id in here.repaired)

    def _record(self, settled: Settled) -> None:
        """Counts what a worker reported; records a failure the worker could not (it died)."""
        {"completed": self.completed, "failed": self.failed, "elsewhere": self.elsewhere}[settled.outcome].append(
            settled.run_id)
        if settled.repaired:
            self.repaired.append(settled.run_id)
        note = ""
        if settled.error is not None:
            note = f": {type(settled.error).__name__}: {str(settled.error).strip().splitlines()[0]}"
            fail = self.store.failure(settled.run_id)
            if fail is None or float(fail.get("unix", 0)) < self.started:
                self.store.record_failure(settled.run_id, settled.error)
        self.log(f"  run {settled.run_id}: {settled.outcome}{note}")


def run_sweep(plan: SweepPlan, out_dir, *, corpus=None, shard: tuple[int, int] = (0, 1),
              train_fn: TrainFn | None = None, progress: bool | None = None,
              runs: Sequence[PlannedRun] | None = None, log=print,
              lease_s: float = DEFAULT_LEASE_S, poll_s: float | None = None,
              engine: Engine | None = None) -> SweepResult:
    """Runs this shard's planned runs that are not complete yet; returns what happened.

    `runs` skips expanding the plan; `lease_s` is how long a lease outlives its owner's last
    heartbeat; `poll_s` how often runs held elsewhere are looked at again (default lease_s / 10, at
    most 10 s); `engine` schedules the runs (default: this process, in plan order).
    """
    t0 = time.perf_counter()
    corpus = corpus if corpus is not None else plan.corpus
    counts = None
    if runs is None:
        runs, counts = _expand(plan, corpus)
    elif corpus is not None:
        counts = corpus_info(corpus)[1]
    if train_fn is None:
        if corpus is None:
            raise InputError("corpus: none given, and the plan sets no 'corpus:'", arg="corpus")
        _open_corpus(corpus).require_intact()  # every run would fail on a missing or cut shard
        train_fn = default_train_fn
    if not lease_s > 0:
        raise InputError(f"lease duration must be > 0 seconds, got {lease_s}")
    store = SweepStore(out_dir)
    corpus_path = fingerprint = None
    if corpus is not None:
        corpus_path, fingerprint = str(getattr(corpus, "path", corpus)), _open_corpus(corpus).fingerprint
        store.require_same_corpus(corpus_path, fingerprint)
    store.root.mkdir(parents=True, exist_ok=True)
    store.save_plan(plan.name, runs, corpus=corpus_path, family_tokens=counts, corpus_fingerprint=fingerprint)
    mine = shard_runs(runs, *shard)
    done = set(store.scan().intact)
    skipped = tuple(r.run_id for r in mine if r.run_id in done)
    same_as, todo = _split_unfinished(mine, done)
    log(f"sweep {plan.name}: {len(runs)} runs planned, shard {shard[0]}/{shard[1]} has {len(mine)}: "
        f"{len(skipped)} complete, {len(same_as)} the same configuration as a finished run, "
        f"{len(todo)} to run -> {store.root}")
    for planned, finished in same_as:
        log(f"  run {planned}: the configuration of finished run {finished}; not trained again")
    session = _Session(store, train_fn, corpus, sys.stderr.isatty() if progress is None else progress,
                       log, float(lease_s), unique_tokens=counts)
    poll_s = poll_s if poll_s is not None else min(lease_s / 10.0, 10.0)
    if engine is None:
        session.work(todo, poll_s)
    else:
        session.delegate(engine, todo, poll_s)
    n_rows = store.consolidate()
    log(f"sweep {plan.name}: {len(session.completed)} trained, {len(skipped)} skipped, "
        f"{len(session.elsewhere)} done by other processes, {len(same_as)} the same as finished runs, "
        f"{len(session.failed)} failed; "
        f"{store.runs_csv} has {n_rows} rows (loss in nats/token)"
        + (f"; failures in {store.failures_jsonl}" if session.failed else ""))
    return SweepResult(out_dir=str(store.root), shard=tuple(shard), planned=len(runs), assigned=len(mine),
                       skipped=skipped, completed=tuple(session.completed), failed=tuple(session.failed),
                       runs_csv=store.runs_csv, wall_s=time.perf_counter() - t0,
                       elsewhere=tuple(session.elsewhere), repaired=tuple(session.repaired), same_as=same_as)


def _progress(items: Sequence, enabled: bool, label: str) -> Iterable:
    if not enabled or not items:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
