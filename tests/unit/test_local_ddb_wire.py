"""picflow_cli.local.ddb_wire: DynamoDB answers written directly are byte for byte what moto's
model-driven serialiser writes, for every kind of attribute value."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer
from picflow_cli.local import ddb_wire

ITEM: dict[str, Any] = {
    "pk": "job#1",
    "s": 'text with \u00e9 and "quotes"',
    "empty": "",
    "n": Decimal("12.50"),
    "big": Decimal("123456789012345678901234567890"),
    "neg": -3,
    "b": b"\x00\x01binary\xff",
    "ss": {"a", "b"},
    "ns": {1, 2, Decimal("3.5")},
    "bs": {b"x", b"\x00y"},
    "null": None,
    "t": True,
    "f": False,
    "m": {"nested": {"deeper": [1, "two", {"three": None}]}, "e": {}, "l": []},
    "l": ["a", 1, b"c", {"k": True}, [], [["x"]], {"s"}],
}


def raw_answers() -> list[bytes]:
    """The raw bodies moto answers to GetItem, Query, Scan, UpdateItem (ALL_NEW) and PutItem (ALL_OLD)."""
    bodies: list[bytes] = []
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.meta.events.register(
            "after-call.dynamodb.*", lambda http_response, **_: bodies.append(http_response.content)
        )
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("t")
        table.put_item(Item=ITEM)
        bodies.clear()
        client.get_item(TableName="t", Key={"pk": {"S": "job#1"}})
        client.query(
            TableName="t",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "job#1"}},
        )
        client.scan(TableName="t")
        client.update_item(
            TableName="t",
            Key={"pk": {"S": "job#1"}},
            UpdateExpression="SET #c = :c",
            ExpressionAttributeNames={"#c": "counter"},
            ExpressionAttributeValues={":c": {"N": "7"}},
            ReturnValues="ALL_NEW",
        )
        client.put_item(TableName="t", Item={"pk": {"S": "job#1"}}, ReturnValues="ALL_OLD")
    return bodies


def test_direct_answers_match_the_serialiser_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    before = raw_answers()
    direct = ddb_wire.attribute_value
    written: list[object] = []

    def spy(value: Any) -> dict[str, Any]:
        written.append(value)
        return direct(value)

    monkeypatch.setattr(ddb_wire, "attribute_value", spy)
    undo = ddb_wire.install()
    try:
        after = raw_answers()
    finally:
        undo()
    assert len(written) >= 4 * len(ITEM)  # the direct way wrote the answers' attributes
    assert len(before) == len(after) == 5
    for old, new in zip(before, after, strict=True):
        assert json.loads(old) == json.loads(new)
        assert old == new
    assert b"binary" not in b"".join(after)  # binaries are base64 in both
    assert json.loads(after[0])["Item"]["m"]["M"]["nested"]["M"]["deeper"]["L"][2] == {
        "M": {"three": {"NULL": True}}
    }


def test_values_the_rules_do_not_cover_go_the_serialiser_s_way() -> None:
    for value in ({"X": "unknown member"}, {"M": "not a map"}, {"L": {"not": "a list"}}, {"B": 12}):
        with pytest.raises(ddb_wire._UnhandledError):
            ddb_wire.attribute_value(value)
    assert ddb_wire.attribute_value({"S": "x", "N": None}) == {"S": "x"}


def test_undo_restores_the_serialiser() -> None:
    original = BaseJSONSerializer._serialize_type_structure
    undo = ddb_wire.install()
    assert BaseJSONSerializer._serialize_type_structure is not original
    undo()
    assert BaseJSONSerializer._serialize_type_structure is original


def test_reserved_words_are_still_refused_and_looked_up_in_a_set() -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    listed = ReservedKeywords.get_reserved_keywords()
    undo = ddb_wire.install()
    try:
        words = ReservedKeywords.get_reserved_keywords()
        assert isinstance(words, ddb_wire.ReservedWords)
        assert list(words) == list(listed)
        assert "STATUS" in words
        assert "JOB_ID" not in words
        with pytest.raises(MockValidationException):
            ConditionExpressionParser("status = :s", {}, {":s": {"S": "x"}}).parse()
        ConditionExpressionParser("#s = :s", {"#s": "status"}, {":s": {"S": "x"}}).parse()
    finally:
        undo()
    assert not isinstance(ReservedKeywords.get_reserved_keywords(), ddb_wire.ReservedWords)
