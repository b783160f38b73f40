"""Turn the image kinds users pass into the strings a message stores.

Accepted: ``http(s)://`` URLs (kept as they are; the scheme is matched in any case),
``data:image/...`` URIs with a base64 payload (kept as they are), paths to local image
files (read and stored as data URIs, unless turned off), raw ``bytes`` of an image file,
and PIL images (with the ``images`` extra installed). Anything else raises
``threadmem_mongo.errors.ImageFormatError``. Pure apart from reading the named files.

Files and bytes are judged by their content, never by their name: the first bytes must
be the signature of a PNG, JPEG, GIF, WebP, BMP or TIFF image. A file is opened once,
checked to be a regular file of at most ``MAX_IMAGE_FILE_BYTES``, and read only if its
first bytes are an image signature. Every refused path gets the same error text, so the
error does not tell a missing file from an unreadable one, a directory or a non-image.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from threadmem_mongo.errors import ImageFormatError, InvalidInputError

ImageInput = str | os.PathLike[str] | bytes | object
"""Anything ``normalize_images`` accepts: URL, data URI, path, bytes or a PIL image."""

#: The largest image file ``post()`` reads from a local path (20 MiB, the largest image
#: the common vision APIs take). Larger files are refused before any byte is read.
MAX_IMAGE_FILE_BYTES = 20 * 1024 * 1024

_DATA_URI = re.compile(
    r"^(?i:data):(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;(?i:base64),"
)
_URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_WEB_SCHEMES = frozenset({"http", "https"})

# Magic numbers of the formats vision models take, plus TIFF; WebP is checked apart.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
#: Enough leading bytes to recognise every signature above.
_SNIFF_BYTES = 12

#: Image types refused in data URIs: SVG is a text format that can carry scripts.
_REFUSED_DATA_TYPES = frozenset({"image/svg+xml"})


def normalize_images(
    images: Iterable[ImageInput] | None, *, allow_local_files: bool = True
) -> list[str]:
    """Return the stored form (URL or data URI) of each image, in order.

    Args:
        images: The images, or None for none.
        allow_local_files: Whether a string or ``os.PathLike`` that is not a URL or data
            URI may name a local file to read. With False such an image is refused.

    Returns:
        The stored form of each image.

    Raises:
        ImageFormatError: An image is of no accepted kind, a path is refused (missing,
            unreadable, not a regular file, not an image, larger than
            ``MAX_IMAGE_FILE_BYTES``, or local files are turned off), or a data URI is
            malformed or not of an image type.
    """
    if images is None:
        return []
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise ImageFormatError("images must be a list of images, not a single value")
    return [
        normalize_image(image, index, allow_local_files=allow_local_files)
        for index, image in enumerate(images)
    ]


def normalize_image(image: ImageInput, index: int = 0, *, allow_local_files: bool = True) -> str:
    """Return the stored form of one image; see ``normalize_images``."""
    if isinstance(image, str):
        stored = _web_or_data_uri(image, index)
        if stored is not None:
            return stored
        return _file_to_data_uri(image, index, allow_local_files)
    if isinstance(image, os.PathLike):
        return _file_to_data_uri(image, index, allow_local_files)
    if isinstance(image, (bytes, bytearray)):
        mime = _sniff_mime(bytes(image[:_SNIFF_BYTES]))
        if mime is None:
            raise ImageFormatError(
                f"images[{index}] bytes are not a PNG, JPEG, GIF, WebP, BMP or TIFF image"
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
        stored = _web_or_data_uri(image, index)
        if stored is not None:
            return stored
    raise ImageFormatError(
        f"images[{index}] of a message must be an http(s) URL or a data URI, got "
        f"{str(image)[:60]!r}; RoleThread.post() also takes files, bytes and PIL images"
    )


def is_web_url(image: str) -> bool:
    """Return whether ``image`` is an ``http://`` or ``https://`` URL, in any case."""
    match = _URL_SCHEME.match(image)
    return match is not None and match["scheme"].lower() in _WEB_SCHEMES


