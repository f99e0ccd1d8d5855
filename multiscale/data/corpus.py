"""The corpus on disk: per-language ArrayRecord shards, a manifest, a fixed eval split.

`build_corpus(source, out_dir, grouping=..., ...)` reads documents from a source
(`multiscale.data.sources`), deduplicates them per language (exact text after whitespace
normalization), splits each language into train and eval by a hash of the document's content
(stable: the same document is always on the same side, whatever the mixture, the seed or
`max_docs_per_language`), tokenizes with the vocabulary and writes:

    out_dir/manifest.json                         documents, bytes, tokens per language/family/split,
                                                  and the size and SHA-256 of every file below
    out_dir/<split>/<lang>-00000-of-0000N.tokens  ArrayRecord, one record per document:
                                                  token ids (uint16 or uint32, little endian), EOS
                                                  appended
    out_dir/<split>/<lang>-00000-of-0000N.text    ArrayRecord, the UTF-8 text of the same documents
    out_dir/vocab.model                           SentencePiece model (only with that vocabulary)

Token counts include the one EOS token per document (that is what the packed stream sees).
`max_train_tokens={family: N}` makes a family data-constrained: its TRAIN split keeps at most N
tokens (`cap_train_documents`), its eval split is unchanged (the same documents as without the
cap, so losses compare with an uncapped corpus of the same source); the manifest records the cap
(`max_train_tokens`) and each capped language's uncapped counts (`train.uncapped`).
The corpus is built in a temporary sibling folder and moved into place at the end (the manifest
last), so a failed build leaves nothing behind. `Corpus.open(out_dir)` reads it back;
`Corpus.check()` compares the files with the manifest (sizes, or with `full=True` SHA-256 too)
and every shard is size-checked before it is read, so a missing or truncated shard raises
`DamagedFileError` naming the file. A manifest without its checksums (`files`,
`manifest_sha256`) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from multiscale.data import vocab as vocab_lib
from multiscale.errors import DamagedFileError, InputError, MissingFileError
from multiscale.families import MANPAGES_GROUPING, Grouping, grouping_by_genealogy, load_grouping
from multiscale.fileio import check_output, dumps, interrupts_held, read_json, sha256_file, write_json

MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"  # the manifest's own checksum, a key of the manifest
FORMAT_VERSION = 1
SPLITS = ("train", "eval")
MAX_SHARD_BYTES = 256 << 20  # token bytes per shard
_SHARD_NAME = re.compile(r"vocab\.model|(train|eval)/[^/]+-\d{5}-of-\d{5}\.(tokens|text)")  # where a build writes


class CorpusError(InputError):
    """A corpus that cannot be built or opened, or a query it cannot answer."""


def manifest_digest(manifest: Mapping[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """SHA-256 of the manifest's sorted-key JSON, less its own checksum and `leave_out`."""
    content = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST and k not in leave_out}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def doc_hash(text: str) -> float:
    """A stable number in [0, 1) from a document's content (decides its split)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_documents(
    texts: list[str],
    *,
    eval_fraction: float | None,
    eval_docs: int | None,
    lang: str,
) -> tuple[list[str], list[str]]:
    """(train, eval) by content hash. At least one eval and one train document per language."""
    if len(texts) < 2:
        raise CorpusError(
            f"language {lang!r} has {len(texts)} document(s) after deduplication; "
            "need at least 2 (one for training, one held out)"
        )
    keyed = sorted(((doc_hash(t), t) for t in texts), key=lambda kv: kv[0])
    if eval_docs is not None:
        n_eval = eval_docs
    else:
        n_eval = sum(1 for h, _ in keyed if h < eval_fraction)  # type: ignore[operator]
        n_eval = max(1, n_eval)
    if n_eval >= len(keyed):
        raise CorpusError(
            f"language {lang!r}: {n_eval} eval documents leave none of its {len(keyed)} for training"
        )
    eval_set = {id(t) for _, t in keyed[:n_eval]}
    train = [t for t in texts if id(t) not in eval_set]
    held = [t for t in texts if id(t) in eval_set]
    return train, held


def _write_split(
    out_dir: str, split: str, lang: str, docs: list[str], vocab, dtype: np.dtype
) -> dict[str, Any]:
    from array_record.python.array_record_module import ArrayRecordWriter

    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    encoded = []
    for text in docs:
        ids = vocab.encode_np(text)
        ids = np.concatenate([ids, np.asarray([vocab.eos_id], np.int32)])
        encoded.append(ids.astype(dtype))
    total = sum(a.nbytes for a in encoded)
    n_shards = max(1, -(-total // MAX_SHARD_BYTES))
    per = -(-len(docs) // n_shards)
    shards, text_shards = [], []
    for s in range(n_shards):
        lo, hi = s * per, min(len(docs), (s + 1) * per)
        base = f"{split}/{lang}-{s:05d}-of-{n_shards:05d}"
        tw = ArrayRecordWriter(os.path.join(out_dir, base + ".tokens"), "group_size:1")
        xw = ArrayRecordWriter(os.path.join(out_dir, base + ".text"), "group_size:1")
        for i in range(lo, hi):
            tw.write(encoded[i].tobytes())
            xw.write(docs[i].encode("utf-8"))
        tw.close()
        xw.close()
        shards.append(base + ".tokens")
        text_shards.append(base + ".text")
    return {
        "documents": len(docs),
        "bytes": int(sum(len(t.encode("utf-8")) for t in docs)),
        "tokens": int(sum(len(a) for a in encoded)),
        "shards": shards,
        "text_shards": text_shards,
    }


# ---------------------------------------------------------------------------------- building


@dataclasses.dataclass(frozen=True)
class _BuildRequest:
    """The validated arguments of one build."""

    source: Any
    grouping: Grouping
    eval_fraction: float | None
    eval_docs: int | None
    max_docs: int | None
    spm_size: int | None
    vocab: Any  # a vocabulary object, or None when one is trained (spm_size)
    max_train_tokens: Mapping[str, int] = dataclasses.field(default_factory=dict)  # family -> cap


def build_corpus(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    grouping: Grouping | Mapping | str | os.PathLike | None = None,
    eval_fraction: float | None = 0.05,
    eval_docs_per_language: int | None = None,
    max_docs_per_language: int | None = None,
    seed: int = 0,
    vocab: Any = "byte",
    overwrite: bool = False,
    progress: bool | None = None,
    max_train_tokens: Mapping[str, int] | None = None,
) -> Corpus:
    """Build a corpus from `source` (a source object or 'manpages') into `out_dir`.

    `grouping` defaults to `MANPAGES_GROUPING` for the manpages source, else to the genealogical
    families of the source's languages (`multiscale.families.grouping_by_genealogy`).
    `vocab`: "byte", a SentencePiece .model path, or "spm:SIZE" to train a SentencePiece model of
    SIZE pieces on a family-balanced sample of the training split (saved as vocab.model).
    `eval_docs_per_language` (an int) overrides `eval_fraction`. `seed` is recorded; the split
    itself does not depend on it (it is a content hash). `max_train_tokens` ({family: N}, N >= 1)
    caps a family's unique training tokens (see `cap_train_documents`); eval is not capped.

    `out_dir` must be new, an empty folder, or a folder holding a corpus built here (replaced only
    when `overwrite`, and then only the files its manifest lists; other files in it are kept, and
    none may be where the new corpus writes). It may not hold an input (the source's files, the
    vocabulary model, the grouping file). The corpus is written to a temporary sibling folder and
    moved into place at the end: a failed build leaves `out_dir` as it was.
    """
    req = _build_request(source, grouping, eval_fraction, eval_docs_per_language,
                         max_docs_per_language, vocab)
    req = dataclasses.replace(req, max_train_tokens=_check_caps(max_train_tokens, req.grouping))
    out = os.path.abspath(os.fspath(out_dir))
    _check_out_dir(out, overwrite, _inputs(req, grouping, vocab))
    t0 = time.perf_counter()
    created = _make_parents(os.path.dirname(out))
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.building-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(tmp)
        splits = _read_splits(req, progress)
        manifest = _write_corpus(tmp, req, splits, seed)
        manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        manifest = json.loads(dumps(manifest))  # as it will read back
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        _install(tmp, out, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            _rmdir_quietly(d)
        raise
    return Corpus.open(out_dir)


def _build_request(source, grouping, eval_fraction, eval_docs, max_docs, vocab) -> _BuildRequest:
    """Resolve the source and grouping and check every argument before any work."""
    from multiscale.data.sources import ManpagesSource, get_source

    if isinstance(source, str):
        if source != "manpages":
            _bad_source(source)
        source = get_source("manpages")
    if grouping is None:
        if isinstance(source, ManpagesSource):
            grouping = MANPAGES_GROUPING
        else:
            grouping = grouping_by_genealogy(source.languages)
    grouping = load_grouping(grouping)
    if eval_docs is not None:
        if int(eval_docs) < 1:
            raise CorpusError(f"eval_docs_per_language must be >= 1, got {eval_docs}", arg="eval_docs_per_language")
        eval_fraction = None
    elif eval_fraction is None or not (0.0 < float(eval_fraction) < 1.0):
        raise CorpusError(f"eval_fraction must be in (0, 1), got {eval_fraction}", arg="eval_fraction")
    if max_docs is not None and int(max_docs) < 2:
        raise CorpusError(f"max_docs_per_language must be >= 2, got {max_docs}", arg="max_docs_per_language")
    missing = [lang for lang in grouping.languages if lang not in source.languages]
    if missing:
        raise CorpusError(
            f"the {source.name} source has no language(s) {', '.join(missing)} "
            f"(family {grouping.family_of(missing[0])!r}); it serves: {', '.join(source.languages)}"
        )
    spm_size = _spm_request(vocab)
    voc = None if spm_size else vocab_lib.get_vocabulary(vocab)
    return _BuildRequest(source, grouping, eval_fraction, eval_docs, max_docs, spm_size, voc)


def _inputs(req: _BuildRequest, grouping, vocab) -> dict[str, list[str]]:
    """The local files a build reads (how to name each -> paths), which `out` may not hold."""
    files = getattr(req.source, "files", None)  # a source of the user's files
    paths = {"vocabulary vocab": [vocab] if isinstance(vocab, (str, os.PathLike)) and os.path.isfile(vocab) else [],
             "grouping file grouping": [grouping] if isinstance(grouping, (str, os.PathLike)) else [],
             "source's files": [f for lang in req.source.languages for f in files(lang)] if files else []}
    return {name: p for name, p in paths.items() if p}


def _own_files(out: str) -> set[str]:
    """The files (relative to `out`) of the corpus built in `out`: its manifest and the files the
    manifest lists; a folder whose manifest.json is not such a corpus's is refused."""
    try:
        corpus = Corpus.open(out)
    except (InputError, MissingFileError) as err:
        raise CorpusError(f"out {out!r} holds a {MANIFEST} that is not an intact corpus manifest ({err}); a "
                          "build replaces only a corpus it can read, so give a new or empty folder",
                          arg="out") from None
    return {MANIFEST, *corpus.file_names()}


