"""The Docker Compose files, the sharded-cluster init script and docs/scaling.md agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
SINGLE_COMPOSE = ROOT / "docker" / "compose.yaml"
SHARDED_COMPOSE = ROOT / "docker" / "sharded" / "compose.yaml"
INIT_JS = ROOT / "docker" / "sharded" / "init.js"
SCALING_DOC = ROOT / "docs" / "scaling.md"

MONGO_IMAGE = "mongo:8.0"
LOOPBACK_27017 = "127.0.0.1:27017:27017"
TEST_URI = "mongodb://127.0.0.1:27017/?directConnection=true"

Service = dict[str, Any]


def load_compose(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def flag_value(command: list[str], flag: str) -> str:
    """Return the argument after ``flag`` in a command list."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def healthcheck_script(service: Service) -> str:
    """Return the JavaScript a ``mongosh --eval`` healthcheck runs."""
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "mongosh"], test
    return str(flag_value(test, "--eval"))


def js_index_specs(script: str) -> dict[str, list[tuple[str, int]]]:
    """Parse ``{ key: { a: 1, "b.c": 1 }, name: "n" }`` entries from init.js."""
    specs: dict[str, list[tuple[str, int]]] = {}
    for body, name in re.findall(r'\{\s*key:\s*\{([^}]*)\},\s*name:\s*"([^"]+)"\s*\}', script):
        fields = re.findall(r'"?([\w.]+)"?\s*:\s*(-?1)\b', body)
        specs[name] = [(field, int(direction)) for field, direction in fields]
    return specs


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return load_compose(SINGLE_COMPOSE)


@pytest.fixture(scope="module")
def mongo(single: dict[str, Any]) -> Service:
    service: Service = single["services"]["mongo"]
    return service


@pytest.fixture(scope="module")
def sharded() -> dict[str, Any]:
    return load_compose(SHARDED_COMPOSE)


@pytest.fixture(scope="module")
def sharded_services(sharded: dict[str, Any]) -> dict[str, Service]:
    services: dict[str, Service] = sharded["services"]
    return services


@pytest.fixture(scope="module")
def init_js() -> str:
    return INIT_JS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def scaling_doc() -> str:
    return SCALING_DOC.read_text(encoding="utf-8")


# -- docker/compose.yaml ----------------------------------------------------------------


def test_single_node_file_has_one_mongo_8_service(single: dict[str, Any]) -> None:
    assert list(single["services"]) == ["mongo"]
    assert single["services"]["mongo"]["image"] == MONGO_IMAGE


def test_single_node_starts_mongod_as_replica_set_rs0_on_all_interfaces(mongo: Service) -> None:
    command = mongo["command"]
    assert command[0] == "mongod"
    assert flag_value(command, "--replSet") == "rs0"
    assert "--bind_ip_all" in command


def test_single_node_publishes_27017_on_loopback_only(mongo: Service) -> None:
    assert mongo["ports"] == [LOOPBACK_27017]


def test_single_node_keeps_data_in_a_named_volume(single: dict[str, Any], mongo: Service) -> None:
    assert mongo["volumes"] == ["mongo-data:/data/db"]
    assert "mongo-data" in single["volumes"]


def test_single_node_healthcheck_initiates_rs0_on_the_published_address(mongo: Service) -> None:
    script = healthcheck_script(mongo)
    initiate = re.search(r"rs\.initiate\((.*)\)", script)
    assert initiate is not None, script
    assert '_id: "rs0"' in initiate.group(1)
    # The member name must be the address host clients reach, so discovery works too.
    member = re.search(r'host:\s*"([^"]+)"', initiate.group(1))
    assert member is not None
    assert member.group(1) == "localhost:27017"
    assert LOOPBACK_27017.endswith(":" + member.group(1).split(":")[1])


def test_single_node_healthcheck_fails_until_the_node_is_primary(mongo: Service) -> None:
    script = healthcheck_script(mongo)
    assert 'e.codeName !== "NotYetInitialized"' in script
    assert script.rstrip().endswith("quit(db.hello().isWritablePrimary ? 0 : 1);")
    assert mongo["healthcheck"]["retries"] >= 1


# -- docker/sharded/compose.yaml --------------------------------------------------------


def test_sharded_file_has_config_server_two_shards_router_and_init(
    sharded_services: dict[str, Service],
) -> None:
    assert set(sharded_services) == {"configsvr", "shard1", "shard2", "mongos", "init"}
    assert {s["image"] for s in sharded_services.values()} == {MONGO_IMAGE}


