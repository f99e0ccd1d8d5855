"""Shared fixtures.

`tiny_corpus`: a real corpus built once per test session from the installed manual pages
(MANPAGES_GROUPING: 18 languages in 5 families, 12 documents per language, ~1.2 M byte tokens),
in a temporary directory. Builds in about a second.
"""

from __future__ import annotations

import pytest

TINY_MAX_DOCS = 12


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from multiscale.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    return build_corpus("manpages", out, max_docs_per_language=TINY_MAX_DOCS, progress=False)
