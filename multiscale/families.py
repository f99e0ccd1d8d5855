"""Languages, language families, and groupings of languages into families.

The multilingual law of He et al. (2024, arXiv 2410.12883) is stated per *family*: the loss of a
family depends on its own sampling ratio. A `Grouping` says which languages form which family.
Two groupings ship with the library:

- `PAPER_GROUPING`: the paper's five families (Germanic, Romance, Slavic, Indic, Sino-Tibetan)
  with 23 languages; the members are not checked against the paper's table.
- `MANPAGES_GROUPING`: the grouping of the embedded corpus (Debian's translated manual pages),
  five families by genealogy with 18 languages that have enough text.

Users build their own in code (`Grouping.from_mapping({"germanic": ["de", "nl"], ...})`) or
in YAML (`load_grouping("families.yaml")`), see `load_grouping` for the format.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from multiscale.errors import InputError, MissingFileError
from multiscale.fileio import load_yaml


class GroupingError(InputError):
    """A grouping that cannot be used: unknown language, duplicate, empty family."""


@dataclasses.dataclass(frozen=True)
class Language:
    """A language: ISO 639-1 code (or 639-3 where no 639-1 code exists), English name, and
    ISO 15924 script code (Latn, Cyrl, Hans, Jpan, ...)."""

    code: str
    name: str
    script: str


# The registry of known languages. Users may add their own per grouping (see `Grouping`).
LANGUAGES: Mapping[str, Language] = {code: Language(code, name, script) for code, name, script in (
    # Germanic
    ("en", "English", "Latn"), ("de", "German", "Latn"), ("nl", "Dutch", "Latn"),
    ("sv", "Swedish", "Latn"), ("da", "Danish", "Latn"), ("nb", "Norwegian Bokmal", "Latn"),
    ("is", "Icelandic", "Latn"), ("af", "Afrikaans", "Latn"),
    # Romance
    ("fr", "French", "Latn"), ("es", "Spanish", "Latn"), ("it", "Italian", "Latn"),
    ("pt", "Portuguese", "Latn"), ("ro", "Romanian", "Latn"), ("ca", "Catalan", "Latn"),
    ("gl", "Galician", "Latn"),
    # Slavic
    ("ru", "Russian", "Cyrl"), ("pl", "Polish", "Latn"), ("cs", "Czech", "Latn"),
    ("uk", "Ukrainian", "Cyrl"), ("sr", "Serbian", "Cyrl"), ("mk", "Macedonian", "Cyrl"),
    ("bg", "Bulgarian", "Cyrl"), ("sk", "Slovak", "Latn"), ("sl", "Slovenian", "Latn"),
    ("hr", "Croatian", "Latn"), ("be", "Belarusian", "Cyrl"),
    # Indic (Indo-Aryan)
    ("hi", "Hindi", "Deva"), ("bn", "Bengali", "Beng"), ("ur", "Urdu", "Arab"),
    ("mr", "Marathi", "Deva"), ("gu", "Gujarati", "Gujr"), ("pa", "Punjabi", "Guru"),
    ("ne", "Nepali", "Deva"),
    # Sino-Tibetan
    ("zh", "Chinese", "Hans"), ("my", "Burmese", "Mymr"), ("bo", "Tibetan", "Tibt"),
    # others
    ("ja", "Japanese", "Jpan"), ("ko", "Korean", "Kore"), ("fi", "Finnish", "Latn"),
    ("hu", "Hungarian", "Latn"), ("et", "Estonian", "Latn"), ("el", "Greek", "Grek"),
    ("tr", "Turkish", "Latn"), ("id", "Indonesian", "Latn"), ("vi", "Vietnamese", "Latn"),
    ("ar", "Arabic", "Arab"), ("he", "Hebrew", "Hebr"), ("fa", "Persian", "Arab"),
)}

_FAMILY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Family:
    """A named family of languages (codes from the registry or the grouping's own languages)."""

    name: str
    languages: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "languages", tuple(self.languages))
        if not isinstance(self.name, str) or not _FAMILY_NAME.match(self.name):
            raise GroupingError(f"family name {self.name!r} is not valid: use lower case letters, "
                                "digits and '_' (e.g. 'sino_tibetan')")
        if not self.languages:
            raise GroupingError(f"family {self.name!r} is empty: give it at least one language")


