"""Move the test lock (``constraints.txt``) forward to the newest releases that pass.

Usage, from the repository root::

    python tools/lock.py [--venv DIR]

It builds a fresh virtualenv, installs ``.[test]`` there without constraints (so pip
picks the newest release of everything), and runs the integration tests
(``tests/integrations``, where each adapter is compared with its framework's own store)
in that venv. Only if they pass does it write ``constraints.txt``: one ``name==version``
line for every distribution installed, the project itself and pip left out, and it
prints which pins changed. If they fail it writes nothing, names the pins that would have changed,
and exits with the tests' status, so a move to new releases is one deliberate commit
(the new pins plus whatever the adapters needed).

The venv is removed afterwards unless ``--venv DIR`` names where to build (and keep) it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = "threadmem-mongo"
#: Left out of the pins: the project itself, and pip, which the venv brings and CI
#: upgrades on its own (setuptools stays: llama-index-core requires it).
NOT_PINNED = {PROJECT, "pip"}
INTEGRATION_TESTS = "tests/integrations"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_from_freeze(text: str) -> dict[str, str]:
    """The ``name -> version`` pins of ``pip freeze --all --exclude-editable`` output (or
    of a constraints file ``render`` wrote), the project and pip left out.

    Raises:
        ValueError: A line is not an exact ``name==version`` pin (a direct URL or a
            local path install, which a constraints file cannot hold).
    """
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"pip freeze gave a line that is not a name==version pin: {line!r}")
        if normalized(match["name"]) not in NOT_PINNED:
            pins[match["name"]] = match["version"]
    return pins


def render(pins: Mapping[str, str], python: str) -> str:
    """The text of ``constraints.txt`` holding ``pins``, sorted by normalized name."""
    header = [
        "# The releases the test suite runs against: every distribution that",
        '# `pip install -e ".[test]"` installs, pinned. Install with',
        '# `pip install -e ".[test]" -c constraints.txt`.',
        "# Written by `python tools/lock.py`, which installs the newest releases and writes",
        f"# this file only if the integration tests pass with them ({python}).",
        "# Do not edit by hand.",
    ]
    lines = [f"{name}=={pins[name]}" for name in sorted(pins, key=normalized)]
    return "\n".join([*header, *lines]) + "\n"


def changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What moving from ``old`` to ``new`` pins changes, one line per distribution."""
    before = {normalized(name): (name, version) for name, version in old.items()}
    after = {normalized(name): (name, version) for name, version in new.items()}
    lines = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            lines.append(f"  - {before[key][0]} {before[key][1]}")
        elif key not in before:
            lines.append(f"  + {after[key][0]} {after[key][1]}")
        elif before[key][1] != after[key][1]:
            lines.append(f"  ~ {after[key][0]} {before[key][1]} -> {after[key][1]}")
    return lines


def _run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=False, text=True, **kwargs)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def build(venv: Path) -> dict[str, str]:
    """Install ``.[test]`` (newest releases) into a new venv at ``venv``; return its pins.

    Raises:
        SystemExit: A step failed.
    """
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"],
    ]
    for step in steps:
        if _run(step).returncode != 0:
            raise SystemExit(f"lock: failed: {' '.join(step)}")
    frozen = _run(
        [str(_venv_python(venv)), "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
    )
    if frozen.returncode != 0:
        raise SystemExit(f"lock: pip freeze failed:\n{frozen.stderr}")
    return pins_from_freeze(frozen.stdout)


def integration_tests(venv: Path) -> int:
    """Run ``tests/integrations`` with the venv's interpreter; return pytest's status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="threadmem-lock-home-") as home:
        env["THREADMEM_HOME"] = home
        command = [str(_venv_python(venv)), "-m", "pytest", "-q", INTEGRATION_TESTS]
        return _run(command, cwd=ROOT, env=env).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Install the newest releases of .[test] in a fresh venv, run the "
        "integration tests there, and write constraints.txt if they pass."
    )
    parser.add_argument(
        "--venv", type=Path, help="build the venv here and keep it (default: a temporary one)"
    )
    options = parser.parse_args(argv)
    if options.venv is not None and options.venv.exists():
        parser.error(f"{options.venv} exists; name a new directory")
    venv = options.venv or Path(tempfile.mkdtemp(prefix="threadmem-lock-")) / "venv"
    try:
        pins = build(venv)
        old = pins_from_freeze(CONSTRAINTS.read_text()) if CONSTRAINTS.exists() else {}
        moved = changes(old, pins)
        status = integration_tests(venv)
        if status != 0:
            print(
                f"\nlock: the integration tests FAILED (pytest exit status {status}) with "
                f"the newest releases; {CONSTRAINTS.name} is unchanged (--venv DIR keeps "
                "the venv to look into it). Pins that would have moved:",
                *(moved or ["  (none)"]),
                sep="\n",
                file=sys.stderr,
            )
            return status
        python = f"Python {platform.python_version()}, {sys.platform}"
        CONSTRAINTS.write_text(render(pins, python))
        print(f"\nlock: the integration tests pass; wrote {CONSTRAINTS.name}.", *moved, sep="\n")
        if not moved:
            print("lock: no pin changed.")
        return 0
    finally:
        if options.venv is None:
            shutil.rmtree(venv.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
