"""Hooks: metrics.jsonl records and truncation on resume, the progress bar, `due`."""

import io
import json
import math

from rich.console import Console

from multiscale.train.evaluation import EvalResult, LossStats
from multiscale.train.hooks import Hook, MetricsJsonlHook, ProgressHook, StepInfo, read_metrics


def _info(step, loss=2.5):
    return StepInfo(step=step, total_steps=10, loss=loss, grad_norm=0.5, lr=1e-3,
                    tokens_seen=step * 256, tokens_per_s=1000.0 if step > 1 else math.nan,
                    elapsed_s=1.0)


def _result(step):
    stats = LossStats(loss=3.0, loss_sem=0.01, bpb=4.3, tokens=100, sequences=4)
    return EvalResult(step, {"de": stats}, {"germanic": stats})


def test_metrics_jsonl_is_strict_json_and_truncates_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    hook = MetricsJsonlHook(path)
    for step in range(1, 6):
        hook.on_step(_info(step))
    hook.on_eval(_result(5))
    hook.close()
    lines = path.read_text().splitlines()
    assert "NaN" not in path.read_text()  # non-finite values are written as null
    assert json.loads(lines[0])["tokens_per_s"] is None
    assert json.loads(lines[-1])["eval"]["families"]["germanic"]["loss"] == 3.0
    # resuming from step 3 drops what the killed run wrote after its checkpoint
    MetricsJsonlHook(path, truncate_after_step=3).close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_progress_bar_shows_tokens_per_second_and_loss():
    buf = io.StringIO()
    hook = ProgressHook("run-a", 10, console=Console(file=buf, force_terminal=True, width=140))
    hook.on_step(_info(4, loss=2.75))
    hook.on_eval(_result(4))
    hook.close()
    text = buf.getvalue()
    assert "run-a" in text and "1,000 tok/s" in text and "loss 2.7500" in text
    assert "eval 3.0000" in text and "4/10" in text


def test_due():
    hook = Hook()
    hook.every = 3
    assert [s for s in range(1, 11) if hook.due(s, 10)] == [3, 6, 9, 10]
    hook.every = 0
    assert [s for s in range(1, 11) if hook.due(s, 10)] == [10]


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path):
    import pytest

    path = tmp_path / "metrics.jsonl"
    hook = MetricsJsonlHook(path)
    for step in (1, 2, 3):
        hook.on_step(_info(step))
    hook.close()
    with open(path, "a") as fh:
        fh.write('{"step": 4, "loss": 2.')  # the process died mid-write
    with pytest.warns(UserWarning, match=r"metrics.jsonl: dropped line\(s\) 4, not JSON"):
        MetricsJsonlHook(path, truncate_after_step=2).close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
