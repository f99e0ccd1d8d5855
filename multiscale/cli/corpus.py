"""`multiscale corpus build`, `multiscale corpus info` and `multiscale corpus verify`."""

from __future__ import annotations

import argparse
import sys

from multiscale.cli._common import add_overwrite_argument, check_output, number
from multiscale.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("corpus", help="build or inspect a multilingual corpus",
                       description="Build a corpus (per-language ArrayRecord shards, manifest, fixed "
                                   "eval split) or print what one holds.")
    csub = p.add_subparsers(dest="corpus_command", metavar="{build,info,verify}")
    b = csub.add_parser(
        "build", help="build a corpus from the manual pages, files, TFDS or Hugging Face",
        description="Reads documents per language, deduplicates them, holds out a fixed eval set "
                    "by content hash and writes token shards. Sources: manpages (the installed "
                    "manpages-<lang> packages), files (--input LANG=GLOB, .txt or .jsonl), tfds "
                    "(seqio TfdsDataSource, e.g. c4/multilingual), hf (datasets, streaming).")
    b.add_argument("--source", choices=("manpages", "files", "tfds", "hf"), default="manpages")
    b.add_argument("--out", required=True, metavar="DIR")
    add_overwrite_argument(b, "corpus in --out (only the files its manifest lists are removed)")
    b.add_argument("--input", action="append", default=[], metavar="LANG=GLOB",
                   help="files source: files of one language (repeatable; several globs per language allowed)")
    b.add_argument("--languages", metavar="LANG,LANG,...", help="tfds/hf sources: languages to read "
                   "(default: every language of the grouping)")
    b.add_argument("--families", metavar="FILE.yaml",
                   help="grouping of languages into families (default: the manpages grouping for "
                        "--source manpages, else each language's genealogical family)")
    b.add_argument("--grouping", choices=("manpages", "paper"), help="a built-in grouping")
    b.add_argument("--max-docs", type=int, metavar="N", help="at most N documents per language")
    b.add_argument("--max-train-tokens", action="append", default=[], metavar="FAMILY=N[,FAMILY=N]",
                   help="cap a family's unique TRAIN tokens at N (e.g. japonic=1.28e5; repeatable): "
                        "a data-constrained family, whose data repeats sooner. Shared among the "
                        "family's languages by their token counts; whole documents in content-hash "
                        "order; the eval split is not capped; the manifest records the cap")
    eval_group = b.add_mutually_exclusive_group()
    eval_group.add_argument("--eval-fraction", type=number(high=1.0), default=0.05,
                            help="share of each language's documents held out (default 0.05)")
    eval_group.add_argument("--eval-docs", type=int, metavar="K", help="hold out K documents per language")
    b.add_argument("--vocab", default="byte", help="'byte' (default), a SentencePiece .model file, or "
                                                   "spm:SIZE to train one (family-balanced)")
    b.add_argument("--tfds-name", default="c4/multilingual:3.1.0")
    b.add_argument("--hf-path", default="allenai/c4")
    b.add_argument("--text-field", default="text", help="JSONL/TFDS/HF field holding the text")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--json", action="store_true", help="print the corpus summary as one JSON object")
    b.set_defaults(handler=_build)

    i = csub.add_parser("info", help="documents, bytes and tokens per family and language",
                        description="Prints the manifest's counts and checks cheaply that every shard "
                                    "is present with the size the manifest records (exit 1 when not).")
    i.add_argument("corpus", metavar="DIR")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(handler=_info)

    v = csub.add_parser("verify", help="check every file of a corpus against its manifest's SHA-256",
                        description="Reads every shard and compares its size and SHA-256 with the "
                                    "manifest; prints each missing or damaged file and exits 1 if "
                                    "there is one.")
    v.add_argument("corpus", metavar="DIR")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=_verify)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _parse_inputs(items: list[str]) -> dict[str, list[str]]:
    inputs: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--input {item!r} is not LANG=GLOB")
        lang, pattern = (s.strip() for s in item.split("=", 1))
        if not lang or not pattern:
            raise InputError(f"--input {item!r} is not LANG=GLOB")
        inputs.setdefault(lang, []).append(pattern)
    return inputs


def _parse_caps(items: list[str]) -> dict[str, int]:
    """--max-train-tokens FAMILY=N[,FAMILY=N] (repeatable) -> {family: N}."""
    caps: dict[str, int] = {}
    for item in (part.strip() for arg in items for part in arg.split(",")):
        fam, _, value = item.partition("=")
        fam = fam.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not fam or not (1 <= number < float("inf")) or number != int(number):
            raise InputError(f"--max-train-tokens {item!r} is not FAMILY=N with N a whole number >= 1")
        if fam in caps:
            raise InputError(f"--max-train-tokens names family {fam!r} twice")
        caps[fam] = int(number)
    return caps


def _grouping(args):
    from multiscale.families import MANPAGES_GROUPING, PAPER_GROUPING, load_grouping

    if args.families and args.grouping:
        raise InputError("give --families or --grouping, not both")
    if args.families:
        return load_grouping(args.families)
    if args.grouping == "paper":
        return PAPER_GROUPING
    if args.grouping == "manpages" or args.source == "manpages":
        return MANPAGES_GROUPING
    return None  # the languages' genealogical families


