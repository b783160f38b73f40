"""Generate the synchronous twins from their asynchronous sources.

The async modules are the source of truth; each sync module is the same code with
``async``/``await`` removed and async names swapped for their sync counterparts, the way
pymongo's own ``tools/synchro.py`` produces its synchronous API. The behaviour suite is
written the same way: ``tests/test_behaviour_async.py`` is the source of the sync
``tests/test_behaviour.py`` (``TEST_MODULES``). Run it after editing an ``_async_*.py``
module or a test source::

    python tools/synchro.py          # rewrite the sync modules
    python tools/synchro.py --check  # exit 1 if they are stale (run by the test suite)

How the text is rewritten:

- Code is rewritten token by token (``tokenize``), so only real keywords and names
  change: ``async def``/``async with``/``async for`` lose ``async``, ``await`` goes,
  async names become their sync twins (``NAMES``), ``pymongo.asynchronous.x`` becomes
  ``pymongo.x``, ``AsyncGenerator[Y, S]`` becomes ``Generator[Y, S, None]`` and
  ``Awaitable[T]`` becomes ``T``. String literals that are data keep their words apart
  from the names; docstrings and comments, which show usage, are rewritten as prose (the
  keywords too, so a docstring's example reads as sync code).
- Lines between ``# synchro: begin async-only`` and ``# synchro: end async-only`` are
  left out of the sync module: code that has no meaning without an event loop.
- A test module also has its own names (``TEST_NAMES``: the ``async_store`` fixture
  becomes ``store``, ...); ``threadmem_mongo.aio`` becomes ``threadmem_mongo``,
  ``pytest_asyncio.fixture`` becomes ``pytest.fixture``, and a line that only marks
  tests ``pytest.mark.asyncio`` (``pytestmark = ...`` or a decorator) is dropped.
  Parentheses that held only an awaited expression go with the ``await``:
  ``(await thread.messages())[0]`` becomes ``thread.messages()[0]``.
- Each generated module records a digest of its own text. A sync module whose text no
  longer matches its digest was edited by hand, and is not overwritten (``--force``
  overrides): the edit belongs in the async source.
- The result is formatted by the ruff that the ``test`` extra pins, so a ruff release
  cannot make the generated files stale without a source change.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import keyword
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

from ruff.__main__ import find_ruff_bin

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "threadmem_mongo"
TESTS = ROOT / "tests"

#: async source -> generated sync module
MODULES = {
    "_async_blobs.py": "_blobs.py",
    "_async_changes.py": "_changes.py",
    "_async_page_store.py": "_page_store.py",
    "_async_store.py": "_store.py",
    "_async_thread.py": "_thread.py",
    "_async_thread_formats.py": "_thread_formats.py",
    "_async_thread_watch.py": "_thread_watch.py",
    "_async_thread_edits.py": "_thread_edits.py",
    "_async_thread_lookup.py": "_thread_lookup.py",
    "_async_collection.py": "_collection.py",
    "_async_image_store.py": "_image_store.py",
    "integrations/_async_thread_io.py": "integrations/_thread_io.py",
}

#: async test source -> generated sync test module, both in ``tests/``
TEST_MODULES = {
    "test_behaviour_async.py": "test_behaviour.py",
}

#: Whole-name replacements of code tokens, and whole-word ones in docstrings and comments.
NAMES = {
    "AsyncRoleThread": "RoleThread",
    "AsyncThreadFormats": "ThreadFormats",
    "AsyncThreadWatch": "ThreadWatch",
    "AsyncThreadEdits": "ThreadEdits",
    "AsyncThreadLookup": "ThreadLookup",
    "AsyncGuardedCollection": "GuardedCollection",
    "AsyncImageStore": "ImageStore",
    "AsyncMongoClient": "MongoClient",
    "AsyncThreadStore": "ThreadStore",
    "AsyncCollection": "Collection",
    "AsyncDatabase": "Database",
    "AsyncBlobStore": "BlobStore",
    "AsyncPageStore": "PageStore",
    "AsyncChangeStream": "ChangeStream",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "StopAsyncIteration": "StopIteration",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclosing": "closing",
    "async_default_store": "default_store",
    "_async_store": "_store",
    "_async_blobs": "_blobs",
    "_async_changes": "_changes",
    "_async_page_store": "_page_store",
    "_async_thread": "_thread",
    "_async_thread_formats": "_thread_formats",
    "_async_thread_watch": "_thread_watch",
    "_async_thread_edits": "_thread_edits",
    "_async_thread_lookup": "_thread_lookup",
    "_async_collection": "_collection",
    "_async_image_store": "_image_store",
    "_async_thread_io": "_thread_io",
}

#: Further names in test modules: conftest's async fixtures and their sync twins.
TEST_NAMES = {
    "async_store": "store",
    "async_raw": "raw",
}

#: ``asyncio.<attribute>`` -> the sync module and attribute that replace it.
ASYNCIO = {"Lock": ("threading", "Lock"), "sleep": ("time", "sleep")}

#: Prose forms, for docstrings and comments: dotted paths, then the same names.
PROSE_PATHS = {
    "threadmem_mongo._async_store": "threadmem_mongo._store",
    "threadmem_mongo._async_thread": "threadmem_mongo._thread",
    "threadmem_mongo._async_blobs": "threadmem_mongo._blobs",
    "pymongo.asynchronous.": "pymongo.",
    "contextlib.aclosing": "contextlib.closing",
    "asyncio.Lock": "threading.Lock",
    "asyncio.sleep": "time.sleep",
}

#: Prose forms of the test modules' own paths.
TEST_PROSE_PATHS = {
    "threadmem_mongo.aio": "threadmem_mongo",
    "pytest_asyncio.fixture": "pytest.fixture",
}

#: A line that only marks async tests, dropped from a sync test module.
_ASYNCIO_MARK_LINE = re.compile(
    r"^[ \t]*(?:pytestmark = pytest\.mark\.asyncio|@pytest\.mark\.asyncio(?:\(.*\))?)[ \t]*\n",
    re.MULTILINE,
)

#: The flag the async source reads to know which twin it is.
SYNC_FLAG = "_IS_SYNC"

#: A comment that only the async source needs (a sync-only call is not a coroutine there).
ASYNC_ONLY_COMMENT = "# type: ignore[unused-coroutine]"

BEGIN_ASYNC_ONLY = "# synchro: begin async-only"
END_ASYNC_ONLY = "# synchro: end async-only"

HEADER = (
    "# Generated by tools/synchro.py from {source}: do not edit.\n"
    "# Edit the async source and run `python tools/synchro.py`.\n"
)
DIGEST_LINE = "# digest: {digest}\n"
_DIGEST = re.compile(r"^# digest: ([0-9a-f]{64})\n", re.MULTILINE)

Edit = tuple[int, int, str]


class HandEditedError(Exception):
    """A generated module was changed by hand since it was generated."""


def translate(source: str, name: str) -> str:
    """Return the synchronous version of the async module text ``source``."""
    text = _drop_async_only(source, name)
    text = _apply(text, _token_edits(text, NAMES, tests=False))
    module = name[:-3].replace("/", ".")
    return _generated_text(
        text,
        f"threadmem_mongo/{name}",
        f'"""Synchronous twin of :mod:`threadmem_mongo.{module}` (generated)."""\n',
        name.replace("_async", ""),
    )


def translate_tests(source: str, name: str) -> str:
    """Return the sync test module generated from the async test module text ``source``
    (``name`` is its file name in ``tests/``)."""
    text = _ASYNCIO_MARK_LINE.sub("", _drop_async_only(source, name))
    text = _apply(text, _token_edits(text, NAMES | TEST_NAMES, tests=True))
    return _generated_text(
        text,
        f"tests/{name}",
        f'"""Synchronous twin of tests/{name} (generated)."""\n',
        f"tests/{TEST_MODULES.get(name, name)}",
    )


def _generated_text(text: str, source_path: str, docstring: str, target: str) -> str:
    """The generated file: ``text`` with ``docstring`` in place of its source's (which
    speaks of both twins), formatted as ``target``, under the header and digest."""
    text = re.sub(r'^"""(.|\n)*?"""\n', "", text, count=1)
    body = _ruff(docstring + text, target)
    return HEADER.format(source=source_path) + DIGEST_LINE.format(digest=_digest(body)) + body


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def hand_edited(generated: str) -> bool:
    """Return whether a generated module's text differs from what its digest recorded."""
    rest = generated.partition("\n# digest: ")[2]
    match = _DIGEST.match("# digest: " + rest)
    if match is None:
        return bool(generated)  # a file without a digest was not written by this tool
    return _digest(("# digest: " + rest)[match.end() :]) != match.group(1)


