"""The package's layout holds: the architecture page names every module of the package
and only modules that exist, and the modules import each other without a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "threadmem_mongo"
PAGE = ROOT / "docs" / "architecture.md"


def named_modules() -> set[str]:
    table = PAGE.read_text().split("## The modules", 1)[1].split("## The path of a post", 1)[0]
    return set(re.findall(r"`((?:integrations/)?\w+\.py)`", table))


def package_modules() -> set[str]:
    return {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
        and not (path.name == "__init__.py" and path.parent.name == "integrations")
    }


def test_every_module_named_on_the_page_exists() -> None:
    assert named_modules() - package_modules() == set()


def test_every_module_of_the_package_is_on_the_page() -> None:
    assert package_modules() - named_modules() == set()


def test_the_path_of_a_post_names_only_modules_that_exist() -> None:
    path = PAGE.read_text().split("## The path of a post", 1)[1]
    for module in re.findall(r"`(_\w+\.py)`", path):
        assert (PACKAGE / module).is_file(), module


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_package_modules(path: Path) -> dict[str, ast.AST]:
    """The package modules ``path`` imports at run time (anywhere but under
    ``if TYPE_CHECKING``), each with the import statement that names it."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("threadmem_mongo"):
            assert node.module is not None
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").is_file()
                found[candidate if is_module else node.module] = node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("threadmem_mongo"):
                    found[alias.name] = node
    found.pop(module_name(path), None)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        # The facades re-export the package: they sit above every module by design.
        if (path.name == "__init__.py" and path.parent == PACKAGE) or path.name == "aio.py":
            continue
        graph[module_name(path)] = set(imported_package_modules(path))
    return graph


def test_no_module_imports_the_package_inside_a_function() -> None:
    lazy = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if not isinstance(node, (ast.Import, ast.ImportFrom)):
                        continue
                    names = [alias.name for alias in node.names]
                    if isinstance(node, ast.ImportFrom):
                        names.append(node.module or "")
                    if any(name.startswith("threadmem_mongo") for name in names):
                        lazy.append(f"{path.name}:{node.lineno} in {function.name}()")
    assert lazy == []


def circles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle found by a depth-first walk, as the trail that closes it."""
    state: dict[str, str] = {}
    circles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if imported not in graph:
                continue
            if state.get(imported) == "open":
                circles.append([*trail[trail.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return circles


def test_the_modules_import_each_other_without_a_circle() -> None:
    assert circles_in(import_graph()) == []


def test_the_circle_check_finds_a_circle_through_several_modules() -> None:
    graph = {"models": {"errors"}, "errors": set(), "store": {"document"}}
    graph["document"] = {"models"}
    assert circles_in(graph) == []
    graph["models"].add("store")
    assert circles_in(graph) == [["document", "models", "store", "document"]]


def test_the_graph_leaves_out_imports_made_for_type_checking_only() -> None:
    graph = import_graph()
    assert "threadmem_mongo._models" in graph["threadmem_mongo._document"]
    # _models names ThreadStore in annotations only, under ``if TYPE_CHECKING``.
    assert "from threadmem_mongo._store import ThreadStore" in (PACKAGE / "_models.py").read_text()
    assert "threadmem_mongo._store" not in graph["threadmem_mongo._models"]
