"""One complete training run: `run_training(config) -> summary`.

Validate everything before any compute; build or fetch the compiled steps; restore the latest
checkpoint; train, handing each step to the hooks; evaluate; write `summary.json` and `rows.csv`
(one run-table row per family with p > 0). Step t's metrics are read after step t+1 is dispatched
(the host prepares the next batch meanwhile); all pending metrics are read before a checkpoint or
an evaluation, so a checkpoint follows only finite losses.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from etils import epath

import multiscale.train.hooks as hooks_lib
from multiscale.errors import InputError
from multiscale.fileio import atomic_write_text, check_output_folder, json_safe, read_json, write_json
from multiscale.models import sharding as msharding
from multiscale.models.params import count_params, flops_per_token
from multiscale.models.presets import get_preset
from multiscale.runs import column_order, make_rows, rows_csv
from multiscale.train.checkpoint import Checkpointer
from multiscale.train.config import TrainConfig
from multiscale.train.data_source import RunData, load_run_data
from multiscale.train.evaluation import EvalResult, Evaluator
from multiscale.train.optim import schedule_scalars
from multiscale.train.step import TRAIN_KEYS, OptimizerSpec, compiled_steps


class NonFiniteLossError(InputError):
    """The training loss became NaN or infinite; the message names the step."""


class ResumeMismatchError(InputError):
    """The run folder holds checkpoints of a run with a different configuration."""


def maybe_initialize_distributed() -> None:
    """`jax.distributed.initialize()` when launched on several hosts.

    Triggered by MULTISCALE_DISTRIBUTED=1 or JAX_COORDINATOR_ADDRESS (jax discovers the rest on
    TPU pods, SLURM and MPI; elsewhere set JAX_NUM_PROCESSES and JAX_PROCESS_ID too). Must run
    before any other jax call."""
    if os.environ.get("MULTISCALE_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        if not jax.distributed.is_initialized():
            kwargs = {}
            for env, key in (("JAX_NUM_PROCESSES", "num_processes"),
                             ("JAX_PROCESS_ID", "process_id")):
                value = os.environ.get(env)
                if value is not None:
                    try:
                        kwargs[key] = int(value)
                    except ValueError:
                        raise InputError(f"{env}={value!r} is not an integer") from None
            jax.distributed.initialize(**kwargs)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything validated and derived from a config before compute."""

    config: TrainConfig
    model_cfg: Any
    mesh_shape: dict[str, int]
    local_batch: int


