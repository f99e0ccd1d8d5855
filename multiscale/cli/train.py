"""`multiscale presets` and `multiscale train`."""

from __future__ import annotations

import argparse
import math

from multiscale.cli._common import add_host_devices_argument, apply_host_devices, check_corpus_folder
from multiscale.fileio import check_output_folder

# TrainConfig's defaults (the command line must not import jax to register: tests/test_train_cli.py
# checks that these equal the dataclass's).
SEQ_LEN, BATCH, CHECKPOINT_EVERY, EVAL_BATCH, EVAL_MEMORY_TOKENS = 128, 32, 100, 32, 8192


def register(sub) -> None:
    p = sub.add_parser(
        "presets", help="list the model presets with parameter counts and FLOPs per token",
        description="Every preset: non-embedding (N, as in the run table) and embedding "
                    "parameters, layers, width, heads, MLP width, and training FLOPs per token "
                    "(6N + 12 * layers * d_model * seq_len).")
    p.add_argument("--vocab-size", type=int, default=259,
                   help="vocabulary size for the embedding count (default 259, the byte vocabulary)")
    p.add_argument("--seq-len", type=int, default=128, help="context for FLOPs per token (default 128)")
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
    t.add_argument("--corpus", required=True, metavar="DIR", help="a built corpus folder")
    t.add_argument("--model", required=True, metavar="PRESET", help="preset name (see `multiscale presets`)")
    t.add_argument("--tokens", required=True, type=_int, metavar="D",
                   help="training tokens (e.g. 2e6); steps = D // (batch size * seq_len)")
    t.add_argument("--ratios", required=True, metavar="FAM=P,...",
                   help="family sampling ratios summing to 1, e.g. germanic=0.4,romance=0.6")
    t.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (local or gs://)")
    t.add_argument("--seq-len", type=int, default=SEQ_LEN, help=f"tokens per sequence (default {SEQ_LEN})")
    t.add_argument("--batch-size", type=int, default=BATCH, dest="batch",
                   help=f"global batch in sequences, all hosts together (default {BATCH})")
    t.add_argument("--batch", type=int, dest="batch", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    t.add_argument("--warmup-steps", type=int, default=None, dest="warmup_steps",
                   help="learning-rate warm-up steps (default 5%% of the steps)")
    t.add_argument("--warmup", type=int, dest="warmup_steps", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=0, help="steps between evals (0: only at the end)")
    t.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY,
                   help=f"steps between checkpoints (0: only at the end; default {CHECKPOINT_EVERY})")
    t.add_argument("--eval-tokens-per-language", type=int, default=32_768, metavar="N",
                   help="cap on each language's eval tokens (default 32768)")
    t.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH, dest="eval_batch", metavar="ROWS",
                   help=f"at most ROWS sequences per eval batch (default {EVAL_BATCH})")
    t.add_argument("--eval-memory-tokens", type=int, default=EVAL_MEMORY_TOKENS, metavar="T",
                   help="at most T tokens (rows x seq_len) per eval batch, at least one row, so "
                        f"long sequences evaluate a few at a time (default {EVAL_MEMORY_TOKENS}); "
                        "the losses do not depend on it")
    t.add_argument("--mesh", default=None, metavar="data=2,fsdp=2,tensor=2",
                   help="device mesh (default: all devices on data)")
    t.add_argument("--compute-dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    add_host_devices_argument(t)
    t.add_argument("--run-name", default=None, help="the run table's `run` (default: RUN_DIR's name)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    t.set_defaults(handler=_train)


def _int(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of tokens: {text}") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number of tokens: {text}")
    return int(value)


def _presets(args: argparse.Namespace) -> int:
    import json

    from multiscale.models.params import count_params, flops_per_token
    from multiscale.models.presets import PRESETS, get_preset

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
    import math

    check_corpus_folder(args.corpus)
    check_output_folder(args.out)  # before jax starts
    apply_host_devices(args.host_devices, "train")  # before jax starts
    from multiscale.train.loop import maybe_initialize_distributed

    maybe_initialize_distributed()
    from multiscale.train import TrainConfig, run_training

    config = TrainConfig(
        corpus=args.corpus, model=args.model, tokens=args.tokens, ratios=args.ratios,
        out=args.out, seq_len=args.seq_len, batch=args.batch, lr=args.lr,
        warmup_steps=args.warmup_steps, grad_accum=args.grad_accum, seed=args.seed,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, mesh=args.mesh,
        compute_dtype=args.compute_dtype, run_name=args.run_name,
        eval_tokens_per_language=args.eval_tokens_per_language, eval_batch=args.eval_batch,
        eval_memory_tokens=args.eval_memory_tokens)
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
