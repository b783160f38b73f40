"""A SecantusDB server (``secantusd-py``) that a test or the session starts for itself.

The executable, the free port and the check that the server answers are the embedded
store's own (``threadmem_mongo._embedded``), so the suite starts servers the way the
library finds and probes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from threadmem_mongo._embedded import (
    HOST,
    SERVER_EXECUTABLE,
    answers,
    find_executable,
    free_port,
    server_command,
)

START_TIMEOUT = 30.0
START_ATTEMPTS = 3
STOP_TIMEOUT = 15.0
#: How long one check of whether the server answers may take.
ANSWER_TIMEOUT = 0.25
LOG_TAIL = 4000
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the server process (Linux): get SIGTERM when pytest dies, even if it is killed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # the owner's own teardown still stops the server


class SecantusServer:
    """A ``secantusd-py`` on loopback, run from ``workdir`` with its log there.

    Without ``port`` the first :meth:`start` picks a free one, and tries ``attempts``
    ports before it fails; once started, the server keeps its port, so :meth:`start`
    after :meth:`stop` (or :meth:`restart`) serves the same storage on the same address.
    """

    def __init__(
        self,
        workdir: Path,
        storage: str | Path,
        *flags: str,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
        attempts: int = START_ATTEMPTS,
    ) -> None:
        self.workdir = workdir
        self.storage = str(storage)
        self.flags = flags
        self.log = workdir / "server.log"
        self.start_timeout = start_timeout
        self.attempts = attempts
        self.process: subprocess.Popen[bytes] | None = None
        self._port = port

    @property
    def port(self) -> int:
        """The server's port (chosen by the first :meth:`start` unless given)."""
        if self._port is None:
            raise RuntimeError("the server has no port before it is started")
        return self._port

    @property
    def uri(self) -> str:
        """The connection string of the server."""
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    def start(self) -> str:
        """Start the server, wait until it answers, and return its URI.

        Fails the test, with the end of the server's log, if it does not answer within
        ``start_timeout``; on a port of its own choosing it first tries other ports.
        """
        executable = find_executable()
        if executable is None:
            pytest.fail(
                f"{SERVER_EXECUTABLE} not found beside {sys.executable} or on PATH: "
                "install the test extra (pip install -e '.[test]')"
            )
        fixed = self._port is not None
        for _attempt in range(1 if fixed else self.attempts):
            if not fixed:
                self._port = free_port()
            if self._run(executable):
                return self.uri
            self.stop()  # exited (port taken?) or too slow
        tail = self.log.read_text(errors="replace")[-LOG_TAIL:] if self.log.exists() else ""
        pytest.fail(
            f"{SERVER_EXECUTABLE} did not answer hello on {HOST}:{self.port} "
            f"within {self.start_timeout}s:\n{tail}"
        )

    def _run(self, executable: str) -> bool:
        """Start the process; return whether it answers before it exits or time runs out."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                server_command(executable, self.port, self.storage, *self.flags),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,  # keep it from picking up a secantusd.toml of the repo
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self.start_timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if answers(HOST, self.port, timeout=ANSWER_TIMEOUT):
                return True
            time.sleep(0.05)  # polling for the server to come up, under a deadline
        return False

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the running server."""
        assert self.process is not None
        self.process.send_signal(signum)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the server process (SIGSTOP) for the block: its socket stays open and
        accepts connections, but nothing answers; SIGCONT afterwards, whatever happens."""
        self.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(signal.SIGCONT)

    def exited(self) -> bool:
        """Return whether the server is not running (never started, stopped or dead)."""
        return self.process is None or self.process.poll() is not None

    def stop(self) -> None:
        """Stop the server: SIGTERM, and SIGKILL if it has not exited after a while."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        """Kill the server at once, for one whose data is of no further use."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> str:
        """Stop the server and start it again on the same port and storage."""
        self.stop()
        return self.start()
