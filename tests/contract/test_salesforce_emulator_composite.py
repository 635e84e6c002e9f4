"""Contract tests of the emulator's `/composite` resource and Bulk API 2.0 query jobs, over TLS with
the real simple-salesforce client (and plain requests for the CSV results)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest, SalesforceResourceNotFound

from connectors.emulators.salesforce import SalesforceEmulator
from connectors.emulators.tls import LoopbackTLS
from tests.contract.harness import Serve

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
V = "/services/data/v59.0"


@pytest.fixture
def emu(serve: Serve, tls: LoopbackTLS) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=lambda: START)
    emulator.add_field("Lead", "Lead_Score__c", "double")
    return serve(emulator, tls.server_context)


def query(soql: str, ref: str, endpoint: str = "query") -> dict[str, str]:
    return {"method": "GET", "url": f"{V}/{endpoint}?{urlencode({'q': soql})}", "referenceId": ref}


def composite(sf: Salesforce, items: list[dict[str, Any]], all_or_none: bool = False) -> list[dict[str, Any]]:
    answer = sf.restful("composite", method="POST", json={"allOrNone": all_or_none, "compositeRequest": items})
    assert answer is not None
    return list(answer["compositeResponse"])


# --- /composite --------------------------------------------------------------------------------------


def test_composite_is_one_api_call_with_a_result_per_subrequest(sf: Salesforce, emu: SalesforceEmulator) -> None:
    lead = emu.insert("Lead", {"LastName": "A", "Company": "C"})
    emu.reset_api_usage()
    results = composite(sf, [query("SELECT Id FROM Lead", "leads"), query("SELECT Id FROM Nope", "bad"),
                             query("SELECT Id FROM Lead", "deleted", "queryAll")])
    assert emu.api_usage[0] == 1
    assert [(r["referenceId"], r["httpStatusCode"]) for r in results] == [
        ("leads", 200), ("bad", 400), ("deleted", 200)]
    assert [row["Id"] for row in results[0]["body"]["records"]] == [lead]
    assert results[1]["body"][0]["errorCode"] == "INVALID_TYPE"  # the error list of a plain query


def test_query_subrequest_pages_on_with_query_more(sf: Salesforce, emu: SalesforceEmulator) -> None:
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "C"}) for i in range(5)]
    emu.query_batch_size = 2
    [result] = composite(sf, [query("SELECT Id FROM Lead ORDER BY Id", "leads")])
    page = result["body"]
    seen = [r["Id"] for r in page["records"]]
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        seen += [r["Id"] for r in page["records"]]
    assert seen == ids and page["totalSize"] == 5


def test_references_feed_later_subrequests(sf: Salesforce, emu: SalesforceEmulator) -> None:
    lead = emu.insert("Lead", {"LastName": "A", "Company": "C"})
    results = composite(sf, [
        query("SELECT Id FROM Lead", "found"),
        {"method": "PATCH", "url": f"{V}/sobjects/Lead/@{{found.records[0].Id}}", "referenceId": "edit",
         "body": {"Title": "CTO"}},
    ])
    assert [r["httpStatusCode"] for r in results] == [200, 204]
    assert emu.get("Lead", lead)["Title"] == "CTO"  # type: ignore[index]


def test_all_or_none_rolls_back_and_halts(sf: Salesforce, emu: SalesforceEmulator) -> None:
    results = composite(sf, [
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "ok", "body": {"LastName": "A", "Company": "C"}},
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "bad", "body": {"LastName": "B"}},
        query("SELECT Id FROM Lead", "after"),
    ], all_or_none=True)
    assert [r["httpStatusCode"] for r in results] == [400, 400, 400]
    assert results[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert results[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert emu.records("Lead") == []


def test_without_all_or_none_only_dependents_are_skipped(sf: Salesforce, emu: SalesforceEmulator) -> None:
    results = composite(sf, [
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "bad", "body": {"LastName": "B"}},
        {"method": "GET", "url": f"{V}/sobjects/Lead/@{{bad.id}}", "referenceId": "dependent"},
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "ok", "body": {"LastName": "A", "Company": "C"}},
    ])
    assert [r["httpStatusCode"] for r in results] == [400, 400, 201]
    assert results[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert [r["LastName"] for r in emu.records("Lead")] == ["A"]


def test_composite_limits(sf: Salesforce, emu: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceMalformedRequest, match="LIMIT_EXCEEDED"):
        composite(sf, [query("SELECT Id FROM Lead", f"q{i}") for i in range(6)])  # at most 5 queries
    many = [{"method": "GET", "url": f"{V}/sobjects/Lead/describe", "referenceId": f"d{i}"} for i in range(26)]
    with pytest.raises(SalesforceMalformedRequest, match="LIMIT_EXCEEDED"):
        composite(sf, many)
    [result] = composite(sf, [{"method": "GET", "url": f"{V}/jobs/query", "referenceId": "bulk"}])
    assert result["httpStatusCode"] == 400  # Bulk API resources are not composite subrequests


def test_a_fault_on_a_subrequest_path_fails_that_subrequest_only(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.faults.add("server_error", next_n=1, path_prefix=f"{V}/queryAll")
    results = composite(sf, [query("SELECT Id FROM Lead", "a"), query("SELECT Id FROM Lead", "b", "queryAll")])
    assert [r["httpStatusCode"] for r in results] == [200, 503]
    assert results[1]["body"][0]["errorCode"] == "SERVER_UNAVAILABLE"


# --- Bulk API 2.0 query jobs ---------------------------------------------------------------------------


def results(http: requests.Session, emu: SalesforceEmulator, job: str, version: str = "59.0",
            **params: str) -> requests.Response:
    return http.get(f"{emu.url}/services/data/v{version}/jobs/query/{job}/results", params=params,
                    headers={"Authorization": f"Bearer {emu.access_token}", "Accept": "text/csv"})


def create(sf: Salesforce, soql: str, operation: str = "query") -> dict[str, Any]:
    job = sf.restful("jobs/query", method="POST", json={"operation": operation, "query": soql})
    assert job is not None
    return dict(job)


def test_a_job_completes_only_after_status_polls(
    sf: Salesforce, emu: SalesforceEmulator, http: requests.Session
) -> None:
    emu.insert("Lead", {"LastName": "Early", "Company": "C"})
    emu.reset_api_usage()
    job = create(sf, "SELECT Id, LastName FROM Lead")
    assert (job["state"], job["id"][:3], job["contentType"]) == ("UploadComplete", "750", "CSV")
    too_soon = results(http, emu, job["id"])
    assert too_soon.status_code == 412 and too_soon.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    assert sf.restful(f"jobs/query/{job['id']}")["state"] == "InProgress"  # type: ignore[index]
    emu.insert("Lead", {"LastName": "Late", "Company": "C"})  # after processing started: not in the job
    assert sf.restful(f"jobs/query/{job['id']}")["state"] == "JobComplete"  # type: ignore[index]
    done = results(http, emu, job["id"])
    assert done.status_code == 200 and done.headers["Content-Type"] == "text/csv"
    assert [row[1] for row in csv.reader(io.StringIO(done.text))] == ["LastName", "Early"]
    assert done.headers["Sforce-Locator"] == "null" and done.headers["Sforce-NumberOfRecords"] == "1"
    assert emu.api_usage[0] == 5  # create, too-soon results, two polls, results: one call each


def test_results_csv_renders_values_as_bulk_does(
    sf: Salesforce, emu: SalesforceEmulator, http: requests.Session
) -> None:
    lead = emu.insert("Lead", {"LastName": 'Say "hi", ok', "Company": "C", "Lead_Score__c": 23})
    job = create(sf, "SELECT Id, LastName, Email, IsConverted, Lead_Score__c, CreatedDate FROM Lead")
    for _ in range(2):
        sf.restful(f"jobs/query/{job['id']}")
    text = results(http, emu, job["id"]).text
    assert text.splitlines() == [
        '"Id","LastName","Email","IsConverted","Lead_Score__c","CreatedDate"',
        f'"{lead}","Say ""hi"", ok","","false","23.0","2026-11-25T08:00:00.000Z"',
    ]


def test_locator_paging_with_max_records(sf: Salesforce, emu: SalesforceEmulator, http: requests.Session) -> None:
    ids = [emu.insert("Lead", {"LastName": f"L{i}", "Company": "C"}) for i in range(5)]
    job = create(sf, "SELECT Id FROM Lead")
    for _ in range(2):
        sf.restful(f"jobs/query/{job['id']}")
    seen: list[str] = []
    locator, sets = "", []
    while locator != "null":
        answer = results(http, emu, job["id"], maxRecords="2", **({"locator": locator} if locator else {}))
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows[0] == ["Id"]  # every set carries the header
        seen += [r[0] for r in rows[1:]]
        sets.append(answer.headers["Sforce-NumberOfRecords"])
        locator = answer.headers["Sforce-Locator"]
    assert seen == ids and sets == ["2", "2", "1"]
    assert results(http, emu, job["id"], locator="!!").status_code == 400
    assert results(http, emu, job["id"], version="58.0").status_code == 409


def test_bulk_refuses_what_bulk_api_2_refuses(sf: Salesforce, emu: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceMalformedRequest, match="aggregate"):
        create(sf, "SELECT COUNT() FROM Lead")
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD"):
        create(sf, "SELECT Nope__c FROM Lead")
    with pytest.raises(SalesforceMalformedRequest, match="operation"):
        create(sf, "SELECT Id FROM Lead", operation="upsert")


def test_query_all_jobs_include_deleted_rows(sf: Salesforce, emu: SalesforceEmulator, http: requests.Session) -> None:
    gone = emu.insert("Lead", {"LastName": "Gone", "Company": "C"})
    sf.restful(f"sobjects/Lead/{gone}", method="DELETE")
    rows: dict[str, list[list[str]]] = {}
    for operation in ("query", "queryAll"):
        job = create(sf, "SELECT Id, IsDeleted FROM Lead", operation)
        for _ in range(2):
            sf.restful(f"jobs/query/{job['id']}")
        rows[operation] = list(csv.reader(io.StringIO(results(http, emu, job["id"]).text)))[1:]
    assert rows == {"query": [], "queryAll": [[gone, "true"]]}


def test_job_clock_is_the_emulator_clock(sf: Salesforce, emu: SalesforceEmulator) -> None:
    job = create(sf, "SELECT Id FROM Lead")
    assert job["createdDate"] == "2026-11-25T08:00:00.000+0000"


# --- sObject Collections upsert by External ID ------------------------------------------------------------

UPSERT = "composite/sobjects/Task/Ext_Key__c"


def task(key: str | None, lead: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"attributes": {"type": "Task"}, "WhoId": lead, "Subject": "Call", **fields}
    if key is not None:
        record["Ext_Key__c"] = key
    return record


def upsert(sf: Salesforce, records: list[dict[str, Any]], path: str = UPSERT,
           all_or_none: bool = False) -> list[dict[str, Any]]:
    answer = sf.restful(path, method="PATCH", json={"allOrNone": all_or_none, "records": records})
    assert isinstance(answer, list)
    return answer


def error_list(exc: SalesforceError) -> list[dict[str, Any]]:
    content: Any = exc.content  # simple-salesforce keeps the parsed JSON error list here
    return list(content)


@pytest.fixture
def keyed(emu: SalesforceEmulator) -> str:
    """A lead, with Task.Ext_Key__c as a Unique External ID."""
    emu.add_field("Task", "Ext_Key__c", "string", external_id=True, unique=True)
    return emu.insert("Lead", {"LastName": "A", "Company": "C"})


def test_upsert_creates_new_keys_and_updates_known_ones_in_one_call(
    sf: Salesforce, emu: SalesforceEmulator, keyed: str
) -> None:
    emu.reset_api_usage()
    first = upsert(sf, [task("a", keyed), task("b", keyed)])
    assert [(r["success"], r["created"], r["errors"]) for r in first] == [(True, True, []), (True, True, [])]
    emu.update_as_user("Task", first[0]["id"], {"Status": "Completed"})
    again = upsert(sf, [task("a", keyed, Subject="Call again"), task("c", keyed)])
    assert emu.api_usage[0] == 2
    assert [(r["id"], r["created"]) for r in again] == [(first[0]["id"], False), (again[1]["id"], True)]
    row = emu.get("Task", first[0]["id"])
    assert row is not None and (row["Subject"], row["Status"]) == ("Call again", "Completed")  # Status not sent
    assert sorted(t["Ext_Key__c"] for t in emu.records("Task")) == ["a", "b", "c"]


def test_upsert_fails_records_alone_without_all_or_none(sf: Salesforce, emu: SalesforceEmulator, keyed: str) -> None:
    results = upsert(sf, [task("dup", keyed), task("ok", keyed), task("dup", keyed, Subject="2"),
                          task(None, keyed), task("bad", "00QHp0000000zzzMAA"),
                          {"attributes": {"type": "Lead"}, "Ext_Key__c": "lead", "LastName": "x", "Company": "y"}])
    codes = [r["errors"][0]["statusCode"] if r["errors"] else None for r in results]
    assert codes == ["DUPLICATE_VALUE", None, "DUPLICATE_VALUE", "MISSING_ARGUMENT",
                     "INVALID_CROSS_REFERENCE_KEY", "INVALID_TYPE"]
    assert "Duplicate external id specified: dup" in results[0]["errors"][0]["message"]
    assert [t["Ext_Key__c"] for t in emu.records("Task")] == ["ok"]


def test_upsert_all_or_none_rolls_everything_back(sf: Salesforce, emu: SalesforceEmulator, keyed: str) -> None:
    results = upsert(sf, [task("x", keyed), task("y", "00QHp0000000zzzMAA")], all_or_none=True)
    assert [r["success"] for r in results] == [False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert emu.records("Task") == []


def test_a_key_held_by_two_records_is_refused(sf: Salesforce, emu: SalesforceEmulator) -> None:
    emu.add_field("Task", "Ext_Key__c", "string", external_id=True)  # External ID, not Unique
    lead = emu.insert("Lead", {"LastName": "A", "Company": "C"})
    emu.insert("Task", {"WhoId": lead, "Ext_Key__c": "twice"})
    emu.insert("Task", {"WhoId": lead, "Ext_Key__c": "twice"})
    [result] = upsert(sf, [task("twice", lead)])
    assert (result["success"], result["errors"][0]["statusCode"]) == (False, "DUPLICATE_EXTERNAL_ID")
    assert len(emu.records("Task")) == 2


def test_upsert_needs_an_external_id_field_and_api_46(
    sf: Salesforce, emu: SalesforceEmulator, http: requests.Session
) -> None:
    emu.add_field("Task", "Plain__c", "string")
    lead = emu.insert("Lead", {"LastName": "A", "Company": "C"})
    with pytest.raises(SalesforceMalformedRequest) as plain:
        upsert(sf, [task("k", lead)], path="composite/sobjects/Task/Plain__c")
    assert error_list(plain.value)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        upsert(sf, [task("k", lead)], path="composite/sobjects/Task/Nope__c")
    assert "does not exist or is not accessible: Nope__c" in error_list(missing.value)[0]["message"]
    old = Salesforce(instance_url=emu.url, session_id=emu.access_token, session=http, version="45.0")
    emu.add_field("Task", "Ext_Key__c", "string", external_id=True, unique=True)
    with pytest.raises(SalesforceResourceNotFound):
        upsert(old, [task("k", lead)])
    assert emu.records("Task") == []
    describe = sf.restful("sobjects/Task/describe")
    assert describe is not None
    described = {f["name"]: f for f in describe["fields"]}
    assert (described["Ext_Key__c"]["externalId"], described["Plain__c"]["externalId"]) == (True, False)


def test_a_unique_field_refuses_a_second_record_on_create(sf: Salesforce, emu: SalesforceEmulator, keyed: str) -> None:
    emu.insert("Task", {"WhoId": keyed, "Ext_Key__c": "taken"})
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
        task("taken", keyed), task("fresh", keyed), task("fresh", keyed)]})
    assert isinstance(results, list)
    assert [r["success"] for r in results] == [False, True, False]
    assert {r["errors"][0]["statusCode"] for r in results if not r["success"]} == {"DUPLICATE_VALUE"}
    assert sorted(t["Ext_Key__c"] for t in emu.records("Task")) == ["fresh", "taken"]
