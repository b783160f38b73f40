"""Large images in GridFS (bucket ``threadmem_images``) and the 16 MB document budget.

Every test takes ``store`` (mongomock and the SecantusDB wire server) unless it needs a
real server, in which case it takes ``wire_store`` and is marked ``wire``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import bson
import gridfs
import pytest
from bson import ObjectId
from PIL import Image
from pymongo.collection import Collection

from threadmem_mongo import (
    InvalidInputError,
    RoleMessage,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
    ThreadTooLargeError,
    V1Role,
)

Document = dict[str, Any]
Raw = Collection[Document]

BUCKET = "threadmem_images"
CHUNK = 255 * 1024
MB = 1_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
URL = "https://example.com/cat.png"
SMALL_DATA_URI = "data:image/png;base64,iVBORw0KGgo="
PNG_PREFIX = "data:image/png;base64,"


def png(size: int) -> bytes:
    """Random bytes behind a PNG signature: ``size`` + 8 bytes, incompressible."""
    return PNG_SIGNATURE + os.urandom(size)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def chunks_for(data: bytes) -> int:
    return max(1, math.ceil(len(data) / CHUNK))


def blob_counts(store: ThreadStore) -> tuple[int, int]:
    """``(files, chunks)`` in the image bucket of ``store``."""
    db = store.collection.database
    return (
        db[f"{BUCKET}.files"].count_documents({}),
        db[f"{BUCKET}.chunks"].count_documents({}),
    )


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None, f"thread {thread_id} is not stored"
    return doc


def stored_images(store: ThreadStore, thread_id: str) -> list[list[str]]:
    return [m["images"] for m in stored(store, thread_id)["messages"]]


def blob_id(ref: str) -> str:
    assert ref.startswith("gridfs:"), ref
    return ref[len("gridfs:") :]


def bson_size(store: ThreadStore, thread_id: str) -> tuple[int, int]:
    """``(size_bytes field, real BSON size)`` of the stored thread."""
    doc = stored(store, thread_id)
    return doc["size_bytes"], len(bson.encode(doc))


def role(name: str) -> V1Role:
    return V1Role(name=name, user_id=f"{name}-1", user_name=name.title(), icon="https://x/i.png")


# -- where images go ------------------------------------------------------------------------


def test_large_data_uri_goes_to_gridfs_and_the_message_keeps_a_reference(
    store: ThreadStore,
) -> None:
    data = png(600_000)
    thread = RoleThread(store=store)
    thread.post("user", "look", images=[data_uri(data)])

    message = stored(store, thread.id)["messages"][0]
    (ref,) = message["images"]
    file_id = blob_id(ref)
    assert message["blobs"] == [file_id]
    assert blob_counts(store) == (1, chunks_for(data))

    db = store.collection.database
    meta = db[f"{BUCKET}.files"].find_one({"_id": ObjectId(file_id)})
    assert meta is not None
    assert meta["length"] == len(data)
    assert meta["chunkSize"] == CHUNK
    assert meta["metadata"]["prefix"] == PNG_PREFIX
    chunks = list(db[f"{BUCKET}.chunks"].find({"files_id": ObjectId(file_id)}).sort("n", 1))
    assert [c["n"] for c in chunks] == list(range(chunks_for(data)))
    assert b"".join(bytes(c["data"]) for c in chunks) == data


def _pil_image() -> tuple[Any, str]:
    image = Image.frombytes("RGB", (160, 160), os.urandom(160 * 160 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return image, data_uri(buffer.getvalue())


@pytest.mark.parametrize("kind", ["data_uri", "path", "bytes", "jpeg_bytes", "pil"])
def test_every_large_image_kind_comes_back_as_the_posted_data_uri(
    store: ThreadStore, tmp_path: Path, kind: str
) -> None:
    image: Any
    if kind == "pil":
        image, expected = _pil_image()
    elif kind == "jpeg_bytes":
        raw_bytes = b"\xff\xd8\xff" + os.urandom(50_000)
        image, expected = raw_bytes, data_uri(raw_bytes, "image/jpeg")
    else:
        raw_bytes = png(50_000)
        expected = data_uri(raw_bytes)
        if kind == "path":
            path = tmp_path / "cat.png"
            path.write_bytes(raw_bytes)
            image = path
        elif kind == "bytes":
            image = raw_bytes
        else:
            image = expected
    assert len(expected) > store.image_threshold

    thread = RoleThread(store=store)
    thread.post("user", "look", images=[image])
    assert blob_id(stored_images(store, thread.id)[0][0])  # a reference, not the payload

    fresh = RoleThread.get(thread.id, store=store)  # nothing cached: read from GridFS
    assert fresh.messages()[0].images == [expected]
    assert fresh.to_openai()["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": expected}},
    ]
    assert fresh.to_v1().messages[0].images == [expected]
    assert thread.messages()[0].images == [expected]


def test_default_threshold_is_32_kib_of_data_uri_text(store: ThreadStore) -> None:
    assert store.image_threshold == 32 * 1024
    prefix = "data:image/x-png;base64,"  # 24 characters: 32,744 more make 32,768
    at_threshold = prefix + base64.b64encode(os.urandom(24_558)).decode()
    over = prefix + base64.b64encode(os.urandom(24_561)).decode()
    assert (len(at_threshold), len(over)) == (32 * 1024, 32 * 1024 + 4)

    thread = RoleThread(store=store)
    thread.post("user", "", images=[at_threshold, over])

    kept, offloaded = stored_images(store, thread.id)[0]
    assert kept == at_threshold
    assert blob_id(offloaded)
    assert blob_counts(store)[0] == 1
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [at_threshold, over]


def test_image_threshold_of_the_store_decides_what_goes_to_gridfs(store: ThreadStore) -> None:
    uri = data_uri(png(3_000))
    inline_store = ThreadStore(store.collection, image_threshold=len(uri))
    blob_store = ThreadStore(store.collection, image_threshold=len(uri) - 1)

    inline = RoleThread(store=inline_store)
    inline.post("user", "", images=[uri])
    offloaded = RoleThread(store=blob_store)
    offloaded.post("user", "", images=[uri])

    assert stored_images(store, inline.id) == [[uri]]
    assert blob_id(stored_images(store, offloaded.id)[0][0])
    assert blob_counts(store)[0] == 1
    assert RoleThread.get(offloaded.id, store=store).messages()[0].images == [uri]


def test_threshold_zero_stores_every_data_uri_but_no_url_in_gridfs(store: ThreadStore) -> None:
    zero = ThreadStore(store.collection, image_threshold=0)
    long_url = "https://example.com/" + "a" * 50_000
    thread = RoleThread(store=zero)
    thread.post("user", "", images=[SMALL_DATA_URI, URL, long_url])

    small, url, long_kept = stored_images(store, thread.id)[0]
    assert blob_id(small)
    assert (url, long_kept) == (URL, long_url)
    assert blob_counts(store) == (1, 1)
    assert thread.messages()[0].images == [SMALL_DATA_URI, URL, long_url]


@pytest.mark.parametrize("threshold", [-1, True, 1.5, "32768", None])
def test_bad_image_threshold_is_invalid_input(store: ThreadStore, threshold: Any) -> None:
    with pytest.raises(InvalidInputError):
        ThreadStore(store.collection, image_threshold=threshold)


def test_large_data_uri_with_non_canonical_base64_stays_inline_byte_for_byte(
    store: ThreadStore,
) -> None:
    # "QR==" decodes like "QQ==" (the trailing bits are not zero): re-encoding would
    # change the text, so the image must stay in the document as it was posted.
    uri = PNG_PREFIX + base64.b64encode(os.urandom(60_000)).decode() + "QR=="
    thread = RoleThread(store=store)
    thread.post("user", "", images=[uri])

    assert stored_images(store, thread.id) == [[uri]]
    assert blob_counts(store) == (0, 0)
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [uri]


def test_data_uri_parameters_survive_the_gridfs_round_trip(store: ThreadStore) -> None:
    uri = "data:image/png;name=cat.png;base64," + base64.b64encode(png(40_000)).decode()
    thread = RoleThread(store=store)
    thread.post("user", "", images=[uri])

    assert blob_id(stored_images(store, thread.id)[0][0])
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [uri]


def test_empty_image_payload_round_trips_through_gridfs(store: ThreadStore) -> None:
    zero = ThreadStore(store.collection, image_threshold=0)
    thread = RoleThread(store=zero)
    thread.post("user", "", images=[PNG_PREFIX])

    assert blob_id(stored_images(store, thread.id)[0][0])
    assert RoleThread.get(thread.id, store=zero).messages()[0].images == [PNG_PREFIX]


# -- handing out references instead of payloads ---------------------------------------------


def test_messages_without_resolving_gives_gridfs_references(store: ThreadStore) -> None:
    big = data_uri(png(40_000))
    thread = RoleThread(store=store)
    thread.post("user", "two", images=[URL, big])
    refs = stored_images(store, thread.id)[0]

    for reader in (thread, RoleThread.get(thread.id, store=store)):
        images = reader.messages(resolve_images=False)[0].images
        assert images == refs
        assert images[0] == URL
        assert blob_id(images[1])


def test_to_openai_with_image_url_maps_only_gridfs_references(store: ThreadStore) -> None:
    big = data_uri(png(40_000))
    thread = RoleThread(store=store)
    thread.post("user", "two", images=[URL, big, SMALL_DATA_URI])
    ref = stored_images(store, thread.id)[0][1]
    seen: list[str] = []

    def serve(reference: str) -> str:
        seen.append(reference)
        return f"https://cdn.example.com/{blob_id(reference)}"

    exported = RoleThread.get(thread.id, store=store).to_openai(image_url=serve)
    assert seen == [ref]
    assert exported["messages"][0]["content"] == [
        {"type": "text", "text": "two"},
        {"type": "image_url", "image_url": {"url": URL}},
        {"type": "image_url", "image_url": {"url": f"https://cdn.example.com/{blob_id(ref)}"}},
        {"type": "image_url", "image_url": {"url": SMALL_DATA_URI}},
    ]


def test_history_last_window_and_message_find_resolve_gridfs_images(store: ThreadStore) -> None:
    big = data_uri(png(40_000))
    thread = RoleThread(store=store)
    posted = thread.post("user", "img", images=[big])
    thread.post("assistant", "ok")

    assert RoleThread.get(thread.id, last=2, store=store).messages()[0].images == [big]
    assert thread.history(limit=5)[0].images == [big]
    assert RoleMessage.find(id=posted.id, store=store)[0].images == [big]


def test_stored_image_can_be_read_through_the_blob_store(store: ThreadStore) -> None:
    data = png(300_000)
    thread = RoleThread(store=store)
    thread.post("user", "", images=[data_uri(data)])
    file_id = blob_id(stored_images(store, thread.id)[0][0])

    assert store.blobs.read(file_id) == (PNG_PREFIX, data)
    assert store.blobs.data_uri(file_id) == data_uri(data)


# -- no orphaned blobs -------------------------------------------------------------------------


def test_delete_message_deletes_its_blobs_and_keeps_the_others(store: ThreadStore) -> None:
    first, second = png(300_000), png(40_000)
    thread = RoleThread(store=store)
    doomed = thread.post("user", "", images=[data_uri(first)])
    thread.post("user", "", images=[data_uri(second)])
    assert blob_counts(store) == (2, chunks_for(first) + chunks_for(second))

    thread.delete_message(doomed.id)

    assert blob_counts(store) == (1, chunks_for(second))
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [data_uri(second)]


def test_remove_images_deletes_blobs_of_user_messages_only(store: ThreadStore) -> None:
    user_image, bot_image = png(300_000), png(40_000)
    thread = RoleThread(store=store)
    thread.post("user", "<image>", images=[data_uri(user_image)])
    thread.post("assistant", "", images=[data_uri(bot_image)])

    thread.remove_images()

    assert blob_counts(store) == (1, chunks_for(bot_image))
    user_doc, bot_doc = stored(store, thread.id)["messages"]
    assert (user_doc["images"], user_doc.get("blobs", [])) == ([], [])
    assert blob_id(bot_doc["images"][0]) in bot_doc["blobs"]
    reread = RoleThread.get(thread.id, store=store).messages()
    assert [m.images for m in reread] == [[], [data_uri(bot_image)]]


def test_remove_images_leaves_no_blob_references_behind(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "", images=[data_uri(png(40_000))])
    thread.remove_images()

    doc = stored(store, thread.id)
    referenced = [b for m in doc["messages"] for b in m.get("blobs", [])]
    assert referenced == []  # a stale "blobs" entry would keep a deleted blob "referenced"
    assert blob_counts(store) == (0, 0)


def test_delete_thread_deletes_all_its_blobs(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    for _ in range(3):
        thread.post("user", "", images=[data_uri(png(300_000)), URL])
    other = RoleThread(store=store)
    kept = png(40_000)
    other.post("user", "", images=[data_uri(kept)])

    thread.delete()

    assert blob_counts(store) == (1, 1)
    assert other.messages()[0].images == [data_uri(kept)]


def test_copy_shares_blobs_without_writing_new_ones(store: ThreadStore) -> None:
    data = png(300_000)
    original = RoleThread(store=store)
    original.post("user", "", images=[data_uri(data)])

    copied = original.copy()

    assert blob_counts(store) == (1, chunks_for(data))
    assert stored_images(store, copied.id) == stored_images(store, original.id)
    assert RoleThread.get(copied.id, store=store).messages()[0].images == [data_uri(data)]


@pytest.mark.parametrize("deleted_first", ["original", "copy"])
def test_deleting_one_copy_keeps_blobs_the_other_uses(
    store: ThreadStore, deleted_first: str
) -> None:
    data = png(300_000)
    original = RoleThread(store=store)
    original.post("user", "", images=[data_uri(data)])
    copied = original.copy()
    first, second = (original, copied) if deleted_first == "original" else (copied, original)

    first.delete()

    assert blob_counts(store) == (1, chunks_for(data))
    assert RoleThread.get(second.id, store=store).messages()[0].images == [data_uri(data)]

    second.delete()

    assert blob_counts(store) == (0, 0)


def test_delete_message_or_remove_images_in_a_copy_keeps_the_originals_blobs(
    store: ThreadStore,
) -> None:
    first, second = png(40_000), png(40_000)
    original = RoleThread(store=store)
    original.post("user", "", images=[data_uri(first)])
    original.post("assistant", "", images=[data_uri(second)])
    copied = original.copy()

    copied.delete_message(copied.messages()[1].id)
    copied.remove_images()

    assert blob_counts(store) == (2, 2)
    reread = RoleThread.get(original.id, store=store)
    assert [m.images for m in reread.messages()] == [[data_uri(first)], [data_uri(second)]]

    original.delete()
    assert blob_counts(store) == (0, 0)


# -- blobs of refused writes, and the sweep -------------------------------------------------


def test_post_to_a_thread_deleted_meanwhile_leaves_no_blob(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    RoleThread.get(thread.id, store=store).delete()

    with pytest.raises(ThreadNotFoundError):
        thread.post("user", "", images=[data_uri(png(300_000))])

    assert blob_counts(store) == (0, 0)


def test_post_over_the_budget_leaves_no_blob_and_changes_nothing(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "hello")
    before = bson.encode(stored(store, thread.id))

    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "x" * (17 * MB), images=[data_uri(png(300_000))])

    assert blob_counts(store) == (0, 0)
    assert bson.encode(stored(store, thread.id)) == before
    assert [m.text for m in thread.messages()] == ["hello"]


def test_post_refused_by_the_servers_budget_check_leaves_no_blob(store: ThreadStore) -> None:
    # Another writer has (by the stored estimate) filled the thread almost to the budget;
    # the message alone fits, so only the filter on the server can refuse it.
    thread = RoleThread(store=store)
    budget = 16 * 1024 * 1024 - 64 * 1024
    store.collection.update_one({"_id": thread.id}, {"$set": {"size_bytes": budget - 1_000}})

    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "x" * 2_000, images=[data_uri(png(300_000))])

    assert blob_counts(store) == (0, 0)
    assert stored(store, thread.id)["messages"] == []


def test_retried_post_of_a_landed_image_message_leaves_no_second_blob(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    posted = thread.post("user", "", images=[data_uri(png(40_000))])
    other = RoleThread.get(thread.id, store=store)

    thread.add_msg(posted)  # the retry of a post whose reply was lost
    other.add_msg(posted)  # the same retry from an object that did not see it land

    assert blob_counts(store) == (1, 1)
    assert stored(store, thread.id)["message_count"] == 1
    assert other.messages() == thread.messages() == [posted]


def test_new_thread_over_the_budget_leaves_no_blob(store: ThreadStore) -> None:
    with pytest.raises(ThreadTooLargeError):
        RoleThread.from_openai(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x" * (17 * MB)},
                        {"type": "image_url", "image_url": {"url": data_uri(png(300_000))}},
                    ],
                }
            ],
            store=store,
        )

    assert blob_counts(store) == (0, 0)
    assert store.collection.count_documents({}) == 0


def test_from_v1_of_an_existing_thread_leaves_no_new_blob(store: ThreadStore) -> None:
    data = png(40_000)
    thread = RoleThread(store=store)
    thread.post("user", "", images=[data_uri(data)])
    schema = thread.to_v1()
    assert schema.messages[0].images == [data_uri(data)]

    with pytest.raises(InvalidInputError):
        RoleThread.from_v1(schema, store=store)

    assert blob_counts(store) == (1, 1)


def test_from_openai_and_from_v1_offload_large_images(store: ThreadStore) -> None:
    data = png(40_000)
    made = RoleThread.from_openai(
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": data_uri(data)}}],
            }
        ],
        store=store,
    )
    schema = made.to_v1()
    made.delete()
    assert blob_counts(store) == (0, 0)

    restored = RoleThread.from_v1(schema, store=store)

    assert blob_id(stored_images(store, restored.id)[0][0])
    assert blob_counts(store) == (1, 1)
    assert RoleThread.get(restored.id, store=store).messages()[0].images == [data_uri(data)]


def test_sweep_blobs_deletes_unreferenced_blobs_and_keeps_referenced_ones(
    store: ThreadStore,
) -> None:
    # A crash between writing the blob and the message leaves an unreferenced blob.
    orphan = store.blobs.put(PNG_PREFIX, png(300_000))
    kept = png(300_000)
    thread = RoleThread(store=store)
    thread.post("user", "", images=[data_uri(kept)])
    assert blob_counts(store) == (2, 2 * chunks_for(kept))

    swept = store.sweep_blobs(older_than=timedelta(0))

    assert swept == [orphan]
    assert blob_counts(store) == (1, chunks_for(kept))
    assert RoleThread.get(thread.id, store=store).messages()[0].images == [data_uri(kept)]
    assert store.sweep_blobs(older_than=timedelta(0)) == []


def test_sweep_blobs_spares_blobs_younger_than_older_than(store: ThreadStore) -> None:
    # A blob written a moment ago may belong to a post still on its way.
    store.blobs.put(PNG_PREFIX, png(1_000))

    assert store.sweep_blobs(older_than=timedelta(hours=1)) == []
    assert blob_counts(store) == (1, 1)


# -- the 16 MB budget --------------------------------------------------------------------------


def test_17_mb_text_message_is_refused_and_the_thread_is_unchanged(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "hello")
    before = bson.encode(stored(store, thread.id))

    with pytest.raises(ThreadTooLargeError) as caught:
        thread.post("user", "x" * (17 * MB))

    assert caught.value.size > caught.value.limit == 16 * 1024 * 1024 - 64 * 1024
    assert bson.encode(stored(store, thread.id)) == before
    assert (thread.version, thread.message_count) == (1, 1)
    thread.post("user", "still usable")
    assert stored(store, thread.id)["message_count"] == 2


def test_size_bytes_covers_the_real_document_after_every_kind_of_change(
    store: ThreadStore,
) -> None:
    sizes: list[tuple[str, int, int]] = []

    def check(step: str, thread_id: str) -> None:
        estimate, real = bson_size(store, thread_id)
        sizes.append((step, estimate, real))
        assert estimate >= real, f"after {step}: size_bytes {estimate} < real {real}"

    thread = RoleThread(
        owner_id="o",
        name="n",
        metadata={"k": "v"},
        role_mapping={"bot": role("bot")},
        ttl=timedelta(hours=1),
        store=store,
    )
    check("create", thread.id)
    first = thread.post("user", "hi <image>", images=[SMALL_DATA_URI])
    check("post inline image", thread.id)
    second = thread.post("bot", "big", images=[data_uri(png(40_000)), URL], metadata={"a": 1})
    check("post gridfs image", thread.id)
    thread.post("user", "ünïcødé " * 50, private=True)
    check("post unicode", thread.id)
    thread.update_message(first.id, text="hi <image> " + "longer " * 200)
    check("edit text longer", thread.id)
    thread.update_message(first.id, text="<image>")
    check("edit text shorter", thread.id)
    thread.update_message(second.id, metadata={"nested": {"list": list(range(50))}})
    check("edit metadata", thread.id)
    thread.update_message(second.id, private=True)
    check("edit private", thread.id)
    thread.update_message(second.id, metadata={})
    check("edit metadata smaller", thread.id)
    thread.add_role(role("critic"))
    check("add role", thread.id)
    thread.remove_role("bot")
    check("remove role", thread.id)
    thread.remove_role("critic")
    check("remove last role", thread.id)
    thread.name = "a much longer name " * 20
    thread.metadata = {"many": ["x" * 30] * 40}
    thread.public = True
    thread.save()
    check("save grow", thread.id)
    thread.name = None
    thread.metadata = None
    thread.save()
    check("save shrink", thread.id)
    thread.touch()
    check("touch", thread.id)
    thread.touch(ttl=timedelta(days=3650))
    check("touch new ttl", thread.id)
    thread.remove_images()
    check("remove images", thread.id)
    thread.delete_message(second.id)
    check("delete message", thread.id)
    partial = RoleThread.get(thread.id, last=1, store=store)
    partial.post("user", "on a partial object")
    check("post on partial", thread.id)
    partial.update_message(partial.messages()[-1].id, text="edited on partial")
    check("edit on partial", thread.id)
    partial.delete_message(partial.messages()[-1].id)
    check("delete on partial", thread.id)
    stale = RoleThread.get(thread.id, store=store)
    thread.post("user", "moves the version")
    stale.post("user", "from a stale object")
    check("post from stale object", thread.id)
    stale.touch()
    check("touch from stale object", thread.id)
    copied = thread.copy()
    check("copy", copied.id)
    imported = RoleThread.from_openai(thread.to_openai()["messages"], store=store)
    check("from_openai", imported.id)
    schema = thread.to_v1()
    # Message ids are unique across threads: the restored copy needs its own.
    renumbered = [
        m.model_copy(update={"id": f"restored-{i}"}) for i, m in enumerate(schema.messages)
    ]
    restored = RoleThread.from_v1(
        schema.model_copy(update={"id": "restored", "messages": renumbered}), store=store
    )
    check("from_v1", restored.id)
    for _step, estimate, real in sizes:
        assert estimate - real < 4_096, sizes  # close enough to be a useful budget check


def test_size_bytes_covers_the_real_document_after_remove_images_of_a_gridfs_image(
    store: ThreadStore,
) -> None:
    thread = RoleThread(store=store)
    thread.post("user", "", images=[data_uri(png(40_000))])

    thread.remove_images()

    estimate, real = bson_size(store, thread.id)
    assert estimate >= real


def test_thread_close_to_the_budget_takes_messages_up_to_it_and_no_further(
    store: ThreadStore,
) -> None:
    # Every message inline (no overflow pages), so the document nears the 16 MB limit.
    store = ThreadStore(store.collection, max_inline_messages=None)
    thread = RoleThread.from_openai([{"role": "user", "content": "x" * (5 * MB)}] * 3, store=store)
    estimate, real = bson_size(store, thread.id)
    assert estimate >= real > 15 * MB

    thread.post("user", "y" * 600_000)  # fits: about 15.6 MB of the 16.6 MB budget
    with pytest.raises(ThreadTooLargeError):
        thread.post("user", "z" * 1_200_000)

    estimate, real = bson_size(store, thread.id)
    assert estimate >= real
    assert stored(store, thread.id)["message_count"] == 4


# -- over the wire: other GridFS readers, and many large images -------------------------------


@pytest.mark.wire
def test_pymongo_gridfs_bucket_reads_the_stored_images(wire_store: ThreadStore) -> None:
    small, large = png(40_000), png(700_000)
    thread = RoleThread(store=wire_store)
    thread.post("user", "", images=[data_uri(small), data_uri(large)])
    refs = stored_images(wire_store, thread.id)[0]

    bucket = gridfs.GridFSBucket(wire_store.collection.database, BUCKET)
    for ref, data in zip(refs, (small, large), strict=True):
        file_id = ObjectId(blob_id(ref))
        assert bucket.open_download_stream(file_id).read() == data
        assert bucket.open_download_stream_by_name(str(file_id)).read() == data
    listed = {f._id: f.length for f in bucket.find({})}
    assert listed == {
        ObjectId(blob_id(r)): len(d) for r, d in zip(refs, (small, large), strict=True)
    }


CHILD_READER = textwrap.dedent(
    """
    import base64, hashlib, sys
    import threadmem_mongo
    from threadmem_mongo import RoleThread

    uri, database, thread_id = sys.argv[1:4]
    threadmem_mongo.configure(uri=uri, database=database)
    for message in RoleThread.get(thread_id).messages():
        for image in message.images:
            payload = base64.b64decode(image.split(",", 1)[1])
            print(hashlib.sha256(image.encode()).hexdigest(), hashlib.sha256(payload).hexdigest())
    """
)


@pytest.mark.wire
@pytest.mark.slow
def test_forty_1_mb_images_land_and_another_process_reads_them_byte_for_byte(
    wire_store: ThreadStore, wire_uri: str
) -> None:
    thread = RoleThread(store=wire_store)
    expected = []
    for index in range(40):
        data = png(MB)
        uri = data_uri(data)
        thread.post("user", f"image {index}", images=[uri])
        expected.append(
            f"{hashlib.sha256(uri.encode()).hexdigest()} {hashlib.sha256(data).hexdigest()}"
        )

    doc = stored(wire_store, thread.id)
    assert doc["message_count"] == 40
    assert len(bson.encode(doc)) < 100_000  # references only: 40 MB of images elsewhere
    assert doc["size_bytes"] >= len(bson.encode(doc))
    assert blob_counts(wire_store) == (40, 40 * 4)  # 1,000,008 bytes: 4 chunks of 255 KiB

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD_READER,
            wire_uri,
            wire_store.collection.database.name,
            thread.id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[:-1] == expected
