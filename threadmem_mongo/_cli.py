"""The ``threadmem`` command: manage the embedded store and look at threads.

Exit codes: 0 success, 1 a threadmem error (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence

from threadmem_mongo import _config, _embedded
from threadmem_mongo._demo import run_demo
from threadmem_mongo._store import ThreadStore
from threadmem_mongo._thread import RoleThread
from threadmem_mongo.errors import ThreadMemError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


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
    ls.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    show = commands.add_parser("show", help="print a thread's messages")
    show.add_argument("thread_id")

    export = commands.add_parser("export", help="print a thread as JSON")
    export.add_argument("thread_id")
    export.add_argument("--format", choices=["openai", "v1"], default="openai")

    commands.add_parser("demo", help="create the quickstart's thread and print it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``threadmem``; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ThreadMemError as exc:
        print(f"threadmem: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "server":
        return _server(args.action)
    if args.uri is not None or args.database is not None:
        _config.configure(uri=args.uri, database=args.database)
    store = _config.default_store()
    if args.command == "ls":
        return _ls(store, args.owner, args.limit)
    if args.command == "show":
        return _show(store, args.thread_id)
    if args.command == "export":
        thread = RoleThread.get(args.thread_id, store=store)
        data = thread.to_openai() if args.format == "openai" else thread.to_v1().model_dump()
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    run_demo(store)
    return EXIT_OK


def _server(action: str) -> int:
    if action == "start":
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
    print(f"pid     {info.pid}")
    print(f"data    {info.home}")
    return EXIT_OK


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _ls(store: ThreadStore, owner: str | None, limit: int) -> int:
    filters = {"owner_id": owner} if owner is not None else {}
    # last=0: a listing loads no messages, whatever the threads' length.
    threads = RoleThread.find(limit=limit, newest_first=True, last=0, store=store, **filters)
    rows = [
        (t.id, t.name or "", t.owner_id or "", str(t.message_count), _when(t.updated))
        for t in threads
    ]
    header = ("ID", "NAME", "OWNER", "MESSAGES", "UPDATED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _show(store: ThreadStore, thread_id: str) -> int:
    thread = RoleThread.get(thread_id, store=store)
    print(
        f"{thread.name or '(no name)'}  id={thread.id}  owner={thread.owner_id}  "
        f"version={thread.version}"
    )
    for message in thread.messages():
        flags = " (private)" if message.private else ""
        print(f"\n[{_when(message.created)}] {message.role}{flags}:")
        print(f"  {message.text}")
        for image in message.images:
            shown = image if len(image) < 100 else image[:60] + f"... ({len(image)} chars)"
            print(f"  image: {shown}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
