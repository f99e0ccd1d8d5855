"""`multiscale mixture sample`: draw from a mixture and measure its token shares and speed."""

from __future__ import annotations

import argparse


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
    s.add_argument("--within", choices=("proportional", "uniform", "temperature"), default="proportional")
    s.add_argument("--temperature", type=float, default=1 / 0.3)
    s.add_argument("--seq-len", type=int, default=256)
    s.add_argument("--sequences", type=int, default=20_000)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shard", default="0/1", metavar="i/n", help="host shard i of n (default 0/1)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(handler=_sample)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is not i/n") from None
    return i, n


def _sample(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    import warnings

    from multiscale.data.corpus import Corpus
    from multiscale.data.mixture import MixtureSpec, make_train_iterator, repetition_report

    if args.sequences < 1:
        raise ValueError(f"--sequences must be >= 1, got {args.sequences}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    corpus = Corpus.open(args.corpus)
    spec = MixtureSpec.parse(args.ratios, within=args.within, temperature=args.temperature,
                             normalize=args.normalize)
    shard_index, shard_count = _parse_shard(args.shard)
    # the largest batch <= --batch-size that divides --sequences, so exactly that many are drawn
    batch = max(b for b in range(1, min(args.batch_size, args.sequences) + 1) if args.sequences % b == 0)
    steps = -(-args.sequences // batch)
    it = make_train_iterator(corpus, spec, seq_len=args.seq_len, batch_size=batch, seed=args.seed,
                             shard_index=shard_index, shard_count=shard_count)
    progress = None
    if not args.json and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        task = progress.add_task("sampling", total=steps)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
        if progress is not None:
            progress.advance(task)
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress.stop()
    acc = it.accounting()
    shares = acc.family_shares()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epochs = repetition_report(corpus, spec, acc.tokens * shard_count, warn=False)
    families = {
        fam: {
            "requested_ratio": spec.family_ratio(fam),
            "measured_token_share": shares[fam],
            "tokens": acc.tokens_per_family[fam],
            "unique_train_tokens": corpus.train_tokens(fam),
            "epochs": epochs[fam],
        }
        for fam in corpus.families
    }
    out = {
        "corpus": corpus.path,
        "seq_len": args.seq_len,
        "sequences": acc.sequences,
        "tokens": acc.tokens,
        "target_tokens": int(sum(acc.target_tokens_per_language.values())),
        "seconds": seconds,
        "tokens_per_second": acc.tokens / seconds if seconds > 0 else None,
        "max_abs_share_error": max(abs(v["measured_token_share"] - v["requested_ratio"]) for v in families.values()),
        "families": families,
        "languages": dict(acc.tokens_per_language),
        "units": "tokens of the corpus vocabulary (" + corpus.manifest["vocab"]["name"] + ")",
    }
    if args.json:
        print(json.dumps(out))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{acc.sequences} sequences x {args.seq_len} tokens, seed {args.seed}")
    for col in ("family", "requested", "measured share", "tokens", "epochs"):
        table.add_column(col, justify="left" if col == "family" else "right")
    for fam, v in families.items():
        table.add_row(fam, f"{v['requested_ratio']:.4f}", f"{v['measured_token_share']:.4f}",
                      f"{v['tokens']:,}", f"{v['epochs']:.3f}")
    Console().print(table)
    print(f"{out['tokens_per_second']:,.0f} tokens/s; max |share - ratio| = {out['max_abs_share_error']:.5f}")
    return 0
