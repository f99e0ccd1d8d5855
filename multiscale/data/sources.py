"""Corpus sources: where per-language documents come from.

A source has `.name`, `.languages` (codes it can serve) and `iter_documents(lang)` yielding
document texts in a deterministic order; the corpus builder (`multiscale.data.corpus`)
deduplicates, splits and tokenizes them. `TFDSSource` and `HFSource` import their libraries
lazily and accept an injected factory (tests, custom storage).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from multiscale.data.roff import roff_to_text
from multiscale.errors import InputError


class SourceError(InputError):
    """A source that cannot serve a language, or an unreadable input."""


DEFAULT_MAN_ROOT = "/usr/share/man"

# language code -> locale directories under /usr/share/man (first = the manpages-<lang> package's)
MANPAGES_LOCALES: Mapping[str, tuple[str, ...]] = {
    "de": ("de",), "nl": ("nl",), "sv": ("sv",), "da": ("da",), "nb": ("nb",),
    "fr": ("fr",), "es": ("es",), "it": ("it",), "pt": ("pt_BR", "pt"), "ro": ("ro",),
    "ru": ("ru",), "pl": ("pl",), "cs": ("cs",), "uk": ("uk",), "sr": ("sr",), "mk": ("mk",),
    "fi": ("fi",), "hu": ("hu",), "ja": ("ja",), "zh": ("zh_CN",), "el": ("el",), "tr": ("tr",),
    "id": ("id",), "vi": ("vi",), "ko": ("ko",), "hr": ("hr",), "sl": ("sl",),
}
# Debian package that provides each language's pages (for messages and the Makefile).
MANPAGES_PACKAGES: Mapping[str, str] = {
    code: "manpages-" + ("pt-br" if code == "pt" else "zh" if code == "zh" else code)
    for code in MANPAGES_LOCALES
}

MIN_DOC_BYTES = 200  # shorter pages are stubs or links (.so) with no prose


class ManpagesSource:
    """Running text of the translated manual pages installed under `root`.

    Pages are visited in the order of a hash of their path (so a `max_docs` prefix is a spread
    sample, not the pages starting with 'a'); pages under `MIN_DOC_BYTES` of text are skipped.
    """

    name = "manpages"

    def __init__(self, root: str = DEFAULT_MAN_ROOT, locales: Mapping[str, Sequence[str]] | None = None):
        self.root = root
        self.locales = dict(locales or MANPAGES_LOCALES)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.locales)

    def page_paths(self, lang: str) -> list[str]:
        if lang not in self.locales:
            raise SourceError(f"the manpages source has no language {lang!r}; it has: {', '.join(self.locales)}")
        paths = []
        for loc in self.locales[lang]:
            paths.extend(glob.glob(os.path.join(self.root, loc, "man*", "*")))
        paths = [p for p in paths if os.path.isfile(p)]
        if not paths:
            pkg = MANPAGES_PACKAGES.get(lang, f"manpages-{lang}")
            raise SourceError(
                f"no manual pages for language {lang!r} under {self.root}/{'|'.join(self.locales[lang])}; "
                f"install them: sudo apt-get install -y {pkg}")
        return sorted(paths, key=lambda p: hashlib.sha1(os.path.relpath(p, self.root).encode("utf-8")).hexdigest())

    def iter_documents(self, lang: str) -> Iterator[str]:
        for path in self.page_paths(lang):
            try:
                with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
                    raw = fh.read()
            except (OSError, EOFError):
                continue
            text = roff_to_text(raw.decode("utf-8", errors="replace"))
            if len(text.encode("utf-8")) >= MIN_DOC_BYTES:
                yield text


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


class FilesSource:
    """Users' files: `{lang: [glob, ...]}`.

    `.jsonl` / `.jsonl.gz`: one document per line, text in `text_field`.
    Other files (`.txt`, ...): one document per file, or per blank-line-separated block with
    `split_paragraphs=True`.
    """

    name = "files"

    def __init__(self, inputs: Mapping[str, str | Sequence[str]], *, text_field: str = "text",
                 split_paragraphs: bool = False):
        if not inputs:
            raise SourceError("inputs: the files source needs at least one language and its files", arg="inputs")
        self.inputs = {lang: ((pats,) if isinstance(pats, str) else tuple(pats)) for lang, pats in inputs.items()}
        self.text_field = text_field
        self.split_paragraphs = split_paragraphs

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def files(self, lang: str) -> list[str]:
        if lang not in self.inputs:
            raise SourceError(f"inputs: no files given for language {lang!r}", arg="inputs")
        found: list[str] = []
        for pat in self.inputs[lang]:
            hits = sorted(glob.glob(os.path.expanduser(pat), recursive=True))
            if not hits:
                raise SourceError(f"language {lang!r}: no file matches {pat!r}")
            found.extend(h for h in hits if os.path.isfile(h))
        return found

    def iter_documents(self, lang: str) -> Iterator[str]:
        for path in self.files(lang):
            if path.endswith((".jsonl", ".jsonl.gz")):
                with _open_text(path) as fh:
                    for lineno, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as err:
                            raise SourceError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                        if not isinstance(row, dict) or self.text_field not in row:
                            raise SourceError(f"{path}:{lineno}: no field {self.text_field!r}")
                        text = row[self.text_field]
                        if not isinstance(text, str):
                            raise SourceError(f"{path}:{lineno}: field {self.text_field!r} is not a string")
                        if text.strip():
                            yield text
            else:
                try:
                    with _open_text(path) as fh:
                        content = fh.read()
                except UnicodeDecodeError as err:
                    raise SourceError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
                if self.split_paragraphs:
                    for block in content.split("\n\n"):
                        if block.strip():
                            yield block.strip()
                elif content.strip():
                    yield content


class TFDSSource:
    """A TFDS text dataset read through seqio's `TfdsDataSource` (e.g. mC4 `c4/multilingual`, whose
    splits are named by language, hence the default `split_for`). `data_source_factory(tfds_name,
    split)` returns an object with `get_dataset(split=..., shuffle=False)`."""

    name = "tfds"

    def __init__(self, languages: Sequence[str], *, tfds_name: str = "c4/multilingual:3.1.0",
                 split_for: Callable[[str], str] | None = None, text_field: str = "text",
                 max_docs_per_language: int | None = None,
                 data_source_factory: Callable[[str, str], Any] | None = None):
        self._languages = tuple(languages)
        self.tfds_name = tfds_name
        self.split_for = split_for or (lambda lang: lang)
        self.text_field = text_field
        self.max_docs = max_docs_per_language
        self.factory = data_source_factory or self._seqio_factory

    @staticmethod
    def _seqio_factory(tfds_name: str, split: str):
        import seqio

        return seqio.TfdsDataSource(tfds_name=tfds_name, splits={"train": split})

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def iter_documents(self, lang: str) -> Iterator[str]:
        if lang not in self._languages:
            raise SourceError(f"the TFDS source was not given language {lang!r}")
        source = self.factory(self.tfds_name, self.split_for(lang))
        ds = source.get_dataset(split="train", shuffle=False)
        if self.max_docs is not None:
            ds = ds.take(self.max_docs)
        for ex in ds.as_numpy_iterator():
            if self.text_field not in ex:
                raise SourceError(f"{self.tfds_name}[{lang}]: examples have no field {self.text_field!r}")
            value = ex[self.text_field]
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            if text.strip():
                yield text


class HFSource:
    """A Hugging Face `datasets` dataset, streamed. `load_fn(path, name, split)` returns an
    iterable of dict rows; `config_for(lang)` the config name of a language (default: the code)."""

    name = "hf"

    def __init__(self, languages: Sequence[str], *, path: str = "allenai/c4",
                 config_for: Callable[[str], str | None] | None = None, split: str = "train",
                 text_field: str = "text", max_docs_per_language: int | None = None,
                 load_fn: Callable[[str, str | None, str], Iterable[Mapping[str, Any]]] | None = None):
        self._languages = tuple(languages)
        self.path = path
        self.config_for = config_for or (lambda lang: lang)
        self.split = split
        self.text_field = text_field
        self.max_docs = max_docs_per_language
        self.load_fn = load_fn or self._datasets_load

    @staticmethod
    def _datasets_load(path: str, name: str | None, split: str):
        try:
            import datasets
        except ModuleNotFoundError:
            raise SourceError("the hf source needs the 'datasets' package: pip install 'multiscale[hf]'") from None
        return datasets.load_dataset(path, name, split=split, streaming=True)

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def iter_documents(self, lang: str) -> Iterator[str]:
        if lang not in self._languages:
            raise SourceError(f"the hf source was not given language {lang!r}")
        rows = self.load_fn(self.path, self.config_for(lang), self.split)
        for n, row in enumerate(rows):
            if self.max_docs is not None and n >= self.max_docs:
                break
            if self.text_field not in row:
                raise SourceError(f"{self.path}[{lang}] row {n}: no field {self.text_field!r}")
            text = row[self.text_field]
            if isinstance(text, str) and text.strip():
                yield text


def get_source(name: str, **kwargs) -> Any:
    """A source by name: 'manpages', 'files', 'tfds', 'hf'."""
    table = {"manpages": ManpagesSource, "files": FilesSource, "tfds": TFDSSource, "hf": HFSource}
    if name not in table:
        raise SourceError(f"unknown source {name!r}; sources: {', '.join(table)}")
    return table[name](**kwargs)