def test_sharded_config_server_is_a_configsvr_replica_set(
    sharded_services: dict[str, Service],
) -> None:
    configsvrs = [n for n, s in sharded_services.items() if "--configsvr" in s["command"]]
    assert configsvrs == ["configsvr"]
    command = sharded_services["configsvr"]["command"]
    assert command[0] == "mongod"
    assert flag_value(command, "--replSet") == "configrs"
    assert flag_value(command, "--port") == "27019"


def test_sharded_shards_are_two_distinct_shardsvr_replica_sets(
    sharded_services: dict[str, Service],
) -> None:
    shards = sorted(n for n, s in sharded_services.items() if "--shardsvr" in s["command"])
    assert shards == ["shard1", "shard2"]
    names = [flag_value(sharded_services[n]["command"], "--replSet") for n in shards]
    assert names == ["shard1rs", "shard2rs"]


def test_sharded_mongos_reads_the_config_replica_set_and_alone_is_published(
    sharded_services: dict[str, Service],
) -> None:
    command = sharded_services["mongos"]["command"]
    assert command[0] == "mongos"
    config = sharded_services["configsvr"]["command"]
    expected = f"{flag_value(config, '--replSet')}/configsvr:{flag_value(config, '--port')}"
    assert flag_value(command, "--configdb") == expected
    published = {n: s["ports"] for n, s in sharded_services.items() if "ports" in s}
    assert published == {"mongos": [LOOPBACK_27017]}


@pytest.mark.parametrize("name", ["configsvr", "shard1", "shard2", "mongos"])
def test_sharded_server_healthcheck_pings_its_own_port(
    sharded_services: dict[str, Service], name: str
) -> None:
    service = sharded_services[name]
    test = service["healthcheck"]["test"]
    assert flag_value(test, "--port") == flag_value(service["command"], "--port")
    assert "ping: 1" in healthcheck_script(service)
    assert service["healthcheck"]["retries"] >= 1


def test_sharded_data_servers_keep_data_in_named_volumes(
    sharded: dict[str, Any], sharded_services: dict[str, Service]
) -> None:
    for name in ("configsvr", "shard1", "shard2"):
        assert sharded_services[name]["volumes"] == [f"{name}-data:/data/db"]
        assert f"{name}-data" in sharded["volumes"]


def test_sharded_init_runs_the_mounted_script_once_servers_are_up(
    sharded_services: dict[str, Service],
) -> None:
    init = sharded_services["init"]
    assert init["command"][0] == "mongosh"
    assert flag_value(init["command"], "--file") == "/init.js"
    assert init["volumes"] == ["./init.js:/init.js:ro"]
    assert INIT_JS.is_file()
    conditions = {n: d["condition"] for n, d in init["depends_on"].items()}
    assert conditions == {
        "configsvr": "service_healthy",
        "shard1": "service_healthy",
        "shard2": "service_healthy",
        "mongos": "service_started",
    }


def test_compose_files_have_no_variable_interpolation() -> None:
    # Compose substitutes $VAR and ${VAR}; a stray $ in a mongosh script would be mangled.
    for path in (SINGLE_COMPOSE, SHARDED_COMPOSE):
        assert "$" not in path.read_text(encoding="utf-8"), path


# -- docker/sharded/init.js -------------------------------------------------------------


@pytest.mark.parametrize("name", ["configsvr", "shard1", "shard2"])
def test_init_script_initiates_each_replica_set_with_its_compose_address(
    sharded_services: dict[str, Service], init_js: str, name: str
) -> None:
    command = sharded_services[name]["command"]
    replica_set = flag_value(command, "--replSet")
    address = f"{name}:{flag_value(command, '--port')}"
    assert f'initiateReplicaSet("{address}", {{\n  _id: "{replica_set}",' in init_js
    assert f'members: [{{ _id: 0, host: "{address}" }}]' in init_js


def test_init_script_marks_the_config_replica_set_as_configsvr(init_js: str) -> None:
    assert re.search(r'_id: "configrs",\s*configsvr: true,', init_js)


def test_init_script_adds_both_shards_by_replica_set(init_js: str) -> None:
    assert 'addShard: "shard1rs/shard1:27018"' in init_js
    assert 'addShard: "shard2rs/shard2:27018"' in init_js


def test_init_script_shards_threads_collection_on_hashed_id(init_js: str) -> None:
    assert 'enableSharding: "threadmem"' in init_js
    sharded = re.findall(r'shardCollection:\s*"([^"]+)",\s*key:\s*(\{[^}]*\})', init_js)
    assert sharded == [
        ("threadmem.threads", '{ _id: "hashed" }'),
        ("threadmem.threads.pages", '{ thread_id: "hashed" }'),
    ]


