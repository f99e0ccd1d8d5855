"""The layout rules of docs/design.md ("Layout", "Style"), checked on the source: imports flow one
way, the law engine never reaches models/data/training, the low-level values import nothing
heavy, no function in multiscale/ exceeds ~100 lines (a function is as long as its idea), and
nothing cites a design file outside the repository."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "multiscale"
MAX_FUNCTION_LINES = 100
# Functions allowed over MAX_FUNCTION_LINES ("module:qualified name"), each named with its reason
# in docs/design.md ("Style"); today none.
LONG_FUNCTION_EXCEPTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _imports(tree: ast.Module) -> set[str]:
    """Every module the source imports, at top level or inside functions (lazy imports count)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(module: str) -> set[str]:
    return {m for m in _imports(SOURCES[module]) if m.split(".")[0] == "multiscale" and m in SOURCES}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_sources_found():
    assert "multiscale.cli" in SOURCES and "multiscale.errors" in SOURCES and len(SOURCES) > 30


# Layers from the bottom up: a module may import its own group and lower layers only (siblings in one
# layer, e.g. laws and models, never import each other). docs/design.md, "Layout".
LAYERS = (
    ("multiscale.errors",),
    ("multiscale.fileio",),
    ("multiscale.mixture", "multiscale.families", "multiscale.host_devices", "multiscale.runs"),
    ("multiscale.datasets", "multiscale.laws", "multiscale.models", "multiscale.data"),
    ("multiscale.train",),
    ("multiscale.decisions",),
    ("multiscale.sweep",),
    ("multiscale.report",),
    ("multiscale.autopilot",),
    ("multiscale.demo",),
    ("multiscale.cli",),
    ("multiscale.__main__",),
)


def _group(module: str) -> tuple[int, str]:
    for rank, groups in enumerate(LAYERS):
        for g in groups:
            if _under(module, (g,)):
                return rank, g
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m != "multiscale"))
def test_imports_flow_down_the_layers(module):
    rank, group = _group(module)
    bad = []
    for imported in _package_imports(module):
        if imported == "multiscale":  # `from multiscale import x` names the submodule x, checked on its own
            continue
        other_rank, other_group = _group(imported)
        if other_group != group and other_rank >= rank:
            bad.append(imported)
    assert not bad, f"{module} imports {sorted(bad)} from its own layer or above (docs/design.md, Layout)"


def _import_circles() -> list[list[str]]:
    """The strongly connected components of more than one module of the package's import graph
    (imports inside functions count): Tarjan's algorithm."""
    graph = {m: sorted(i for i in _package_imports(m) if i != "multiscale") for m in SOURCES}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def test_no_import_circles():
    """No module of the package reaches itself through its imports, lazy ones included."""
    assert not _import_circles(), f"import circles: {_import_circles()}"


LAWS_MAY_IMPORT = ("multiscale.laws", "multiscale.runs", "multiscale.mixture", "multiscale.errors",
                   "multiscale.fileio", "multiscale.host_devices", "multiscale.datasets")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _under(m, ("multiscale.laws",))))
def test_law_engine_depends_only_on_the_run_table(module):
    bad = sorted(m for m in _package_imports(module) if not _under(m, LAWS_MAY_IMPORT))
    assert not bad, f"{module} imports {bad}; laws/ may import only {LAWS_MAY_IMPORT}"
    heavy = sorted(m for m in _imports(SOURCES[module]) if m.split(".")[0] in {"tensorflow", "seqio", "flax", "grain"})
    assert not heavy, f"{module} imports {heavy}"


@pytest.mark.parametrize("module,allowed", [
    ("multiscale.errors", ()),
    ("multiscale.fileio", ("multiscale.errors",)),
    ("multiscale.mixture", ("multiscale.errors",)),
])
def test_low_level_values_import_almost_nothing(module, allowed):
    if module not in SOURCES:
        pytest.fail(f"{module} is missing")
    bad = sorted(m for m in _package_imports(module) if not _under(m, allowed))
    assert not bad, f"{module} imports {bad}"
    heavy = sorted(m for m in _imports(SOURCES[module])
                   if m.split(".")[0] in {"jax", "flax", "grain", "pandas", "tensorflow", "seqio", "matplotlib"})
    assert not heavy, f"{module} imports {heavy}"


def _long_functions() -> list[str]:
    found = []
    for module, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                name = f"{module}:{node.name}"
                if lines > MAX_FUNCTION_LINES and name not in LONG_FUNCTION_EXCEPTIONS:
                    found.append(f"{name} ({lines} lines)")
    return found


def test_no_function_longer_than_100_lines():
    assert len(LONG_FUNCTION_EXCEPTIONS) <= 3
    assert not _long_functions(), ("over 100 lines: split where the parts are separate ideas: "
                                   + ", ".join(_long_functions()))


SKIPPED_FOLDERS = {"demo_out", "build", "dist", "__pycache__"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".txt", ".cfg", ".sbatch", ".json"}


def _repository_text_files() -> list[Path]:
    """The repository's text files (hidden folders such as .git and .venv, but .ci, and build outputs left out)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders
                         if d == ".ci" or not (d.startswith(".") or d in SKIPPED_FOLDERS or d.endswith(".egg-info"))]
        found.extend(Path(folder, f) for f in files
                     if Path(f).suffix in TEXT_SUFFIXES or f in {"Makefile", "run"})
    return found


def test_design_is_cited_inside_the_repository():
    """The design lives in docs/design.md; nothing cites a design file that is not in the repository."""
    stale = "DESIGN" + ".md"
    hits = [str(p.relative_to(ROOT)) for p in _repository_text_files() if stale in p.read_text(errors="replace")]
    assert not hits, f"{stale} cited in {hits}; cite docs/design.md and its section"
    assert (ROOT / "docs" / "design.md").is_file()
    assert "docs/design.md" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_import_multiscale_is_lazy():
    """`import multiscale` imports no submodule until a public name is used."""
    code = ("import sys, multiscale; "
            "print(sorted(m for m in sys.modules if m.startswith('multiscale.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
