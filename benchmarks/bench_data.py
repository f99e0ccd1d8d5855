"""Data pipeline throughput: grain hot path vs the seqio/tf.data reference, side by side.

Same corpus, same ratios, same sequence length and batch size. The two pipelines are timed in
alternating rounds in one process (the machines are shared and noisy: compare the ratio).
Also reports how the grain rate compares with the training rate of the largest CPU preset,
bounded from above by the f32 matmul peak measured in the same run (tokens/s of training can
not exceed peak FLOP/s / model FLOPs per token), so `grain_over_train_bound` is conservative.

Prints one JSON object. Usage:
    python benchmarks/bench_data.py [--corpus DIR] [--seq-len 256] [--batch-size 32] [--seconds 5]
Without --corpus it builds the full embedded corpus (manual pages) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

DEFAULT_RATIOS = "germanic=0.4,romance=0.25,slavic=0.2,sino_tibetan=0.1,japonic=0.05"


def _time_iter(next_fn, tokens_per_batch: int, seconds: float) -> tuple[float, int]:
    n, t0 = 0, time.perf_counter()
    while True:
        next_fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n * tokens_per_batch / dt, n


def _matmul_peak(size: int = 1024, reps: int = 10) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - t0)


def _train_bound(seq_len: int, vocab_size: int, peak: float) -> dict:
    try:
        from multiscale.models.params import count_params, flops_per_token
        from multiscale.models.presets import PRESETS, get_preset
    except Exception as err:  # the model package is another module; report, do not fail
        return {"error": f"presets unavailable: {err}"}
    cpu = [name for name in PRESETS if name.startswith("cpu")]
    best = max(cpu, key=lambda n: count_params(get_preset(n, vocab_size=vocab_size)).non_embedding)
    cfg = get_preset(best, vocab_size=vocab_size)
    fpt = float(flops_per_token(cfg, seq_len))
    return {"preset": best, "flops_per_token": fpt, "train_tokens_per_s_upper_bound": peak / fpt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="corpus folder (default: build the manpages corpus in a temp dir)")
    ap.add_argument("--ratios", default=DEFAULT_RATIOS)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per round and pipeline")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from multiscale.data.corpus import Corpus, build_corpus
    from multiscale.data.sampling import MixtureSpec, make_train_iterator
    from multiscale.data.seqio_sampling import seqio_dataset

    tmp = None
    if args.corpus:
        corpus = Corpus.open(args.corpus)
        build_s = None
    else:
        tmp = tempfile.TemporaryDirectory()
        t0 = time.perf_counter()
        corpus = build_corpus("manpages", tmp.name, progress=False)
        build_s = time.perf_counter() - t0
    spec = MixtureSpec.parse(args.ratios)
    L, B = args.seq_len, args.batch_size
    tokens_per_batch = L * B

    grain_it = make_train_iterator(corpus, spec, seq_len=L, batch_size=B, seed=args.seed,
                                   shard_index=0, shard_count=1)
    t0 = time.perf_counter()
    next(grain_it)
    grain_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    seqio_it = seqio_dataset(corpus, spec, seq_len=L, batch_size=B, seed=args.seed).as_numpy_iterator()
    next(seqio_it)
    seqio_first = time.perf_counter() - t0
    for _ in range(5):  # warm both
        next(grain_it)
        next(seqio_it)

    grain_rates, seqio_rates = [], []
    for _ in range(args.rounds):
        grain_rates.append(_time_iter(lambda: next(grain_it), tokens_per_batch, args.seconds)[0])
        seqio_rates.append(_time_iter(lambda: next(seqio_it), tokens_per_batch, args.seconds)[0])
    grain_tps, seqio_tps = float(np.median(grain_rates)), float(np.median(seqio_rates))

    acc = grain_it.accounting()
    want = {f: spec.family_ratio(f) for f in corpus.families}
    peak = _matmul_peak()
    bound = _train_bound(L, corpus.vocab.vocab_size, peak)
    out = {
        "benchmark": "data",
        "corpus": corpus.path if args.corpus else "manpages (built in a temp dir)",
        "corpus_build_seconds": build_s,
        "train_tokens_in_corpus": int(sum(corpus.train_tokens(f) for f in corpus.families)),
        "ratios": want,
        "seq_len": L,
        "batch_size": B,
        "grain_tokens_per_s": grain_tps,
        "seqio_tokens_per_s": seqio_tps,
        "grain_over_seqio": grain_tps / seqio_tps,
        "grain_rounds": grain_rates,
        "seqio_rounds": seqio_rates,
        "grain_first_batch_s": grain_first,
        "seqio_first_batch_s": seqio_first,
        "grain_max_share_error": max(abs(acc.family_shares()[f] - want[f]) for f in want),
        "grain_sequences_drawn": acc.sequences,
        "f32_matmul_peak_flops": peak,
        "largest_cpu_preset": bound,
        "grain_over_train_bound": (grain_tps / bound["train_tokens_per_s_upper_bound"]
                                   if "train_tokens_per_s_upper_bound" in bound else None),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
