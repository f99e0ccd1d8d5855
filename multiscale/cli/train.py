"""`multiscale presets` and `multiscale train`."""

from __future__ import annotations

import argparse
import dataclasses
import math

from multiscale.cli._common import (
    add_host_devices_argument,
    apply_host_devices,
    check_corpus_folder,
    check_output,
    flag_of,
    number,
)
from multiscale.errors import InputError
from multiscale.mixture import Mixture
from multiscale.train.config import TrainConfig

# How `multiscale train` shows some TrainConfig fields; each field is read as its type (int,
# float, str; a bool is a switch) and described by its metadata (help, choices).
_METAVARS = {"corpus": "DIR", "model": "PRESET", "tokens": "D", "ratios": "FAM=P,...", "out": "RUN_DIR",
             "eval_batch": "ROWS", "eval_memory_tokens": "T", "eval_tokens_per_language": "N",
             "mesh": "data=2,fsdp=2,tensor=2"}


def _whole_number(text: str) -> int:
    """'2e6' -> 2000000: a whole number, also in scientific notation (token budgets)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text}")
    if abs(value) >= 2**62:  # counters are 64-bit integers
        raise argparse.ArgumentTypeError(f"must be a whole number below 2^62, got {text}")
    return int(value)


_TYPES = {"int": _whole_number, "int | None": _whole_number, "float": number(-math.inf), "str": str,
          "str | None": str, "Mixture": str}  # the ratios' text is parsed by `Mixture.parse` (errors name it)


def register(sub) -> None:
    p = sub.add_parser(
        "presets", help="list the model presets with parameter counts and FLOPs per token",
        description="Every preset: non-embedding (N, as in the run table) and embedding "
                    "parameters, layers, width, heads, MLP width, and training FLOPs per token "
                    "(6N + 12 * layers * d_model * seq_len).")
    p.add_argument("--vocab-size", type=int, default=259,
                   help="vocabulary size for the embedding count (default 259, the byte vocabulary)")
    p.add_argument("--seq-len", type=int, default=TrainConfig.__dataclass_fields__["seq_len"].default,
                   help="context for FLOPs per token (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_presets)
    _register_train(sub)


def _register_train(sub) -> None:
    t = sub.add_parser(
        "train", help="train one model on a family mixture and write its run-table rows",
        description="Trains PRESET on D tokens of the mixture, evaluates every family and "
                    "language on the held-out set (nats/token, SEM, bits per byte), and writes "
                    "metrics.jsonl, TensorBoard events, summary.json and rows.csv into --out. "
                    "Re-running the same command resumes from the newest intact checkpoint (a damaged one "
                    "is named on stderr and set aside).",
        epilog="Several hosts (TPU pod slices, GPU clusters): run the same command on every host "
               "with MULTISCALE_DISTRIBUTED=1 (TPU pods, SLURM, MPI) or with "
               "JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=n JAX_PROCESS_ID=i; "
               "jax.distributed.initialize() connects them, --batch-size is the global batch and each "
               "host reads its own shard of the mixture.")
    for field in dataclasses.fields(TrainConfig):
        _add_field_flag(t, field)
    add_host_devices_argument(t)
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    t.set_defaults(handler=_train)


def _add_field_flag(parser, field: dataclasses.Field) -> None:
    """The flag of one TrainConfig field: its name (`flag_of`), help and default."""
    help_text = field.metadata["help"].replace("%", "%%")
    if field.default is dataclasses.MISSING:
        parser.add_argument(flag_of(field.name), dest=field.name, required=True, type=_TYPES[field.type],
                            metavar=_METAVARS.get(field.name), help=help_text)
    elif field.type == "bool":
        parser.add_argument(flag_of(field.name), dest=field.name, default=field.default,
                            action="store_true" if not field.default else argparse.BooleanOptionalAction,
                            help=help_text)
    else:
        default = "" if field.default is None else f" (default {field.default:g})" if isinstance(
            field.default, float) else f" (default {field.default})"
        parser.add_argument(flag_of(field.name), dest=field.name, default=field.default,
                            type=_TYPES[field.type], metavar=_METAVARS.get(field.name),
                            choices=field.metadata["choices"], help=help_text + default)


def _presets(args: argparse.Namespace) -> int:
    import json

    from multiscale.models.params import count_params, flops_per_token
    from multiscale.models.presets import PRESETS, get_preset

    for flag, value in (("--vocab-size", args.vocab_size), ("--seq-len", args.seq_len)):
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    rows = []
    for name in PRESETS:
        cfg = get_preset(name, vocab_size=args.vocab_size)
        counts = count_params(cfg)
        rows.append({"name": name, "non_embedding_params": counts.non_embedding,
                     "embedding_params": counts.embedding, "layers": cfg.num_layers,
                     "d_model": cfg.d_model, "heads": cfg.num_heads, "d_ff": cfg.d_ff,
                     "flops_per_token": flops_per_token(cfg, args.seq_len)})
    if args.json:
        print(json.dumps({"vocab_size": args.vocab_size, "seq_len": args.seq_len,
                          "presets": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model presets (vocab {args.vocab_size}, seq_len {args.seq_len})")
    for col in ("preset", "N (non-emb)", "embedding", "layers", "d_model", "heads", "d_ff",
                "FLOPs/token"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['non_embedding_params']:,}", f"{r['embedding_params']:,}",
                      str(r["layers"]), str(r["d_model"]), str(r["heads"]), str(r["d_ff"]),
                      f"{r['flops_per_token']:.3g}")
    Console().print(table)
    return 0


def _train(args: argparse.Namespace) -> int:
    import json

    check_corpus_folder(args.corpus)
    check_output(args.out, folder=True, inputs={"corpus --corpus": args.corpus}, marker=("config.json",),
                 resumes=True)  # before jax starts; a run folder is resumed
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
                         | {"ratios": Mixture.parse(args.ratios)})
    apply_host_devices(args.host_devices, "train")  # before jax starts
    from multiscale.train.loop import maybe_initialize_distributed, run_training

    maybe_initialize_distributed()
    summary = run_training(config, progress=not args.no_progress)
    if args.json:
        from multiscale.fileio import json_safe

        print(json.dumps(json_safe(summary)))
        return 0
    print(f"run {summary['run']}: {summary['model']} (N={summary['N']:,}), "
          f"D={summary['D']:,} tokens, {summary['steps']} steps, {summary['wall_s']:.1f}s")
    for fam, stats in summary["families"].items():
        sem = stats["loss_sem"]
        sem_text = f" ± {sem:.4f}" if sem is not None and math.isfinite(sem) else ""
        print(f"  {fam:<14} p={summary['ratios'].get(fam, 0.0):.3f}  loss {stats['loss']:.4f}"
              f"{sem_text} nats/token  {stats['bpb']:.4f} bits/byte")
    print(f"wrote {args.out}/rows.csv and summary.json")
    return 0