def _build(args: argparse.Namespace) -> int:
    import json

    from multiscale.data import sources
    from multiscale.data.corpus import build_corpus
    from multiscale.families import grouping_by_genealogy

    _check_out(args)
    grouping = _grouping(args)
    caps = _parse_caps(args.max_train_tokens)
    if args.source != "files" and args.input:
        raise InputError(f"--input is for --source files, not --source {args.source}")
    if args.source == "manpages":
        source = sources.ManpagesSource()
    elif args.source == "files":
        inputs = _parse_inputs(args.input)
        if not inputs:
            raise InputError("--source files needs at least one --input LANG=GLOB")
        if grouping is None:
            grouping = grouping_by_genealogy(inputs)
        stray = [lang for lang in inputs if lang not in grouping.languages]
        if stray:
            raise InputError(f"--input language(s) {', '.join(map(repr, stray))} in no family of the "
                             f"grouping ({', '.join(grouping.languages)})")
        if args.grouping:  # a built-in grouping: keep only the languages given
            from multiscale.families import Grouping

            grouping = Grouping.from_mapping({
                f.name: [lang for lang in f.languages if lang in inputs]
                for f in grouping.families if any(lang in inputs for lang in f.languages)
            })
        source = sources.FilesSource(inputs, text_field=args.text_field)
    else:
        if grouping is None and not args.languages:
            raise InputError(f"--source {args.source} needs --languages or a grouping (--families/--grouping)")
        langs = args.languages.split(",") if args.languages else list(grouping.languages)
        if grouping is None:
            grouping = grouping_by_genealogy(langs)
        if args.source == "tfds":
            source = sources.TFDSSource(langs, tfds_name=args.tfds_name, text_field=args.text_field,
                                        max_docs_per_language=args.max_docs)
        else:
            source = sources.HFSource(langs, path=args.hf_path, text_field=args.text_field,
                                      max_docs_per_language=args.max_docs)
    corpus = build_corpus(
        source, args.out, grouping=grouping,
        eval_fraction=None if args.eval_docs else args.eval_fraction,
        eval_docs_per_language=args.eval_docs, max_docs_per_language=args.max_docs,
        seed=args.seed, vocab=args.vocab, progress=False if args.no_progress else None,
        max_train_tokens=caps, overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(corpus.summary(), ensure_ascii=False))
    else:
        _print_table(corpus)
        print(f"corpus written to {args.out} in {corpus.manifest['build_seconds']:.1f} s", file=sys.stderr)
    return 0


def _check_out(args: argparse.Namespace) -> None:
    """--out, before any work: not an input (--input's files, --vocab, --families), a new or
    empty folder or a corpus (replaced with --overwrite), writable."""
    import glob
    import os

    patterns = [os.path.expanduser(item.partition("=")[2].strip()) for item in args.input]
    inputs = {"files --input": [f for pattern in patterns for f in glob.glob(pattern, recursive=True)],
              "vocabulary --vocab": [args.vocab] if os.path.exists(args.vocab) else [],
              "grouping --families": [args.families] if args.families else []}
    check_output(args.out, folder=True, inputs=inputs, marker=("manifest.json",), overwrite=args.overwrite,
                 ask="--overwrite")


def _info(args: argparse.Namespace) -> int:
    import json

    from multiscale.data.corpus import Corpus

    corpus = Corpus.open(args.corpus)
    problems = corpus.check(full=False)
    if args.json:
        print(json.dumps({**corpus.summary(), **_check_json(problems, "sizes")}, ensure_ascii=False))
    else:
        _print_table(corpus)
    return _report_problems(corpus, problems, "info", quiet=args.json)


def _verify(args: argparse.Namespace) -> int:
    import json

    from multiscale.data.corpus import Corpus

    corpus = Corpus.open(args.corpus)
    problems = corpus.check(full=True)
    if args.json:
        print(json.dumps({"path": corpus.path, "files": len(corpus.file_names()),
                          **_check_json(problems, "sha256")}, ensure_ascii=False))
    elif not problems:
        print(f"corpus {corpus.path}: all {len(corpus.file_names())} files intact (SHA-256 and size)")
    return _report_problems(corpus, problems, "verify", quiet=args.json)


def _check_json(problems, method: str) -> dict:
    return {"check": method, "intact": not problems,
            "damaged": [{"file": p.file, "problem": p.problem} for p in problems]}


def _report_problems(corpus, problems, command: str, *, quiet: bool) -> int:
    """Name each damaged file on stderr (unless the JSON carries them); 1 if any, else 0."""
    if not problems:
        return 0
    if not quiet:
        for p in problems:
            print(f"multiscale corpus {command}: damaged: {corpus.path}/{p}", file=sys.stderr)
        print(f"multiscale corpus {command}: {len(problems)} damaged file(s); rebuild the corpus "
              "with `multiscale corpus build`", file=sys.stderr)
    return 1


def _print_table(corpus) -> None:
    from rich.console import Console
    from rich.table import Table

    vocab = corpus.manifest["vocab"]
    table = Table(title=f"{corpus.path}  (source {corpus.manifest['source']}, vocab {vocab['name']} "
                        f"{vocab['vocab_size']}; tokens include one EOS per document)")
    for col in ("family", "language", "train docs", "train bytes", "train tokens", "eval docs", "eval tokens"):
        table.add_column(col, justify="left" if col in ("family", "language") else "right")
    for fam in corpus.grouping.families:
        for lang in fam.languages:
            table.add_row(fam.name, lang, f"{corpus.documents(lang):,}", f"{corpus.bytes(lang):,}",
                          f"{corpus.tokens(lang):,}", f"{corpus.documents(lang, 'eval'):,}",
                          f"{corpus.tokens(lang, 'eval'):,}")
        tot = corpus.manifest["families"][fam.name]
        table.add_row(f"[bold]{fam.name}", "[bold]all", f"{tot['train']['documents']:,}",
                      f"{tot['train']['bytes']:,}", f"[bold]{tot['train']['tokens']:,}",
                      f"{tot['eval']['documents']:,}", f"{tot['eval']['tokens']:,}", end_section=True)
    Console().print(table)
