"""The embedded default store: a local SecantusDB server, started on demand and shared.

With no MongoDB configured, threads live under ``~/.threadmem`` (``THREADMEM_HOME``
overrides it; the folder is made absolute and its symlinks resolved, so a relative home
works and every spelling of one folder is one store). The first process that needs the
store starts ``secantusd-py`` (from the ``embedded`` extra) as a detached process bound
to loopback, and records its address and pid in ``server.json``; later processes reuse
it. A restarted server takes the port of the previous one when it is free, so clients
of the old one reconnect by themselves. A file lock makes processes that start at the
same moment end up on one server, and a state file whose process is dead, or whose port
answers for someone else, is replaced.

Writes to the embedded store are journaled (``journal=true`` in its URI): the server
acknowledges a write only once it is in the journal, so a killed server loses none.

The server is a separate program speaking the MongoDB wire protocol; this module never
imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from threadmem_mongo.errors import ConfigurationError, StoreUnavailableError

HOME_ENV = "THREADMEM_HOME"
SERVER_EXECUTABLE = "secantusd-py"
STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "server.log"
#: The port of the last server started here, kept when it stops so a restart can reuse it.
PORT_FILE = "server.port"
DATA_DIR = "data"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
#: How long a recorded server that is alive may take to answer before it is replaced.
ANSWER_PATIENCE = 5.0

# Run as `python -c _LAUNCHER LOG COMMAND...`: start COMMAND detached, print its pid.
_LAUNCHER = (
    "import subprocess, sys\n"
    "with open(sys.argv[1], 'ab') as log:\n"
    "    p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,\n"
    "                         stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid)\n"
)

INSTALL_HINT = (
    "no MongoDB is configured and the embedded store is not installed: run "
    "pip install 'threadmem-mongo[embedded]' for a local store under ~/.threadmem, or set "
    "THREADMEM_MONGODB_URI (for example mongodb://localhost:27017), or call "
    "threadmem_mongo.configure(uri=...)"
)


@dataclass(frozen=True)
class ServerInfo:
    """Where the embedded server runs.

    Attributes:
        host: The loopback address it listens on.
        port: The TCP port.
        pid: The server's process id.
        home: The folder holding its data, log and state file.
        started: When it started, epoch seconds.
    """

    host: str
    port: int
    pid: int
    home: str
    started: float

    @property
    def uri(self) -> str:
        """The connection string of the server, with journaled writes."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true&w=1&journal=true"


def home() -> Path:
    """Return the embedded store's folder: ``THREADMEM_HOME`` or ``~/.threadmem``,
    absolute, with symlinks resolved.

    Raises:
        ConfigurationError: The path cannot be resolved (for example, it contains NUL).
    """
    configured = os.environ.get(HOME_ENV)
    return resolved(Path(configured) if configured else Path.home() / ".threadmem")


def resolved(folder: Path) -> Path:
    """Return ``folder`` with ``~`` expanded, made absolute, and symlinks resolved.

    Raises:
        ConfigurationError: The path cannot be resolved.
    """
    try:
        return folder.expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise _unusable(folder, exc) from exc


def _unusable(folder: Path, exc: BaseException) -> ConfigurationError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConfigurationError(
        f"the embedded store's folder {str(folder)!r} cannot be used: {reason}; set "
        f"{HOME_ENV} to a folder this process can create and write, or configure a MongoDB "
        "with THREADMEM_MONGODB_URI or threadmem_mongo.configure(uri=...)"
    )


@contextlib.contextmanager
def _home_errors(folder: Path) -> Iterator[None]:
    """Report a file-system error in the embedded store's folder as a ConfigurationError."""
    try:
        yield
    except OSError as exc:
        raise _unusable(folder, exc) from exc


def find_executable() -> str | None:
    """Return the path of ``secantusd-py``: beside this Python first, then on ``PATH``."""
    beside = Path(sys.executable).parent / SERVER_EXECUTABLE
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(SERVER_EXECUTABLE)


def ensure_server(folder: Path | None = None) -> ServerInfo:
    """Return the running embedded server, starting it if none is running.

    Raises:
        ConfigurationError: The ``embedded`` extra is not installed, or the folder cannot
            be created or written.
        StoreUnavailableError: The server did not start in time (see ``server.log``).
    """
    folder = home() if folder is None else resolved(folder)
    with _home_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        info = _recorded_server(folder)
        if info is not None:
            if _answers_within(info, ANSWER_PATIENCE):
                return info
            # Alive but silent (a wrong port in the state file, or hung): it still holds
            # the data folder, so it must go before another server can open it.
            _terminate(info.pid)
        return _start(folder)


def server_status(folder: Path | None = None) -> ServerInfo | None:
    """Return the running embedded server, or None if none is running."""
    folder = home() if folder is None else resolved(folder)
    if not folder.is_dir():
        return None
    with _locked(folder):
        return _live_server(folder)


