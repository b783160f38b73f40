"""``constraints.txt``: the releases the test suite runs against.

It pins every distribution the test extra installs, exactly, as ``tools/lock.py`` writes
it; CI and the README's test command install with it; each framework page names the
release it pins; and ``tools/lock.py``'s own pieces work.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from tool_modules import load_tool

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = (ROOT / "pyproject.toml").read_text()
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
PROJECT = "threadmem-mongo"

#: Each framework page and the extra it documents.
PAGES = {
    "adk.md": "adk",
    "langchain.md": "langchain",
    "llama-index.md": "llama-index",
    "openai-agents.md": "openai-agents",
    "pydantic-ai.md": "pydantic-ai",
}

#: Pinned only if pyproject.toml names them (it does not yet).
UNDECLARED = ("langgraph", "langgraph-checkpoint-conformance", "langgraph-checkpoint-mongodb")


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    """``tools/lock.py``, imported from its file."""
    return load_tool("lock")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """The pins of constraints.txt by normalized name; every line is checked to be one."""
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match is not None, f"not an exact pin: {line!r}"
        name = normalized(match[1])
        assert name not in found, f"pinned twice: {name}"
        found[name] = match[2]
    return found


def listed(section: str) -> list[str]:
    """The requirement strings of a list in pyproject.toml (tomllib is not in 3.10)."""
    found = re.search(rf"^{re.escape(section)} = \[(.*?)\]$", PYPROJECT, re.MULTILINE | re.DOTALL)
    assert found is not None, f"no {section} list in pyproject.toml"
    return re.findall(r'"([^"]+)"', found.group(1))


def requirements(extra: str) -> list[Requirement]:
    """What pyproject.toml requires for ``extra``, its own extras expanded, plus the
    project's dependencies."""
    found = [Requirement(text) for text in listed("dependencies")]
    todo, seen = [extra], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for requirement in map(Requirement, listed(current)):
            if normalized(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def installed_closure(roots: list[Requirement]) -> set[str]:
    """The distributions the current environment installs for ``roots``: each root and,
    through the installed distributions' metadata, everything they require (markers
    evaluated here, with the extras asked for)."""
    todo = list(roots)
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    while todo:
        requirement = todo.pop()
        key = (normalized(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        requires = metadata.distribution(requirement.name).requires or []
        for text in requires:
            needed = Requirement(text)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return names


def test_each_distribution_pyproject_names_for_the_tests_is_pinned_within_its_bounds() -> None:
    pinned = pins()
    wanted = requirements("test")
    frameworks = {normalized(Requirement(r).name) for e in PAGES.values() for r in listed(e)}
    assert frameworks <= {normalized(r.name) for r in wanted}
    for requirement in wanted:
        name = normalized(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside pyproject.toml's {requirement}"
        )


def test_every_distribution_the_test_environment_installs_for_them_is_pinned() -> None:
    unpinned = installed_closure(requirements("test")) - pins().keys()
    assert not unpinned, f"installed for .[test] but not pinned: {sorted(unpinned)}"


def test_the_project_pip_and_undeclared_frameworks_are_not_pinned() -> None:
    pinned = pins()
    assert PROJECT not in pinned
    assert "pip" not in pinned
    declared = {normalized(r.name) for r in requirements("test")}
    for name in UNDECLARED:
        assert (name in pinned) == (name in declared), name


def test_ci_installs_the_test_extra_with_the_constraints() -> None:
    installs = [line for line in CI.splitlines() if "pip install" in line and ".[test]" in line]
    assert installs, "no install of .[test] in .ci/run"
    assert all(line.rstrip().endswith('-e ".[test]" -c constraints.txt') for line in installs)


def test_the_readme_has_two_set_up_commands_and_the_test_one_uses_the_constraints() -> None:
    section = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert len(commands) == 2
    quickstart, suite = commands
    assert "examples/quickstart.py" in quickstart
    assert '.venv/bin/pip install -e ".[test]" -c constraints.txt &&' in suite
    assert suite.endswith(".venv/bin/python -m pytest")
    assert "python tools/lock.py" in README.split("## Tests", 1)[1]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_framework_page_states_the_release_constraints_pins(page: str) -> None:
    text = (ROOT / "docs" / "integrations" / page).read_text()
    stated = dict(re.findall(r"Tested with `([^`]+)` ([0-9][^\s,;]*),", text))
    extra = {normalized(Requirement(r).name) for r in listed(PAGES[page])}
    assert set(stated) == extra
    pinned = pins()
    assert {name: pinned[name] for name in extra} == stated


def test_the_constraints_file_is_what_the_lock_tool_writes(lock: ModuleType) -> None:
    text = CONSTRAINTS.read_text()
    python = re.search(r"\((Python [^)]+)\)\.\n", text)
    assert python is not None
    assert lock.render(lock.pins_from_freeze(text), python[1]) == text


def test_lock_reads_freeze_output_without_the_project_and_refuses_other_lines(
    lock: ModuleType,
) -> None:
    frozen = "Pillow==13.0.0\nthreadmem_mongo==0.1.0\n\n# a comment\npip==26.3\nsetuptools==84\n"
    assert lock.pins_from_freeze(frozen) == {"Pillow": "13.0.0", "setuptools": "84"}
    with pytest.raises(ValueError, match="not a name==version pin"):
        lock.pins_from_freeze("mylib @ file:///tmp/mylib\n")
    with pytest.raises(ValueError, match="not a name==version pin"):
        lock.pins_from_freeze("pytest>=8\n")


def test_lock_renders_sorted_pins_that_read_back_and_names_what_moved(
    lock: ModuleType,
) -> None:
    text = lock.render({"zeta": "1", "Alpha_b": "2.0", "beta": "3"}, "Python 3.11.7, linux")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["Alpha_b==2.0", "beta==3", "zeta==1"]
    assert lock.pins_from_freeze(text) == {"zeta": "1", "Alpha_b": "2.0", "beta": "3"}
    moved = lock.changes({"a": "1", "b": "2", "c": "3"}, {"a": "1", "B": "2.1", "d": "4"})
    assert moved == ["  ~ B 2 -> 2.1", "  - c 3", "  + d 4"]
