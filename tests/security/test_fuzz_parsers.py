"""Property tests for what reads untrusted input: id shapes, timestamps, HubSpot batches, SOAP
messages, Slack payloads and the body limit. Each may refuse, none may fail in another way."""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.emulators.soql_lexer import to_18 as emulator_to_18
from connectors.hubspot.webhooks import MAX_OBJECT_ID, object_id, parse_events, timestamp_ms
from connectors.salesforce.ids import is_record_id, to_18
from connectors.salesforce.outbound import OutboundRefused, parse_notifications
from connectors.slack.actions import MalformedPayload, parse_action
from sidecar.web.limits import BodyLimit
from tests.security.support import ORG_18, soap

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30)
ALNUM = string.ascii_letters + string.digits


@FAST
@given(json_values)
def test_object_id_is_none_or_a_positive_64_bit_integer_in_ascii(value: Any) -> None:
    text = object_id(value)
    if text is not None:
        assert text.isascii() and text.isdigit() and 0 < int(text) <= MAX_OBJECT_ID
        assert not isinstance(value, bool)


@FAST
@given(st.integers(min_value=1, max_value=MAX_OBJECT_ID))
def test_every_real_object_id_is_accepted_as_number_and_as_text(value: int) -> None:
    assert object_id(value) == object_id(str(value)) == str(value)


@FAST
@given(st.text(max_size=20))
def test_timestamps_are_ascii_digits_or_nothing(text: str) -> None:
    value = timestamp_ms(text)
    assert (value is not None) == (1 <= len(text) <= 15 and all(c in string.digits for c in text))


event_fields = st.fixed_dictionaries({}, optional={
    "eventId": json_values, "subscriptionId": json_values, "portalId": st.sampled_from([4242, "4242", 1]) | json_values,
    "subscriptionType": st.sampled_from(["contact.creation", "contact.merge", "object.creation", "deal.creation"])
    | json_values,
    "objectTypeId": st.sampled_from(["0-1", "0-3"]) | json_values, "objectId": json_values,
    "occurredAt": json_values, "mergedObjectIds": json_values, "primaryObjectId": json_values})


@FAST
@given(st.lists(event_fields, max_size=10) | json_values)
def test_a_hubspot_body_is_refused_or_yields_only_well_formed_ids(events: Any) -> None:
    try:
        parsed = parse_events(events, "0-1", "4242")
    except ValueError:
        return
    for delivery, lead in parsed.pairs:
        assert object_id(lead) == lead and len(delivery) <= 100
    assert len(parsed.pairs) <= sum(1 for e in events if e.get("portalId") in (4242, "4242")) * 100


@FAST
@given(st.text(alphabet=ALNUM, min_size=15, max_size=15))
def test_the_18_character_checksum_matches_salesforces(id15: str) -> None:
    assert to_18(id15) == emulator_to_18(id15) and is_record_id(to_18(id15)) and is_record_id(id15)
    flipped = id15.swapcase() + to_18(id15)[15:]  # same letters, other case: another record
    assert is_record_id(flipped) == (id15 == id15.swapcase())


@FAST
@given(st.text(max_size=40))
def test_record_id_check_never_raises_and_accepts_only_15_or_18_alphanumerics(text: str) -> None:
    if is_record_id(text, "00Q"):
        assert len(text) in (15, 18) and text.startswith("00Q") and all(c in ALNUM for c in text)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_as_soap_are_parsed_or_refused(body: bytes) -> None:
    try:
        parsed = parse_notifications(body, ORG_18)
    except OutboundRefused as refused:
        assert refused.status in (400, 403)
        return
    assert all(is_record_id(lead, "00Q") for _, lead in parsed.pairs)


@FAST
@given(st.lists(st.text(max_size=25), min_size=1, max_size=5))
def test_any_text_in_the_id_fields_of_a_real_message_is_stored_only_when_it_is_a_lead_id(ids: list[str]) -> None:
    escaped = [i.replace("&", "&amp;").replace("<", "&lt;") for i in ids]
    try:
        parsed = parse_notifications(soap(escaped), ORG_18)
    except OutboundRefused:
        return
    assert all(is_record_id(lead, "00Q") for _, lead in parsed.pairs)


@FAST
@given(st.binary(max_size=300) | st.builds(lambda v: b"payload=" + json.dumps(v).encode(), json_values))
def test_any_slack_body_is_parsed_or_refused(body: bytes) -> None:
    try:
        action = parse_action(body)
    except MalformedPayload:
        return
    assert action is None or isinstance(action.value, dict)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=700), max_size=6), st.integers(min_value=1, max_value=2000))
def test_the_body_limit_answers_413_exactly_when_the_body_is_over_it(chunks: list[int], limit: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["more_body"]:
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [{"type": "http.request", "body": b"x" * n, "more_body": i < len(chunks) - 1}
                for i, n in enumerate(chunks)] or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    assert sent[0]["status"] == (413 if sum(chunks) > limit else 204)