def bytes_to_data_uri(data: bytes, mime: str) -> str:
    """Encode ``data`` as a base64 data URI of type ``mime``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _web_or_data_uri(image: str, index: int) -> str | None:
    """Return ``image`` if it is a valid URL or data URI, None if it is neither; raise
    for a URL of another scheme and a malformed data URI."""
    scheme = _URL_SCHEME.match(image)
    if scheme is not None:
        if scheme["scheme"].lower() in _WEB_SCHEMES:
            return _encodable_url(image, index)
        raise ImageFormatError(
            f"images[{index}] is a {scheme['scheme']!r} URL; only http and https URLs are accepted"
        )
    if image[:5].lower() == "data:":
        return _checked_data_uri(image, index)
    return None


def _encodable_url(url: str, index: int) -> str:
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ImageFormatError(
            f"images[{index}] URL holds a character that cannot be stored as UTF-8 (a lone "
            f"surrogate at position {exc.start})"
        ) from None
    return url


def _checked_data_uri(uri: str, index: int) -> str:
    match = _DATA_URI.match(uri)
    if match is None:
        raise ImageFormatError(
            f"images[{index}] is not a valid data URI: expected 'data:image/<type>;base64,"
            "<payload>'"
        )
    mime = match["mime"].lower()
    if not mime.startswith("image/") or mime in _REFUSED_DATA_TYPES:
        raise ImageFormatError(
            f"images[{index}] is a data URI of type {match['mime']!r}; only image types "
            "other than SVG are accepted"
        )
    try:
        base64.b64decode(uri[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageFormatError(f"images[{index}] data URI has an invalid base64 payload") from exc
    return uri


def _refused_path(index: int, allow_local_files: bool) -> ImageFormatError:
    if not allow_local_files:
        return ImageFormatError(
            f"images[{index}] is not an http(s) URL or an image data URI; local file paths "
            "are turned off (configure(allow_local_images=False))"
        )
    # One text for every reason, so the error tells nothing about the file system.
    return ImageFormatError(
        f"images[{index}] is not an http(s) URL, an image data URI, or a readable PNG, "
        f"JPEG, GIF, WebP, BMP or TIFF file of at most {MAX_IMAGE_FILE_BYTES // 2**20} MiB"
    )


def _file_to_data_uri(path: str | os.PathLike[str], index: int, allow_local_files: bool) -> str:
    if not allow_local_files:
        raise _refused_path(index, allow_local_files)
    data = _read_image_file(path)
    mime = None if data is None else _sniff_mime(data[:_SNIFF_BYTES])
    if data is None or mime is None:
        raise _refused_path(index, allow_local_files)
    return bytes_to_data_uri(data, mime)


def _read_image_file(path: str | os.PathLike[str]) -> bytes | None:
    """Return the bytes of the regular file at ``path`` if it starts with an image
    signature and is no larger than ``MAX_IMAGE_FILE_BYTES``; else None."""
    try:
        # Non-blocking, so that a FIFO or device named as an image cannot hang the call.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    try:
        handle = io.FileIO(descriptor, "rb", closefd=True)
    except OSError:
        os.close(descriptor)
        return None
    with handle:
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_FILE_BYTES:
                return None
            head = handle.read(_SNIFF_BYTES) or b""
            if _sniff_mime(head) is None:
                return None
            # The size can change after fstat (and is 0 for /proc files): bound the read.
            data = head + _read_at_most(handle, MAX_IMAGE_FILE_BYTES + 1 - len(head))
        except OSError:
            return None
    return data if len(data) <= MAX_IMAGE_FILE_BYTES else None


def _read_at_most(handle: io.FileIO, limit: int) -> bytes:
    """Return the next ``limit`` bytes of ``handle``, fewer at its end."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = handle.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _sniff_mime(head: bytes) -> str | None:
    for signature, mime in _SIGNATURES:
        if head.startswith(signature):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
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

PartKind = Literal["text", "image"]
#: One piece of a message's content, in order: ``("text", text)`` or ``("image", url)``.
Part = tuple[PartKind, str]


def placed_parts(message_id: str, text: str, images: Sequence[str]) -> list[Part]:
    """Return a message's text and images in the order its placeholders give.

    Without ``<image>`` placeholders the text (if any) comes first and the images follow;
    with them, each placeholder is replaced by the next image and the text pieces between
    them are stripped (empty pieces are left out).

    Args:
        message_id: The message's id, for the error.
        text: The message's text.
        images: Its images.

    Raises:
        InvalidInputError: The number of placeholders is neither zero nor the number of
            images.
    """
    pieces = text.split(IMAGE_PLACEHOLDER)
    placeholders = len(pieces) - 1
    if placeholders == 0:
        lead: list[Part] = [("text", text)] if text else []
        return lead + [("image", url) for url in images]
    if placeholders != len(images):
        raise InvalidInputError(
            f"message {message_id!r} has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) "
            f"but {len(images)} image(s); use one placeholder per image, or none"
        )
    parts: list[Part] = []
    for index, piece in enumerate(pieces):
        if piece.strip():
            parts.append(("text", piece.strip()))
        if index < placeholders:
            parts.append(("image", images[index]))
    return parts


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
