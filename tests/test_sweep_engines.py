"""Sweep engines: the same sweep through `--engine local`, `ray` (a real local Ray cluster) and
`slurm` (submitit's local executor) gives the same run table; a worker killed mid-run (Ray) or a
job preempted mid-run (SLURM) is retried and resumes from its checkpoints; a Ray sweep and a
local sweep on one folder lose and duplicate nothing; the flags' errors.

The trainer is the real one (the tiniest CPU preset, 8 steps of 128 tokens, a checkpoint every
3 steps), wrapped so that a run asked to pause (a request file in the sweep folder) writes its
pid at step 7 and waits to be killed; the test kills it once the pid file appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_fakes import FAKE_TRAINER, ROOT, check_table

from multiscale.cli import main

try:  # submitit configures logging when first imported (logging.config.dictConfig closes every
    # handler installed so far, among them those holding an earlier test's captured stderr):
    # import it here, at collection, not inside a test
    import submitit  # noqa: F401
except ImportError:
    pass
from multiscale.sweep import SweepPlan
from multiscale.sweep.lease import new_owner, try_claim

PAUSING_TRAINER = '''
"""The real trainer; a run whose request file <sweep>/pause/<run_id> exists writes its pid to
<sweep>/pause/<run_id>.pid at step 7 (once: not after a retry) and waits to be killed."""
import io, os, time
from pathlib import Path
import pandas as pd
from multiscale.train import Hook, TrainConfig, run_training

class Pause(Hook):
    def __init__(self, pid_file):
        self.pid_file = pid_file

    def on_step(self, info):
        if info.step == 7 and not self.pid_file.exists():
            tmp = self.pid_file.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename(self.pid_file)
            # short sleeps: a signal that the kernel hands to another of the process's threads
            # (XLA runs many) reaches Python's handler only when the main thread wakes up
            for _ in range(6000):
                time.sleep(0.05)

def train(run, run_dir, corpus, progress):
    pause = Path(str(run_dir)).parent.parent / "pause"
    hooks = [Pause(pause / (run.run_id + ".pid"))] if (pause / run.run_id).exists() else []
    config = TrainConfig(corpus=str(corpus), model=run.preset, tokens=run.tokens, ratios=dict(run.ratios),
                         seed=run.seed, run_name=run.run_id, out=str(run_dir), **dict(run.train))
    run_training(config, hooks=hooks, progress=False)
    return pd.read_csv(io.StringIO((Path(str(run_dir)) / "rows.csv").read_text()))
'''

# Starting the Ray cluster and the local sweep forks this process, which has started JAX; each fork
# is followed at once by an exec, which JAX's warning does not know.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

TRAIN = {"seq_len": 32, "batch": 4, "checkpoint_every": 3, "eval_batch": 16, "eval_tokens_per_language": 512}


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """A folder holding pausing_trainer.py and fake_trainer.py, on the path of this process and of
    every process it starts (Ray workers, submitit jobs, the local sweep). Those processes share a
    persistent JAX compilation cache: compiling the tiny model is most of a run's time here, and
    each retry or requeue is a new process."""
    import sys

    import jax  # noqa: F401  (imported before the cache variables below: they reach only child processes)

    folder = tmp_path_factory.mktemp("trainers")
    (folder / "pausing_trainer.py").write_text(PAUSING_TRAINER)
    (folder / "fake_trainer.py").write_text(FAKE_TRAINER)
    (folder / "fake_log").mkdir()
    cache = {"JAX_COMPILATION_CACHE_DIR": str(folder / "jax_cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "FAKE_SLEEP", "FAKE_LOG", "FAKE_FAIL", *cache)}
    os.environ.update(PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)] + ([saved["PYTHONPATH"]]
                                                                          if saved["PYTHONPATH"] else [])),
                      FAKE_SLEEP="0.2", FAKE_LOG=str(folder / "fake_log"), FAKE_FAIL="failing", **cache)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three one-language families, 12 short documents each."""
    from multiscale.data.corpus import build_corpus
    from multiscale.data.sources import FilesSource

    root = tmp_path_factory.mktemp("engine_corpus")
    inputs = {}
    for lang, word in (("de", "Haus"), ("fr", "maison"), ("ru", "dom")):
        d = root / "docs" / lang
        d.mkdir(parents=True)
        for i in range(12):
            (d / f"{i}.txt").write_text(f"{word} {i} " * 40)
        inputs[lang] = str(d / "*.txt")
    grouping = {"germanic": ["de"], "romance": ["fr"], "slavic": ["ru"]}
    build_corpus(FilesSource(inputs), root / "corpus", grouping=grouping, eval_docs_per_language=2)
    return root / "corpus"


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory, corpus):
    f = tmp_path_factory.mktemp("engine_plan") / "plan.yaml"
    f.write_text(json.dumps({"name": "engines", "presets": ["cpu-100k"], "tokens": [1024], "train": TRAIN,
                             "families": ["germanic", "romance", "slavic"],
                             "corpus": str(corpus), "mixtures": [{"design": "dirichlet", "count": 2, "seed": 0}]}))
    return f