def _check_out_dir(out: str, overwrite: bool, inputs: Mapping[str, list[str]]) -> None:
    """`out` may be missing, an empty folder, or a corpus folder (replaced when `overwrite`), and
    may not hold an input; a file it holds that is not the corpus's may not be where a build
    writes (vocab.model, a shard)."""
    if os.path.isfile(os.path.join(out, MANIFEST)) and not overwrite:
        raise CorpusError(f"out {out!r} already holds a corpus (pass overwrite=True to replace it)", arg="out")
    try:
        check_output(out, folder=True, inputs=inputs, marker=(MANIFEST,), overwrite=overwrite)
    except InputError as err:  # as every refusal of a build: a CorpusError
        raise CorpusError(str(err), arg=err.arg) from None
    if not os.path.isdir(out) or not os.listdir(out):
        return
    own = _own_files(out)
    stray = [name for name in _files_under(out) if name not in own and _SHARD_NAME.fullmatch(name)]
    if stray:
        raise CorpusError(f"out {out!r} holds {', '.join(stray[:3])}, which its corpus did not write, where a "
                          "build writes; give a new or empty folder", arg="out")


def _files_under(folder: str) -> list[str]:
    """Every file under `folder`, relative to it."""
    return [os.path.relpath(os.path.join(root, name), folder)
            for root, _, names in os.walk(folder) for name in names]