def test_init_script_creates_owner_created_and_message_id_indexes_on_threads(
    init_js: str,
) -> None:
    assert re.search(r'getSiblingDB\("threadmem"\),\s*\{\s*createIndexes:\s*"threads"', init_js)
    specs = js_index_specs(init_js)
    assert specs["owner_created"] == [("owner_id", 1), ("created", 1)]
    assert specs["message_id"] == [("messages.id", 1)]


def create_indexes_block(script: str, collection: str) -> str:
    """The ``createIndexes`` command of ``collection`` in init.js."""
    start = script.index(f'createIndexes: "{collection}"')
    return script[start : script.index("});", start)]


def test_init_script_creates_exactly_the_indexes_ensure_indexes_creates(init_js: str) -> None:
    # Same keys under other names would make ensure_indexes() fail with IndexOptionsConflict.
    from threadmem_mongo._page_store import PAGE_INDEXES
    from threadmem_mongo._store import INDEXES, LEGACY_MESSAGE_ID_INDEX, MESSAGE_ID_KEYS

    expected = {name: [(field, int(d)) for field, d in keys] for name, keys in INDEXES}
    # On a sharded collection the message-id index cannot be unique: ensure_indexes()
    # finds this one and keeps it.
    expected[LEGACY_MESSAGE_ID_INDEX] = [(field, int(d)) for field, d in MESSAGE_ID_KEYS]
    assert js_index_specs(create_indexes_block(init_js, "threads")) == expected

    pages = create_indexes_block(init_js, "threads.pages")
    for name, keys, options in PAGE_INDEXES:
        fields = ",\\s*".join(rf'"?{re.escape(field)}"?:\s*{int(d)}' for field, d in keys)
        extra = "".join(rf",\s*{key}:\s*{str(value).lower()}" for key, value in options.items())
        entry = rf'\{{\s*key:\s*\{{\s*{fields}\s*\}}{extra},\s*name:\s*"{name}"'
        assert re.search(entry, pages), name
    assert len(re.findall(r"\bname:", pages)) == len(PAGE_INDEXES)


def test_init_script_shards_pages_on_their_thread(init_js: str) -> None:
    assert re.search(
        r'shardCollection:\s*"threadmem.threads.pages",\s*key:\s*\{\s*thread_id:\s*"hashed"',
        init_js,
    )


def test_init_script_creates_the_ttl_index_ensure_indexes_creates(init_js: str) -> None:
    from threadmem_mongo._store import TTL_INDEX

    name, keys = TTL_INDEX
    ((field, direction),) = keys
    entry = (
        rf"\{{\s*key:\s*\{{\s*{field}:\s*{direction}\s*\}},"
        rf'\s*expireAfterSeconds:\s*0,\s*name:\s*"{name}"'
    )
    assert re.search(entry, init_js)


# -- docs/scaling.md --------------------------------------------------------------------


def test_scaling_doc_gives_the_single_node_test_commands(scaling_doc: str) -> None:
    assert "docker compose -f docker/compose.yaml up -d --wait" in scaling_doc
    assert f'THREADMEM_TEST_MONGODB_URI="{TEST_URI}" pytest' in scaling_doc


def test_scaling_doc_gives_the_sharded_commands_and_shard_key(scaling_doc: str) -> None:
    assert "docker compose -f docker/sharded/compose.yaml up -d" in scaling_doc
    assert "docker compose -f docker/sharded/compose.yaml wait init" in scaling_doc
    assert 'shards `threadmem.threads` on\n`{ _id: "hashed" }`' in scaling_doc


def test_scaling_doc_names_only_files_that_exist(scaling_doc: str) -> None:
    paths = set(re.findall(r"docker/[\w/.-]+\.(?:yaml|js)", scaling_doc))
    assert paths == {
        "docker/compose.yaml",
        "docker/sharded/compose.yaml",
        "docker/sharded/init.js",
    }
    for path in paths:
        assert (ROOT / path).is_file(), path


def test_scaling_doc_lists_every_index_init_script_creates(scaling_doc: str, init_js: str) -> None:
    for name in js_index_specs(init_js):
        assert f"| `{name}`" in scaling_doc, name


def test_scaling_doc_recommends_majority_write_and_read_concern(scaling_doc: str) -> None:
    uri = re.search(r"mongodb://db1\.example\.net\S*", scaling_doc)
    assert uri is not None
    options = dict(pair.split("=", 1) for pair in uri.group(0).split("?", 1)[1].split("&"))
    assert options == {
        "replicaSet": "rs0",
        "w": "majority",
        "retryWrites": "true",
        "readConcernLevel": "majority",
    }
