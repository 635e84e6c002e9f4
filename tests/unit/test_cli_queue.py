"""`sidecar queue list|resolve` and `sidecar compliance clear|reject` on a real (SQLite) store."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sidecar import review_queue
from sidecar.cli import app
from sidecar.cli_common import sessions
from sidecar.engine import patterns
from sidecar.ingest import apply_snapshot
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead
from tests.support import add_team, context, ny, snapshot

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIDECAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("SIDECAR_POLICY_FILE", raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    store = sessions()
    add_team(store, market="US-East")
    ctx = context()
    with transaction(store) as session:
        for crm_id, flags in (("00QHELD", {"pep"}), ("00QSTUCK", set())):
            applied = apply_snapshot(session, ctx.book, snapshot(crm_id, at=ny(24, 8), market="US-East",
                                                                 flags=frozenset(flags)))
            patterns.on_applied(session, ctx, applied, ny(24, 8).astimezone(UTC))
        stuck = session.scalars(select(Lead).where(Lead.crm_id == "00QSTUCK")).one()
        review_queue.open_item(session, queue=review_queue.OPS_REVIEW, lead=stuck, reason="stuck in NEW",
                               pattern="stuck", rule_id="stuck.review", policy_version=None, details={},
                               now=ny(24, 12).astimezone(UTC))
    return tmp_path


def test_queue_list_shows_both_queues_and_filters_by_queue(workdir: Path) -> None:
    listed = runner.invoke(app, ["queue", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    items = [json.loads(line) for line in listed.output.splitlines()]
    assert [(i["queue"], i["lead"]["crm_id"], i["reason"]) for i in items] == [
        ("compliance", "00QHELD", "compliance hold"), ("ops_review", "00QSTUCK", "stuck in NEW")]
    assert items[0]["details"]["criteria"] == ["pep"] and items[0]["age_s"] > 0
    only = runner.invoke(app, ["queue", "list", "--queue", "ops_review", "--json"])
    assert [json.loads(line)["lead"]["crm_id"] for line in only.output.splitlines()] == ["00QSTUCK"]
    table = runner.invoke(app, ["queue", "list"])
    assert "00QHELD" in table.output and "2 item(s)" in table.output
    bad = runner.invoke(app, ["queue", "list", "--queue", "sales"])
    assert bad.exit_code == 2 and "ops_review, compliance" in bad.output


def test_queue_resolve_closes_ops_items_once_and_refuses_compliance_holds(workdir: Path) -> None:
    items = {i["queue"]: i["id"] for i in map(json.loads, runner.invoke(app, ["queue", "list", "--json"])
                                             .output.splitlines())}
    done = runner.invoke(app, ["queue", "resolve", str(items["ops_review"]), "--reason", "rep on leave; moved",
                               "--by", "ops-lead"])
    assert done.exit_code == 0, done.output
    again = runner.invoke(app, ["queue", "resolve", str(items["ops_review"]), "--reason", "again"])
    assert again.exit_code == 1 and "resolved already by ops-lead" in again.output
    held = runner.invoke(app, ["queue", "resolve", str(items["compliance"]), "--reason", "fine"])
    assert held.exit_code == 1 and "sidecar compliance clear" in held.output
    missing = runner.invoke(app, ["queue", "resolve", "999", "--reason", "x"])
    assert missing.exit_code == 1 and "no review item #999" in missing.output
    remaining = runner.invoke(app, ["queue", "list", "--json"]).output.splitlines()
    assert [json.loads(line)["queue"] for line in remaining] == ["compliance"]
    with transaction(sessions()) as session:
        row = session.scalars(select(AuditRow).where(AuditRow.kind == "review_item_resolved")).one()
        assert (row.actor, row.rule_id, row.details["resolution"]) == (
            "ops-lead", "stuck.review", "rep on leave; moved")


def test_compliance_reject_from_the_cli_is_audited_with_the_deciding_user(workdir: Path) -> None:
    no_reason = runner.invoke(app, ["compliance", "reject", "00QHELD"])
    assert no_reason.exit_code == 1 and "give the reason" in no_reason.output
    rejected = runner.invoke(app, ["compliance", "reject", "00QHELD", "--reason", "PEP, no licence", "--by", "dana"])
    assert rejected.exit_code == 0, rejected.output
    assert "'Disqualified - Compliance'" in rejected.output
    with transaction(sessions()) as session:
        row = session.scalars(select(AuditRow).where(AuditRow.kind == "compliance_rejected")).one()
        assert (row.actor, row.details["reason"]) == ("dana", "PEP, no licence")
    twice = runner.invoke(app, ["compliance", "clear", "00QHELD", "--reason", "changed my mind"])
    assert twice.exit_code == 1 and "not on compliance hold" in twice.output
    unknown = runner.invoke(app, ["compliance", "clear", "00Qnope", "--reason", "x"])
    assert unknown.exit_code == 1 and "no salesforce lead 00Qnope" in unknown.output