def _make_parents(path: str) -> list[str]:
    """Create `path` and its missing parents; return the folders created (outermost first)."""
    created = []
    while path and not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    created.reverse()
    for d in created:
        os.mkdir(d)
    return created


def _rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _install(tmp: str, out: str, manifest: dict) -> None:
    """Move the finished corpus from `tmp` to `out`: a rename when `out` is missing or empty,
    else the old corpus's own files (its manifest's) are replaced, the manifest removed first and
    written last, with Ctrl-C held back until the new corpus is whole; no other file is touched."""
    if os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
    if not os.path.exists(out):
        write_json(os.path.join(tmp, MANIFEST), manifest, indent=1)
        os.rename(tmp, out)
        return
    own, new = _own_files(out), list(manifest["files"])
    clash = [name for name in new if name not in own and os.path.lexists(os.path.join(out, name))]
    if clash:
        raise CorpusError(f"out {out!r} holds {', '.join(clash[:3])}, which its corpus did not write, where "
                          "this build writes; give a new or empty folder", arg="out")
    with interrupts_held():  # Ctrl-C here would leave neither corpus
        os.remove(os.path.join(out, MANIFEST))  # from here on `out` holds no corpus until the end
        for name in sorted(own - {MANIFEST}):
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        for name in new:
            os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
        for split in SPLITS:  # a split folder the old corpus alone used, now empty
            if os.path.isdir(os.path.join(out, split)) and not os.listdir(os.path.join(out, split)):
                os.rmdir(os.path.join(out, split))
        write_json(os.path.join(out, MANIFEST), manifest, indent=1)
    shutil.rmtree(tmp)


