"""`multiscale mixture sample`: draw from a mixture and measure its token shares and speed."""

from __future__ import annotations

import argparse

from multiscale.cli._common import number, parse_shard
from multiscale.errors import InputError
from multiscale.mixture import DEFAULT_TAU
from multiscale.train.config import TrainConfig

MAX_TAU = 100.0  # q ∝ n^tau: beyond this every share but the largest language's is 0 in float64
DEFAULT_SEQ_LEN = TrainConfig.__dataclass_fields__["seq_len"].default  # the same on every command


def register(sub) -> None:
    p = sub.add_parser("mixture", help="sample a family mixture and check its token shares",
                       description="Inspect the grain mixture pipeline of a corpus.")
    msub = p.add_subparsers(dest="mixture_command", metavar="{sample}")
    s = msub.add_parser(
        "sample", help="draw sequences and report per-family token shares and tokens/s",
        description="Draws SEQUENCES packed sequences of SEQ_LEN tokens from the mixture and prints, "
                    "per family, the requested ratio, the measured token share and the tokens "
                    "drawn, the epochs over the family's unique tokens, and the pipeline's tokens/s.")
    s.add_argument("--corpus", required=True, metavar="DIR")
    s.add_argument("--ratios", required=True, metavar="FAM=P,...",
                   help="family token shares, e.g. germanic=0.5,romance=0.3,slavic=0.2 (sum 1)")
    s.add_argument("--normalize", action="store_true", help="scale the ratios to sum 1")
    s.add_argument("--within", choices=("proportional", "uniform", "temperature"), default="proportional",
                   help="how a family's languages share its tokens (default proportional)")
    s.add_argument("--tau", type=number(low_ok=True, high=MAX_TAU), default=DEFAULT_TAU,
                   help=f"within-family temperature exponent, q ∝ n^tau (with --within temperature; "
                        f"default {DEFAULT_TAU:g} as in mT5)")
    s.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN,
                   help=f"tokens per sequence (default {DEFAULT_SEQ_LEN})")
    s.add_argument("--sequences", type=int, default=20_000)
    s.add_argument("--batch-size", type=int, default=64,
                   help="sequences per batch (the largest divisor of --sequences up to this)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shard", default="0/1", metavar="i/n", help="host shard i of n (default 0/1)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(handler=_sample)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


MAX_BATCH = 1 << 16  # sequences per batch: the search for a divisor of --sequences stays instant


def _check_args(args: argparse.Namespace) -> None:
    for flag, value in (("--sequences", args.sequences), ("--batch-size", args.batch_size)):
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if args.batch_size > MAX_BATCH:
        raise InputError(f"--batch-size must be <= {MAX_BATCH}, got {args.batch_size}")


def _draw(it, steps: int, show_progress: bool) -> float:
    """Draws `steps` batches from `it`; returns the seconds it took."""
    import time

    progress = None
    if show_progress:
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        task = progress.add_task("sampling", total=steps)
    t0 = time.perf_counter()
    try:
        for _ in range(steps):
            next(it)
            if progress is not None:
                progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()
    return time.perf_counter() - t0


def _measure(corpus, spec, it, shard_count: int, seconds: float, args) -> dict:
    """The JSON result: per family the sampled ratio, measured share, tokens and epochs."""
    from multiscale.data.sampling import repetition_report

    acc = it.accounting()
    shares = acc.family_shares()
    epochs = repetition_report(corpus, spec, acc.tokens * shard_count, warn=False)
    families = {
        fam: {"requested_ratio": ratio, "measured_token_share": shares[fam],
              "tokens": acc.tokens_per_family[fam], "unique_train_tokens": corpus.train_tokens(fam),
              "epochs": epochs[fam]}
        for fam, ratio in it.family_ratios.items()
    }
    return {
        "corpus": corpus.path, "seq_len": args.seq_len, "sequences": acc.sequences, "tokens": acc.tokens,
        "target_tokens": int(sum(acc.target_tokens_per_language.values())),
        "seconds": seconds, "tokens_per_second": acc.tokens / seconds if seconds > 0 else None,
        "max_abs_share_error": max(abs(v["measured_token_share"] - v["requested_ratio"]) for v in families.values()),
        "mixture": spec.to_dict(), "families": families, "languages": dict(acc.tokens_per_language),
        "units": "tokens of the corpus vocabulary (" + corpus.manifest["vocab"]["name"] + ")",
    }


def _print_table(out: dict, seed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out['sequences']} sequences x {out['seq_len']} tokens, seed {seed}")
    for col in ("family", "requested", "measured share", "tokens", "epochs"):
        table.add_column(col, justify="left" if col == "family" else "right")
    for fam, v in out["families"].items():
        table.add_row(fam, f"{v['requested_ratio']:.4f}", f"{v['measured_token_share']:.4f}",
                      f"{v['tokens']:,}", f"{v['epochs']:.3f}")
    Console().print(table)
    print(f"{out['tokens_per_second']:,.0f} tokens/s; max |share - ratio| = {out['max_abs_share_error']:.5f}")


def _sample(args: argparse.Namespace) -> int:
    import json
    import sys

    from multiscale.data.corpus import Corpus
    from multiscale.data.sampling import MixtureSpec, make_train_iterator
    from multiscale.mixture import Mixture

    _check_args(args)
    mixture = Mixture.parse(args.ratios, normalize=args.normalize)
    shard_index, shard_count = parse_shard(args.shard)
    corpus = Corpus.open(args.corpus)
    spec = MixtureSpec(mixture, within=args.within, tau=args.tau)
    # the largest batch <= --batch-size that divides --sequences, so exactly that many are drawn
    batch = max(b for b in range(1, min(args.batch_size, args.sequences) + 1) if args.sequences % b == 0)
    it = make_train_iterator(corpus, spec, seq_len=args.seq_len, batch_size=batch, seed=args.seed,
                             shard_index=shard_index, shard_count=shard_count)
    show = not (args.json or args.no_progress) and sys.stderr.isatty()
    seconds = _draw(it, args.sequences // batch, show)
    out = _measure(corpus, spec, it, shard_count, seconds, args)
    if args.json:
        print(json.dumps(out))
    else:
        _print_table(out, args.seed)
    return 0
