"""benchmarks/bench_runtable_scale.py: its synthetic swarm is a valid run table of the stated
shape, and the script prints one JSON object with the stages timed."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from multiscale.laws.independence import independence_test
from multiscale.runs import mixture_columns, validate_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench():
    path = ROOT / "benchmarks" / "bench_runtable_scale.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the benchmarks import each other by file name
    spec = importlib.util.spec_from_file_location("bench_runtable_scale", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_swarm_is_a_valid_table_whose_families_follow_their_own_ratio():
    df = _bench().synthetic_table(600, 5)
    out = validate_runs(df)
    assert len(out) == 3000 and out["run"].nunique() == 600 and out["family"].nunique() == 5
    assert mixture_columns(out) == [f"p_{f}" for f in out["family"].unique()]
    np.testing.assert_allclose(out[mixture_columns(out)].sum(axis=1), 1.0)
    assert out.groupby(["N", "D"]).ngroups == 4
    res = independence_test(out)
    assert all(r.verdict == "own ratio suffices" for r in res.families.values())


@pytest.mark.slow  # two Python processes that import pandas and scipy: 5-15 s on 2 busy cores
def test_bench_prints_one_json_object(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package, not an installed one
    proc = subprocess.run([sys.executable, "benchmarks/bench_runtable_scale.py", "--runs", "500"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["rows"] == 2500 and out["families"] == 5 and out["peak_rss_mb"] > 0 and out["cpu"]
    assert all(v >= 0 for v in out["seconds"].values()) and out["seconds"]["total"] > 0
