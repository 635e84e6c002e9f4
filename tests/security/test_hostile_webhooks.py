"""Hostile input at the webhook receivers (HubSpot v3, Salesforce Outbound Messages, Slack buttons),
through the whole app onto the real intake table: what is refused is never stored, what is stored
is stored once, and nothing a sender can put into a request gives a 500."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session, sessionmaker

from connectors.emulators.soql_lexer import to_18
from sidecar.settings import Settings
from tests.security.support import NOW, ORG_18, App, Statements, hubspot_event, soap

LEAD = to_18("00QHp0000000001")


@pytest.fixture
def app(sessions: sessionmaker[Session]) -> App:
    return App(sessions)


# -- timestamps and signatures ------------------------------------------------------------------

MALFORMED_STAMPS = ["", "²", "1764000000000²", "١٧٦٤٠٠٠٠٠٠٠٠٠", "-1764000000000", "+1764000000000", " 1764000000000",
                    "1764000000000.0", "1e12", "9" * 400, "0x19a"]


@pytest.mark.parametrize("stamp", MALFORMED_STAMPS)
def test_a_malformed_timestamp_is_401_never_500(app: App, stamp: str) -> None:
    assert app.hubspot([hubspot_event(1)], stamp=stamp) == 401
    assert app.slack(b"payload=%7B%7D", stamp=stamp) == 401
    assert app.intake() == [] and app.clicks == []


@pytest.mark.parametrize("offset_s", [-301, 301, -86_400, 10**9])
def test_stale_and_future_timestamps_are_401(app: App, offset_s: int) -> None:
    assert app.hubspot([hubspot_event(1)], stamp=str(int((NOW + offset_s) * 1000))) == 401
    assert app.slack(b"payload=%7B%7D", stamp=str(int(NOW + offset_s))) == 401
    assert app.intake() == []


def test_a_bad_or_missing_signature_is_401_and_nothing_stored(app: App) -> None:
    assert app.hubspot([hubspot_event(1)], secret="not-the-secret") == 401
    body = json.dumps([hubspot_event(1)]).encode()
    response = app.client.post("/webhooks/hubspot", content=body, headers={
        "X-HubSpot-Request-Timestamp": str(int(NOW * 1000)), "Content-Type": "application/json"})
    assert response.status_code == 401
    assert app.slack(b"payload=%7B%7D", secret="not-the-secret") == 401
    assert app.intake() == []


def test_a_replayed_signed_request_is_stored_and_applied_once(app: App) -> None:
    batch = [hubspot_event(1, 501), hubspot_event(2, 502)]
    assert app.hubspot(batch) == 204
    assert app.hubspot(batch) == 204  # the same request again, within the window (or a HubSpot retry)
    assert [crm_id for _, _, crm_id in app.intake("hubspot")] == ["501", "502"]


# -- HubSpot: portal, id shapes, types, content types -------------------------------------------


def test_a_wrong_portal_is_refused_and_not_stored(app: App) -> None:
    assert app.hubspot([hubspot_event(1, portal=999), hubspot_event(2, portal="999")]) == 403
    assert app.intake() == [] and app.skipped["hubspot.wrong_portal"] == 2


BAD_HUBSPOT_IDS = ["9" * 10_000, None, {"id": 1}, [501], True, 1.5, -1, 0, 2**63, "501 OR 1=1", "0501", "",
                   "５０１", "²", LEAD]


def test_ids_of_the_wrong_shape_are_skipped_and_counted_the_rest_stored(app: App) -> None:
    events = [hubspot_event(i, bad) for i, bad in enumerate(BAD_HUBSPOT_IDS)]
    events.append(hubspot_event(1000, 501))
    events.append(hubspot_event(1001, "502"))  # digits as a string are still an id
    events.append(hubspot_event(1002, 2**63 - 1))
    # HubSpot does not retry a 400: refusing the batch would lose the valid events beside the bad ones.
    assert app.hubspot(events) == 204
    assert [crm_id for _, _, crm_id in app.intake("hubspot")] == ["501", "502", str(2**63 - 1)]
    assert app.skipped["hubspot.bad_object_id"] == len(BAD_HUBSPOT_IDS)


def test_merged_ids_are_checked_too(app: App) -> None:
    merge = hubspot_event(5, 501, kind="contact.merge", primaryObjectId=501, newObjectId=501,
                          mergedObjectIds=[502, "x; DROP TABLE intake", None, {"a": 1}])
    assert app.hubspot([merge, hubspot_event(6, 503, mergedObjectIds="not a list")]) == 204
    assert [crm_id for _, _, crm_id in app.intake("hubspot")] == ["501", "502", "503"]
    assert app.skipped["hubspot.bad_object_id"] == 3


def test_unknown_event_types_are_ignored_and_counted(app: App) -> None:
    events = [hubspot_event(1, kind="conversation.creation"), hubspot_event(2, kind=None),
              hubspot_event(3, kind=["contact.creation"]), hubspot_event(4, kind="deal.creation"),
              hubspot_event(5, kind="object.creation", objectTypeId="0-3"), hubspot_event(6, 501)]
    assert app.hubspot(events) == 204
    assert [crm_id for _, _, crm_id in app.intake("hubspot")] == ["501"]
    assert app.skipped["hubspot.unknown_event_type"] == 4 and app.skipped["hubspot.other_object"] == 1


@pytest.mark.parametrize("raw", [b"[{not json", b'{"eventId": 1}', b"[1, 2]", b'"text"', b"\xff\xfe[]", b"[" * 100_000,
                                 b"null", b""])
def test_malformed_or_wrongly_typed_json_is_400(app: App, raw: bytes) -> None:
    assert app.hubspot(raw=raw) == 400
    assert app.intake() == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
def test_wrong_content_types_are_415(app: App, content_type: str) -> None:
    assert app.hubspot([hubspot_event(1)], content_type=content_type) == 415
    assert app.salesforce(soap([LEAD]), content_type=content_type or "application/json") == 415
    slack_type = "application/json" if content_type == "application/x-www-form-urlencoded" else content_type
    assert app.slack(b"payload=%7B%7D", content_type=slack_type) == 415
    assert app.intake() == []


def test_a_signed_batch_of_20000_events_is_stored_with_a_few_statements_not_one_per_event(
        app: App, sessions: sessionmaker[Session]) -> None:
    events = [hubspot_event(i, 10_000 + i) for i in range(20_000)]
    raw = json.dumps(events, separators=(",", ":")).encode()
    assert len(raw) < 5 * 1024 * 1024  # the default body limit lets it through
    with Statements(sessions) as statements:
        assert app.hubspot(raw=raw) == 204
    assert len(app.intake("hubspot")) == 20_000
    # Per-event work (a query and an insert per event) took 10-50 s here; the bulk insert is a few
    # statements (SQLite's bound-parameter cap splits it into chunks; PostgreSQL takes one).
    assert len(statements.seen) < 20_000 / 500, statements.seen  # 500+ events a statement


# -- Salesforce: organization, id shapes, XML attacks -------------------------------------------


def test_an_organization_id_matching_only_its_first_15_characters_is_refused(app: App) -> None:
    for forged in (ORG_18[:15] + "ZZZ", ORG_18[:15], ORG_18.lower(), ORG_18 + "X", ""):
        assert app.salesforce(soap([LEAD], org_id=forged)) == 403
    assert app.intake() == []
    assert app.salesforce(soap([LEAD])) == 200  # configured as 15 characters, matched on all 18
    assert [crm_id for _, _, crm_id in app.intake("salesforce")] == [LEAD]


def test_salesforce_ids_of_the_wrong_shape_are_skipped_and_counted(app: App) -> None:
    account = to_18("001Hp0000000001")
    bad = [account, LEAD[:15] + "AAA", "00Q' OR Id != '", "9" * 10_000, "", LEAD.lower(), LEAD + "0"]
    good = [LEAD, to_18("00QHp0000000002")[:15]]
    assert app.salesforce(soap(bad + good)) == 200  # acknowledged: a fault would make Salesforce resend it all
    assert [crm_id for _, _, crm_id in app.intake("salesforce")] == good
    assert app.skipped["salesforce.bad_record_id"] == len(bad)
    assert app.salesforce(soap([LEAD], note_ids=["not-an-id"])) == 400  # nothing usable: refused
    assert app.skipped["salesforce.bad_notification_id"] == 1


BILLION_LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>')
EXTERNAL = '<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16", "UTF-16-LE", "UTF-32"])
@pytest.mark.parametrize("prolog", [BILLION_LAUGHS, EXTERNAL, "<!DOCTYPE x>"])
def test_dtds_and_entities_are_refused_in_any_encoding(app: App, encoding: str, prolog: str) -> None:
    body = soap([LEAD], encoding=encoding, prolog=prolog)
    assert b"<!DOCTYPE" not in body.upper() or encoding == "UTF-8"  # a byte search would not see it
    assert app.salesforce(body) == 400
    assert app.intake() == []


@pytest.mark.parametrize("raw", [b"<not xml", b"", b"\x00\x01", b"<a>no notifications</a>",
                                 b"<x>" * 50_000, "<é/>".encode("latin-1")])
def test_malformed_xml_is_400(app: App, raw: bytes) -> None:
    assert app.salesforce(raw) == 400
    assert app.intake() == []


def test_a_9000_notification_message_is_stored_with_a_few_statements_not_one_per_event(
        app: App, sessions: sessionmaker[Session]) -> None:
    leads = [to_18(f"00QHp{i:010d}") for i in range(9_000)]
    body = soap(leads)
    assert len(body) < 5 * 1024 * 1024
    with Statements(sessions) as statements:
        assert app.salesforce(body) == 200
    assert len(app.intake("salesforce")) == 9_000
    assert len(statements.seen) < 9_000 / 500, statements.seen  # 500+ notifications a statement



@pytest.mark.parametrize("configured", ["00QHp0000000001", "00DHp00000000", "00DHp0000000001' OR '1", "x" * 18])
def test_a_configured_organization_id_of_the_wrong_shape_is_one_clear_settings_error(configured: str) -> None:
    with pytest.raises(ValueError, match="SIDECAR_SF_ORGANIZATION_ID must be the 15- or 18-character"):
        Settings(_env_file=None, sf_organization_id=configured)  # type: ignore[call-arg]
    assert Settings(_env_file=None, sf_organization_id=ORG_18).sf_organization_id == ORG_18  # type: ignore[call-arg]


def test_skipped_events_are_counted_on_healthz(sessions: sessionmaker[Session]) -> None:
    from connectors.hubspot.webhooks import hubspot_webhook_router
    from sidecar.web.app import create_app, intake_callback
    from tests.security.support import HUBSPOT_SECRET, TestClient, sign_hubspot
    from tests.support import ny

    store = intake_callback(sessions, "hubspot", lambda: ny(24, 8))
    app = create_app(sessions, [hubspot_webhook_router(HUBSPOT_SECRET, store, clock=lambda: NOW)])  # its own counter
    client = TestClient(app)
    before = client.get("/healthz").json()["intake_skipped"].get("hubspot.unknown_event_type", 0)
    body = json.dumps([hubspot_event(1, kind="ticket.creation"), hubspot_event(2, kind="x.y")]).encode()
    stamp = str(int(NOW * 1000))
    response = client.post("/webhooks/hubspot", content=body, headers={
        "X-HubSpot-Signature-v3": sign_hubspot(HUBSPOT_SECRET, body, stamp), "X-HubSpot-Request-Timestamp": stamp,
        "Content-Type": "application/json"})
    assert response.status_code == 204
    assert client.get("/healthz").json()["intake_skipped"]["hubspot.unknown_event_type"] == before + 2
