"""Data: corpus sources, the corpus on disk, vocabularies, the mixture and the eval set.

- `sources`   where documents come from: installed manual pages (`roff` extracts their prose),
              users' files, TFDS via seqio, Hugging Face `datasets` (streaming).
- `corpus`    `build_corpus` / `Corpus`: per-language ArrayRecord shards, manifest, fixed
              content-hash eval split.
- `vocab`     byte vocabulary (seqio layout, no TensorFlow) and SentencePiece.
- `packing`   fixed-length rows with segment ids, positions and loss weights.
- `sampling`  `MixtureSpec` and `make_train_iterator`: sampling a mixture, the grain hot path,
              token-exact family shares, host sharding, checkpointable state, token accounting,
              repetition report.
- `seqio_sampling`  the same sampling as a seqio Mixture of per-language Tasks (reference path).
- `evalset`   `load_eval_set`: the fixed per-language eval rows.

Nothing here imports TensorFlow at module level.
"""
