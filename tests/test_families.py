import pytest

from multiscale.families import (
    LANGUAGES,
    MANPAGES_GROUPING,
    PAPER_GROUPING,
    Family,
    Grouping,
    GroupingError,
    Language,
    load_grouping,
)


def test_paper_grouping_has_23_languages_in_5_families():
    assert PAPER_GROUPING.family_names == ("germanic", "romance", "slavic", "indic", "sino_tibetan")
    assert len(PAPER_GROUPING.languages) == 23
    assert PAPER_GROUPING.family_of("hi") == "indic"
    assert PAPER_GROUPING.family_of("zh") == "sino_tibetan"


def test_manpages_grouping_is_large_enough_and_genealogical():
    assert len(MANPAGES_GROUPING.languages) >= 15
    assert len(MANPAGES_GROUPING.families) >= 5
    assert MANPAGES_GROUPING.family_of("nb") == "germanic"
    assert MANPAGES_GROUPING.family_of("ro") == "romance"
    assert MANPAGES_GROUPING.family_of("mk") == "slavic"
    assert MANPAGES_GROUPING.language("ru").script == "Cyrl"


def test_makefile_packages_match_manpages_grouping():
    import pathlib
    import re

    from multiscale.data.sources import MANPAGES_PACKAGES

    makefile = (pathlib.Path(__file__).parents[1] / "Makefile").read_text()
    block = re.search(r"MANPAGES_PKGS := ((?:.*\\\n)*.*)", makefile).group(1)
    listed = set(block.replace("\\", " ").split())
    assert listed == {MANPAGES_PACKAGES[lang] for lang in MANPAGES_GROUPING.languages}


def test_from_mapping_keeps_order_and_answers_queries():
    g = Grouping.from_mapping({"b": ["fr", "es"], "a": ["de"]})
    assert g.family_names == ("b", "a")
    assert g.languages == ("fr", "es", "de")
    assert g.family_of("de") == "a"
    assert g.family("b").languages == ("fr", "es")
    assert g.subset(["a"]).languages == ("de",)


def test_unknown_language_is_named():
    with pytest.raises(GroupingError, match="'xx'.*'germanic'"):
        Grouping.from_mapping({"germanic": ["de", "xx"]})


def test_language_in_two_families_is_named():
    with pytest.raises(GroupingError, match="'de' is in two families: 'a' and 'b'"):
        Grouping.from_mapping({"a": ["de"], "b": ["nl", "de"]})
    with pytest.raises(GroupingError, match="twice in family 'a'"):
        Grouping.from_mapping({"a": ["de", "de"]})


def test_empty_family_is_named():
    with pytest.raises(GroupingError, match="family 'romance' is empty"):
        Grouping.from_mapping({"germanic": ["de"], "romance": []})
    with pytest.raises(GroupingError):
        Grouping(())


def test_bad_family_name_and_duplicate_family():
    with pytest.raises(GroupingError, match="not valid"):
        Family("Sino Tibetan", ("zh",))
    with pytest.raises(GroupingError, match="appears twice"):
        Grouping((Family("a", ("de",)), Family("a", ("nl",))))


def test_family_of_unknown_language():
    with pytest.raises(GroupingError, match="'fr' is in no family"):
        Grouping.from_mapping({"a": ["de"]}).family_of("fr")


def test_yaml_round_trip_with_custom_language(tmp_path):
    path = tmp_path / "fam.yaml"
    path.write_text(
        "families:\n  germanic: [de, lb]\n  romance: [fr]\n"
        "languages:\n  lb: {name: Luxembourgish, script: Latn}\n"
    )
    g = load_grouping(path)
    assert g.languages == ("de", "lb", "fr")
    assert g.language("lb") == Language("lb", "Luxembourgish", "Latn")
    assert "lb" not in LANGUAGES  # custom languages do not leak into the registry
    assert load_grouping(g.to_dict()) == g


def test_bare_mapping_and_errors_name_the_file(tmp_path):
    assert load_grouping({"x": ["de"]}).family_names == ("x",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("families:\n  germanic: [de, qq]\n")
    with pytest.raises(GroupingError, match=r"bad\.yaml.*'qq'"):
        load_grouping(bad)
    with pytest.raises(FileNotFoundError):
        load_grouping(tmp_path / "missing.yaml")
    with pytest.raises(GroupingError, match="list of language codes"):
        load_grouping({"families": {"a": "de"}})


def test_grouping_by_genealogy_covers_the_registry():
    from multiscale.families import GENEALOGY, grouping_by_genealogy

    assert set(GENEALOGY) == set(LANGUAGES)
    g = grouping_by_genealogy(["fr", "de", "es", "fi", "hu"])
    assert g.family_names == ("romance", "germanic", "uralic")
    assert g.family("romance").languages == ("fr", "es")
    # the shipped groupings agree with the genealogy
    for grouping in (PAPER_GROUPING, MANPAGES_GROUPING):
        for lang in grouping.languages:
            assert GENEALOGY[lang] == grouping.family_of(lang)
    with pytest.raises(GroupingError, match="'xx' has no known family"):
        grouping_by_genealogy(["de", "xx"])


@pytest.mark.parametrize("text, line", [
    ("families:\n  germanic: [de, nl\n  romance: [fr]\n", 3),   # an unclosed list
    ("families:\n  germanic: [de]\n bad indent: [fr]\n", 3),
])
def test_broken_yaml_names_the_file_and_line(tmp_path, text, line):
    from multiscale.errors import InputError

    path = tmp_path / "fam.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"fam\.yaml:{line}: not valid YAML") as info:
        load_grouping(path)
    assert isinstance(info.value, GroupingError)


def test_missing_or_binary_grouping_file(tmp_path):
    from multiscale.errors import MissingFileError

    with pytest.raises(MissingFileError, match="grouping file not found: .*none.yaml"):
        load_grouping(tmp_path / "none.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00families")
    with pytest.raises(GroupingError, match="bin.yaml: not UTF-8"):
        load_grouping(tmp_path / "bin.yaml")