def stop_server(folder: Path | None = None) -> ServerInfo | None:
    """Stop the embedded server; return what was stopped, or None if none was running."""
    folder = home() if folder is None else resolved(folder)
    if not folder.is_dir():
        return None
    with _locked(folder):
        info = _recorded_server(folder)
        if info is not None:
            _terminate(info.pid)
        with _home_errors(folder):
            (folder / STATE_FILE).unlink(missing_ok=True)
        return info


def recorded_uri(folder: Path) -> str | None:
    """Return the URI in ``folder``'s state file, without checking that it runs.

    Cheap enough to call before each use of the store: no lock, no process or network check.
    """
    info = _read_state(folder)
    return None if info is None else info.uri


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if os.name != "posix":  # pragma: no cover - the embedded store is POSIX-only
        raise ConfigurationError(
            "the embedded store runs on Linux and macOS; set THREADMEM_MONGODB_URI instead"
        )
    import fcntl

    with _home_errors(folder):
        handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 - closed below
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(folder: Path) -> ServerInfo | None:
    try:
        raw = json.loads((folder / STATE_FILE).read_text())
        return ServerInfo(
            host=str(raw["host"]),
            port=int(raw["port"]),
            pid=int(raw["pid"]),
            home=str(raw["home"]),
            started=float(raw["started"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _live_server(folder: Path) -> ServerInfo | None:
    """Return the recorded server if its process is alive and answers on its port."""
    info = _recorded_server(folder)
    if info is not None and answers(info.host, info.port):
        return info
    return None


def _recorded_server(folder: Path) -> ServerInfo | None:
    """Return the recorded server if its process is alive, answering or not."""
    info = _read_state(folder)
    if info is None or not _pid_alive(info.pid, folder / DATA_DIR):
        return None
    return info


def _answers_within(info: ServerInfo, patience: float) -> bool:
    deadline = time.monotonic() + patience
    while not answers(info.host, info.port, timeout=0.5):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _pid_alive(pid: int, data: Path | None = None) -> bool:
    """Return whether ``pid`` runs (and, where /proc tells, is the server of ``data``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A reused pid belongs to some other program: check the command line where we can.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        if not any(b"secantus" in arg for arg in args):
            return False
        return data is None or os.fsencode(data) in args
    return True


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Return whether a MongoDB server answers ``hello`` at ``host:port``."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    millis = int(timeout * 1000)
    client: MongoClient[dict[str, Any]] = MongoClient(
        host,
        port,
        directConnection=True,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def server_command(executable: str, port: int, storage: str | Path, *flags: str) -> list[str]:
    """Return the command line of a server on loopback ``port`` keeping data in ``storage``."""
    return [executable, "--host", HOST, "--port", str(port), "--storage-path", str(storage), *flags]


def free_port() -> int:
    """Return a TCP port on the loopback address that is free at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start(folder: Path) -> ServerInfo:
    executable = find_executable()
    if executable is None:
        raise ConfigurationError(INSTALL_HINT)
    port = _last_port_if_free(folder) or free_port()
    data = folder / DATA_DIR
    with _home_errors(folder):
        data.mkdir(exist_ok=True)
        (folder / PORT_FILE).write_text(str(port))
    command = server_command(executable, port, data)
    # A short-lived launcher starts the server in its own session and exits, so the server
    # is nobody's child: it outlives this process, a Ctrl-C in the app's terminal does not
    # reach it, and this process holds no handle of a child it never waits for.
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(folder / LOG_FILE), *command],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if launched.returncode != 0 or not launched.stdout.strip().isdigit():
        raise StoreUnavailableError(
            f"the embedded store could not be started: {launched.stderr.strip()[-500:]}"
        )
    pid = int(launched.stdout.strip())
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(HOST, port, timeout=0.5):
        if not _pid_alive(pid) or time.monotonic() > deadline:
            _terminate(pid)
            raise StoreUnavailableError(
                f"the embedded store did not start on {HOST}:{port}; see "
                f"{folder / LOG_FILE} for the server's output"
            )
        time.sleep(0.1)
    info = ServerInfo(host=HOST, port=port, pid=pid, home=str(folder), started=time.time())
    temporary = folder / (STATE_FILE + ".tmp")
    with _home_errors(folder):
        temporary.write_text(json.dumps(asdict(info)))
        temporary.replace(folder / STATE_FILE)
    return info


def _last_port_if_free(folder: Path) -> int | None:
    """Return the port of the previous server of ``folder`` if it can be bound now."""
    try:
        port = int((folder / PORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server binds: connections of the stopped server left in TIME_WAIT do
        # not keep it from the port, a server listening there does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return None
    return port


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _pid_alive(pid) or _is_zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/stat")
    try:
        return status.read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False
