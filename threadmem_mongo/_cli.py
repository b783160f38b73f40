"""The ``threadmem`` command: manage the embedded store and look at threads.

Exit codes: 0 success, 1 a threadmem error (one line on stderr), 2 bad usage.

Standard output carries the result. Standard error carries errors, and one line each
time the command starts to wait: when it starts the embedded store, and when a server
has not answered within ``QUIET_WAIT`` seconds. Every string read from the database is
printed with its control characters escaped, so a stored message cannot move the
cursor, recolour or retitle the terminal, or reorder the text around it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import pymongo
from pymongo.errors import PyMongoError

from threadmem_mongo import _config, _embedded
from threadmem_mongo._assistants import read_export_file
from threadmem_mongo._capabilities import is_mongomock
from threadmem_mongo._demo import run_demo
from threadmem_mongo._driver import translated
from threadmem_mongo._store import ThreadStore
from threadmem_mongo._thread import RoleThread
from threadmem_mongo.errors import ThreadMemError

EXIT_OK = 0
EXIT_ERROR = 1

#: Seconds a server may take to answer before the command says that it is waiting.
QUIET_WAIT = 1.0
#: The largest ``ls --limit``: the server receives the limit as a 64-bit integer.
MAX_LIMIT = 2**63 - 1

# Characters that steer a terminal instead of showing something: the C0 and C1 controls
# and DEL (escape sequences, carriage returns, backspaces), the Unicode line and
# paragraph separators, and the bidirectional marks, overrides and isolates.
_C0 = "\x00-\x1f"
_OTHER_STEERING = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_C0}{_OTHER_STEERING}]")
# In a message's text, line breaks and tabs are layout, which ``show`` keeps.
_UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER_STEERING}]")
# json.dumps escapes the C0 controls already; these are the ones it leaves raw.
_UNSAFE_IN_JSON = re.compile(f"[{_OTHER_STEERING}]")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``threadmem``."""
    parser = argparse.ArgumentParser(
        prog="threadmem",
        description="Persistent multi-role chat threads in MongoDB.",
        epilog="Without --uri or THREADMEM_MONGODB_URI, the embedded local store is used.",
    )
    parser.add_argument("--uri", help="MongoDB connection string (default: embedded store)")
    parser.add_argument("--database", help="database name (default: threadmem)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser("server", help="start, stop or inspect the embedded store")
    server.add_argument("action", choices=["start", "stop", "status"])

    ls = commands.add_parser("ls", help="list threads, newest first")
    ls.add_argument("--owner", help="only threads of this owner id")
    ls.add_argument(
        "--limit", type=_limit, default=20, help="at most this many, 1 or more (default 20)"
    )

    show = commands.add_parser("show", help="print a thread's messages")
    show.add_argument("thread_id")

    export = commands.add_parser("export", help="print a thread as JSON")
    export.add_argument("thread_id")
    export.add_argument(
        "--format", choices=["openai", "anthropic", "responses", "v1"], default="openai"
    )

    load = commands.add_parser(
        "import", help="store a thread from a file in an export format; print its id"
    )
    load.add_argument("file", help="a .json file (or .jsonl for assistants)")
    load.add_argument(
        "--format", required=True, choices=["assistants", "openai", "anthropic", "responses"]
    )
    load.add_argument("--owner", help="owner id of the thread")

    compact = commands.add_parser(
        "compact",
        help="move the oldest messages of threads over the inline limits to overflow pages",
    )
    compact.add_argument("thread_id", nargs="?", help="only this thread (default: all)")

    commands.add_parser("demo", help="create the quickstart's thread and print it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``threadmem``; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ThreadMemError as exc:
        print(f"threadmem: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def terminal_safe(text: str) -> str:
    """Return ``text`` on one line, with every character that steers a terminal escaped.

    Escapes are Python's (``\\x1b``, ``\\n``, ``\\u202e``), so the text stays readable.
    """
    return _UNSAFE.sub(_escaped, text)


def terminal_safe_json(data: Any) -> str:
    """Return ``data`` as indented JSON that a terminal shows as it is.

    Non-ASCII text stays readable; the controls ``json.dumps`` leaves raw (DEL, C1,
    line separators, bidirectional controls) become ``\\uXXXX`` escapes, which decode
    to the same strings.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _escaped(found: re.Match[str]) -> str:
    return found.group().encode("unicode_escape").decode("ascii")


def _note(text: str) -> None:
    print(f"threadmem: {text}", file=sys.stderr, flush=True)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "server":
        return _server(args.action)
    if args.uri is not None or args.database is not None:
        _config.configure(uri=args.uri, database=args.database)
    if _uses_embedded_store():
        _start_embedded_store_if_stopped()
    store = _config.default_store()
    _wait_for_server(store)
    if args.command == "ls":
        return _ls(store, args.owner, args.limit)
    if args.command == "show":
        return _show(store, args.thread_id)
    if args.command == "import":
        return _import(store, args.file, args.format, args.owner)
    if args.command == "compact":
        totals = store.compact(args.thread_id)
        print(
            f"{totals['threads']} thread(s) looked at, {totals['moves']} page(s) written, "
            f"{totals['pending']} pending change(s) completed"
        )
        return EXIT_OK
    if args.command == "export":
        thread = RoleThread.get(args.thread_id, store=store)
        data: dict[str, Any] | list[dict[str, Any]]
        if args.format == "openai":
            data = thread.to_openai()
        elif args.format == "anthropic":
            data = thread.to_anthropic()
        elif args.format == "responses":
            data = thread.to_responses()
        else:
            data = thread.to_v1().model_dump()
            # The schema keeps the original's text version; JSON readers want the number.
            data["version"] = thread.version
        print(terminal_safe_json(data))
        return EXIT_OK
    run_demo(store)
    return EXIT_OK


def _import(store: ThreadStore, path: str, format_name: str, owner: str | None) -> int:
    # Importing the same file again prints the id of the thread the first import made.
    if format_name == "assistants":
        thread = RoleThread.import_openai_thread(path, owner_id=owner, store=store)
    else:
        data = read_export_file(path)
        thread = RoleThread._import_export(format_name, data, owner_id=owner, store=store)
    print(terminal_safe(thread.id))
    return EXIT_OK


def _uses_embedded_store() -> bool:
    """Whether the default store, once built, is the embedded one (see ``_config``)."""
    settings = _config._settings
    if settings.get("client") is not None:
        return False
    uri = settings.get("uri")
    if uri is None:
        uri = _config._env_uri()
    return not uri


def _start_embedded_store_if_stopped() -> None:
    if _embedded.server_status() is not None:
        return
    if _embedded.find_executable() is not None:  # else ensure_server says what to install
        _note(
            f"starting the embedded store in {_embedded.home()} (up to "
            f"{_embedded.START_TIMEOUT:g} s); it keeps running after this command, "
            "until: threadmem server stop"
        )
    _embedded.ensure_server()


def _wait_for_server(store: ThreadStore) -> None:
    """Return once the server answers; say so on stderr if it takes a while."""
    if is_mongomock(store.collection):  # in memory: nothing to wait for
        return
    client = store.collection.database.client
    patience = client.options.server_selection_timeout
    quiet = min(QUIET_WAIT, patience)
    try:
        with pymongo.timeout(quiet):
            client.admin.command("ping")
        return
    except PyMongoError as exc:
        if not exc.timeout or patience <= quiet:
            raise translated(exc) from exc
    servers = ", ".join(
        f"{host}:{port}" for host, port in client.topology_description.server_descriptions()
    )
    _note(
        f"waiting up to {patience:g} s for MongoDB at {servers or 'the configured address'} "
        "(THREADMEM_TIMEOUT sets how long)"
    )
    try:
        with pymongo.timeout(patience - quiet):
            client.admin.command("ping")
    except PyMongoError as exc:
        raise translated(exc) from exc


def _server(action: str) -> int:
    if action == "start":
        running = _embedded.server_status()
        if running is not None:
            print(f"already running at {running.uri}")
            _print_server(running)
            return EXIT_OK
        if _embedded.find_executable() is not None:
            _note(
                f"starting the embedded store in {_embedded.home()} "
                f"(up to {_embedded.START_TIMEOUT:g} s)"
            )
        info = _embedded.ensure_server()
    elif action == "stop":
        stopped = _embedded.stop_server()
        print(f"stopped server pid {stopped.pid}" if stopped else "no server was running")
        return EXIT_OK
    else:
        found = _embedded.server_status()
        if found is None:
            print(f"not running (data folder {_embedded.home()})")
            return EXIT_ERROR
        info = found
    print(f"running at {info.uri}")
    _print_server(info)
    return EXIT_OK


def _print_server(info: _embedded.ServerInfo) -> None:
    print(f"pid     {info.pid}")
    print(f"data    {info.home}")


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _ls(store: ThreadStore, owner: str | None, limit: int) -> int:
    filters = {"owner_id": owner} if owner is not None else {}
    # last=0: a listing loads no messages, whatever the threads' length.
    threads = RoleThread.find(limit=limit, newest_first=True, last=0, store=store, **filters)
    rows = [
        [
            terminal_safe(t.id),
            terminal_safe(t.name or ""),
            terminal_safe(t.owner_id or ""),
            str(t.message_count),
            _when(t.updated),
        ]
        for t in threads
    ]
    header = ["ID", "NAME", "OWNER", "MESSAGES", "UPDATED"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _show(store: ThreadStore, thread_id: str) -> int:
    thread = RoleThread.get(thread_id, store=store)
    name = terminal_safe(thread.name) if thread.name else "(no name)"
    owner = terminal_safe(str(thread.owner_id))
    print(f"{name}  id={terminal_safe(thread.id)}  owner={owner}  version={thread.version}")
    for message in thread.messages():
        flags = " (private)" if message.private else ""
        print(f"\n[{_when(message.created)}] {terminal_safe(message.role)}{flags}:")
        text = _UNSAFE_IN_TEXT.sub(_escaped, message.text)
        # Every line of the text is indented, so no line of it looks like a header.
        print("\n".join(f"  {line}" for line in text.split("\n")))
        for image in message.images:
            shown = image if len(image) < 100 else image[:60] + f"... ({len(image)} chars)"
            print(f"  image: {terminal_safe(shown)}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
