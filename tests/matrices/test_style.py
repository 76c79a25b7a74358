"""The repository stays ruff-clean (lint and format), as STYLE.md asks."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff comes with the [test] extra")
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def import_graph(package: Path) -> dict[str, set[str]]:
    """Which warmstart modules each module of `package` imports, counting the imports inside functions."""
    import ast

    modules = {
        ".".join(("warmstart", *path.relative_to(package).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): path
        for path in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("warmstart"):
                found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    package = tmp_path / "warmstart"
    package.mkdir()
    (package / "a.py").write_text("from warmstart.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from warmstart.c import other\n")
    (package / "c.py").write_text("import warmstart.a\n")
    (package / "d.py").write_text("from warmstart import a\n")
    assert cycles(import_graph(package)) == [["warmstart.a", "warmstart.b", "warmstart.c"]]


def test_no_import_cycles_in_src():
    """No module of warmstart imports itself through others, imports inside functions included: a stage
    learns another stage's file names and readers from warmstart.artifacts, not from that stage."""
    assert cycles(import_graph(ROOT / "src" / "warmstart")) == []


def test_the_readme_is_a_front_page_and_every_link_in_the_docs_resolves():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250, "README.md is the front page; the manual lives in docs/"
    for page in [
        ROOT / "README.md",
        ROOT / "components" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), (
                    f"{page.relative_to(ROOT)} links to {target}, which is missing"
                )


def test_every_stage_has_a_package_or_module_named_after_its_component_and_the_library_never_imports_the_app():
    package = ROOT / "src" / "warmstart"
    for stage in ("ingest", "fetch_model", "finetune", "evaluate_champion", "gate", "register"):
        assert (package / stage).is_dir() or (package / f"{stage}.py").is_file(), stage
        assert (ROOT / "components" / f"{stage}.py").is_file(), f"the component of {stage}"
    graph = import_graph(package)
    application = {name for name in graph if name.startswith("warmstart.app")}
    for name, imported in graph.items():
        if name not in application and name != "warmstart.__main__":
            assert not imported & application, (
                f"{name} imports the application layer: {imported & application}"
            )