@dataclasses.dataclass(frozen=True)
class Grouping:
    """Families of languages, in a fixed order (family ids index `family_names`).

    `extra_languages` adds languages unknown to the registry `LANGUAGES` for this grouping only.
    Errors: a language code that is neither in the registry nor in `extra_languages`, a language
    in two families (or twice in one), an empty family, two families with the same name.
    """

    families: tuple[Family, ...]
    extra_languages: tuple[Language, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "extra_languages", tuple(self.extra_languages))
        if not self.families:
            raise GroupingError("a grouping needs at least one family")
        known = dict(LANGUAGES)
        for lang in self.extra_languages:
            if not isinstance(lang, Language):
                raise GroupingError(f"extra language {lang!r} is not a Language")
            known[lang.code] = lang
        seen_family: set[str] = set()
        owner: dict[str, str] = {}
        for fam in self.families:
            if not isinstance(fam, Family):
                raise GroupingError(f"{fam!r} is not a Family")
            if fam.name in seen_family:
                raise GroupingError(f"family {fam.name!r} appears twice")
            seen_family.add(fam.name)
            for code in fam.languages:
                if code not in known:
                    raise GroupingError(
                        f"unknown language code {code!r} in family {fam.name!r}; known codes: "
                        f"{', '.join(sorted(known))} (add it with extra_languages / a 'languages:' "
                        "section in YAML)")
                if code in owner:
                    where = (f"twice in family {fam.name!r}" if owner[code] == fam.name
                             else f"in two families: {owner[code]!r} and {fam.name!r}")
                    raise GroupingError(f"language {code!r} is {where}")
                owner[code] = fam.name
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_known", known)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Iterable[str]],
                     extra_languages: Iterable[Language] = ()) -> Grouping:
        """`{"germanic": ["de", "nl"], "romance": ["fr"]}` -> Grouping (order kept)."""
        if not isinstance(mapping, Mapping):
            raise GroupingError(f"expected a mapping family -> languages, got {type(mapping).__name__}")
        families = []
        for name, langs in mapping.items():
            if isinstance(langs, str) or not isinstance(langs, Iterable):
                raise GroupingError(f"family {name!r}: expected a list of language codes, got {langs!r}")
            families.append(Family(str(name), tuple(str(x) for x in langs)))
        return cls(tuple(families), tuple(extra_languages))

    # -- queries ------------------------------------------------------------------------------
    @property
    def family_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.families)

    @property
    def languages(self) -> tuple[str, ...]:
        """All language codes, family by family, in grouping order."""
        return tuple(code for f in self.families for code in f.languages)

    def family_of(self, lang: str) -> str:
        try:
            return self._owner[lang]  # type: ignore[attr-defined]
        except KeyError:
            raise GroupingError(f"language {lang!r} is in no family of this grouping "
                                f"({', '.join(self.languages)})") from None

    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise GroupingError(f"unknown family {name!r}; families: {', '.join(self.family_names)}")

    def language(self, code: str) -> Language:
        try:
            return self._known[code]  # type: ignore[attr-defined]
        except KeyError:
            raise GroupingError(f"unknown language code {code!r}") from None

    def subset(self, family_names: Iterable[str]) -> Grouping:
        """The grouping restricted to some families (order of this grouping kept)."""
        wanted = set(family_names)
        for name in wanted:
            self.family(name)
        return Grouping(tuple(f for f in self.families if f.name in wanted), self.extra_languages)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON): {"families": {name: [codes]}, "languages": {code: {...}}}."""
        out: dict[str, Any] = {"families": {f.name: list(f.languages) for f in self.families}}
        if self.extra_languages:
            out["languages"] = {lang.code: {"name": lang.name, "script": lang.script}
                                for lang in self.extra_languages}
        return out


def load_grouping(path_or_dict: str | os.PathLike | Mapping[str, Any] | Grouping) -> Grouping:
    """A grouping from a YAML file or a dict.

    Accepted forms::

        families:                     # required, order = family ids
          germanic: [de, nl, sv]
          romance: [fr, es]
        languages:                    # optional: languages missing from the registry
          lb: {name: Luxembourgish, script: Latn}

    A bare mapping `{germanic: [de, nl], romance: [fr]}` (no `families:` key) also works.
    """
    if isinstance(path_or_dict, Grouping):
        return path_or_dict
    if isinstance(path_or_dict, Mapping):
        data: Any = path_or_dict
        where = "grouping dict"
    else:
        path = os.fspath(path_or_dict)
        data = _read_yaml(path)
        where = path
    if not isinstance(data, Mapping):
        raise GroupingError(f"{where}: expected a mapping with a 'families:' key")
    extra: list[Language] = []
    if "families" in data:
        unknown_keys = set(data) - {"families", "languages"}
        if unknown_keys:
            raise GroupingError(f"{where}: unknown keys {sorted(unknown_keys)} (use families, languages)")
        families = data["families"]
        for code, info in (data.get("languages") or {}).items():
            if not isinstance(info, Mapping) or "script" not in info:
                raise GroupingError(f"{where}: language {code!r} needs a mapping with 'name' and 'script'")
            extra.append(Language(str(code), str(info.get("name", code)), str(info["script"])))
    else:
        families = data
    try:
        return Grouping.from_mapping(families, extra)
    except GroupingError as err:
        raise GroupingError(f"{where}: {err}") from None


def _read_yaml(path: str) -> Any:
    """A grouping file's YAML; a missing file or a YAML syntax error names the file (and line)."""
    import yaml

    if not os.path.isfile(path):
        raise MissingFileError(f"grouping file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return load_yaml(fh)
    except UnicodeDecodeError as err:
        raise GroupingError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise GroupingError(f"{where}: not valid YAML ({problem})") from None


# He et al. (2024), 23 languages in 5 families. The family split is the paper's; the member list is
# unverified (written without the paper's language table at hand): check it if membership matters.
PAPER_GROUPING = Grouping.from_mapping({
    "germanic": ["en", "de", "nl", "sv", "da"],
    "romance": ["fr", "es", "it", "pt", "ro"],
    "slavic": ["ru", "pl", "cs", "uk", "bg"],
    "indic": ["hi", "bn", "ur", "mr", "gu"],
    "sino_tibetan": ["zh", "my", "bo"],
})

# The embedded corpus (Debian manpages-<lang>): five families by genealogy, 18 languages, chosen so
# that each family has at least ~1 MB of running text. Keep in sync with MANPAGES_PKGS (Makefile).
MANPAGES_GROUPING = Grouping.from_mapping({
    "germanic": ["de", "nl", "sv", "da", "nb"],
    "romance": ["fr", "es", "it", "pt", "ro"],
    "slavic": ["ru", "pl", "cs", "uk", "sr", "mk"],
    "sino_tibetan": ["zh"],
    "japonic": ["ja"],
})

# The genealogical family of every registry language (family names as in the groupings above).
GENEALOGY: Mapping[str, str] = {
    **{c: "germanic" for c in ("en", "de", "nl", "sv", "da", "nb", "is", "af")},
    **{c: "romance" for c in ("fr", "es", "it", "pt", "ro", "ca", "gl")},
    **{c: "slavic" for c in ("ru", "pl", "cs", "uk", "sr", "mk", "bg", "sk", "sl", "hr", "be")},
    **{c: "indic" for c in ("hi", "bn", "ur", "mr", "gu", "pa", "ne")},
    **{c: "sino_tibetan" for c in ("zh", "my", "bo")},
    "ja": "japonic", "ko": "koreanic", "fi": "uralic", "hu": "uralic", "et": "uralic",
    "el": "hellenic", "tr": "turkic", "id": "austronesian", "vi": "austroasiatic",
    "ar": "semitic", "he": "semitic", "fa": "iranian",
}


def grouping_by_genealogy(languages: Iterable[str]) -> Grouping:
    """A grouping of `languages` into their genealogical families (`GENEALOGY`), families in order
    of their first language."""
    families: dict[str, list[str]] = {}
    for code in languages:
        if code not in GENEALOGY:
            raise GroupingError(f"language {code!r} has no known family; give a grouping (a YAML file "
                                "with 'families:') that places it")
        families.setdefault(GENEALOGY[code], []).append(code)
    return Grouping.from_mapping(families)
