"""The public API of `import multiscale`: every exported name resolves, lazily, to the object its
module defines."""

from __future__ import annotations

import importlib

import pytest

import multiscale


@pytest.mark.parametrize("name", sorted(multiscale._EXPORTS))
def test_every_export_resolves(name):
    module = importlib.import_module(multiscale._EXPORTS[name])
    assert hasattr(module, name), f"{module.__name__} has no {name}"
    assert getattr(multiscale, name) is getattr(module, name)
    assert name in dir(multiscale) and name in multiscale.__all__


@pytest.mark.parametrize("name", multiscale._SUBPACKAGES)
def test_subpackages_are_attributes_after_a_bare_import(name):
    """`import multiscale; multiscale.datasets.load_regmix(...)`, as the README shows it."""
    assert getattr(multiscale, name) is importlib.import_module(f"multiscale.{name}")


def test_datasets_load_regmix_after_a_bare_import():
    import subprocess
    import sys

    code = "import multiscale; print(len(multiscale.datasets.load_regmix('train')) > 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-500:]


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        multiscale.no_such_name  # noqa: B018


def test_error_types_are_exported_with_their_hierarchy():
    assert issubclass(multiscale.InputError, multiscale.MultiscaleError)
    assert issubclass(multiscale.InputError, ValueError)
    assert issubclass(multiscale.MissingFileError, FileNotFoundError)
    assert issubclass(multiscale.RunTableError, multiscale.InputError)
    assert issubclass(multiscale.MixtureError, multiscale.InputError)


def test_version_is_the_installed_one():
    from importlib.metadata import version

    assert multiscale.__version__ == version("multiscale")