def _drop_async_only(source: str, name: str) -> str:
    kept: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN_ASYNC_ONLY:
            if inside:
                raise SyntaxError(f"{name}:{number}: async-only block opened twice")
            inside = True
        elif marker == END_ASYNC_ONLY:
            if not inside:
                raise SyntaxError(f"{name}:{number}: async-only block closed but not opened")
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise SyntaxError(f"{name}: async-only block not closed")
    return "".join(kept)


def _prose(text: str, names: dict[str, str], tests: bool) -> str:
    """Rewrite a docstring or comment: usage examples in it read as sync code."""
    for old, new in (PROSE_PATHS | TEST_PROSE_PATHS if tests else PROSE_PATHS).items():
        text = text.replace(old, new)
    text = re.sub(r"\bAsyncGenerator\[(.+), None\]", r"Generator[\1, None, None]", text)
    text = re.sub(r"\basync (def|with|for)\b", r"\1", text)
    text = re.sub(r"\bawait ", "", text)
    for old, new in names.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, text)
    return text


def _data(text: str, names: dict[str, str]) -> str:
    """Rewrite a string literal that is data: only whole async names change."""
    for old, new in names.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, text)
    return text


def _token_edits(text: str, names: dict[str, str], *, tests: bool) -> list[Edit]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))

    def start(index: int) -> int:
        row, col = tokens[index].start
        return offsets[row - 1] + col

    def end(index: int) -> int:
        row, col = tokens[index].end
        return offsets[row - 1] + col

    def is_op(index: int, value: str) -> bool:
        return (
            index < len(tokens)
            and tokens[index].type == tokenize.OP
            and (tokens[index].string == value)
        )

    def closing(index: int) -> int:
        """Index of the bracket closing the one at ``index``."""
        depth = 0
        for position in range(index, len(tokens)):
            if tokens[position].type == tokenize.OP and tokens[position].string in "([{":
                depth += 1
            elif tokens[position].type == tokenize.OP and tokens[position].string in ")]}":
                depth -= 1
                if depth == 0:
                    return position
        raise SyntaxError("unbalanced brackets")

    def awaits_alone_in_parentheses(index: int) -> bool:
        """Whether the ``await`` at ``index`` is all that grouping parentheses hold, with
        one primary expression (a name or literal, then attributes, calls, subscripts)."""
        if index < 2 or not is_op(index - 1, "("):
            return False
        before = tokens[index - 2]
        if before.type in (tokenize.NAME, tokenize.STRING) and not keyword.iskeyword(before.string):
            return False  # a call's parentheses
        if before.type == tokenize.OP and before.string in ")]}":
            return False  # a call's parentheses
        last = closing(index - 1)
        position = index + 1
        while position < last:
            token = tokens[position]
            if token.type == tokenize.OP and token.string in "([{":
                position = closing(position) + 1
                continue
            plain_name = token.type == tokenize.NAME and not keyword.iskeyword(token.string)
            literal = token.type in (tokenize.STRING, tokenize.NUMBER)
            if not (plain_name or literal or is_op(position, ".")):
                return False
            position += 1
        return True

    edits: list[Edit] = []
    statement_start = True
    for index, token in enumerate(tokens):
        kind, value = token.type, token.string
        if kind == tokenize.NAME:
            following = tokens[index + 1].string if index + 1 < len(tokens) else ""
            if (value == "async" and following in ("def", "with", "for")) or value == "await":
                edits.append((start(index), start(index + 1), ""))
                if tests and value == "await" and awaits_alone_in_parentheses(index):
                    # ``(await thread.messages())[0]`` reads ``thread.messages()[0]``.
                    edits.append((start(index - 1), end(index - 1), ""))
                    last = closing(index - 1)
                    edits.append((start(last), end(last), ""))
            elif value == "asynchronous" and index >= 2 and tokens[index - 2].string == "pymongo":
                edits.append((start(index), start(index + 2), ""))
            elif value == "asyncio" and is_op(index + 1, ".") and following == ".":
                if tokens[index + 2].string not in ASYNCIO:
                    raise SyntaxError(
                        f"line {token.start[0]}: asyncio.{tokens[index + 2].string} has no "
                        "sync twin; put the code that uses it in an async-only block"
                    )
                module, attribute = ASYNCIO[tokens[index + 2].string]
                edits.append((start(index), end(index + 2), f"{module}.{attribute}"))
            elif (
                tests
                and value == "aio"
                and is_op(index - 1, ".")
                and tokens[index - 2].string == "threadmem_mongo"
            ):
                edits.append((start(index - 1), end(index), ""))
            elif tests and value == "pytest_asyncio" and is_op(index + 1, "."):
                edits.append((start(index), end(index), "pytest"))
            elif tests and value == "asyncio" and tokens[index - 2].string == "mark":
                raise SyntaxError(
                    f"line {token.start[0]}: pytest.mark.asyncio must be a line of its own "
                    "(pytestmark = pytest.mark.asyncio, or a decorator)"
                )
            elif value == "asyncio":
                edits.append((start(index), end(index), "threading"))
            elif value == "AsyncGenerator" and is_op(index + 1, "["):
                edits.append((start(index), end(index), "Generator"))
                last = closing(index + 1)
                edits.append((start(last), start(last), ", None"))
            elif value == "Awaitable" and is_op(index + 1, "["):
                last = closing(index + 1)
                edits.append((start(index), end(index + 1), ""))
                edits.append((start(last), end(last), ""))
            elif value == "Awaitable" and is_op(index + 1, ","):
                edits.append((start(index), start(index + 2), ""))
            elif (
                value == SYNC_FLAG
                and statement_start
                and is_op(index + 1, "=")
                and tokens[index + 2].string == "False"
            ):
                edits.append((start(index + 2), end(index + 2), "True"))
            elif value in names:
                edits.append((start(index), end(index), names[value]))
        elif kind == tokenize.COMMENT:
            if value == ASYNC_ONLY_COMMENT:
                # The two spaces before the comment go with it.
                edits.append((start(index) - 2, end(index), ""))
            else:
                edits.append((start(index), end(index), _prose(value, names, tests)))
        elif kind == tokenize.STRING:
            rewritten = _prose(value, names, tests) if statement_start else _data(value, names)
            edits.append((start(index), end(index), rewritten))
        if kind not in (tokenize.COMMENT, tokenize.NL):
            statement_start = kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    return edits


