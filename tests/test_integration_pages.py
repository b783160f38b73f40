"""The agent-framework pages (docs/integrations/*.md), followed as a reader follows them.

* Every Python block of a page runs, in order, in one namespace, in a new process with
  nothing configured: ``THREADMEM_HOME`` is a new empty folder and neither
  ``THREADMEM_MONGODB_URI`` nor ``MONGODB_URI`` is set, so the page runs on the embedded
  store the library starts by itself. A block followed by a paragraph ``Output:`` and a
  code block must print exactly that block. Each page runs twice in the same home: the
  second run meets the first run's data, and must print the same (the examples use new
  ids on every run). The server is stopped at the end.
* The page's install line names the extras that provide every third-party module its
  code imports, by the extras in pyproject.toml and the installed packages'
  requirements, and names ``embedded`` when the code relies on the default store.

tests/test_docs.py leaves these pages to this file: their adapters are async, and the
in-memory store that file runs pages on has no async client.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pymongo import MongoClient
from test_docs import INTEGRATION_PAGES, NOT_RUN, PYTHON_LANGUAGES, ROOT, code_blocks, normalized
from test_embedded import kill_leftovers
from test_extras import requirements

from threadmem_mongo import _config, _embedded
from threadmem_mongo._document import COLLECTION_NAME

PROJECT = "threadmem-mongo"
IDS = [page.name for page in INTEGRATION_PAGES]
RUN_TIMEOUT = 300.0
INSTALL_LINE = re.compile(r'pip install "threadmem-mongo\[(?P<extras>[^\]]*)\]"')

# Run in the child: the blocks of one page, each as part of one ``__main__`` module, as
# a script of the page would run; what each block printed goes to the file argv[1].
RUN_BLOCKS = """
import contextlib, io, json, sys, types

blocks = json.load(sys.stdin)
main = types.ModuleType("__main__")
main.__file__ = blocks["path"]
sys.modules["__main__"] = main
printed = []
for block in blocks["blocks"]:
    code = compile("\\n" * (block["line"] - 1) + block["code"], blocks["path"], "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, main.__dict__)
    printed.append(out.getvalue())
with open(sys.argv[1], "w") as result:
    json.dump(printed, result)
"""


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """The Python blocks of ``page``: their first line, code and the output shown after."""
    blocks = code_blocks(page.read_text())
    found = []
    for position, block in enumerate(blocks):
        if block.language not in PYTHON_LANGUAGES:
            continue
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        shown = following.code if following is not None and following.after_output_label else None
        found.append((block.line, block.code, shown))
    return found


def page_environment(home: Path) -> dict[str, str]:
    """This environment with nothing configured, the embedded store in ``home``, and this
    worktree's library first on the path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("THREADMEM_MONGODB_URI", "MONGODB_URI", "THREADMEM_DATABASE")
    }
    env[_embedded.HOME_ENV] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_page(page: Path, home: Path, workdir: Path) -> list[str]:
    """Run the Python blocks of ``page`` in a new process; return what each printed."""
    blocks = [{"line": line, "code": code} for line, code, _ in python_blocks(page)]
    result_file = workdir / "printed.json"
    completed = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKS, str(result_file)],
        input=json.dumps({"path": str(page), "blocks": blocks}),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        cwd=workdir,
        env=page_environment(home),
    )
    assert completed.returncode == 0, completed.stderr
    printed: list[str] = json.loads(result_file.read_text())
    return printed


def stored_thread_ids(home: Path) -> set[str]:
    """The ids of the threads in the default database of ``home``'s embedded store."""
    info = _embedded.server_status(home)
    assert info is not None, "no embedded server runs for this home"
    client: MongoClient[dict[str, Any]] = MongoClient(info.uri)
    try:
        threads = client[_config.DEFAULT_DATABASE][COLLECTION_NAME]
        return {str(document["_id"]) for document in threads.find({}, {"_id": 1})}
    finally:
        client.close()


