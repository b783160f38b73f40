"""Turn the image kinds users pass into the strings a message stores.

Accepted: ``http(s)://`` URLs (kept as they are), ``data:`` URIs with a base64 payload
(kept as they are), paths to local files (read and stored as data URIs), raw ``bytes`` of
an image file, and PIL images (with the ``images`` extra installed). Anything else raises
``threadmem_mongo.errors.ImageFormatError``. Pure apart from reading the named files.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from threadmem_mongo.errors import ImageFormatError

ImageInput = str | os.PathLike[str] | bytes | object
"""Anything ``normalize_images`` accepts: URL, data URI, path, bytes or a PIL image."""

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,")

# Magic numbers of the formats vision models take; used for bytes and extension-less files.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def normalize_images(images: Iterable[ImageInput] | None) -> list[str]:
    """Return the stored form (URL or data URI) of each image, in order.

    Raises:
        ImageFormatError: An image is of no accepted kind, a file is missing or unreadable,
            or a data URI is malformed.
    """
    if images is None:
        return []
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise ImageFormatError("images must be a list of images, not a single value")
    return [normalize_image(image, index) for index, image in enumerate(images)]


def normalize_image(image: ImageInput, index: int = 0) -> str:
    """Return the stored form of one image; see ``normalize_images``."""
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            return image
        if image.startswith("data:"):
            return _checked_data_uri(image, index)
        return _file_to_data_uri(Path(image), index)
    if isinstance(image, os.PathLike):
        return _file_to_data_uri(Path(image), index)
    if isinstance(image, (bytes, bytearray)):
        mime = _sniff_mime(bytes(image))
        if mime is None:
            raise ImageFormatError(
                f"images[{index}] bytes are not a PNG, JPEG, GIF, BMP or WebP image"
            )
        return bytes_to_data_uri(bytes(image), mime)
    if type(image).__module__.startswith("PIL."):
        return _pil_to_data_uri(image)
    raise ImageFormatError(
        f"images[{index}] is a {type(image).__name__}; expected an http(s) URL, a data URI, "
        "a path to an image file, bytes, or a PIL image"
    )


def check_stored_image(image: object, index: int = 0) -> str:
    """Return ``image`` if a message may store it as it is: an http(s) URL or a data URI;
    else raise ``ImageFormatError``.

    GridFS references are refused: only the library writes them, after storing the
    image, so input can never point a message at someone else's stored image.
    """
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            return image
        if image.startswith("data:"):
            return _checked_data_uri(image, index)
    raise ImageFormatError(
        f"images[{index}] of a message must be an http(s) URL or a data URI, got "
        f"{str(image)[:60]!r}; RoleThread.post() also takes files, bytes and PIL images"
    )


def bytes_to_data_uri(data: bytes, mime: str) -> str:
    """Encode ``data`` as a base64 data URI of type ``mime``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _checked_data_uri(uri: str, index: int) -> str:
    match = _DATA_URI.match(uri)
    if match is None:
        raise ImageFormatError(
            f"images[{index}] is not a valid data URI: expected 'data:<type>;base64,<payload>'"
        )
    try:
        base64.b64decode(uri[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageFormatError(f"images[{index}] data URI has an invalid base64 payload") from exc
    return uri


def _file_to_data_uri(path: Path, index: int) -> str:
    if not path.is_file():
        raise ImageFormatError(
            f"images[{index}] {str(path)!r} is not a URL, a data URI, or an existing file"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageFormatError(f"images[{index}] {str(path)!r} cannot be read: {exc}") from exc
    mime = _sniff_mime(data) or mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise ImageFormatError(f"images[{index}] {str(path)!r} is not a recognised image file")
    return bytes_to_data_uri(data, mime)


def _sniff_mime(data: bytes) -> str | None:
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


#: PIL modes PNG stores as they are; others (CMYK, float, ...) are converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})


def _pil_to_data_uri(image: Any) -> str:
    # PNG is lossless, and what vision models take everywhere.
    if image.mode not in _PNG_MODES:
        has_alpha = any(band in ("A", "a") for band in image.getbands())
        try:
            image = image.convert("RGBA" if has_alpha else "RGB")
        except ValueError as exc:
            raise ImageFormatError(
                f"PIL image mode {image.mode!r} cannot be stored: {exc}"
            ) from exc
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return bytes_to_data_uri(buffer.getvalue(), "image/png")


#: In a message's text, each ``<image>`` stands where the next image goes in ``to_openai()``.
IMAGE_PLACEHOLDER = "<image>"

#: Images stored in GridFS appear in a stored message as ``gridfs:<file id>``.
BLOB_REF_PREFIX = "gridfs:"

#: Data URIs longer than this many characters go to GridFS by default.
DEFAULT_BLOB_THRESHOLD = 32 * 1024


def is_blob_ref(image: str) -> bool:
    """Return whether ``image`` is a reference to an image stored in GridFS."""
    return image.startswith(BLOB_REF_PREFIX)


def blob_ref(blob_id: str) -> str:
    """Return the reference a message stores for GridFS file ``blob_id``."""
    return BLOB_REF_PREFIX + blob_id


def blob_id_of(ref: str) -> str:
    """Return the GridFS file id in reference ``ref``."""
    return ref[len(BLOB_REF_PREFIX) :]


def split_data_uri(uri: str) -> tuple[str, bytes] | None:
    """Return ``(prefix, payload bytes)`` of a data URI whose base64 is canonical.

    The prefix is everything up to and including ``base64,``. Returns None when
    re-encoding the bytes would not give the same text back (for example unusual
    padding), so that such an image is kept inline and still comes back byte for byte.
    """
    match = _DATA_URI.match(uri)
    if match is None:
        return None
    payload = uri[match.end() :]
    data = base64.b64decode(payload)
    if base64.b64encode(data).decode("ascii") != payload:
        return None
    return uri[: match.end()], data


def join_data_uri(prefix: str, data: bytes) -> str:
    """Return the data URI of ``prefix`` (ending in ``base64,``) and ``data``."""
    return prefix + base64.b64encode(data).decode("ascii")