def validate(config: TrainConfig, *, vocab_size: int | None = None) -> _Plan:
    """Check preset, mesh, batch and host split; raise a ValueError naming the problem."""
    model_cfg = get_preset(config.model, vocab_size=vocab_size,
                           compute_dtype=config.compute_dtype,
                           tie_embeddings=config.tie_embeddings)
    mesh_shape = msharding.parse_mesh(config.mesh)
    msharding.check_mesh(mesh_shape, device_count=jax.device_count(),
                         global_batch=config.batch, process_count=jax.process_count())
    micro = config.batch // config.grad_accum
    ways = mesh_shape["data"] * mesh_shape["fsdp"]
    if micro % ways:
        raise msharding.MeshError(
            f"micro-batch batch/grad_accum = {micro} is not divisible by data*fsdp = {ways}")
    return _Plan(config, model_cfg, mesh_shape, config.batch // jax.process_count())


def run_training(config: TrainConfig, *, hooks: list[hooks_lib.Hook] | None = None,
                 progress: bool = True, data: RunData | None = None) -> dict:
    """Train (or resume) the run `config` describes, write its outputs and return the summary:
    final eval per family and language (nats/token), `rows` (the run-table rows as dicts),
    parameter counts, tokens and timings. `data` replaces the corpus pipeline."""
    maybe_initialize_distributed()
    check_output_folder(config.out)
    validate(config)  # cheap checks first: preset, mesh, batch
    if data is None:
        data = load_run_data(config.corpus, config.ratios, seq_len=config.seq_len, seed=config.seed,
                             eval_tokens_per_language=config.eval_tokens_per_language)
    else:
        config.ratios.check_families(data.family_names)
    plan = validate(config, vocab_size=data.vocab_size)
    out, is_writer = epath.Path(config.out), jax.process_index() == 0
    steps = compiled_steps(plan.model_cfg, tuple(plan.mesh_shape.items()), OptimizerSpec(
        config.b1, config.b2, config.eps, config.weight_decay, config.clip, config.grad_accum))
    out.mkdir(parents=True, exist_ok=True)
    _check_resumable(config, data, out)
    if is_writer:
        fingerprint = {"data_fingerprint": data.fingerprint} if data.fingerprint else {}
        write_json(out / "config.json", {**config.to_json(), **fingerprint})

    iterator = data.make_train_iterator(plan.local_batch, jax.process_index(), jax.process_count())
    ckpt = Checkpointer(out / "checkpoints", keep=config.keep_checkpoints)
    start, state = _restore(ckpt, steps, config.seed, iterator)

    writers: list[hooks_lib.Hook] = []
    if is_writer:
        writers.append(hooks_lib.MetricsJsonlHook(out / "metrics.jsonl", truncate_after_step=start))
        writers.append(hooks_lib.TensorBoardHook(out / "tensorboard"))
        if progress and sys.stderr.isatty():
            writers.append(hooks_lib.ProgressHook(config.name, config.steps, start))
    writers += hooks or []
    eval_hook = hooks_lib.EvalHook(Evaluator.cached(data.eval_set, steps, config.eval_rows),
                                   config.eval_every, writers)
    all_hooks = writers + [eval_hook]
    for hook in all_hooks:
        hook.on_start({"run": config.name, "start_step": start, "total_steps": config.steps})

    timer = None  # (step, time) of the first finished step: tokens/s leaves out the compile

    def step_info(step: int, m: dict | None, params) -> hooks_lib.StepInfo:
        nonlocal timer
        now = time.perf_counter()
        if timer is None or step <= timer[0]:
            timer, tps = (step, now), math.nan
        else:
            tps = (step - timer[0]) * config.tokens_per_step / (now - timer[1])
        return hooks_lib.StepInfo(
            step=step, total_steps=config.steps,
            **{k: float(m[k]) if m is not None else math.nan for k in ("loss", "grad_norm", "lr")},
            tokens_seen=step * config.tokens_per_step, tokens_per_s=tps,
            elapsed_s=now - timer[1], params=params)

    sched = schedule_scalars(config.lr, config.warmup, config.steps, config.min_lr_ratio)
    try:
        t0 = time.perf_counter()
        pending: list[tuple[int, Any]] = []
        for step in range(start + 1, config.steps + 1):
            batch = _global_batch(next(iterator), plan.local_batch, steps.batch_sharding)
            state, metrics = steps.train(state, batch, sched)
            pending.append((step, metrics))
            must_sync = (step == config.steps or _due(step, config.eval_every)
                         or _due(step, config.checkpoint_every))
            # Read every finished step's metrics but the newest, unless we must sync now.
            for done_step, device_metrics in (pending if must_sync else pending[:-1]):
                m = jax.device_get(device_metrics)
                loss = float(m["loss"])
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite training loss ({loss}) at step {done_step} of run {config.name!r}; "
                        f"stopped; the last good checkpoint is kept in {out / 'checkpoints'} "
                        f"(try a lower learning rate than {config.lr:g})")
                current = done_step == step  # only the newest step's parameters are at hand
                info = step_info(done_step, m, state.params if current else None)
                for hook in all_hooks:
                    if hook.due(done_step, config.steps) and (
                            current or not isinstance(hook, hooks_lib.EvalHook)):
                        hook.on_step(info)
            pending = [] if must_sync else pending[-1:]
            if _due(step, config.checkpoint_every) or step == config.steps:
                ckpt.save(step, state, iterator.get_state())
        if eval_hook.last is None or eval_hook.last.step != config.steps:
            eval_hook.on_step(step_info(config.steps, None, state.params))
        summary = _summary(plan, data, eval_hook.last, time.perf_counter() - t0, start)
        if is_writer:
            # rows.csv last and both atomic: a run folder holding both is a finished run (the sweep's test)
            write_json(out / "summary.json", json_safe(summary))
            atomic_write_text(out / "rows.csv",
                              rows_csv(summary["rows"], column_order(data.family_names)))
        for hook in all_hooks:
            hook.on_end(summary)
    finally:
        ckpt.close()
        for hook in all_hooks:
            hook.close()
    return summary


