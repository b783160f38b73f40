"""The public surface: exactly these names, all importable, and an __init__ of imports only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import threadmem_mongo

EXPECTED = {
    "ConfigurationError",
    "ImageFormatError",
    "ImageNotFoundError",
    "InputTypeError",
    "InvalidInputError",
    "MessageNotFoundError",
    "RoleMessage",
    "RoleThread",
    "StoreUnavailableError",
    "ThreadEvent",
    "ThreadMemError",
    "ThreadNotFoundError",
    "ThreadStore",
    "ThreadTooLargeError",
    "V1Role",
    "V1RoleMessage",
    "V1RoleThread",
    "VersionConflictError",
    "configure",
}

INIT = Path(threadmem_mongo.__file__)


def test_all_is_exactly_the_public_names() -> None:
    assert set(threadmem_mongo.__all__) == EXPECTED
    assert len(threadmem_mongo.__all__) == len(EXPECTED)


def test_every_public_name_is_importable() -> None:
    module = importlib.import_module("threadmem_mongo")
    for name in EXPECTED:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from threadmem_mongo import {', '.join(sorted(EXPECTED))}", namespace)
    assert set(namespace) >= EXPECTED


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from threadmem_mongo import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED


def test_errors_all_matches_the_exported_errors() -> None:
    from threadmem_mongo import errors

    assert set(errors.__all__) == {name for name in EXPECTED if name.endswith("Error")}


def test_init_holds_only_imports_and_all() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the module docstring
    assert body, "__init__.py is empty"
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        assert isinstance(node, ast.Assign), ast.dump(node)
        assert [ast.unparse(target) for target in node.targets] == ["__all__"]
        assert isinstance(node.value, ast.List)
        assert all(isinstance(item, ast.Constant) for item in node.value.elts)
    assignments = [node for node in body if isinstance(node, ast.Assign)]
    assert len(assignments) == 1


def test_init_imports_exactly_the_public_names() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        for alias in node.names
    }
    assert imported == EXPECTED
