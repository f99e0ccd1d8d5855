"""Running a sweep: every planned run once, into one shared run table.

Layout of a sweep folder DIR (a local path, a shared file system, or gs:// through etils.epath)::

    DIR/plans/<name>-<hash>.json  each expanded plan swept here: every run id with its preset, D,
                               ratios, held-out flag, and the corpus's unique training tokens per
                               family (for baselines); several plans may share one folder
    DIR/plan.json              a copy of the latest plan, for people
    DIR/runs/<run_id>/         the trainer's run folder (checkpoints, metrics, rows.csv, summary.json)
    DIR/rows/<run_id>.csv      the run's finished run-table rows (one fragment per run)
    DIR/failures/<run_id>.json the error of a run that failed (removed when it later succeeds)
    DIR/runs.csv               the consolidated run table: all fragments, sorted by run and family
    DIR/failures.jsonl         all current failures, one JSON object a line

Why fragments. Several shard processes, possibly on several machines, share DIR. Appending to
one CSV from many writers loses rows on object stores (no append) and can interleave on network
file systems. Instead each run writes its own fragment, atomically (a temporary file in the same
folder, then a rename; an object upload on gs:// is atomic by itself). A fragment is written
once, when its run finished, and it is the mark that the run is complete.

Consolidation without a lock. After writing a fragment, a process rebuilds runs.csv from all
fragments it can list and replaces it atomically, then reads runs.csv back and compares its set
of runs with a fresh listing of the fragments; if they differ (another process replaced runs.csv
with an older listing in the meantime, or a fragment arrived), it rebuilds again. The last
process to replace runs.csv therefore always checks it against a listing made after its own
replacement, so the final runs.csv holds every fragment: no row is lost, and since rows come from
one fragment per run id, none is duplicated. (Each rebuild reads every fragment: cheap next to a
training run, even for thousands of runs on an object store.) This needs only atomic replace and read-after-write
consistency (local and network file systems, Google Cloud Storage), and no lock that a killed
process could leave behind. `consolidate(DIR)` can be called at any time to rebuild by hand.

Kill and restart. A run killed mid-training has no fragment; the next sweep resumes it from the
trainer's checkpoints in its run folder. A run whose trainer finished (rows.csv and summary.json
written) but whose fragment was not yet written is harvested without training again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from multiscale.plan import PlannedRun, SweepPlan, shard_runs

RUNS_CSV = "runs.csv"
FAILURES_JSONL = "failures.jsonl"
PLAN_JSON = "plan.json"

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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("skipped", "completed", "failed", "shard"):
            d[k] = list(d[k])
        return d


# ------------------------------------------------------------------------------ paths


def _path(p):
    from etils import epath

    return epath.Path(p)


def run_dir(out_dir, run_id: str):
    return _path(out_dir) / "runs" / run_id


def fragment_path(out_dir, run_id: str):
    return _path(out_dir) / "rows" / f"{run_id}.csv"


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` so that readers see either the old or the whole new file."""
    path = _path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "://" in str(path):  # object stores: a single upload is atomic
        path.write_text(text)
        return
    tmp = path.parent / f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ------------------------------------------------------------------------------ the table


def _fragment_ids(out_dir, sub: str = "rows", suffix: str = ".csv") -> list[str]:
    d = _path(out_dir) / sub
    if not d.exists():
        return []
    return sorted(p.name[: -len(suffix)] for p in d.iterdir()
                  if p.name.endswith(suffix) and not p.name.startswith("."))


def read_fragments(out_dir):
    """All finished runs' rows as one DataFrame (the same content runs.csv converges to)."""
    import pandas as pd

    ids = _fragment_ids(out_dir)
    frames = []
    for run_id in ids:
        text = fragment_path(out_dir, run_id).read_text()
        frames.append(pd.read_csv(io.StringIO(text)))
    if not frames:
        return pd.DataFrame(columns=["run", "family", "N", "D", "p", "loss"])
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["run", "family"], kind="stable").reset_index(drop=True)