def _sweep(plan_file, out, *flags):
    return main(["sweep", str(plan_file), "--out", str(out), "--train-fn", "pausing_trainer:train",
                 "--no-progress", *flags])


@pytest.fixture(scope="module")
def local_table(tmp_path_factory, trainers, plan_file):
    """The reference: the sweep through --engine local (in a process of its own, which fills the
    compilation cache)."""
    from sweep_fakes import cli

    out = tmp_path_factory.mktemp("local") / "sw"
    cmd, env = cli(["sweep", str(plan_file), "--out", str(out), "--train-fn", "pausing_trainer:train",
                    "--no-progress", "--engine", "local"], str(trainers))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return check_table(out, SweepPlan.load(plan_file))


@pytest.fixture(scope="module")
def ray_cluster(trainers):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    def warm():  # both workers import what a settle task needs (seconds on a cold worker)
        import fake_trainer  # noqa: F401

        import multiscale.sweep.runner  # noqa: F401

    ray.get([ray.remote(num_cpus=1)(warm).remote() for _ in range(2)])
    yield ray
    ray.shutdown()


class _Killer(threading.Thread):
    """Sends `sig` to the process training `run_id` once it has paused (its pid file appeared)."""

    def __init__(self, out, run_id, sig):
        super().__init__(daemon=True)
        (Path(out) / "pause").mkdir(parents=True)
        (Path(out) / "pause" / run_id).touch()
        self.pid_file, self.sig = Path(out) / "pause" / f"{run_id}.pid", sig
        self.stop, self.sent = threading.Event(), False
        self.start()

    def run(self):
        while not self.pid_file.exists():
            if self.stop.wait(0.05):
                return
        os.kill(int(self.pid_file.read_text()), self.sig)
        self.sent = True

    def finish(self) -> bool:
        """Whether the signal was sent (call once the sweep is over)."""
        self.stop.set()
        self.join()
        return self.sent


def _same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    key = ["run", "family"]
    got, want = got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    assert got[key].equals(want[key])
    for col in got.columns:
        if pd.api.types.is_float_dtype(want[col]):
            assert (got[col] - want[col]).abs().max() <= 1e-6, col
        else:
            assert got[col].equals(want[col]), col


def _resumed_from(out, run_id) -> int:
    return json.loads((Path(out) / "runs" / run_id / "summary.json").read_text())["resumed_from_step"]


@pytest.mark.slow
def test_ray_engine_gives_the_local_table_and_retries_a_killed_worker(tmp_path, plan_file, local_table, ray_cluster):
    out = tmp_path / "sw"
    first, second = (r.run_id for r in SweepPlan.load(plan_file).expand())
    killer = _Killer(out, first, signal.SIGKILL)
    assert _sweep(plan_file, out, "--engine", "ray", "--max-retries", "2") == 0
    assert killer.finish(), "the paused run never wrote its pid"
    _same_table(check_table(out, SweepPlan.load(plan_file)), local_table)  # every run once, same losses
    assert _resumed_from(out, first) in (3, 6) and _resumed_from(out, second) == 0  # the retry resumed
    assert (out / "failures.jsonl").read_text() == "" and not list((out / "claims").iterdir())