def _restore(ckpt: Checkpointer, steps, seed: int, iterator) -> tuple[int, Any]:
    """(start step, state) of the newest intact checkpoint (a damaged one is skipped with a
    warning naming its step), else step 0 and a fresh state."""
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            jax.eval_shape(steps.init, 0), steps.state_shardings)
    restored = ckpt.restore_latest(abstract) if ckpt.all_steps() else None
    if restored is None:
        return 0, steps.init(seed)
    start, state, data_state = restored
    iterator.set_state(data_state)
    return start, state


def _check_resumable(config: TrainConfig, data: RunData, out: epath.Path) -> None:
    """Refuse to resume checkpoints written under another configuration or other data."""
    path = out / "config.json"
    if not path.exists() or not (out / "checkpoints").exists():
        return
    saved = read_json(path, what="run configuration")
    now = config.to_json()
    for key in TrainConfig.resume_fields():
        if key in saved and saved[key] != now[key]:
            if key == "ratios" and saved[key].keys() == now[key].keys() and all(
                    abs(saved[key][f] - now[key][f]) < 1e-9 for f in now[key]):
                continue
            raise ResumeMismatchError(
                f"run folder {out} holds checkpoints of a run with {key}={saved[key]!r}, "
                f"but this run has {key}={now[key]!r}; use another run folder or delete this one", arg="out")
    before, fingerprint = saved.get("data_fingerprint"), data.fingerprint
    if before and fingerprint and before != fingerprint:
        raise ResumeMismatchError(
            f"run folder {out} holds checkpoints of a run trained on other data (corpus "
            f"fingerprint {before[:12]}, but {config.corpus} has {fingerprint[:12]}): "
            f"use another run folder or delete this one", arg="out")


def _global_batch(batch: dict[str, Any], local_batch: int, sharding) -> dict[str, jax.Array]:
    """This host's rows of a batch as global arrays over the mesh."""
    out = {}
    for key in TRAIN_KEYS:
        local = np.asarray(batch[key])
        if local.shape[0] != local_batch:
            raise ValueError(f"train iterator gave {local.shape[0]} rows for {key!r}, "
                             f"expected the per-host batch {local_batch}")
        out[key] = jax.make_array_from_process_local_data(sharding, local)
    return out


def _summary(plan: _Plan, data: RunData, result: EvalResult, wall_s: float, start: int) -> dict:
    cfg, model_cfg = plan.config, plan.model_cfg
    counts = count_params(model_cfg)
    # p and p_<family> record the ratios the pipeline sampled, when it says (RunData.sampled_ratios)
    sampled = getattr(data, "sampled_ratios", None)
    rows = make_rows(
        run=cfg.name, N=counts.non_embedding, D=cfg.tokens_trained, step=result.step,
        model=cfg.model, seed=cfg.seed,
        mixture=cfg.ratios.to_dict() if sampled is None else dict(sampled),
        families=data.family_names,
        per_family={f: {"loss": s.loss, "loss_sem": s.loss_sem, "bpb": s.bpb, "eval_tokens": s.tokens}
                    for f, s in result.families.items()})
    return {
        "run": cfg.name, "model": cfg.model, "seed": cfg.seed,
        "N": counts.non_embedding, "N_embedding": counts.embedding,
        "D": cfg.tokens_trained, "steps": cfg.steps, "resumed_from_step": start,
        "seq_len": cfg.seq_len, "batch": cfg.batch,
        "flops_per_token": flops_per_token(model_cfg, cfg.seq_len),
        "mesh": plan.mesh_shape, "devices": jax.device_count(),
        "ratios": cfg.ratios.to_dict(), "loss_units": "nats/token",
        "families": {f: s.to_json() for f, s in result.families.items()},
        "languages": {lang: s.to_json() for lang, s in result.languages.items()},
        "zero_ratio_families": {f: s.to_json() for f, s in result.families.items()
                                if cfg.ratios.get(f) <= 0},
        "wall_s": wall_s, "rows": rows,
    }


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def rows_frame(summary: dict):
    """The summary's run-table rows as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(summary["rows"])