def _read_language(source, lang: str, max_docs: int | None) -> tuple[list[str], int]:
    """A language's documents, exact duplicates (after whitespace normalization) removed."""
    seen: set[str] = set()
    texts: list[str] = []
    duplicates = 0
    for text in source.iter_documents(lang):
        key = hashlib.sha1(_normalize(text).encode("utf-8")).hexdigest()
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        texts.append(text)
        if max_docs is not None and len(texts) >= max_docs:
            break
    return texts, duplicates


def _read_splits(req: _BuildRequest, progress: bool | None) -> dict[str, tuple[list[str], list[str], int]]:
    """lang -> (train texts, eval texts, duplicates removed)."""
    splits: dict[str, tuple[list[str], list[str], int]] = {}
    bar = _progress(progress, len(req.grouping.languages))
    try:
        for lang in req.grouping.languages:
            if bar is not None:
                bar[0].update(bar[1], description=f"corpus {lang}")
            texts, duplicates = _read_language(req.source, lang, req.max_docs)
            train, held = split_documents(texts, eval_fraction=req.eval_fraction,
                                          eval_docs=req.eval_docs, lang=lang)
            splits[lang] = (train, held, duplicates)
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        if bar is not None:
            bar[0].stop()
    return splits


def _write_corpus(out: str, req: _BuildRequest, splits, seed: int) -> dict[str, Any]:
    """Tokenize and write every split into `out`; return the manifest (without build time)."""
    grouping, voc = req.grouping, req.vocab
    if req.spm_size:  # trained on the training split only, family-balanced
        voc = vocab_lib.train_sentencepiece(
            {lang: tr for lang, (tr, _, _) in splits.items()},
            {lang: grouping.family_of(lang) for lang in splits},
            os.path.join(out, "vocab"),
            vocab_lib.SentencePieceConfig(vocab_size=req.spm_size),
        )
    dtype = np.dtype("<u2") if voc.vocab_size <= 65536 else np.dtype("<u4")
    languages = _write_languages(out, req, splits, voc, dtype)
    vocab_info = voc.to_dict()
    if isinstance(voc, vocab_lib.SentencePieceVocabulary):
        if os.path.abspath(voc.path) != os.path.abspath(os.path.join(out, "vocab.model")):
            shutil.copyfile(voc.path, os.path.join(out, "vocab.model"))
        vocab_info["model"] = "vocab.model"
    return {
        "format": FORMAT_VERSION,
        "source": req.source.name,
        "vocab": vocab_info,
        "token_dtype": dtype.str,
        "seed": seed,
        "split": {"method": "sha256(content)", "eval_fraction": req.eval_fraction,
                  "eval_docs_per_language": req.eval_docs},
        "max_docs_per_language": req.max_docs,
        "max_train_tokens": dict(req.max_train_tokens),
        "grouping": grouping.to_dict(),
        "languages": languages,
        "families": _family_totals(grouping, languages),
        "files": _file_records(out, languages, "model" in vocab_info),
    }


