"""The architecture page names every module of the package, and only modules that exist."""

from __future__ import annotations

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
