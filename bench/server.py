"""The SecantusDB wire server the benchmark starts for itself, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from threadmem_mongo._embedded import HOST, answers, find_executable, free_port, server_command

EXECUTABLE = "secantusd-py"
START_TIMEOUT = 30.0
START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """The wire server could not be found or started."""


class WireServer:
    """Runs ``secantusd-py`` with its data in a temporary directory until :meth:`stop`."""

    def __init__(self) -> None:
        self.uri = ""
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="threadmem-bench-secantus-"))

    def start(self) -> str:
        executable = find_executable()
        if executable is None:
            raise ServerError(
                f"{EXECUTABLE} not found beside {sys.executable} or on PATH "
                "(pip install 'threadmem-mongo[bench]')"
            )
        log_path = self._workdir / "server.log"
        for _attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self.uri = f"mongodb://{HOST}:{self.port}/?directConnection=true"
            storage = self._workdir / f"data-{self.port}"
            with open(log_path, "ab") as log:
                self._process = subprocess.Popen(
                    server_command(executable, self.port, storage, "--log-level", "WARNING"),
                    cwd=self._workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self._process.poll() is None:
                if answers(HOST, self.port, timeout=0.3):
                    return self.uri
                time.sleep(0.2)
            self._kill()
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise ServerError(f"{EXECUTABLE} did not start; its log ends with:\n{tail}")

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self._process = None

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> WireServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