def _write_languages(out: str, req: _BuildRequest, splits, voc, dtype: np.dtype) -> dict[str, Any]:
    """Write every language's train and eval split (train capped per `req.max_train_tokens`);
    return the manifest's `languages` entry."""
    grouping = req.grouping
    train_docs = {lang: tr for lang, (tr, _, _) in splits.items()}
    uncapped: dict[str, dict[str, int]] = {}
    for fam, cap in req.max_train_tokens.items():
        langs = grouping.family(fam).languages
        kept = cap_train_documents({lang: train_docs[lang] for lang in langs}, cap, voc)
        for lang in langs:
            uncapped[lang] = {"documents": len(train_docs[lang]),
                              "tokens": sum(_doc_tokens(t, voc) for t in train_docs[lang])}
            train_docs[lang] = kept[lang]
    languages: dict[str, Any] = {}
    for lang, (_, held, duplicates) in splits.items():
        train = _write_split(out, "train", lang, train_docs[lang], voc, dtype)
        if lang in uncapped:
            train["uncapped"] = uncapped[lang]
        languages[lang] = {
            "family": grouping.family_of(lang),
            "duplicates_removed": duplicates,
            "train": train,
            "eval": _write_split(out, "eval", lang, held, voc, dtype),
        }
    return languages


def _doc_tokens(text: str, voc) -> int:
    """Tokens of one document as written (EOS included)."""
    return int(len(voc.encode_np(text))) + 1


def cap_train_documents(train_by_lang: Mapping[str, list[str]], cap: int, voc) -> dict[str, list[str]]:
    """One family's training documents cut to about `cap` tokens in all (EOS included).

    The cap is shared among the family's languages in proportion to their uncapped training
    tokens. Each language keeps the longest prefix of its documents in content-hash order
    (`doc_hash`) that fits its share, and at least one document (so a share smaller than the
    first document is exceeded). Hash order makes the choice stable and nested: a smaller cap
    keeps a subset of a larger cap's documents. The kept documents stay in source order.
    """
    lengths = {lang: [_doc_tokens(t, voc) for t in docs] for lang, docs in train_by_lang.items()}
    total = sum(sum(v) for v in lengths.values())
    kept: dict[str, list[str]] = {}
    for lang, docs in train_by_lang.items():
        share = cap * sum(lengths[lang]) / total if total else 0.0
        order = sorted(range(len(docs)), key=lambda i: doc_hash(docs[i]))
        chosen, used = set(), 0
        for i in order:
            if chosen and used + lengths[lang][i] > share:
                break
            chosen.add(i)
            used += lengths[lang][i]
        kept[lang] = [t for i, t in enumerate(docs) if i in chosen]
    return kept


def _check_caps(caps: Mapping[str, Any] | None, grouping: Grouping) -> dict[str, int]:
    """{family: cap} with every family in the grouping and every cap a whole number >= 1."""
    out: dict[str, int] = {}
    for fam, cap in (caps or {}).items():
        if fam not in grouping.family_names:
            raise CorpusError(f"max_train_tokens: family {fam!r} is not in the grouping "
                              f"({', '.join(grouping.family_names)})")
        try:
            value = float(cap)
        except (TypeError, ValueError):
            value = float("nan")
        if not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise CorpusError(f"max_train_tokens: the cap of {fam!r} must be a whole number of "
                              f"tokens >= 1, got {cap!r}")
        out[fam] = int(value)
    return out