@pytest.mark.wire
@pytest.mark.slow
@pytest.mark.parametrize("page", INTEGRATION_PAGES, ids=IDS)
def test_page_runs_as_written_on_the_embedded_store_twice(page: Path, tmp_path: Path) -> None:
    home = tmp_path / "threadmem-home"
    expected = python_blocks(page)
    stored: list[set[str]] = []
    try:
        for run in ("first", "second"):
            workdir = tmp_path / run
            workdir.mkdir()
            printed = run_page(page, home, workdir)
            assert len(printed) == len(expected)
            for (line, _, shown), output in zip(expected, printed, strict=True):
                if shown is not None:
                    where = f"{page.relative_to(ROOT)}:{line}, {run} run"
                    assert normalized(output) == normalized(shown), where
            stored.append(stored_thread_ids(home))
        # Both runs wrote to the store of this home, and the second found the first's
        # threads there and wrote new ones beside them.
        assert stored[0]
        assert stored[0] < stored[1]
    finally:
        _embedded.stop_server(home)
        kill_leftovers(home)


@pytest.mark.parametrize("page", INTEGRATION_PAGES, ids=IDS)
def test_page_has_no_blocks_left_unrun_and_shows_what_it_prints(page: Path) -> None:
    assert NOT_RUN not in page.read_text()
    blocks = python_blocks(page)
    assert blocks
    assert any(shown is not None for _, _, shown in blocks)


# -- the install line ------------------------------------------------------------------------


def imported_modules(code: str) -> set[str]:
    """The absolute module names ``code`` imports."""
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@cache
def distribution_of(module: str) -> str:
    """The installed distribution whose files hold ``module``, canonically named."""
    parts = module.split(".")
    if parts[0] == "threadmem_mongo":
        return PROJECT
    path = "/".join(parts)
    holders = {
        canonicalize_name(name)
        for name in metadata.packages_distributions().get(parts[0], [])
        if any(
            str(file) in (f"{path}.py", f"{path}/__init__.py") or str(file).startswith(f"{path}/")
            for file in metadata.distribution(name).files or []
        )
    }
    assert len(holders) == 1, f"{module} is in {sorted(holders) or 'no installed distribution'}"
    return holders.pop()


def own_extras(extras: set[str]) -> list[Requirement]:
    """The requirements of threadmem-mongo with ``extras``, its own extras expanded."""
    found = [Requirement(text) for text in requirements("dependencies")]
    for extra in sorted(extras):
        for text in requirements(extra):
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                found.extend(own_extras(set(requirement.extras)))
            else:
                found.append(requirement)
    return found


def installed_with(extras: set[str]) -> set[str]:
    """Every distribution that installing threadmem-mongo with ``extras`` brings, by the
    requirements of the installed distributions."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, frozenset()) for r in own_extras(extras)]
    while todo:
        requirement, parent_extras = todo.pop()
        markers = [{"extra": extra} for extra in parent_extras] or [{"extra": ""}]
        if requirement.marker is not None and not any(
            requirement.marker.evaluate(environment) for environment in markers
        ):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: nothing below it to follow
        todo.extend((Requirement(text), key[1]) for text in needs)
    return {name for name, _ in seen}


@pytest.mark.parametrize("page", INTEGRATION_PAGES, ids=IDS)
def test_install_line_names_the_extras_the_code_needs(page: Path) -> None:
    text = page.read_text()
    line = INSTALL_LINE.search(text)
    assert line is not None, f"{page.name} has no pip install line"
    extras = {extra.strip() for extra in line["extras"].split(",")}
    provided = installed_with(extras) | {PROJECT}

    code = "".join(block for _, block, _ in python_blocks(page))
    third_party = {
        module
        for module in imported_modules(code)
        if module.split(".")[0] not in sys.stdlib_module_names
    }
    missing = {
        module: distribution_of(module)
        for module in sorted(third_party)
        if distribution_of(module) not in provided
    }
    assert not missing, f"{page.name}: {line[0]} does not install {missing}"
    if "configure(" not in code:  # the page relies on the default store
        assert "embedded" in extras, f"{page.name} relies on the embedded store"


def test_install_check_sees_what_an_extra_brings_and_what_it_leaves_out() -> None:
    assert "google-genai" in installed_with({"adk"})
    assert distribution_of("google.genai") == "google-genai"
    assert "secantusdb" not in installed_with({"adk"})
    assert "secantusdb" in installed_with({"adk", "embedded"})
    assert distribution_of("agents.testing") not in installed_with({"langchain"})
