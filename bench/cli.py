"""``python -m bench``: run every section, then write the Markdown page and the plots."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.plan import FULL, SMOKE, Plan
from bench.venvs import NotRunError

ROOT = Path(__file__).resolve().parent.parent


def _log(message: str, started: float) -> None:
    print(f"[bench {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{revision} (uncommitted changes)" if dirty else revision


def machine(server_version: str, uri_given: bool) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pymongo": _version("pymongo"),
        "mongomock": _version("mongomock"),
        "secantusdb": _version("SecantusDB"),
        "threadmem_mongo": _version("threadmem-mongo"),
        "git": _git_revision(),
        "server": server_version,
        "server_kind": "given by --uri" if uri_given else "SecantusDB (secantusd-py), started here",
        "load_start": _load(),
    }


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


class Runner:
    """Runs sections one by one, keeping what each produced or why it did not run."""

    def __init__(self, started: float, only: list[str] | None = None) -> None:
        self.started = started
        self.sections: dict[str, Any] = {}
        self.failed: list[str] = []
        self.only = only

    def run(
        self,
        name: str,
        call: Callable[[], Any],
        *,
        optional: bool = False,
        before: Callable[[], None] | None = None,
    ) -> None:
        if self.only and name not in self.only:
            self.skip(name, "skipped: not chosen with --only")
            return
        _log(f"{name} ...", self.started)
        begin = time.monotonic()
        try:
            if before is not None:
                before()
            self.sections[name] = call()
        except NotRunError as exc:
            self.sections[name] = {"not_run": str(exc)}
        except Exception as exc:
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if optional:
                self.sections[name] = {"not_run": reason}
            else:
                self.sections[name] = {"failed": reason}
                self.failed.append(name)
        seconds = time.monotonic() - begin
        if isinstance(self.sections[name], dict):
            self.sections[name]["seconds"] = seconds
        outcome = self.sections[name]
        status = outcome.get("not_run") or outcome.get("failed") or "done"
        _log(f"{name}: {status} ({seconds:.1f} s)", self.started)

    def skip(self, name: str, reason: str) -> None:
        self.sections[name] = {"not_run": reason}
        _log(f"{name}: not run: {reason}", self.started)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark threadmem-mongo against the original threadmem, peer "
        "MongoDB stores and raw pymongo; write benchmarks.md and bench-*.png.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long run with small sizes (for CI); skips the "
        "original threadmem and the peers unless --with-peers",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs",
        help="directory for benchmarks.md and the plots (default: docs/)",
    )
    parser.add_argument(
        "--with-peers",
        action="store_true",
        help="in --smoke mode, also build the venvs of the original "
        "threadmem and the peer stores and run them",
    )
    parser.add_argument(
        "--without-peers",
        action="store_true",
        help="skip the original threadmem and the peer stores",
    )
    parser.add_argument(
        "--uri", help="benchmark this running MongoDB instead of starting a SecantusDB server"
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help="extend the overflow section's post cost curve to 100,000 messages",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        help="run only this section (repeatable; e.g. adapters); needs --out, so a "
        "partial page never replaces docs/benchmarks.md",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: write the page and plots from results saved with --json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan: Plan = SMOKE if args.smoke else FULL
    if args.only and args.out.resolve() == (ROOT / "docs").resolve():
        print("--only writes a partial page: pass --out DIR outside docs/", file=sys.stderr)
        return 2
    started = time.monotonic()
    os.environ.setdefault("MPLBACKEND", "Agg")
    if args.from_json:
        from bench import report

        args.out.mkdir(parents=True, exist_ok=True)
        page = report.write(json.loads(args.from_json.read_text()), args.out)
        _log(f"wrote {page}", started)
        return 0

    from bench import (
        adapters,
        concurrency,
        memory,
        ops,
        original,
        ours,
        overflow,
        peers,
        report,
    )
    from bench.server import WireServer
    from bench.targets import (
        DATABASE,
        PostCommand,
        capture_post_command,
        mongomock_target,
        wire_target,
    )

    runner = Runner(started, args.only)
    server: WireServer | None = None
    run_peers = not args.without_peers and (not args.smoke or args.with_peers)
    skip_reason = (
        "skipped: --without-peers"
        if args.without_peers
        else "skipped in --smoke mode (pass --with-peers to build its venv and run it)"
    )
    try:
        if args.uri:
            uri = args.uri
        else:
            _log("starting the SecantusDB wire server", started)
            server = WireServer()
            # SecantusDB slows down as it accumulates retryable-write records (see the
            # page); the clients of every section therefore write without them.
            uri = server.start() + "&retryWrites=false"
        wire = wire_target(uri)
        mock = mongomock_target()
        server_version = str(wire.client.server_info().get("version", "unknown"))
        meta = machine(server_version, bool(args.uri))
        wire.client.drop_database(DATABASE)
        try:
            command: PostCommand | None = capture_post_command(wire)
            post_command = {"described": command.describe(), "name": command.name}
        except (RuntimeError, KeyError, TypeError) as exc:
            command = None
            post_command = {"not_run": str(exc)}

        def fresh() -> None:
            """Every wire section starts on an empty database."""
            wire.client.drop_database(DATABASE)

        runner.run("post_cost_wire", lambda: ours.post_cost(wire, plan, command), before=fresh)
        if run_peers:
            runner.run("peers", lambda: peers.peers(uri, wire, plan), optional=True, before=fresh)
        else:
            runner.skip("peers", skip_reason)
        runner.run("post_cost_mongomock", lambda: ours.post_cost(mock, plan, command))
        runner.run("workloads_wire", lambda: ours.workloads(wire, plan), before=fresh)
        runner.run("workloads_mongomock", lambda: ours.workloads(mock, plan))
        runner.run("ops", lambda: ops.round_trips(wire, plan), before=fresh)
        runner.run("concurrency", lambda: concurrency.concurrency(uri, plan), before=fresh)
        runner.run("memory", lambda: memory.memory(uri, wire, plan), before=fresh)
        runner.run("adapters", lambda: adapters.adapters(uri, plan, run_peers), before=fresh)
        if run_peers:
            runner.run(
                "original", lambda: original.original(plan, wire), optional=True, before=fresh
            )
        else:
            runner.skip("original", skip_reason)
        sizes = overflow.sizes_for(plan.mode, args.long)
        runner.run(
            "overflow",
            lambda: overflow.overflow(wire, sizes, None if run_peers else skip_reason),
            before=fresh,
        )
        fresh()
        wire.close()
        mock.close()
    finally:
        if server is not None:
            _log("stopping the wire server", started)
            server.stop()
    results = {
        "meta": meta,
        "plan": plan.as_dict(),
        "sections": runner.sections,
        "post_command": post_command,
        "failed": runner.failed,
        "elapsed": time.monotonic() - started,
        "load_end": _load(),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    page = report.write(results, args.out)
    _log(f"wrote {page}", started)
    if runner.failed:
        _log(f"failed sections: {', '.join(runner.failed)}", started)
        return 1
    return 0