def _file_records(out: str, languages: Mapping[str, Any], has_model: bool) -> dict[str, Any]:
    """Relative path -> {bytes, sha256} of every shard (and the vocabulary model)."""
    names = [p for info in languages.values() for split in SPLITS
             for key in ("shards", "text_shards") for p in info[split][key]]
    if has_model:
        names.append("vocab.model")
    return {name: {"bytes": os.path.getsize(os.path.join(out, name)),
                   "sha256": sha256_file(os.path.join(out, name))} for name in names}


def _spm_request(vocab: Any) -> int | None:
    """'spm:8000' / 'sentencepiece:8000' -> 8000 (train one while building), else None."""
    if isinstance(vocab, str) and vocab.split(":", 1)[0] in ("spm", "sentencepiece") and ":" in vocab:
        size = vocab.split(":", 1)[1]
        if not size.isdigit() or int(size) < 300:
            raise CorpusError(f"vocab {vocab!r}: give a SentencePiece size >= 300, e.g. 'spm:8000'")
        return int(size)
    return None


def _bad_source(name: str):
    from multiscale.data.sources import SourceError

    raise SourceError(
        f"source {name!r} needs arguments: build it with multiscale.data.sources "
        "(FilesSource, TFDSSource, HFSource) and pass the object"
    )


def _progress(enabled: bool | None, total: int):
    import sys

    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import Progress

    prog = Progress(transient=True)
    prog.start()
    return prog, prog.add_task("corpus", total=total)


def _family_totals(grouping: Grouping, languages: Mapping[str, Any]) -> dict[str, Any]:
    fams: dict[str, Any] = {}
    for fam in grouping.families:
        entry: dict[str, Any] = {"languages": list(fam.languages)}
        for split in SPLITS:
            entry[split] = {
                key: int(sum(languages[lang][split][key] for lang in fam.languages))
                for key in ("documents", "bytes", "tokens")
            }
        fams[fam.name] = entry
    return fams


# ---------------------------------------------------------------------------------- checking


@dataclasses.dataclass(frozen=True)
class FileProblem:
    """A corpus file that is missing or does not match the manifest."""

    file: str      # path relative to the corpus folder
    problem: str   # e.g. "missing", "1024 bytes, the manifest records 2048 (truncated?)"

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


def _check_file(root: str, name: str, record: Mapping[str, Any], full: bool) -> FileProblem | None:
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        return FileProblem(name, "missing")
    size = os.path.getsize(path)
    if size != record["bytes"]:
        return FileProblem(name, f"{size} bytes, the manifest records {record['bytes']} "
                                 f"({'truncated' if size < record['bytes'] else 'changed'})")
    if full and sha256_file(path) != record["sha256"]:
        return FileProblem(name, "its SHA-256 differs from the manifest's (damaged or changed)")
    return None


