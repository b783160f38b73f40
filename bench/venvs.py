"""Virtualenvs for what cannot share ours: the original threadmem and the peer stores.

Each venv lives under ``~/.cache/threadmem-bench`` (or ``$THREADMEM_BENCH_CACHE``), is
built once with pip from the package registry, and is reused while its requirement list
is unchanged. Drivers run in it as subprocesses and print one JSON line.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

CACHE_ENV = "THREADMEM_BENCH_CACHE"
ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 900
MARKER = "bench-requirements.txt"


class NotRunError(Exception):
    """A part of the benchmark could not run; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "threadmem-bench")


def venv_python(directory: Path) -> Path:
    if sys.platform == "win32":
        return directory / "Scripts" / "python.exe"
    return directory / "bin" / "python"


def _imports(python: Path | str, modules: list[str]) -> bool:
    code = "; ".join(f"import {module}" for module in modules)
    try:
        completed = subprocess.run(
            [str(python), "-c", code], capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:300]


def ensure_venv(name: str, requirements: list[str], modules: list[str]) -> Path:
    """Return the python of venv ``name`` holding ``requirements``, building it if needed.

    Raises:
        NotRunError: The venv could not be built (no network, no such version, ...).
    """
    directory = cache_dir() / name
    python = venv_python(directory)
    wanted = "\n".join(requirements) + "\n"
    marker = directory / MARKER
    if (
        python.exists()
        and marker.exists()
        and marker.read_text() == wanted
        and _imports(python, modules)
    ):
        return python
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(directory)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        completed = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--retries",
                "1",
                "--timeout",
                "20",
                *requirements,
            ],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            check=False,
        )
    except subprocess.CalledProcessError as exc:
        raise NotRunError(f"could not create a venv: {_last_line(exc.stderr or '')}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NotRunError(f"pip install {' '.join(requirements)} timed out") from exc
    if completed.returncode != 0:
        raise NotRunError(
            f"pip install {' '.join(requirements)} failed: "
            f"{_last_line(completed.stderr + completed.stdout)}"
        )
    if not _imports(python, modules):
        raise NotRunError(f"{', '.join(modules)} not importable after pip install")
    marker.write_text(wanted)
    return python


def python_with(modules: list[str], name: str, requirements: list[str]) -> tuple[Path, str]:
    """This interpreter if it imports ``modules``, else venv ``name``; and where it is."""
    if _imports(sys.executable, modules):
        return Path(sys.executable), "this interpreter"
    python = ensure_venv(name, requirements, modules)
    return python, str(python.parent.parent)


def run_driver(
    python: Path,
    module: str,
    payload: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run ``python -m module`` with ``payload`` as JSON on stdin; return its JSON line."""
    try:
        completed = subprocess.run(
            [str(python), "-m", module],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NotRunError(f"{module} took longer than {timeout:.0f} s") from exc
    if completed.returncode != 0:
        raise NotRunError(f"{module} failed: {_last_line(completed.stderr)}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise NotRunError(f"{module} printed no JSON: {_last_line(completed.stderr)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class LineDriver:
    """A driver that answers one JSON line per JSON line (``python -m module``).

    The first line sent is the configuration; the driver answers it once it is ready.
    """

    def __init__(
        self,
        python: Path,
        module: str,
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> None:
        self.module = module
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            [str(python), "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.call(config)

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _error(self, what: str) -> NotRunError:
        self._stderr.seek(0)
        return NotRunError(f"{self.module} {what}: {_last_line(self._stderr.read())}")

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command; return the driver's answer.

        Raises:
            NotRunError: The driver died, or did not answer within the timeout.
        """
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
        except OSError as exc:
            raise self._error("is gone") from exc
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty as exc:
            raise NotRunError(f"{self.module} did not answer in {self.timeout:.0f} s") from exc
        if not line:
            raise self._error("failed")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._stderr.close()

    def __enter__(self) -> LineDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