def consolidate(out_dir, *, max_rounds: int = 50) -> int:
    """Rebuilds DIR/runs.csv and DIR/failures.jsonl from the fragments; returns the row count.

    Lock-free and safe under concurrent callers (see the module docstring).
    """
    import pandas as pd

    out = _path(out_dir)
    for _ in range(max_rounds):
        ids = set(_fragment_ids(out))
        df = read_fragments(out)
        atomic_write_text(out / RUNS_CSV, df.to_csv(index=False))
        fail_ids = _fragment_ids(out, "failures", ".json")
        lines = []
        for fid in fail_ids:
            try:
                lines.append(json.dumps(json.loads((out / "failures" / f"{fid}.json").read_text())))
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # removed or replaced while we read; the next round sees it
        atomic_write_text(out / FAILURES_JSONL, "".join(line + "\n" for line in lines))
        # verify against a listing made after our replacement
        now = set(_fragment_ids(out))
        on_disk = (pd.read_csv(io.StringIO((out / RUNS_CSV).read_text()), usecols=["run"]) if len(df)
                   else pd.DataFrame({"run": []}))
        if set(on_disk["run"].astype(str)) == now and ids <= now:
            return int(len(on_disk))
        time.sleep(0.01)
    raise RuntimeError(f"could not consolidate {out / RUNS_CSV}: fragments kept changing")


def write_fragment(out_dir, run_id: str, rows) -> None:
    """Stores one finished run's rows (DataFrame or list of dicts) as its fragment."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise ValueError(f"run {run_id}: the trainer returned no run-table rows")
    df = df.copy()
    df["run"] = run_id
    cols = ["run"] + [c for c in df.columns if c != "run"]
    atomic_write_text(fragment_path(out_dir, run_id), df[cols].to_csv(index=False))


def record_failure(out_dir, run: PlannedRun, err: BaseException) -> None:
    record = {
        "run": run.run_id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(), "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:],
    }
    atomic_write_text(_path(out_dir) / "failures" / f"{run.run_id}.json", json.dumps(record))


def _clear_failure(out_dir, run_id: str) -> None:
    p = _path(out_dir) / "failures" / f"{run_id}.json"
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def read_failures(out_dir) -> list[dict]:
    out = []
    for fid in _fragment_ids(out_dir, "failures", ".json"):
        try:
            out.append(json.loads((_path(out_dir) / "failures" / f"{fid}.json").read_text()))
        except FileNotFoundError:
            pass
    return out


def read_plan_json(out_dir, *, full: bool = False):
    """The expanded plans swept into `out_dir`: their runs (run ids, presets, D, ratios, held-out
    flags), or with full=True a record with `runs`, `family_tokens`, `corpus` and plan `names`.

    Several plans may share one sweep folder (each is kept in DIR/plans/); their runs are
    united by run id, a run being held out when any plan marks it so.
    """
    out = _path(out_dir)
    files = sorted(p for p in (out / "plans").glob("*.json") if not p.name.startswith(".")) \
        if (out / "plans").exists() else []
    if not files and (out / PLAN_JSON).exists():
        files = [out / PLAN_JSON]
    if not files:
        raise FileNotFoundError(f"{out / 'plans'} holds no plan: is {out_dir} a sweep folder?")
    runs: dict[str, dict] = {}
    record: dict[str, Any] = {"names": [], "family_tokens": None, "corpus": None}
    for f in files:
        rec = json.loads(f.read_text())
        record["names"].append(rec.get("name"))
        record["family_tokens"] = record["family_tokens"] or rec.get("family_tokens")
        record["corpus"] = record["corpus"] or rec.get("corpus")
        for r in rec["runs"]:
            if r["run_id"] in runs:
                runs[r["run_id"]]["heldout"] = runs[r["run_id"]]["heldout"] or r["heldout"]
            else:
                runs[r["run_id"]] = dict(r)
    record["runs"] = list(runs.values())
    return record if full else record["runs"]


# ------------------------------------------------------------------------------ training


def default_train_fn(run: PlannedRun, rdir, corpus, progress: bool):
    """Trains one planned run with multiscale.train.run_training; returns its rows."""
    import pandas as pd

    from multiscale.train import TrainConfig, run_training

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extra = dict(run.train)
    unknown = sorted(set(extra) - fields)
    if unknown:
        raise ValueError(f"plan 'train' keys {unknown} are not TrainConfig fields; known: {sorted(fields)}")
    config = TrainConfig(corpus=str(corpus), model=run.preset, tokens=run.tokens,
                         ratios=dict(run.ratios), seed=run.seed, run_name=run.run_id,
                         out=str(rdir), **extra)
    summary = run_training(config, progress=progress)
    rows_path = _path(rdir) / "rows.csv"
    if rows_path.exists():
        return pd.read_csv(io.StringIO(rows_path.read_text()))
    return pd.DataFrame(summary["rows"])


def _finished_rows(rdir):
    """Rows of a run whose trainer already finished (rows.csv + summary.json), else None."""
    import pandas as pd

    rdir = _path(rdir)
    rows, summary = rdir / "rows.csv", rdir / "summary.json"
    if rows.exists() and summary.exists():
        return pd.read_csv(io.StringIO(rows.read_text()))
    return None


def _corpus_info(corpus) -> tuple[tuple[str, ...], dict[str, int]]:
    from multiscale.data.corpus import Corpus

    c = corpus if hasattr(corpus, "grouping") else Corpus.open(str(corpus))
    fams = tuple(c.grouping.family_names)
    return fams, {f: int(c.train_tokens(f)) for f in fams}


def plan_runs(plan: SweepPlan, corpus=None) -> list[PlannedRun]:
    """Expands `plan` against a corpus (path or Corpus) or, without one, the plan's families."""
    return _expand(plan, corpus)[0]