def _check_names(mpath: str, manifest: Mapping[str, Any]) -> None:
    """Refuses a manifest naming a file outside its corpus folder (an absolute path, or one
    climbing out with '..'), or a shard its checksums do not cover."""
    shards = [name for info in manifest["languages"].values() if isinstance(info, Mapping)
              for split in SPLITS for key in ("shards", "text_shards")
              for name in (info.get(split) or {}).get(key, ())]
    model = manifest["vocab"].get("model") if isinstance(manifest["vocab"], Mapping) else None
    for name in [*manifest["files"], *shards, *([model] if model is not None else [])]:
        norm = os.path.normpath(name) if isinstance(name, str) else ""
        if not norm or os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep) or "\0" in norm:
            raise DamagedFileError(f"corpus manifest {mpath!r} names the file {name!r}, which is not inside the "
                                   "corpus folder; rebuild the corpus with `multiscale corpus build`")
    unchecked = [name for name in shards if name not in manifest["files"]]
    if unchecked:
        raise DamagedFileError(f"corpus manifest {mpath!r} names shards without a checksum "
                               f"({', '.join(unchecked[:3])}); rebuild the corpus with `multiscale corpus build`")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# ---------------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """A built corpus (read-only). Token counts include one EOS per document.

    Compared and hashed by identity (usable as a cache key); `Corpus.open` the same folder twice
    to get two equal-content objects."""

    path: str
    manifest: Mapping[str, Any]
    grouping: Grouping

    @classmethod
    def open(cls, path: str | os.PathLike) -> Corpus:
        path = os.fspath(path)
        mpath = os.path.join(path, MANIFEST)
        if not os.path.isfile(mpath):
            raise MissingFileError(f"no corpus at {path} (missing {MANIFEST}); build one with "
                                   "`multiscale corpus build`")
        manifest = read_json(mpath, what="corpus manifest")
        if manifest.get("format") != FORMAT_VERSION:
            raise CorpusError(f"{mpath}: unsupported corpus format {manifest.get('format')!r}")
        missing = [k for k in ("source", "vocab", "token_dtype", "grouping", "languages", "families")
                   if k not in manifest]
        if missing:
            raise DamagedFileError(f"corpus manifest {mpath!r} is damaged: no {', '.join(missing)}")
        recorded = manifest.get(MANIFEST_DIGEST)
        if recorded is None or not isinstance(manifest.get("files"), Mapping):
            raise DamagedFileError(f"corpus manifest {mpath!r} records no checksums ('files', '{MANIFEST_DIGEST}'), "
                                   "so its files cannot be checked; rebuild the corpus with `multiscale corpus build`")
        if recorded != manifest_digest(manifest):
            raise DamagedFileError(
                f"corpus manifest {mpath!r} was edited or damaged: its content no longer matches the "
                f"SHA-256 it recorded ({str(recorded)[:12]}...), so its counts and checksums cannot be "
                "trusted; rebuild the corpus with `multiscale corpus build`")
        _check_names(mpath, manifest)
        return cls(path, manifest, load_grouping(manifest["grouping"]))

    # -- structure ----------------------------------------------------------------------------
    @property
    def languages(self) -> tuple[str, ...]:
        return self.grouping.languages

    @property
    def families(self) -> tuple[str, ...]:
        return self.grouping.family_names

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["token_dtype"])

    @property
    def vocab(self):
        info = self.manifest["vocab"]
        if info["name"] == "byte":
            return vocab_lib.ByteVocabulary()
        self._require(["vocab.model"])
        return vocab_lib.SentencePieceVocabulary(os.path.join(self.path, info["model"]))

    def _lang(self, lang: str) -> Mapping[str, Any]:
        try:
            return self.manifest["languages"][lang]
        except KeyError:
            raise CorpusError(
                f"language {lang!r} is not in corpus {self.path} ({', '.join(self.languages)})"
            ) from None

    def _family(self, family: str) -> Mapping[str, Any]:
        try:
            return self.manifest["families"][family]
        except KeyError:
            raise CorpusError(
                f"family {family!r} is not in corpus {self.path} ({', '.join(self.families)})"
            ) from None

    @staticmethod
    def _check_split(split: str):
        if split not in SPLITS:
            raise CorpusError(f"split must be one of {SPLITS}, got {split!r}")

    # -- counts -------------------------------------------------------------------------------
    def train_tokens(self, family: str) -> int:
        """Unique training tokens of a family (EOS included)."""
        return int(self._family(family)["train"]["tokens"])

    def train_cap(self, family: str) -> int | None:
        """The family's cap on unique training tokens (`max_train_tokens`), None if uncapped."""
        self._family(family)
        cap = (self.manifest.get("max_train_tokens") or {}).get(family)
        return None if cap is None else int(cap)

    def tokens(self, lang: str, split: str = "train") -> int:
        self._check_split(split)
        return int(self._lang(lang)[split]["tokens"])

    def documents(self, lang: str, split: str = "train") -> int:
        self._check_split(split)
        return int(self._lang(lang)[split]["documents"])

    def bytes(self, lang: str, split: str = "train") -> int:
        """UTF-8 bytes of the language's documents in a split."""
        self._check_split(split)
        return int(self._lang(lang)[split]["bytes"])

    # -- integrity ----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """What the corpus holds, as 16 hex digits: the SHA-256 of its manifest less the build's
        wall time (every file with its checksum, the vocabulary, grouping, split and caps). Two
        builds of one source with the same settings share it, wherever they lie; a sweep folder
        refuses to mix runs of corpora that differ in it (`SweepStore.require_same_corpus`)."""
        return manifest_digest(self.manifest, leave_out=("build_seconds",))[:16]

    def file_names(self) -> list[str]:
        """Every data file of the corpus, relative to its folder."""
        return list(self.manifest["files"])

    def check(self, *, full: bool = False, files: list[str] | None = None) -> list[FileProblem]:
        """The files (default: all) that are missing or differ from the manifest.

        Cheap (`full=False`): presence and size. `full=True`: also the SHA-256 of every file."""
        records = self.manifest["files"]
        problems = []
        for name in files if files is not None else self.file_names():
            problem = _check_file(self.path, name, records[name], full)
            if problem is not None:
                problems.append(problem)
        return problems

    def require_intact(self) -> None:
        """Raise `DamagedFileError` naming every file that is missing or of the wrong size
        (cheap: no hashing; run before a long job reads the corpus)."""
        self._require(self.file_names())

    def _require(self, files: list[str]) -> None:
        """Raise `DamagedFileError` naming each of `files` that is missing or truncated."""
        problems = self.check(files=files)
        if problems:
            raise DamagedFileError(
                f"corpus {self.path} is damaged: {'; '.join(map(str, problems))}; rebuild it "
                "with `multiscale corpus build` (`multiscale corpus verify` checks every file)")

    # -- data ---------------------------------------------------------------------------------
    def shard_paths(self, lang: str, split: str = "train", kind: str = "tokens") -> list[str]:
        self._check_split(split)
        key = {"tokens": "shards", "text": "text_shards"}[kind]
        return [os.path.join(self.path, p) for p in self._lang(lang)[split][key]]

    def data_source(self, lang: str, split: str = "train", kind: str = "tokens"):
        """A grain random-access source of one language's documents (raw bytes records).

        The shards are checked first (present, of the recorded size): a damaged one raises
        `DamagedFileError` naming it."""
        import grain

        paths = self.shard_paths(lang, split, kind)
        self._require([os.path.relpath(p, self.path) for p in paths])
        try:
            return grain.sources.ArrayRecordDataSource(paths)
        except RuntimeError as err:
            raise DamagedFileError(
                f"corpus {self.path}: a shard of {lang!r} ({split}) cannot be read: "
                f"{', '.join(paths)} ({_first_line(err)})") from None

    def read_tokens(self, lang: str, split: str = "train") -> list[np.ndarray]:
        """Every document of a language/split as int32 token ids (EOS included)."""
        src = self.data_source(lang, split)
        dt = self.token_dtype
        return [np.frombuffer(src[i], dtype=dt).astype(np.int32) for i in range(len(src))]

    def read_texts(self, lang: str, split: str = "train") -> list[str]:
        src = self.data_source(lang, split, "text")
        return [bytes(src[i]).decode("utf-8") for i in range(len(src))]

    def summary(self) -> dict[str, Any]:
        """The manifest's counts without shard paths (for `corpus info`)."""
        langs = {
            lang: {
                "family": info["family"],
                **{split: {k: info[split][k] for k in ("documents", "bytes", "tokens")} for split in SPLITS},
            }
            for lang, info in self.manifest["languages"].items()
        }
        return {
            "path": self.path,
            "source": self.manifest["source"],
            "vocab": self.manifest["vocab"],
            "families": self.manifest["families"],
            "languages": langs,
            "split": self.manifest["split"],
            "max_train_tokens": dict(self.manifest.get("max_train_tokens") or {}),
        }
