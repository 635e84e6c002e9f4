"""Contract tests: the real simple-salesforce client, over TLS, against the Salesforce emulator."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, cast

import pytest
import requests
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.format import format_soql

from connectors.emulators.http import Emulator, Request, Response
from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS, route_login_domain
from tests.contract.harness import Clock, Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NS = {"o": "http://soap.sforce.com/2005/09/outbound", "sf": "urn:sobject.enterprise.soap.sforce.com",
      "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS, clock: Clock) -> SalesforceEmulator:
    return serve(SalesforceEmulator(clock=clock), tls.server_context)


def leads(sf: Salesforce) -> SFType:
    # Salesforce.__getattr__ is typed as returning bulk handlers too; `Lead` is always an SFType.
    return cast(SFType, sf.Lead)


def content(exc: pytest.ExceptionInfo[Any]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = exc.value.content
    return body


# --- TLS and logins -----------------------------------------------------------------------------------


def test_tls_is_real_and_needs_the_throwaway_ca(emu: SalesforceEmulator, tls: LoopbackTLS) -> None:
    session = tls.client_session()
    assert session.trust_env is False and session.verify == str(tls.ca_bundle)
    session.close()
    with requests.Session() as untrusting, pytest.raises(requests.exceptions.SSLError):
        untrusting.get(f"{emu.url}/services/data/", timeout=5)


def test_instance_url_keeps_the_port(sf: Salesforce, emu: SalesforceEmulator) -> None:
    assert sf.sf_instance == f"127.0.0.1:{emu.port}"
    assert sf.base_url == f"https://127.0.0.1:{emu.port}/services/data/v59.0/"


def test_soap_login_with_security_token(emu: SalesforceEmulator, http: requests.Session) -> None:
    route_login_domain(http, emu.url)
    sf = Salesforce(username="integration@example.com", password="password", security_token="TOKEN",
                    session=http)
    assert sf.sf_instance == f"127.0.0.1:{emu.port}"
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(username="integration@example.com", password="password", security_token="WRONG",
                   session=http)
    assert caught.value.code == "INVALID_LOGIN"


def test_oauth_password_and_client_credentials(emu: SalesforceEmulator, http: requests.Session) -> None:
    emu.add_connected_app("cid", "secret")
    route_login_domain(http, emu.url)
    sf = Salesforce(username="integration@example.com", password="passwordTOKEN", consumer_key="cid",
                    consumer_secret="secret", session=http)
    assert leads(sf).create({"LastName": "A", "Company": "B"})["success"] is True
    route_login_domain(http, emu.url, domain="acme.my")
    machine = Salesforce(consumer_key="cid", consumer_secret="secret", domain="acme.my", session=http)
    assert machine.query("SELECT Id FROM Lead")["totalSize"] == 1


def test_oauth_token_endpoint_shapes(emu: SalesforceEmulator, http: requests.Session, clock: Clock) -> None:
    emu.add_connected_app("cid", "secret")
    form = {"grant_type": "password", "client_id": "cid", "client_secret": "secret",
            "username": "integration@example.com", "password": "passwordTOKEN"}
    ok = http.post(f"{emu.url}/services/oauth2/token", data=form, timeout=5).json()
    assert set(ok) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert ok["instance_url"] == emu.url and ok["token_type"] == "Bearer"
    assert ok["issued_at"] == str(int(clock.now.timestamp() * 1000))
    bad = http.post(f"{emu.url}/services/oauth2/token", data={**form, "password": "password"}, timeout=5)
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


# --- sObject rows ---------------------------------------------------------------------------------------


def test_create_read_update_delete(sf: Salesforce, emu: SalesforceEmulator, clock: Clock) -> None:
    created = leads(sf).create({"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines"})
    lead_id = created["id"]
    assert created == {"id": lead_id, "success": True, "errors": []}
    assert lead_id.startswith("00Q") and len(lead_id) == 18
    lead = leads(sf).get(lead_id)
    assert lead["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{lead_id}"}
    assert lead["Name"] == "Ada Lovelace"
    assert lead["CreatedDate"] == lead["SystemModstamp"] == "2026-11-25T08:00:00.000+0000"
    assert lead["OwnerId"] == emu.integration_user_id
    clock.advance(minutes=5)
    assert leads(sf).update(lead_id, {"Status": "Working - Contacted"}) == 204
    assert leads(sf).get(lead_id)["LastModifiedDate"] == "2026-11-25T08:05:00.000+0000"
    assert leads(sf).delete(lead_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as caught:
        leads(sf).get(lead_id)
    assert content(caught)[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0
    deleted = sf.query_all("SELECT Id, IsDeleted FROM Lead", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in deleted] == [(lead_id, True)]


def test_ids_carry_the_sobject_key_prefix(emu: SalesforceEmulator) -> None:
    lead = emu.insert("Lead", {"LastName": "L", "Company": "C"})
    task = emu.insert("Task", {"WhoId": lead, "Subject": "Call"})
    event = emu.insert("Event", {"WhoId": lead, "Subject": "Meet"})
    queue = emu.add_queue("SDR Queue")
    assert [i[:3] for i in (lead, task, event, emu.integration_user_id, queue)] == [
        "00Q", "00T", "00U", "005", "00G"]


def test_unknown_record_and_write_validation(sf: Salesforce, emu: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceResourceNotFound) as missing:
        leads(sf).get("00QHp0000009999AAA")
    assert content(missing) == [{"message": "The requested resource does not exist",
                                 "errorCode": "NOT_FOUND"}]
    with pytest.raises(SalesforceMalformedRequest) as required:
        leads(sf).create({"LastName": "NoCompany"})
    assert content(required)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert content(required)[0]["fields"] == ["Company"]
    with pytest.raises(SalesforceMalformedRequest) as readonly:
        leads(sf).create({"LastName": "X", "Company": "Y", "SystemModstamp": "2020-01-01T00:00:00Z"})
    assert content(readonly)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_owner_must_be_an_active_user_or_a_queue(sf: Salesforce, emu: SalesforceEmulator) -> None:
    lead_id = leads(sf).create({"LastName": "L", "Company": "C"})["id"]
    gone = emu.add_user("Former", "Rep", is_active=False)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        leads(sf).update(lead_id, {"OwnerId": gone})
    assert content(caught)[0]["errorCode"] == "INACTIVE_OWNER_OR_USER"
    queue = emu.add_queue("Overflow")
    assert leads(sf).update(lead_id, {"OwnerId": queue}) == 204
    assert emu.get("Lead", lead_id) is not None and emu.get("Lead", lead_id)["OwnerId"] == queue  # type: ignore[index]


def test_if_unmodified_since(sf: Salesforce, emu: SalesforceEmulator, clock: Clock) -> None:
    lead_id = leads(sf).create({"LastName": "L", "Company": "C"})["id"]
    read_at = format_datetime(clock.now, usegmt=True)
    clock.advance(minutes=1)
    # Automation only moves SystemModstamp: still "unmodified" for a user-level conditional write.
    emu.system_update("Lead", lead_id)
    assert leads(sf).update(lead_id, {"Status": "Working - Contacted"},
                          headers={"If-Unmodified-Since": read_at}) == 204
    stale = format_datetime(clock.now - timedelta(minutes=1), usegmt=True)
    clock.advance(minutes=1)
    emu.update_as_user("Lead", lead_id, {"Status": "Nurture"})
    with pytest.raises(SalesforceGeneralError) as caught:
        leads(sf).update(lead_id, {"Status": "Closed - Not Converted"},
                         headers={"If-Unmodified-Since": stale})
    assert caught.value.status == 412
    assert content(caught)[0]["errorCode"] == "PRECONDITION_FAILED"
    assert emu.get("Lead", lead_id)["Status"] == "Nurture"  # type: ignore[index]


def test_system_fields_follow_the_injected_clock(emu: SalesforceEmulator, clock: Clock) -> None:
    lead_id = emu.insert("Lead", {"LastName": "L", "Company": "C"})
    clock.advance(hours=1)
    emu.system_update("Lead", lead_id)
    lead = emu.get("Lead", lead_id)
    assert lead is not None
    assert lead["LastModifiedDate"] == "2026-11-25T08:00:00.000+0000"
    assert lead["SystemModstamp"] == "2026-11-25T09:00:00.000+0000"
    clock.advance(minutes=30)
    emu.update_as_user("Lead", lead_id, {"Rating": "Hot"})
    lead = emu.get("Lead", lead_id)
    assert lead is not None
    assert lead["LastModifiedDate"] == lead["SystemModstamp"] == "2026-11-25T09:30:00.000+0000"


def test_lead_history_rows(sf: Salesforce, emu: SalesforceEmulator) -> None:
    rep = emu.add_user("Grace", "Hopper")
    lead_id = leads(sf).create({"LastName": "L", "Company": "C"})["id"]
    leads(sf).update(lead_id, {"Status": "Working - Contacted", "OwnerId": rep})
    leads(sf).update(lead_id, {"Phone": "555"})  # untracked field: no history
    rows = sf.query_all(format_soql(
        "SELECT Field, DataType, OldValue, NewValue, CreatedById FROM LeadHistory WHERE LeadId = {} "
        "ORDER BY CreatedDate, Id", lead_id))["records"]
    assert [(r["Field"], r["OldValue"], r["NewValue"]) for r in rows] == [
        ("created", None, None),
        ("Status", "Open - Not Contacted", "Working - Contacted"),
        ("Owner", "Integration User", "Grace Hopper"),
        ("Owner", emu.integration_user_id, rep),
    ]
    assert {r["CreatedById"] for r in rows} == {emu.integration_user_id}
    assert len(emu.export()["LeadHistory"]) == 4


# --- queries --------------------------------------------------------------------------------------------


def test_query_pages_across_the_2000_row_boundary(
    sf: Salesforce, emu: SalesforceEmulator, clock: Clock
) -> None:
    for index in range(4500):
        if index % 1000 == 0:
            clock.advance(seconds=1)  # blocks of 1000 leads share one SystemModstamp
        emu.insert("Lead", {"LastName": f"L{index}", "Company": "C"})
    soql = "SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp DESC, Id"
    first = sf.query(soql)
    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    ids = [r["Id"] for r in sf.query_all_iter(soql)]
    assert len(ids) == len(set(ids)) == 4500
    expected = sorted(emu.records("Lead"), key=lambda r: r["Id"])
    expected.sort(key=lambda r: r["SystemModstamp"], reverse=True)  # stable: ties stay in Id order
    assert ids == [r["Id"] for r in expected]


def test_query_more_keeps_query_all_semantics(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.query_batch_size = 2
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "C"}) for i in range(5)]
    leads(sf).delete(ids[0])
    page = sf.query("SELECT Id FROM Lead ORDER BY Id", include_deleted=True)
    assert "/queryAll/" in page["nextRecordsUrl"]
    everything = sf.query_all("SELECT Id FROM Lead ORDER BY Id", include_deleted=True)["records"]
    assert [r["Id"] for r in everything] == ids
    assert [r["Id"] for r in sf.query_all("SELECT Id FROM Lead ORDER BY Id")["records"]] == ids[1:]


def test_batch_size_header_is_honoured(sf: Salesforce, emu: SalesforceEmulator) -> None:
    for index in range(450):
        emu.insert("Lead", {"LastName": f"L{index}", "Company": "C"})
    page = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=300"})
    assert len(page["records"]) == 300 and page["nextRecordsUrl"].endswith("-300")
    page = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=50"})
    assert len(page["records"]) == 200  # below the minimum of 200


def test_format_soql_datetimes(sf: Salesforce, emu: SalesforceEmulator) -> None:
    created = [START - timedelta(hours=h) for h in (1, 5, 30)]
    ids = [emu.insert("Lead", {"LastName": "L", "Company": "C", "CreatedDate": moment.isoformat()})
           for moment in created]
    since = (START - timedelta(hours=6)).astimezone(timezone(timedelta(hours=-5)))
    soql = format_soql(
        "SELECT Id FROM Lead WHERE CreatedDate >= {} AND CreatedDate < {} ORDER BY CreatedDate", since, START)
    assert [r["Id"] for r in sf.query_all(soql)["records"]] == [ids[1], ids[0]]


def test_query_errors_have_salesforce_shape(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.query("SELECT Id, Foo FROM Lead")
    [error] = content(unknown)
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Foo' on entity 'Lead'" in error["message"]
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.query("SELECT Id FROM Lead WHERE")
    assert content(malformed)[0]["errorCode"] == "MALFORMED_QUERY"


# --- composite ------------------------------------------------------------------------------------------


def composite(sf: Salesforce, records: list[dict[str, Any]], all_or_none: bool, method: str = "POST") -> Any:
    body = json.dumps({"allOrNone": all_or_none, "records": records})
    return sf.restful("composite/sobjects", method=method, data=body)


def lead(name: str, **extra: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "LastName": name, "Company": "C", **extra}


def test_composite_create_limit(sf: Salesforce, emu: SalesforceEmulator) -> None:
    results = composite(sf, [lead(f"L{i}") for i in range(200)], all_or_none=True)
    assert len(results) == 200 and all(r["success"] for r in results)
    assert len(emu.records("Lead")) == 200
    with pytest.raises(SalesforceMalformedRequest) as caught:
        composite(sf, [lead(f"L{i}") for i in range(201)], all_or_none=False)
    assert content(caught)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert len(emu.records("Lead")) == 200


def test_composite_all_or_none_rolls_back(sf: Salesforce, emu: SalesforceEmulator) -> None:
    batch = [lead("A"), {"attributes": {"type": "Lead"}, "LastName": "NoCompany"}, lead("C")]
    results = composite(sf, batch, all_or_none=True)
    assert [r["success"] for r in results] == [False, False, False]
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING", "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert emu.records("Lead") == [] and emu.records("LeadHistory") == []
    partial = composite(sf, batch, all_or_none=False)
    assert [r["success"] for r in partial] == [True, False, True]
    assert sorted(r["LastName"] for r in emu.records("Lead")) == ["A", "C"]


def test_composite_update(sf: Salesforce, emu: SalesforceEmulator) -> None:
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "C"}) for i in range(2)]
    updates = [{"attributes": {"type": "Lead"}, "id": i, "Status": "Working - Contacted"} for i in ids]
    results = composite(sf, updates, all_or_none=True, method="PATCH")
    assert results == [{"id": i, "success": True, "errors": []} for i in ids]
    assert {r["Status"] for r in emu.records("Lead")} == {"Working - Contacted"}


# --- limits, sessions and faults ------------------------------------------------------------------------


def test_api_usage_header_is_parsed_by_the_client(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.set_daily_limit(500)
    sf.query("SELECT Id FROM Lead")
    sf.limits()
    assert sf.api_usage["api-usage"].used == 2 and sf.api_usage["api-usage"].total == 500
    assert emu.api_usage == (2, 500)


def test_request_limit_exceeded(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.set_daily_limit(2)
    assert sf.limits()["DailyApiRequests"] == {"Max": 2, "Remaining": 1}
    sf.query("SELECT Id FROM Lead")
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Lead")
    assert content(caught) == [{"message": "TotalRequests Limit exceeded.",
                                "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert emu.api_usage == (2, 2)


def test_invalid_session(emu: SalesforceEmulator, http: requests.Session, sf: Salesforce) -> None:
    stranger = Salesforce(instance_url=emu.url, session_id="00D!bogus", session=http)
    with pytest.raises(SalesforceExpiredSession) as caught:
        stranger.query("SELECT Id FROM Lead")
    assert content(caught) == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    emu.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        leads(sf).create({"LastName": "L", "Company": "C"})
    assert emu.api_usage[0] == 0  # rejected before counting


def test_expired_session_fault_triggers_client_relogin(
    emu: SalesforceEmulator, http: requests.Session
) -> None:
    route_login_domain(http, emu.url)
    sf = Salesforce(username="integration@example.com", password="password", security_token="TOKEN",
                    session=http)
    emu.faults.add("expired_session", next_n=1, path_prefix="/services/data")
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    logins = [e for e in emu.log.entries if e["path"].startswith("/services/Soap/u/")]
    assert len(logins) == 2


def test_rate_limit_and_server_error_faults(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.faults.add("rate_limit", next_n=1)
    with pytest.raises(SalesforceRefusedRequest) as limited:
        sf.query("SELECT Id FROM Lead")
    assert content(limited)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    emu.faults.add("server_error", next_n=1)
    with pytest.raises(SalesforceGeneralError) as failed:
        sf.query("SELECT Id FROM Lead")
    assert failed.value.status == 503 and content(failed)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0


# --- metadata -------------------------------------------------------------------------------------------


def test_describe(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.add_field("Lead", "SLA_Due__c", "datetime")
    fields = {f["name"]: f for f in leads(sf).describe()["fields"]}
    assert (fields["Status"]["type"], fields["Status"]["custom"]) == ("picklist", False)
    assert (fields["SLA_Due__c"]["type"], fields["SLA_Due__c"]["custom"]) == ("datetime", True)
    assert fields["SystemModstamp"]["updateable"] is False
    described = sf.describe()
    assert described is not None
    names = {s["name"] for s in described["sobjects"]}
    assert {"Lead", "Task", "Event", "LeadHistory", "User", "Group"} <= names
    lead_id = leads(sf).create({"LastName": "L", "Company": "C", "SLA_Due__c": "2026-11-25T10:00:00Z"})["id"]
    assert leads(sf).get(lead_id)["SLA_Due__c"] == "2026-11-25T10:00:00.000+0000"


# --- outbound messages ----------------------------------------------------------------------------------


ACK = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
       '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>{}</Ack>'
       "</notificationsResponse></soapenv:Body></soapenv:Envelope>")


@pytest.fixture
def receiver() -> Iterator[tuple[Emulator, list[Request]]]:
    server = Emulator()
    calls: list[Request] = []

    def listen(request: Request) -> Response:
        calls.append(request)
        acked = "true" if len(calls) >= 2 else "false"  # refuse the first delivery
        return Response(200, ACK.format(acked), content_type="text/xml")

    server.router.add("POST", "/outbound", listen)
    server.start()
    yield server, calls
    server.stop()


def test_outbound_message_is_retried_until_acked(
    sf: Salesforce, emu: SalesforceEmulator, clock: Clock, receiver: tuple[Emulator, list[Request]]
) -> None:
    server, calls = receiver
    emu.configure_outbound(f"{server.url}/outbound", fields=["Status", "OwnerId"])
    lead_id = leads(sf).create({"LastName": "L", "Company": "C"})["id"]
    with requests.Session() as session:
        assert emu.deliver_outbound(session) == 0
        assert emu.pending_outbound()[0]["attempts"] == 1
        assert emu.deliver_outbound(session) == 0  # not due yet: no second POST
        assert len(calls) == 1
        clock.advance(seconds=15)
        assert emu.deliver_outbound(session) == 1
    assert emu.pending_outbound() == [] and len(calls) == 2
    request = calls[1]
    assert request.headers["soapaction"] == '""' and request.headers["content-type"].startswith("text/xml")
    notifications = ET.fromstring(request.body).find(".//o:notifications", NS)
    assert notifications is not None
    assert notifications.findtext("o:OrganizationId", namespaces=NS) == emu.org_id
    assert (notifications.findtext("o:PartnerUrl", namespaces=NS) or "").startswith(emu.url)
    sobject = notifications.find("o:Notification/o:sObject", NS)
    assert sobject is not None and sobject.get(f"{{{NS['xsi']}}}type") == "sf:Lead"
    assert (notifications.findtext("o:Notification/o:Id", namespaces=NS) or "").startswith("04l")
    assert sobject.findtext("sf:Id", namespaces=NS) == lead_id
    assert sobject.findtext("sf:Status", namespaces=NS) == "Open - Not Contacted"


def test_outbound_batches_at_most_100_notifications(emu: SalesforceEmulator) -> None:
    emu.configure_outbound("http://127.0.0.1:9/unused",
                           trigger=lambda old, new: old is not None and old["Status"] != new["Status"])
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "C"}) for i in range(150)]
    assert emu.pending_outbound() == []  # creates do not match this trigger
    for lead_id in ids:
        emu.update_as_user("Lead", lead_id, {"Status": "Working - Contacted"})
    assert [len(m["notification_ids"]) for m in emu.pending_outbound()] == [100, 50]
