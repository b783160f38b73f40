"""Image strings and files: the content decides, not the name.

A file is stored only if it is a regular file of at most ``MAX_IMAGE_FILE_BYTES`` whose
first bytes are an image signature; every refused path gets one error text. Data URIs
must be of an image type, URL schemes match in any case, and
``configure(allow_local_images=False)`` (and ``aio.configure``) turns paths off. Each
behaviour is checked through ``post()`` on every backend, in the sync and async API, with
nothing written when an image is refused.
"""

from __future__ import annotations

import base64
import io
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pymongo.collection import Collection

import threadmem_mongo
from threadmem_mongo import ConfigurationError, ImageFormatError, RoleThread, ThreadStore, _config
from threadmem_mongo._images import MAX_IMAGE_FILE_BYTES, normalize_image
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

Document = dict[str, Any]
#: Hang guard for a call that must not block: generous, never a timing assertion.
HANG_GUARD = 30.0


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def big_png_bytes() -> bytes:
    """A PNG whose data URI is over the GridFS threshold (random pixels do not compress)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (128, 128), random.Random(7).randbytes(128 * 128 * 3)).save(
        buffer, format="PNG"
    )
    assert len(buffer.getvalue()) > 32 * 1024
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    return buffer.getvalue()


def finishes(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread and return its result or exception; fail if it hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert outcome, f"the call did not return within {HANG_GUARD} s"
    return outcome[0]


def refused_text(image: object) -> str:
    outcome = finishes(lambda: normalize_image(image))
    assert isinstance(outcome, ImageFormatError), outcome
    return str(outcome)


def stored_nothing(raw: Collection[Document], thread_id: str) -> bool:
    doc = raw.find_one({"_id": thread_id})
    files = raw.database["fs.files"].count_documents({})
    return doc is not None and doc["messages"] == [] and files == 0


# -- pure: what the content decides ----------------------------------------------------------


def test_a_text_file_named_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "creds.png"
    path.write_text("user=admin\npassword=hunter2\n")
    with pytest.raises(ImageFormatError):
        normalize_image(str(path))


def test_an_image_file_is_stored_as_its_content_type_whatever_its_name(tmp_path: Path) -> None:
    named_txt = tmp_path / "photo.txt"
    named_txt.write_bytes(png_bytes())
    named_png = tmp_path / "photo.png"
    named_png.write_bytes(jpeg_bytes())
    assert normalize_image(named_txt) == "data:image/png;base64," + base64.b64encode(
        png_bytes()
    ).decode("ascii")
    assert normalize_image(str(named_png)).startswith("data:image/jpeg;base64,")


def test_a_tiff_file_is_recognised_by_its_signature(tmp_path: Path) -> None:
    path = tmp_path / "scan"
    Image.new("RGB", (2, 2)).save(path, format="TIFF")
    assert normalize_image(path).startswith("data:image/tiff;base64,")


def test_a_file_over_the_maximum_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.write(png_bytes()[:16])
        handle.truncate(MAX_IMAGE_FILE_BYTES + 1)  # sparse: no disk is used
    with pytest.raises(ImageFormatError):
        normalize_image(path)


def test_a_file_of_exactly_the_maximum_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "limit.png"
    with open(path, "wb") as handle:
        handle.write(png_bytes()[:16])
        handle.truncate(MAX_IMAGE_FILE_BYTES)
    uri = normalize_image(path)
    assert len(base64.b64decode(uri.split(",", 1)[1])) == MAX_IMAGE_FILE_BYTES


def test_a_large_file_of_zeros_named_png_is_refused_without_reading_it(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it whole would never return.
    endless = tmp_path / "zeros.png"
    endless.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait forever
    refused_text(endless)
    refused_text(str(fifo))


def test_every_refused_path_gets_the_same_error_text(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.write(png_bytes()[:16])
        handle.truncate(MAX_IMAGE_FILE_BYTES + 1)
    os.mkfifo(tmp_path / "pipe.png")
    paths = [
        tmp_path / "missing.png",
        tmp_path / "notes.png",
        tmp_path / "empty.png",
        tmp_path / "folder.png",
        big,
        tmp_path / "pipe.png",
        tmp_path / "notes.png" / "below-a-file.png",
        "/dev/zero",
        "bad\0path.png",
    ]
    texts = {refused_text(str(path)) for path in paths}
    texts |= {refused_text(Path(path)) for path in paths if "\0" not in str(path)}
    assert len(texts) == 1, texts
    (text,) = texts
    assert "missing" not in text
    assert str(tmp_path) not in text


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", id="html"),
        pytest.param("data:application/pdf;base64,JVBERi0=", id="pdf"),
        pytest.param("data:image/svg+xml;base64,PHN2Zy8+", id="svg"),
        pytest.param("data:IMAGE/SVG+XML;base64,PHN2Zy8+", id="svg-upper"),
        pytest.param("data:text/plain;base64,aGk=", id="text"),
    ],
)
def test_a_data_uri_of_a_type_other_than_an_image_is_refused(uri: str) -> None:
    with pytest.raises(ImageFormatError, match="only image types"):
        normalize_image(uri)


def test_data_uri_scheme_type_and_encoding_match_in_any_case() -> None:
    for uri in ("DATA:image/png;base64,iVBORw0KGgo=", "data:Image/PNG;BASE64,iVBORw0KGgo="):
        assert normalize_image(uri) == uri


@pytest.mark.parametrize(
    "url", ["HTTP://example.com/a.png", "Https://example.com/a.png", "hTtP://x/y"]
)
def test_http_urls_are_urls_in_any_case(url: str) -> None:
    assert normalize_image(url) == url


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "FILE:///etc/hostname"]
)
def test_urls_of_other_schemes_are_refused_and_never_read_as_paths(url: str) -> None:
    with pytest.raises(ImageFormatError, match="only http and https URLs"):
        normalize_image(url)


def test_stored_images_accept_urls_in_any_case_and_refuse_non_image_data() -> None:
    message = threadmem_mongo.RoleMessage(role="user", text="x", images=["HTTPS://x/a.png"])
    assert message.images == ["HTTPS://x/a.png"]
    with pytest.raises(ImageFormatError):
        threadmem_mongo.RoleMessage(role="user", text="x", images=["data:text/html;base64,aGk="])


# -- configure(allow_local_images=...) -------------------------------------------------------


def test_allow_local_images_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="allow_local_images"):
        threadmem_mongo.configure(uri="mongomock://", allow_local_images="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="allow_local_images"):
        threadmem_mongo.aio.configure(allow_local_images=0)  # type: ignore[arg-type]


def test_async_api_follows_the_sync_setting_unless_it_sets_its_own() -> None:
    assert _config.local_images_allowed(sync=True)
    assert _config.local_images_allowed(sync=False)
    threadmem_mongo.configure(uri="mongomock://", allow_local_images=False)
    assert not _config.local_images_allowed(sync=True)
    assert not _config.local_images_allowed(sync=False)
    threadmem_mongo.aio.configure(allow_local_images=True)
    assert _config.local_images_allowed(sync=False)
    assert not _config.local_images_allowed(sync=True)
    _config.reset()
    assert _config.local_images_allowed(sync=True)


# -- through post(), on every backend, sync ---------------------------------------------------


def test_post_of_a_text_file_named_png_writes_nothing(
    store: ThreadStore, raw: Collection[Document], tmp_path: Path
) -> None:
    path = tmp_path / "creds.png"
    path.write_text("password=hunter2")
    thread = RoleThread(owner_id="u1")
    with pytest.raises(ImageFormatError):
        thread.post("user", "look", images=[big_png_bytes(), str(path)])
    assert stored_nothing(raw, thread.id)


def test_post_of_an_uppercase_http_url_stores_the_url(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    thread = RoleThread(owner_id="u1")
    thread.post("user", "look", images=["HTTP://example.com/cat.png"])
    assert RoleThread.get(thread.id).messages()[0].images == ["HTTP://example.com/cat.png"]


def test_post_of_a_data_uri_that_is_not_an_image_writes_nothing(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    thread = RoleThread(owner_id="u1")
    with pytest.raises(ImageFormatError):
        thread.post("user", "x", images=["data:text/html;base64,PGI+aGk8L2I+"])
    assert stored_nothing(raw, thread.id)


def test_with_local_images_off_a_path_is_refused_and_other_kinds_still_work(
    store: ThreadStore, raw: Collection[Document], tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    threadmem_mongo.configure(
        client=raw.database.client, database=raw.database.name, allow_local_images=False
    )
    thread = RoleThread(owner_id="u1")
    for image in (str(path), path):
        with pytest.raises(ImageFormatError, match="local file paths are turned off"):
            thread.post("user", "x", images=[image])
    assert stored_nothing(raw, thread.id)
    uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode("ascii")
    message = thread.post("user", "x", images=["https://x/a.png", uri, png_bytes()])
    assert message.images == ["https://x/a.png", uri, uri]


def test_with_local_images_on_a_path_is_read(
    store: ThreadStore, raw: Collection[Document], tmp_path: Path
) -> None:
    path = tmp_path / "red"
    path.write_bytes(png_bytes())
    message = RoleThread(owner_id="u1").post("user", "x", images=[path])
    assert message.images[0].startswith("data:image/png;base64,")


# -- through post(), on every backend, async --------------------------------------------------


@pytest.mark.asyncio
async def test_async_post_of_a_text_file_named_png_writes_nothing(
    async_store: AsyncThreadStore, async_raw: Collection[Document], tmp_path: Path
) -> None:
    path = tmp_path / "creds.png"
    path.write_text("password=hunter2")
    thread = await AsyncRoleThread.create(owner_id="u1")
    with pytest.raises(ImageFormatError):
        await thread.post("user", "look", images=[big_png_bytes(), str(path)])
    assert stored_nothing(async_raw, thread.id)


@pytest.mark.asyncio
async def test_async_post_of_an_uppercase_http_url_stores_the_url(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(owner_id="u1")
    await thread.post("user", "look", images=["Https://example.com/cat.png"])
    loaded = await AsyncRoleThread.get(thread.id)
    assert (await loaded.messages())[0].images == ["Https://example.com/cat.png"]


@pytest.mark.asyncio
async def test_async_post_of_a_data_uri_that_is_not_an_image_writes_nothing(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    thread = await AsyncRoleThread.create(owner_id="u1")
    with pytest.raises(ImageFormatError):
        await thread.post("user", "x", images=["data:image/svg+xml;base64,PHN2Zy8+"])
    assert stored_nothing(async_raw, thread.id)


@pytest.mark.asyncio
async def test_async_with_local_images_off_a_path_is_refused(
    async_client: Any,
    async_store: AsyncThreadStore,
    async_raw: Collection[Document],
    tmp_path: Path,
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    threadmem_mongo.aio.configure(
        client=async_client,
        database=async_raw.database.name,
        allow_local_images=False,
    )
    thread = await AsyncRoleThread.create(owner_id="u1")
    for image in (str(path), path):
        with pytest.raises(ImageFormatError, match="local file paths are turned off"):
            await thread.post("user", "x", images=[image])
    assert stored_nothing(async_raw, thread.id)
    message = await thread.post("user", "x", images=[png_bytes()])
    assert message.images[0].startswith("data:image/png;base64,")


@pytest.mark.asyncio
async def test_async_api_follows_a_sync_setting_that_turns_local_images_off(
    async_store: AsyncThreadStore, async_raw: Collection[Document], tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    # The fixture configured the sync API on the same database; turn paths off there only.
    threadmem_mongo.configure(
        client=async_raw.database.client,
        database=async_raw.database.name,
        allow_local_images=False,
    )
    thread = await AsyncRoleThread.create(owner_id="u1")
    with pytest.raises(ImageFormatError, match="local file paths are turned off"):
        await thread.post("user", "x", images=[path])
    assert stored_nothing(async_raw, thread.id)


# -- unencodable strings ------------------------------------------------------------------------


def test_a_url_with_a_lone_surrogate_is_refused_and_nothing_is_written(
    store: ThreadStore, raw: Collection[Document]
) -> None:
    thread = RoleThread(owner_id="u1")
    for url in ("https://example.com/\ud800.png", "HTTP://example.com/\udcff"):
        with pytest.raises(ImageFormatError, match="lone surrogate"):
            thread.post("user", "x", images=[big_png_bytes(), url])
    assert stored_nothing(raw, thread.id)


@pytest.mark.asyncio
async def test_async_url_with_a_lone_surrogate_is_refused_and_nothing_is_written(
    async_store: AsyncThreadStore, async_raw: Collection[Document]
) -> None:
    thread = await AsyncRoleThread.create(owner_id="u1")
    with pytest.raises(ImageFormatError, match="lone surrogate"):
        await thread.post("user", "x", images=[big_png_bytes(), "https://example.com/\ud800"])
    assert stored_nothing(async_raw, thread.id)