def _expand(plan: SweepPlan, corpus) -> tuple[list[PlannedRun], dict[str, int] | None]:
    if corpus is None:
        return plan.expand(), None
    fams, counts = _corpus_info(corpus)
    return plan.expand(fams, family_tokens=counts), counts


def run_sweep(plan: SweepPlan, out_dir, *, corpus=None, shard: tuple[int, int] = (0, 1),
              train_fn: TrainFn | None = None, progress: bool | None = None,
              runs: Sequence[PlannedRun] | None = None, log=print) -> SweepResult:
    """Runs this shard's planned runs that are not complete yet; returns what happened.

    corpus: corpus folder (default: the plan's `corpus:`); train_fn: how to train one run
    (default: the real trainer); runs: an already expanded plan (skips expansion).
    """
    t0 = time.perf_counter()
    corpus = corpus if corpus is not None else plan.corpus
    counts = None
    if runs is None:
        runs, counts = _expand(plan, corpus)
    if train_fn is None:
        if corpus is None:
            raise ValueError("no corpus: pass --corpus DIR or set 'corpus:' in the plan")
        train_fn = default_train_fn
    if progress is None:
        progress = sys.stderr.isatty()
    out = _path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan_text = json.dumps(
        {"name": plan.name, "corpus": None if corpus is None else str(getattr(corpus, "path", corpus)),
         "family_tokens": counts, "runs": [r.to_dict() for r in runs]}, indent=1, default=str)
    digest = hashlib.sha256("\n".join(r.run_id for r in runs).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in plan.name)
    atomic_write_text(out / "plans" / f"{safe}-{digest}.json", plan_text)  # one file per plan
    atomic_write_text(out / PLAN_JSON, plan_text)  # the latest plan, for people
    mine = shard_runs(runs, *shard)
    done = set(_fragment_ids(out))
    skipped = tuple(r.run_id for r in mine if r.run_id in done)
    todo = [r for r in mine if r.run_id not in done]
    log(f"sweep {plan.name}: {len(runs)} runs planned, shard {shard[0]}/{shard[1]} has {len(mine)}: "
        f"{len(skipped)} complete, {len(todo)} to run -> {out}")
    completed, failed = [], []
    for k, run in enumerate(_progress(todo, progress, "runs")):
        rdir = run_dir(out, run.run_id)
        log(f"[{k + 1}/{len(todo)}] {run.run_id}  ({run.preset}, D={run.tokens:,} tokens, "
            f"p={{{', '.join(f'{f}: {p:.3g}' for f, p in run.ratios)}}})")
        try:
            rows = _finished_rows(rdir)
            if rows is None:
                rows = train_fn(run, rdir, corpus, progress)
            write_fragment(out, run.run_id, rows)
        except Exception as err:  # a failed run is recorded and the sweep goes on
            record_failure(out, run, err)
            failed.append(run.run_id)
            log(f"  run {run.run_id} FAILED: {type(err).__name__}: {err}")
            consolidate(out)
            continue
        _clear_failure(out, run.run_id)
        completed.append(run.run_id)
        consolidate(out)
    n_rows = consolidate(out)
    log(f"sweep {plan.name}: {len(completed)} trained, {len(skipped)} skipped, {len(failed)} failed; "
        f"{out / RUNS_CSV} has {n_rows} rows (loss in nats/token)"
        + (f"; failures in {out / FAILURES_JSONL}" if failed else ""))
    return SweepResult(out_dir=str(out), shard=tuple(shard), planned=len(runs), assigned=len(mine),
                       skipped=skipped, completed=tuple(completed), failed=tuple(failed),
                       runs_csv=str(out / RUNS_CSV), wall_s=time.perf_counter() - t0)


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
