"""What the adapters share: an item's text stored once, and put back where it stood."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from threadmem_mongo.integrations import _stored_items


@pytest.mark.parametrize(
    ("item", "text", "pointer"),
    [
        ({"role": "user", "content": "hi"}, "hi", "/content"),
        ({"blocks": [{"type": "image"}, {"type": "text", "text": "hi"}]}, "hi", "/blocks/1/text"),
        ({"a/b": {"~x": "hi"}}, "hi", "/a~1b/~0x"),
        ({"data": {"0": "hi"}}, "hi", "/data/0"),
        ({"first": "hi", "second": "hi"}, "hi", "/first"),
    ],
)
def test_take_text_leaves_null_and_put_text_restores_it(
    item: dict[str, Any], text: str, pointer: str
) -> None:
    data = copy.deepcopy(item)
    assert _stored_items.take_text(data, text) == pointer
    assert text not in str(data) or item.get("second") == text
    _stored_items.put_text(data, pointer, text)
    assert data == item


@pytest.mark.parametrize(
    ("item", "text"),
    [({"content": "other"}, "hi"), ({"content": "hi"}, ""), ({"content": ["hi "]}, "hi")],
)
def test_take_text_changes_nothing_without_an_equal_string(item: dict[str, Any], text: str) -> None:
    data = copy.deepcopy(item)
    assert _stored_items.take_text(data, text) is None
    assert data == item


def test_put_text_refuses_a_pointer_that_leads_nowhere() -> None:
    with pytest.raises(LookupError):
        _stored_items.put_text({"content": None}, "/missing", "hi")
    with pytest.raises(ValueError, match="JSON Pointer"):
        _stored_items.put_text({"content": None}, "content", "hi")


def test_an_item_stores_its_text_once_and_decodes_whole() -> None:
    item = {"role": "user", "content": "hello there"}
    message = _stored_items.encode_item(
        item, key="k", role="user", text="hello there", slots=[], what="item"
    )
    stored = (message.metadata or {})["k"]
    assert stored == {"text": "/content", "item": '{"role":"user","content":null}'}
    assert _stored_items.decode_item(message, "k") == item
