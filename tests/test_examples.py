"""The examples: launch scripts (argument parsing, dry runs), their sweep plans, the Python examples."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from multiscale.sweep import SweepPlan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_" + path.parent.name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(script, *args, env=None):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)


# ---------------------------------------------------------------- TPU VMs


@pytest.mark.slow  # subprocesses
def test_tpu_dry_run_prints_one_shard_per_slice_on_all_workers():
    r = _run(EXAMPLES / "tpu_vm" / "launch.py", "--tpus", "sweep-a,sweep-b,sweep-c", "--zone", "us-central2-b",
             "--project", "proj", "--out", "gs://bkt/sw", "--corpus", "gs://bkt/corpus", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("gcloud")]
    sweeps = [line for line in lines if "multiscale sweep" in line]
    assert len(sweeps) == 3
    for k, (line, tpu) in enumerate(zip(sweeps, ("sweep-a", "sweep-b", "sweep-c"))):
        assert f"tpu-vm ssh {tpu} " in line and "--worker=all" in line and "--project=proj" in line
        assert f"--shard {k}/3" in line and "--out gs://bkt/sw" in line and "--corpus gs://bkt/corpus" in line
    corpus = [line for line in lines if "corpus build" in line]
    assert len(corpus) == 1 and "--worker=0" in corpus[0] and "--source tfds" in corpus[0]
    assert sum("pip install" in line for line in lines) == 3  # setup on every TPU


@pytest.mark.slow  # subprocesses
def test_tpu_step_selection_and_bad_arguments():
    mod = _load(EXAMPLES / "tpu_vm" / "launch.py")
    args = mod.parse_args(["--tpus", "a", "--zone", "z", "--out", "gs://b/o", "--corpus", "gs://b/c",
                           "--step", "sweep", "--dry-run"])
    cmds = mod.sweep_commands(args)
    assert cmds[0][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--shard 0/1" in cmds[1][-1]
    for bad, msg in ((["--out", "/local/o", "--corpus", "gs://b/c"], "--out '/local/o' must be a gs:// path"),
                     (["--out", "gs://b/o", "--corpus", "gs://b/c", "--tpus", "a,a"], "names a TPU twice")):
        argv = ["--tpus", "a", "--zone", "z", *bad, "--dry-run"]
        r = _run(EXAMPLES / "tpu_vm" / "launch.py", *argv)
        assert r.returncode == 2 and msg in r.stderr
    hf = mod.parse_args(["--tpus", "a", "--zone", "z", "--out", "gs://b/o", "--corpus", "gs://b/c",
                         "--corpus-source", "hf", "--vocab", "spm:64000", "--dry-run"])
    build = mod.corpus_commands(hf)[0][-1]
    assert "--source hf" in build and "--hf-path allenai/c4" in build and "--vocab spm:64000" in build
    assert "--grouping paper" in build and build.endswith("--out gs://b/c")
    r = _run(EXAMPLES / "tpu_vm" / "launch.py", "--zone", "z")
    assert r.returncode == 2 and "--tpus" in r.stderr


# ---------------------------------------------------------------- GPUs


@pytest.mark.slow  # subprocesses
def test_gpu_local_dry_runs():
    r = _run(EXAMPLES / "gpu" / "launch.py", "local", "--out", "sw", "--corpus", "c", "--gpus", "0,1,2,3",
             "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4
    for k, line in enumerate(lines):
        assert line.startswith(f"CUDA_VISIBLE_DEVICES={k} ") and f"--shard {k}/4" in line
    r = _run(EXAMPLES / "gpu" / "launch.py", "local", "--out", "sw", "--corpus", "c", "--gpus", "0,1",
             "--mode", "all-gpus", "--dry-run")
    assert r.stdout.strip().splitlines() == [
        "CUDA_VISIBLE_DEVICES=0,1 multiscale sweep examples/gpu/plan.yaml --out sw --corpus c --shard 0/1 "
        "--no-progress"]
    r = _run(EXAMPLES / "gpu" / "launch.py", "local", "--out", "sw", "--corpus", "c", "--gpus", "0,x", "--dry-run")
    assert r.returncode == 2 and "--gpus '0,x'" in r.stderr


@pytest.mark.slow  # subprocesses
def test_gpu_slurm_array_dry_run():
    r = _run(EXAMPLES / "gpu" / "launch.py", "slurm", "--out", "/shared/sw", "--corpus", "/shared/c", "--shards", "16",
             "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu", "--max-parallel", "4", "--dry-run")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "#SBATCH --array=0-15%4" in out and "#SBATCH --nodes=2" in out and "#SBATCH --partition=gpu" in out
    assert "srun multiscale sweep" in out and "--shard ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" in out
    assert out.strip().endswith("sbatch sweep_array.sbatch")
    assert not (ROOT / "sweep_array.sbatch").exists()  # a dry run writes nothing
    r = _run(EXAMPLES / "gpu" / "launch.py", "slurm", "--out", "o", "--corpus", "c", "--shards", "0", "--dry-run")
    assert r.returncode == 2 and "--shards must be >= 1" in r.stderr


@pytest.mark.slow  # subprocesses
def test_static_sbatch_script_runs_its_shard():
    text = (EXAMPLES / "gpu" / "sweep_array.sbatch").read_text()
    assert "--shard \"${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}\"" in text
    assert subprocess.run(["bash", "-n", str(EXAMPLES / "gpu" / "sweep_array.sbatch")]).returncode == 0


# ---------------------------------------------------------------- the paper-scale plans


@pytest.mark.parametrize("plan", ["tpu_vm/plan.yaml", "tpu_vm/plan_large.yaml", "gpu/plan.yaml",
                                  "gpu/plan_multi_gpu.yaml"])
def test_paper_scale_plans_are_valid(plan):
    import dataclasses

    from multiscale.families import PAPER_GROUPING
    from multiscale.models.presets import PRESETS
    from multiscale.train.config import TrainConfig

    p = SweepPlan.load(EXAMPLES / plan)
    assert all(name in PRESETS for name in p.presets)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(dict(p.train)) <= fields
    fams = PAPER_GROUPING.family_names
    assert len(fams) == 5 and len(PAPER_GROUPING.languages) == 23
    # token counts of a real mC4 build are unknown here: any positive counts expand the baselines
    counts = {f: 10 ** (9 + k) for k, f in enumerate(fams)}
    runs = p.expand(fams, family_tokens=counts)
    assert runs and all(abs(sum(r.ratio_dict.values()) - 1) < 1e-9 for r in runs)
    for r in runs:  # every run is a valid TrainConfig
        TrainConfig(corpus="c", model=r.preset, tokens=r.tokens, ratios=r.ratio_dict, seed=r.seed,
                    out="o", run_name=r.run_id, **dict(r.train))


# ---------------------------------------------------------------- the Python examples


@pytest.mark.slow  # fits 3,947 rows and scores 256 runs (10-25 s)
def test_fit_your_runs_on_the_real_regmix_tables(tmp_path, capsys):
    mod = _load(EXAMPLES / "fit_your_runs.py")
    assert mod.main(["--out", str(tmp_path / "o")]) == 0  # the RegMix tables shipped in the package
    out = capsys.readouterr().out
    # the ratio law fitted on 512 runs predicts the 256 test runs it never saw
    line = next(x for x in out.splitlines() if x.startswith("held-out test runs"))
    r2 = float(line.split("R^2 = ")[1].split(",")[0])
    assert r2 > 0.9, line
    assert "own ratio suffices" in out and "depends on other families" in out  # honest both ways
    assert "optimal ratios" in out and (tmp_path / "o" / "fit" / "fit.json").exists()
    assert "RegMix: 512 training runs -> 3947 rows over 13 domains; 256 test runs held out" in out


@pytest.mark.slow  # two fits (about 10 s)
def test_fit_your_runs_with_a_users_table(tmp_path, capsys):
    from fixtures.synthetic import synthetic_runs, synthetic_truth

    # another trainer's runs at one (N, D): the ratio law (the multilingual law's grid fit is slower)
    df = synthetic_runs(synthetic_truth(3, seed=1, law="ratio"), law="ratio", n_mixtures=12, noise=0.005)
    df.to_csv(tmp_path / "mine.csv", index=False)
    mod = _load(EXAMPLES / "fit_your_runs.py")
    assert mod.main(["--runs", str(tmp_path / "mine.csv"), "--law", "ratio", "--N", "1e9", "--D", "1e11",
                     "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "optimal ratios at N = 1e+09, D = 1e+11" in out and "independence test" in out
    (tmp_path / "bad.csv").write_text("run,family,N,D,p,loss\nr1,a,1e6,1e9,1.5,3.0\n")
    with pytest.raises(ValueError, match="'p'"):
        mod.main(["--runs", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o2")])


@pytest.mark.slow  # fits and scores the RegMix tables: ~10 s
def test_regmix_independence_example_json(capsys):
    import json

    mod = _load(EXAMPLES / "regmix_independence.py")
    mod.main(["--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 3947 and out["dropped_zero_weight"] == 512 * 13 - 3947
    verdicts = {f: r["verdict"] for f, r in out["independence"]["families"].items()}
    assert len(verdicts) == 13 and verdicts["dm_mathematics"] == "own ratio suffices"
    assert out["heldout"]["overall"]["r2"] > 0.9


@pytest.mark.slow  # trains a tiny sweep
def test_quickstart_tiny_runs_the_whole_loop(tmp_path, capsys):
    mod = _load(EXAMPLES / "quickstart.py")
    assert mod.main(["--out", str(tmp_path / "qs"), "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "6 planned runs" in out and "optimal ratios" in out and "report:" in out
    assert (tmp_path / "qs" / "report" / "report.md").exists()
