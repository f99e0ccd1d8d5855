"""Checkpoints: a damaged latest step is named, set aside, and resume falls back to the newest
intact one, ending with the same losses as an undamaged run. (Short runs: about 7 s in all on
2 cores, so they run in the fast loop.)"""

import json
import os
import warnings

import pytest
from fixtures.synthetic_data import SyntheticData

from multiscale.train import TrainConfig, read_metrics, run_training
from multiscale.train.checkpoint import DamagedCheckpointWarning

RATIOS = {"germanic": 0.5, "romance": 0.3, "slavic": 0.2}
SEQ, BATCH, STEPS = 32, 8, 12


def _config(out, **kw):
    return TrainConfig(corpus="unused", model="cpu-100k", tokens=STEPS * BATCH * SEQ, ratios=RATIOS,
                       out=str(out), seq_len=SEQ, batch=BATCH, checkpoint_every=4, eval_batch=8,
                       keep_checkpoints=3, run_name="r", **kw)


def _run(out, **kw):
    return run_training(_config(out, **kw), data=SyntheticData().run_data(RATIOS, seq_len=SEQ),
                        progress=False)


def _largest_file(folder):
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    return max(files, key=os.path.getsize)


def _truncate(path):
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)


def _garble(path):
    size = os.path.getsize(path)
    with open(path, "wb") as fh:
        fh.write(b"\x00" * size)  # same size: only orbax/tensorstore can tell


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full") / "run")


@pytest.mark.parametrize("damage", ["truncate_data", "garble_metadata"])
def test_resume_from_a_damaged_latest_checkpoint_matches_an_undamaged_run(tmp_path, undamaged, damage):
    out = tmp_path / "run"
    first = _run(out)
    assert first["rows"] == undamaged["rows"]
    ckpts = out / "checkpoints"
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [4, 8, 12]
    assert sorted(p.name for p in (out / "checkpoint_sizes").iterdir()) == ["12.json", "4.json", "8.json"]
    if damage == "truncate_data":
        _truncate(_largest_file(ckpts / "12" / "state"))
    else:
        _garble(ckpts / "12" / "state" / "_METADATA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = _run(out)
    named = [w for w in caught if issubclass(w.category, DamagedCheckpointWarning)]
    assert len(named) == 1 and "step 12" in str(named[0].message)
    assert resumed["resumed_from_step"] == 8
    # the final per-family losses are identical (not merely close) to the undamaged run's
    assert resumed["rows"] == undamaged["rows"]
    assert json.dumps(resumed["languages"]) == json.dumps(undamaged["languages"])
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl") if "loss" in m] == list(range(1, STEPS + 1))
    aside = list((out / "checkpoints_damaged").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("12-")  # kept, not deleted
    assert (ckpts / "12").is_dir()  # step 12 was trained and saved again


def test_every_checkpoint_damaged_starts_over_with_the_same_result(tmp_path, undamaged):
    out = tmp_path / "run"
    _run(out)
    for step in (4, 8, 12):
        _truncate(_largest_file(out / "checkpoints" / str(step) / "state"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _run(out)
    steps = sorted(str(w.message).split("step ")[1].split()[0] for w in caught
                   if issubclass(w.category, DamagedCheckpointWarning))
    assert steps == ["12", "4", "8"]
    assert again["resumed_from_step"] == 0 and again["rows"] == undamaged["rows"]
