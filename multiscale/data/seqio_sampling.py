"""The same mixture as a seqio `Mixture` of per-language `Task`s (reference path, T5X users).

Each language is a seqio Task over the corpus's *text* shards, tokenized by seqio's vocabulary
(Byte or SentencePiece) with EOS and packed by `concat_and_split` into rows of exactly L tokens
(seqio's packed naming; `language_id`). The rates are the language weights
`p_family * w_language|family`, so a family's token share is its ratio up to sampling noise.

TensorFlow and seqio are imported inside these functions only.
"""

from __future__ import annotations

import functools
import hashlib


def concat_and_split(dataset, sequence_length, output_features=None, *, feature: str = "targets"):
    """Concatenate a task's token stream and cut it into rows of `sequence_length[feature]`.

    The partial last row of the stream is dropped (training rows are never padded). Segment ids
    count EOS-separated documents in a row from 1; positions restart at 0 in each segment.
    """
    import tensorflow as tf

    length = int(sequence_length[feature])
    eos = 1

    def step(carry, tokens):
        buf = tf.concat([carry, tokens], 0)
        n = tf.shape(buf)[0] // length
        rows = tf.reshape(buf[: n * length], [n, length])
        return buf[n * length :], rows

    def step_with_lang(carry, ex):
        tokens, language_id = ex
        new_buf, rows = step(carry[0], tf.cast(tokens, tf.int32))
        return (new_buf, language_id), (rows, tf.fill([tf.shape(rows)[0]], language_id))

    ds = dataset.map(lambda ex: (ex[feature], ex["language_id"]), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.scan((tf.zeros([0], tf.int32), tf.constant(0, tf.int32)), step_with_lang).unbatch()

    def annotate(row, language_id):
        is_eos = tf.cast(tf.equal(row, eos), tf.int32)
        seg = 1 + tf.cumsum(is_eos, exclusive=True)
        idx = tf.range(length)
        first = tf.math.unsorted_segment_min(idx, seg - 1, num_segments=length)
        pos = idx - tf.gather(first, seg - 1)
        return {feature: row, f"{feature}_segment_ids": seg, f"{feature}_positions": pos,
                "language_id": language_id}

    return ds.map(annotate, num_parallel_calls=tf.data.AUTOTUNE)


def seqio_mixture(corpus, spec, *, name: str | None = None):
    """Register (or re-register) per-language Tasks and their Mixture; returns the Mixture."""
    import seqio
    import tensorflow as tf

    weights = {lang: w for lang, w in spec.language_weights(corpus).items() if w > 0}
    key = hashlib.sha1(f"{corpus.path}|{sorted(weights.items())}".encode()).hexdigest()[:10]
    name = name or f"multiscale_{key}"
    vocab = (seqio.ByteVocabulary() if corpus.manifest["vocab"]["name"] == "byte"
             else seqio.SentencePieceVocabulary(corpus.vocab.path))
    features = {"targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32)}
    tasks = []
    for lang in weights:
        lang_id = corpus.languages.index(lang)

        def dataset_fn(split, shuffle_files, seed=None, _lang=lang, _lang_id=lang_id):
            # the language's texts in stored order (held in memory: this is the reference path);
            # read through the corpus, which names a damaged shard
            src = corpus.data_source(_lang, "train", "text")
            texts = [bytes(src[i]) for i in range(len(src))]
            return tf.data.Dataset.from_tensor_slices(
                {"text": tf.constant(texts, tf.string),
                 "language_id": tf.fill([len(texts)], tf.constant(_lang_id, tf.int32))}
            )

        task_name = f"{name}_{lang}"
        seqio.TaskRegistry.remove(task_name)
        seqio.TaskRegistry.add(
            task_name,
            source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
            preprocessors=[
                functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text", "language_id": "language_id"}),
                seqio.preprocessors.tokenize,
                seqio.preprocessors.append_eos,
                concat_and_split,
            ],
            output_features=features,
            shuffle_buffer_size=256,
        )
        tasks.append((task_name, weights[lang]))
    seqio.MixtureRegistry.remove(name)
    return seqio.MixtureRegistry.add(name, tasks)


def seqio_dataset(corpus, spec, *, seq_len: int, batch_size: int, seed: int,
                  shard_index: int = 0, shard_count: int = 1):
    """Batches of the seqio Mixture as a tf.data.Dataset (repeats forever)."""
    import seqio

    mixture = seqio_mixture(corpus, spec)
    ds = mixture.get_dataset(
        sequence_length={"targets": int(seq_len)},
        split="train",
        shuffle=True,
        seed=seed,
        num_epochs=None,
        shard_info=seqio.ShardInfo(shard_index, shard_count) if shard_count > 1 else None,
        use_cached=False,
        passthrough_features=["targets_segment_ids", "targets_positions", "language_id"],
    )
    return ds.batch(int(batch_size), drop_remainder=True)