@pytest.mark.slow
def test_a_ray_sweep_and_a_local_sweep_on_one_folder_lose_and_duplicate_nothing(tmp_path, capsys, trainers,
                                                                               ray_cluster):
    from sweep_fakes import cli, plan_dict

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(json.dumps(plan_dict(8)))
    plan, out = SweepPlan.load(plan_file), tmp_path / "sw"
    local_cmd, env = cli(["sweep", str(plan_file), "--out", str(out), "--train-fn", "fake_trainer:train",
                          "--json", "--no-progress", "--lease-seconds", "2"], str(trainers))
    # --lease-seconds 2: each sweep looks again at a run the other holds every 0.2 s, not 10 s
    local = subprocess.Popen(local_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "claims").is_dir() and time.time() < deadline:  # the local sweep has begun
        time.sleep(0.02)
    rc = main(["sweep", str(plan_file), "--out", str(out), "--train-fn", "fake_trainer:train", "--engine", "ray",
               "--no-progress", "--json", "--lease-seconds", "2"])
    by_ray = json.loads(capsys.readouterr().out)["completed"]
    stdout, stderr = local.communicate(timeout=120)
    assert rc == 0 and local.returncode == 0, stderr
    check_table(out, plan)
    ids = {r.run_id for r in plan.expand()}
    trained = sorted(n for n in (p.name.rsplit(".", 2)[0] for p in (trainers / "fake_log").iterdir()) if n in ids)
    assert trained == sorted(ids)  # each run trained once, by one engine or the other
    by_local = json.loads(stdout)["completed"]
    assert by_ray and by_local, "one engine trained nothing: the two did not run at once"
    assert sorted(by_ray + by_local) == sorted(ids)


@pytest.mark.slow
def test_a_ray_task_that_keeps_failing_is_retried_then_recorded(tmp_path, trainers, ray_cluster):
    from sweep_fakes import FAMS, plan_dict

    even = {f: 1 / len(FAMS) for f in FAMS}
    plan_file = tmp_path / "plan.yaml"  # the fake trainer fails the mixture named 'failing'
    plan_file.write_text(json.dumps({**plan_dict(), "mixtures": [{"name": "even", "ratios": even},
                                                                 {"name": "failing", "ratios": {**even, FAMS[0]: 0.5},
                                                                  "normalize": True}]}))
    out = tmp_path / "sw"
    rc = main(["sweep", str(plan_file), "--out", str(out), "--train-fn", "fake_trainer:train", "--engine", "ray",
               "--max-retries", "1", "--no-progress", "--json"])
    assert rc == 1
    good, bad = (r.run_id for r in SweepPlan.load(plan_file).expand())
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["run"] == bad and "NaN at step 7" in failure["error"]
    assert set(pd.read_csv(out / "runs.csv")["run"]) == {good}
    attempts = [p for p in (trainers / "fake_log").iterdir() if p.name.startswith(bad + ".")]
    assert len(attempts) == 2  # the first attempt and one retry


@pytest.mark.slow
def test_slurm_engine_gives_the_local_table_and_requeues_a_preempted_job(tmp_path, plan_file, local_table):
    pytest.importorskip("submitit")
    out = tmp_path / "sw"
    first, second = (r.run_id for r in SweepPlan.load(plan_file).expand())
    killer = _Killer(out, first, signal.SIGUSR2)  # what SLURM sends before preempting a job
    assert _sweep(plan_file, out, "--engine", "slurm", "--slurm-executor", "local", "--slurm-time", "30") == 0
    assert killer.finish(), "the paused run never wrote its pid"
    _same_table(check_table(out, SweepPlan.load(plan_file)), local_table)
    assert _resumed_from(out, first) in (3, 6) and _resumed_from(out, second) == 0  # requeued, resumed
    logs = "".join(p.read_text() for p in (out / "slurm").glob("*.err"))
    assert "Requeued job" in logs
    assert (out / "failures.jsonl").read_text() == "" and not list((out / "claims").iterdir())