def _apply(text: str, edits: list[Edit]) -> str:
    pieces: list[str] = []
    position = 0
    for begin, finish, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        pieces.append(text[position:begin])
        pieces.append(replacement)
        position = max(position, finish)
    pieces.append(text[position:])
    return "".join(pieces)


@functools.cache
def _ruff(text: str, filename: str) -> str:
    """Sort imports, drop those the sync code no longer uses, and format ``text`` with
    ruff, as the rest of the package is. The same text formats the same way, so a run
    that translates a module again (``--check``, then a rewrite) asks ruff once."""
    for command in (["check", "--select", "I,F401", "--fix", "--quiet"], ["format", "--quiet"]):
        result = subprocess.run(
            [find_ruff_bin(), *command, "--stdin-filename", filename, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        )
        text = result.stdout
    return text


def _generated() -> Iterator[tuple[Path, str, str]]:
    """Each generated file, how to name it, and the text its source makes today."""
    for source, target in MODULES.items():
        yield PACKAGE / target, target, translate((PACKAGE / source).read_text(), source)
    for source, target in TEST_MODULES.items():
        expected = translate_tests((TESTS / source).read_text(), source)
        yield TESTS / target, f"tests/{target}", expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument(
        "--force", action="store_true", help="overwrite generated files even if edited by hand"
    )
    args = parser.parse_args(argv)
    stale = []
    edited = []
    for path, label, expected in _generated():
        current = path.read_text() if path.exists() else ""
        if current == expected:
            continue
        stale.append(label)
        if current and hand_edited(current) and not args.force:
            edited.append(label)
        elif not args.check:
            path.write_text(expected)
    if edited:
        print(
            f"edited by hand: {', '.join(edited)}; move the change into the async source, "
            "then run python tools/synchro.py --force",
            file=sys.stderr,
        )
        return 2
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python tools/synchro.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {', '.join(stale) or 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
