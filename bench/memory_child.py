"""Run by :mod:`bench.memory` in a fresh interpreter: load one thread, print peak RSS.

Prints one JSON line: the resident set size after imports and connecting
(``baseline_kib``), the peak resident set size while loading (``peak_kib``), and how many
messages were loaded. On Linux the peak is reset just before the load (``clear_refs``),
so the transient peak of the imports does not hide it; elsewhere the process's lifetime
peak (``ru_maxrss``) is used, and ``method`` says which.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
from typing import Any


def lifetime_peak_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def status_kib(field: str) -> int:
    """A ``Vm*`` figure of ``/proc/self/status``, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset the kernel's peak RSS of this process to its current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        status_kib("VmHWM")
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--thread-id", required=True)
    parser.add_argument(
        "--mode", required=True, choices=["baseline", "whole", "last", "raw-whole", "raw-slice"]
    )
    args = parser.parse_args(argv)

    from pymongo import MongoClient

    from threadmem_mongo import RoleThread, ThreadStore

    client: MongoClient[dict[str, Any]] = MongoClient(args.uri)
    collection = client[args.database][args.collection]
    store = ThreadStore(collection)
    store.ensure_indexes()
    client.admin.command("ping")
    gc.collect()
    exact = reset_peak()
    baseline = status_kib("VmRSS") if exact else lifetime_peak_kib()
    held: Any = None
    messages = 0
    if args.mode == "whole":
        held = RoleThread.get(args.thread_id, store=store)
        messages = len(held.messages())
    elif args.mode == "last":
        held = RoleThread.get(args.thread_id, store=store, last=20)
        messages = len(held.messages())
    elif args.mode == "raw-whole":
        held = collection.find_one({"_id": args.thread_id})
        messages = len(held["messages"])
    elif args.mode == "raw-slice":
        held = collection.find_one({"_id": args.thread_id}, {"messages": {"$slice": -20}})
        messages = len(held["messages"])
    peak = status_kib("VmHWM") if exact else lifetime_peak_kib()
    client.close()
    print(
        json.dumps(
            {
                "baseline_kib": baseline,
                "peak_kib": peak,
                "messages": messages,
                "method": "VmHWM after clear_refs" if exact else "ru_maxrss",
                "held": held is not None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
