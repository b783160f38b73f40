"""Section 3: peer MongoDB chat stores on the same wire server, in their own venv.

They are not installed beside threadmem-mongo: they bring some sixty packages, and two
of them (anyio, langsmith) register pytest plugins that would load into this project's
test runs. This interpreter is used only if it already imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bson import json_util

from bench.plan import TEXT, Plan, prefill_messages
from bench.targets import DATABASE, Target, stored_message
from bench.venvs import python_with, run_driver
from threadmem_mongo import RoleThread

REQUIREMENTS = ["langchain-mongodb", "openai-agents[mongodb]"]
MODULES = ["langchain_mongodb.chat_message_histories", "agents.extensions.memory.mongodb_session"]
VENV = "venv-peers"
FLOOR_COLLECTION = "peer_floor"


def floor_threads(target: Target, plan: Plan) -> tuple[dict[str, str], str]:
    """A thread of each length for the driver's floor pushes, and the message to push."""
    store = target.store(FLOOR_COLLECTION)
    ids: dict[str, str] = {}
    template: dict[str, Any] = {}
    for length in plan.lengths:
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="floor", store=store)
        thread.post("user", TEXT)
        template = stored_message(target.collection(FLOOR_COLLECTION), thread)
        ids[str(length)] = thread.id
    return ids, json_util.dumps(template)


def peers(uri: str, target: Target, plan: Plan) -> dict[str, Any]:
    """Run the peers' driver.

    Besides each peer's own appends, the driver times the raw pymongo floor (``$push`` of
    the library's message into a thread of the same length) in alternation with them, so
    each peer has a paired ratio to the same floor as threadmem-mongo's post.

    Raises:
        NotRunError: Neither this interpreter nor a venv could provide the packages.
    """
    python, where = python_with(MODULES, VENV, REQUIREMENTS)
    floor_ids, template = floor_threads(target, plan)
    payload = {
        "uri": uri,
        "database": DATABASE,
        "text": TEXT,
        "reps": plan.reps,
        "posts_per_rep": plan.posts_per_rep,
        "lengths": list(plan.lengths),
        "floor_collection": FLOOR_COLLECTION,
        "floor_ids": floor_ids,
        "template": template,
    }
    result = run_driver(python, "bench.drivers.peers", payload)
    result["where"] = where.replace(str(Path.home()), "~")
    return result
