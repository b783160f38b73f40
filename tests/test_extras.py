"""The extras in pyproject.toml provide what the docs build and the examples need."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def requirements(extra: str) -> list[str]:
    """The requirements of an extra as written (tomllib is not in Python 3.10)."""
    found = re.search(rf"^{re.escape(extra)} = \[(.*?)\]$", PYPROJECT, re.MULTILINE | re.DOTALL)
    assert found is not None, f"no [{extra}] extra in pyproject.toml"
    return re.findall(r'"([^"]+)"', found.group(1))


def names(extra: str) -> set[str]:
    """The distribution names an extra requires."""
    return {re.split(r"[\[<>=!~ ;]", requirement)[0].lower() for requirement in requirements(extra)}


def test_docs_extra_has_a_formatter_for_the_separate_signatures() -> None:
    # mkdocstrings-python formats signatures (separate_signature in mkdocs.yml) with Black
    # or Ruff, and prints them unformatted on one line without either.
    assert "separate_signature: true" in (ROOT / "mkdocs.yml").read_text()
    assert names("docs") & {"black", "ruff"}


def test_fastapi_extra_provides_the_app_and_the_server_the_example_runs_under() -> None:
    assert {"fastapi", "uvicorn"} <= names("fastapi")


def test_the_test_extra_installs_what_the_examples_need() -> None:
    own = [r for r in requirements("test") if r.startswith("threadmem-mongo[")]
    assert len(own) == 1
    assert {"embedded", "fastapi"} <= set(own[0].removeprefix("threadmem-mongo[")[:-1].split(","))