def test_a_retried_attempt_takes_over_its_own_sweeps_lease_at_once(tmp_path):
    """A claim left by a dead attempt of the same engine sweep is taken over without waiting for
    its lease; another sweep's live claim is not."""
    path = tmp_path / "claims" / "r.json"
    first = try_claim(path, {**new_owner(), "sweep": "A"}, lease_s=300)
    assert first is not None
    first._stop.set()  # the attempt dies; its claim stays, fresh for 300 s
    assert try_claim(path, {**new_owner(), "sweep": "B"}, lease_s=300) is None
    assert try_claim(path, new_owner(), lease_s=300) is None
    retry = try_claim(path, {**new_owner(), "sweep": "A"}, lease_s=300)
    assert retry is not None and retry.taken_over
    retry.release()
    assert not path.exists()


@pytest.mark.parametrize("flags, named", [
    (["--engine", "ray", "--max-retries", "-1"], "--max-retries must be >= 0"),
    (["--engine", "local", "--max-retries", "2"], "--max-retries applies only to --engine ray or slurm"),
    (["--address", "auto"], "--address applies only to --engine ray"),
    (["--engine", "ray", "--slurm-partition", "gpu"], "--slurm-partition applies only to --engine slurm"),
    (["--engine", "ray", "--ray-accelerator", "tpu:0"], "--ray-accelerator 'tpu:0'"),
    (["--engine", "ray", "--ray-accelerator", "npu"], "--ray-accelerator 'npu'"),
    (["--engine", "slurm", "--slurm-time", "0"], "--slurm-time '0'"),
    (["--engine", "slurm", "--slurm-time", "1:30"], "--slurm-time '1:30'"),
    (["--engine", "slurm", "--slurm-array-parallelism", "0"], "--slurm-array-parallelism must be >= 1"),
    (["--engine", "slurm", "--slurm-gpus-per-task", "-1"], "--slurm-gpus-per-task must be >= 0"),
])
def test_engine_flags_are_checked_before_any_work(tmp_path, capsys, flags, named):
    from sweep_fakes import write_plan

    rc = main(["sweep", str(write_plan(tmp_path, 2)), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("engine, package, extra", [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_an_engine_without_its_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch, engine, package, extra):
    import sys

    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    from sweep_fakes import write_plan

    rc = main(["sweep", str(write_plan(tmp_path, 2)), "--out", str(tmp_path / "o"), "--engine", engine])
    err = capsys.readouterr().err
    assert rc == 2 and f"pip install 'multiscale[{extra}]'" in err and f"--engine {engine}" in err, err
    assert len(err.strip().splitlines()) == 1


def test_engines_check_their_own_arguments():
    from multiscale.errors import InputError
    from multiscale.sweep.engines import Accelerator
    from multiscale.sweep.ray_engine import RayEngine
    from multiscale.sweep.slurm_engine import SlurmEngine

    with pytest.raises(InputError, match="max_retries must be an integer >= 0"):
        RayEngine(max_retries=-1)
    with pytest.raises(InputError, match="time_min must be an integer >= 1"):
        SlurmEngine(time_min=0)
    with pytest.raises(InputError, match="accelerator count"):
        Accelerator("tpu", 0)
    engine = RayEngine(accelerator=Accelerator.parse("tpu:8"))
    run = SweepPlan.from_dict({"presets": ["cpu-100k", "paper-85m"], "tokens": [1000], "families": ["a", "b"],
                               "train": {"seq_len": 16, "batch": 4},
                               "mixtures": [{"design": "vary_one", "grid": [0.5]}]}).expand()
    by_preset = {r.preset: engine.resources(r) for r in run}
    assert by_preset == {"cpu-100k": {"num_cpus": 1}, "paper-85m": {"num_cpus": 1, "resources": {"TPU": 8}}}
    assert RayEngine().resources(run[-1]) == {"num_cpus": 1, "num_gpus": 1}
