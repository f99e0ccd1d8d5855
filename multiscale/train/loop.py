"""One complete training run: `run_training(config) -> summary`.

Order of work: validate everything (preset, mesh, batch, ratios) before any compute; build or
fetch the compiled steps; restore the latest checkpoint if the run folder has one; train,
handing each finished step to the hooks; evaluate at the end; write `summary.json` and
`rows.csv` (the run-table rows, one per family with p > 0).

Host syncs: step t's metrics are read after step t+1 has been dispatched, so the host prepares
the next batch while the device computes; before a checkpoint or an evaluation all pending
metrics are read, so a checkpoint is only written after every loss before it was finite.
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
from multiscale.train.step import TRAIN_KEYS, OptimizerSpec, TrainState, compiled_steps


class NonFiniteLossError(InputError):
    """The training loss became NaN or infinite; the message names the step."""


class ResumeMismatchError(InputError):
    """The run folder holds checkpoints of a run with a different configuration."""


def maybe_initialize_distributed() -> None:
    """`jax.distributed.initialize()` when launched on several hosts.

    Triggered by MULTISCALE_DISTRIBUTED=1 or JAX_COORDINATOR_ADDRESS. On TPU pods, SLURM and MPI
    jax discovers the coordinator, the process count and this process's id itself; elsewhere
    (GPU hosts started by hand or by another launcher) set JAX_COORDINATOR_ADDRESS=host:port,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host. Must run before any other jax call."""
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
    """Train (or resume) the run `config` describes and write its outputs; return the summary.

    The summary holds the final eval per family and language (nats/token), `rows` (the run-table
    rows as a list of dicts; `rows_frame(summary)` makes a DataFrame), parameter counts, tokens
    and timings. `data` replaces the corpus pipeline (tests, other data sources).
    """
    maybe_initialize_distributed()
    check_output_folder(config.out)
    validate(config)  # cheap checks first: preset, mesh, batch
    if data is None:
        data = load_run_data(config.corpus, config.ratios, seq_len=config.seq_len,
                             seed=config.seed,
                             eval_tokens_per_language=config.eval_tokens_per_language)
    else:
        config.ratios.check_families(data.family_names)
    plan = validate(config, vocab_size=data.vocab_size)
    return _Run(plan, data, hooks or [], progress).run()


class _Run:
    def __init__(self, plan: _Plan, data: RunData, user_hooks, progress: bool):
        self.plan, self.config, self.data = plan, plan.config, data
        self.user_hooks, self.progress = list(user_hooks), progress
        self.out = epath.Path(self.config.out)
        self.is_writer = jax.process_index() == 0

    def run(self) -> dict:
        cfg, plan = self.config, self.plan
        steps = compiled_steps(
            plan.model_cfg, tuple(plan.mesh_shape.items()),
            OptimizerSpec(cfg.b1, cfg.b2, cfg.eps, cfg.weight_decay, cfg.clip, cfg.grad_accum))
        self.steps = steps
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_resumable()
        if self.is_writer:
            fingerprint = {"data_fingerprint": self.data.fingerprint} if self.data.fingerprint else {}
            write_json(self.out / "config.json", {**cfg.to_json(), **fingerprint})

        iterator = self.data.make_train_iterator(plan.local_batch, jax.process_index(),
                                                 jax.process_count())
        ckpt = Checkpointer(self.out / "checkpoints", keep=cfg.keep_checkpoints)
        start, state = self._restore(ckpt, iterator)

        writers = self._writers(start)
        evaluator = Evaluator.cached(self.data.eval_set, steps, cfg.eval_rows)
        eval_hook = hooks_lib.EvalHook(evaluator, cfg.eval_every, writers)
        all_hooks = writers + [eval_hook]
        run_info = {"run": cfg.name, "start_step": start, "total_steps": cfg.steps}
        for hook in all_hooks:
            hook.on_start(run_info)
        try:
            self._timer = None  # (step, time) of the first finished step: tokens/s excludes compile
            t0 = time.perf_counter()
            state = self._train(state, iterator, ckpt, start, all_hooks)
            if eval_hook.last is None or eval_hook.last.step != cfg.steps:
                eval_hook.on_step(self._info(cfg.steps, None, state))
            summary = self._summary(eval_hook.last, time.perf_counter() - t0, start)
            if self.is_writer:
                self._write_outputs(summary)
            for hook in all_hooks:
                hook.on_end(summary)
        finally:
            ckpt.close()
            for hook in all_hooks:
                hook.close()
        return summary

    def _restore(self, ckpt: Checkpointer, iterator) -> tuple[int, TrainState]:
        """(start step, state): the newest intact checkpoint's (a damaged one is skipped with a
        warning naming its step), else step 0 and a fresh state."""
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            jax.eval_shape(self.steps.init, 0), self.steps.state_shardings)
        restored = ckpt.restore_latest(abstract) if ckpt.all_steps() else None
        if restored is None:
            return 0, self.steps.init(self.config.seed)
        start, state, data_state = restored
        iterator.set_state(data_state)
        return start, state

    def _check_resumable(self) -> None:
        """Refuse to resume checkpoints written under another configuration."""
        path = self.out / "config.json"
        if not path.exists() or not (self.out / "checkpoints").exists():
            return
        saved = read_json(path, what="run configuration")
        now = self.config.to_json()
        for key in TrainConfig.resume_fields():
            if key in saved and saved[key] != now[key]:
                if key == "ratios" and saved[key].keys() == now[key].keys() and all(
                        abs(saved[key][f] - now[key][f]) < 1e-9 for f in now[key]):
                    continue
                raise ResumeMismatchError(
                    f"run folder {self.out} holds checkpoints of a run with {key}={saved[key]!r}, "
                    f"but this run has {key}={now[key]!r}; use another run folder or delete this one", arg="out")
        before, fingerprint = saved.get("data_fingerprint"), self.data.fingerprint
        if before and fingerprint and before != fingerprint:
            raise ResumeMismatchError(
                f"run folder {self.out} holds checkpoints of a run trained on other data (corpus "
                f"fingerprint {before[:12]}, but {self.config.corpus} has {fingerprint[:12]}): "
                f"use another run folder or delete this one", arg="out")

    def _writers(self, start: int) -> list[hooks_lib.Hook]:
        writers: list[hooks_lib.Hook] = []
        if self.is_writer:
            writers.append(hooks_lib.MetricsJsonlHook(self.out / "metrics.jsonl",
                                                      truncate_after_step=start))
            writers.append(hooks_lib.TensorBoardHook(self.out / "tensorboard"))
            if self.progress and sys.stderr.isatty():
                writers.append(hooks_lib.ProgressHook(self.config.name, self.config.steps, start))
        return writers + self.user_hooks

    def _train(self, state: TrainState, iterator, ckpt: Checkpointer, start: int, all_hooks):
        cfg, steps = self.config, self.steps
        sched = schedule_scalars(cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
        pending: list[tuple[int, Any]] = []
        for step in range(start + 1, cfg.steps + 1):
            batch = self._device_batch(next(iterator))
            state, metrics = steps.train(state, batch, sched)
            pending.append((step, metrics))
            must_sync = (step == cfg.steps or _due(step, cfg.eval_every)
                         or _due(step, cfg.checkpoint_every))
            # Read every finished step's metrics but the newest, unless we must sync now.
            ready = pending if must_sync else pending[:-1]
            for done_step, m in ready:
                self._finish_step(done_step, m, state if done_step == step else None, all_hooks)
            pending = [] if must_sync else pending[-1:]
            if _due(step, cfg.checkpoint_every) or step == cfg.steps:
                ckpt.save(step, state, iterator.get_state())
        return state

    def _finish_step(self, step: int, metrics, state, all_hooks) -> None:
        m = jax.device_get(metrics)
        loss = float(m["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss}) at step {step} of run {self.config.name!r}; "
                f"stopped; the last good checkpoint is kept in {self.out / 'checkpoints'} "
                f"(try a lower learning rate than {self.config.lr:g})")
        info = self._info(step, m, state)
        for hook in all_hooks:
            if hook.due(step, self.config.steps) and (state is not None or
                                                      not isinstance(hook, hooks_lib.EvalHook)):
                hook.on_step(info)

    def _info(self, step: int, m, state) -> hooks_lib.StepInfo:
        now = time.perf_counter()
        if self._timer is None or step <= self._timer[0]:
            self._timer = (step, now)
            tps = math.nan
        else:
            tps = (step - self._timer[0]) * self.config.tokens_per_step / (now - self._timer[1])
        return hooks_lib.StepInfo(
            step=step, total_steps=self.config.steps,
            loss=float(m["loss"]) if m is not None else math.nan,
            grad_norm=float(m["grad_norm"]) if m is not None else math.nan,
            lr=float(m["lr"]) if m is not None else math.nan,
            tokens_seen=step * self.config.tokens_per_step, tokens_per_s=tps,
            elapsed_s=now - self._timer[1],
            params=state.params if state is not None else None)

    def _device_batch(self, batch: dict[str, Any]) -> dict[str, jax.Array]:
        out = {}
        for key in TRAIN_KEYS:
            local = np.asarray(batch[key])
            if local.shape[0] != self.plan.local_batch:
                raise ValueError(f"train iterator gave {local.shape[0]} rows for {key!r}, "
                                 f"expected the per-host batch {self.plan.local_batch}")
            out[key] = jax.make_array_from_process_local_data(self.steps.batch_sharding, local)
        return out

    def _summary(self, result: EvalResult, wall_s: float, start: int) -> dict:
        cfg, model_cfg = self.config, self.plan.model_cfg
        counts = count_params(model_cfg)
        rows = make_rows(
            run=cfg.name, N=counts.non_embedding, D=cfg.tokens_trained, step=result.step,
            model=cfg.model, seed=cfg.seed, mixture=self._sampled_mixture(),
            families=self.data.family_names,
            per_family={f: {"loss": s.loss, "loss_sem": s.loss_sem, "bpb": s.bpb, "eval_tokens": s.tokens}
                        for f, s in result.families.items()})
        return {
            "run": cfg.name, "model": cfg.model, "seed": cfg.seed,
            "N": counts.non_embedding, "N_embedding": counts.embedding,
            "D": cfg.tokens_trained, "steps": cfg.steps, "resumed_from_step": start,
            "seq_len": cfg.seq_len, "batch": cfg.batch,
            "flops_per_token": flops_per_token(model_cfg, cfg.seq_len),
            "mesh": self.plan.mesh_shape, "devices": jax.device_count(),
            "ratios": cfg.ratios.to_dict(), "loss_units": "nats/token",
            "families": {f: s.to_json() for f, s in result.families.items()},
            "languages": {lang: s.to_json() for lang, s in result.languages.items()},
            "zero_ratio_families": {f: s.to_json() for f, s in result.families.items()
                                    if cfg.ratios.get(f) <= 0},
            "wall_s": wall_s, "rows": rows,
        }

    def _write_outputs(self, summary: dict) -> None:
        # rows.csv last and both atomic: a run folder holding both is a finished run (the sweep's test)
        write_json(self.out / "summary.json", json_safe(summary))
        columns = column_order(self.data.family_names)
        atomic_write_text(self.out / "rows.csv", rows_csv(summary["rows"], columns))

    def _sampled_mixture(self) -> dict[str, float]:
        """The family ratios the data pipeline sampled (`RunData.sampled_ratios`), which the run
        table's p and p_<family> columns record; the config's ratios when the source does not say."""
        sampled = getattr(self.data, "sampled_ratios", None)
        return self.config.ratios.to_dict() if sampled is None else dict(sampled)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def rows_frame(summary: dict):
    """The summary's run-table rows as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(summary["rows"])
