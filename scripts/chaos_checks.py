"""The chaos run's verdict: from the audit and outbox in PostgreSQL and the emulators' final state.

Each figure is counted independently of the sidecar's own bookkeeping where the emulators can say it:
- steps: every fired step has one audit row per step key (the key names lead, clock and step);
  a step is lost when a clock is still open with its next step overdue by more than `grace`
  (the sidecars ran long enough afterwards to fire it) or when a clock's fired-steps counter is
  ahead of its audit rows;
- CRM writes: every task and note the outbox settled as done exists in HubSpot exactly once under
  its idempotency key, and none exists for a key the outbox has not settled; every owner change
  the sidecar wrote (owner history, sourceType INTEGRATION) matches one settled change_owner effect;
- clobbers: no sidecar owner write landed after a person's owner change (sourceType CRM_UI) that
  was newer than what the sidecar had seen when it decided;
- Slack: every settled message is in the workspace (its key rides in the message metadata), at
  least once; copies beyond the first are duplicates (allowed up to the number of kills);
- outbox: nothing left pending or in flight; every dead letter has a reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from sidecar.store.models import AuditRow, Clock, Lead, OutboxRow


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _aware(value: datetime) -> datetime:
    from datetime import UTC
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def verify(engine: Engine, state: dict[str, Any], now: datetime, grace: timedelta,
           quiet_at: datetime | None = None) -> dict[str, Any]:
    with Session(engine) as session:
        steps = _steps(session, now, grace)
        outbox = list(session.scalars(select(OutboxRow)))
        leads = {lead.id: lead.crm_id for lead in session.scalars(select(Lead))}
    crm = _crm_writes(outbox, state)
    owners = _owner_changes(outbox, state)
    slack = _slack(outbox, state)
    status_of = {row.id: (row.action, row.status, row.attempts, str(row.next_attempt_at), row.depends_on)
                 for row in outbox}
    unsettled = [row for row in outbox if row.status in ("pending", "in_flight")]
    late = [row for row in unsettled if quiet_at is not None and _aware(row.created_at) > quiet_at]
    left = Counter(row.status for row in unsettled if row not in late)
    dead = [row for row in outbox if row.status == "dead"]
    return {
        "leads": len(leads), "steps": steps, "crm": crm, "owner_changes": owners, "slack": slack,
        "outbox": {"rows": len(outbox), "done": sum(row.status == "done" for row in outbox),
                   "decided_after_quiet": len(late), "left_pending": left.get("pending", 0),
                   "left_in_flight": left.get("in_flight", 0),
                   "dead": len(dead), "dead_without_reason": sum(not (row.last_error or "").strip() for row in dead),
                   "left_sample": [(r.id, r.action, r.status, str(r.next_attempt_at), r.attempts,
                                    (r.last_error or "")[:100], r.depends_on, status_of.get(r.depends_on or 0))
                                   for r in outbox if r.status in ("pending", "in_flight")][:12],
                   "dead_reasons": Counter((row.last_error or "")[:80] for row in dead).most_common(5)},
    }


def _steps(session: Session, now: datetime, grace: timedelta) -> dict[str, Any]:
    keyed = Counter(key for key in session.scalars(select(AuditRow.step_key).where(AuditRow.step_key.is_not(None))))
    duplicates = sum(n - 1 for n in keyed.values() if n > 1)
    overdue = [clock for clock in session.scalars(select(Clock).where(Clock.status == "open",
                                                                      Clock.next_due_at.is_not(None)))
               if _aware(clock.next_due_at) < now - grace]  # type: ignore[arg-type]
    fired_by_lead = dict(session.execute(select(Clock.lead_id, func.sum(Clock.steps_fired))
                                         .group_by(Clock.lead_id)).all())
    clocks = Counter(status for status in session.scalars(select(Clock.status)))
    return {"clocks": dict(clocks), "checked": len(keyed), "duplicates": duplicates,
            "overdue_open_clocks": len(overdue),
            "overdue_sample": [(c.id, c.lead_id, str(c.next_due_at), c.steps_fired, c.state) for c in overdue[:5]],
            "lost": len(overdue), "clock_steps_counted": int(sum(int(n or 0) for n in fired_by_lead.values()))}


def _crm_writes(outbox: list[OutboxRow], state: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for action, kind in (("create_task", "tasks"), ("add_note", "notes")):
        in_crm = Counter(str(record["properties"].get("sidecar_idempotency_key"))
                         for record in state["hubspot"][kind]
                         if record["properties"].get("sidecar_idempotency_key"))
        done = {row.idempotency_key for row in outbox if row.action == action and row.status == "done"}
        unsettled = {row.idempotency_key for row in outbox if row.action == action and row.status != "done"}
        result[kind] = {"checked": len(done), "in_crm": sum(in_crm.values()),
                        "duplicates": sum(n - 1 for n in in_crm.values() if n > 1),
                        "lost": sum(1 for key in done if in_crm[key] == 0),
                        # written although the outbox does not know it yet (it would find it by key)
                        "written_unsettled": sum(1 for key in unsettled if in_crm[key] > 0),
                        "unknown_keys": sum(1 for key in in_crm if key not in done | unsettled)}
    return result


def _owner_changes(outbox: list[OutboxRow], state: dict[str, Any]) -> dict[str, Any]:
    history: dict[str, list[dict[str, Any]]] = state["hubspot"]["owner_history"]
    settled: dict[str, list[OutboxRow]] = defaultdict(list)
    for row in outbox:
        if row.action == "change_owner" and row.status == "done" and row.result != "conflict":
            settled[str(row.payload["lead"]["crm_id"])].append(row)
    checked = duplicates = lost = clobbered = 0
    samples: list[dict[str, Any]] = []
    for lead, versions in history.items():
        ours = [v for v in versions if v["source"] == "INTEGRATION"]
        rows = settled.get(lead, [])
        checked += len(rows)
        written = Counter(v["value"] for v in ours)
        expected = Counter(str(row.payload["to_owner_id"]) for row in rows)
        duplicates += sum(max(0, written[o] - expected[o]) for o in written)
        lost += sum(max(0, expected[o] - written[o]) for o in expected)
        humans = [v for v in versions if v["source"] == "CRM_UI"]
        for version in ours:
            decided = [row for row in rows if str(row.payload["to_owner_id"]) == version["value"]]
            if not decided:
                continue
            seen = min(_aware(datetime.fromisoformat(str(row.payload["seen_modified_at"]))) for row in decided)
            written_at = _at(version["at"])
            # HubSpot's API shows history in milliseconds; so does what the sidecar saw.
            if any(seen < _at(h["at"]).replace(microsecond=_at(h["at"]).microsecond // 1000 * 1000) < written_at
                   for h in humans):
                clobbered += 1
                samples.append({"lead": lead, "history": versions, "seen": str(seen),
                                "payloads": [row.payload for row in decided]})
    return {"checked": checked, "duplicates": duplicates, "lost": lost, "clobbered_human_changes": clobbered,
            "clobber_samples": samples[:3],
            "human_changes": len(state["human_changes"])}


def _slack(outbox: list[OutboxRow], state: dict[str, Any]) -> dict[str, Any]:
    posted = Counter(str(((m.get("metadata") or {}).get("event_payload") or {}).get("key"))
                     for m in state["slack"] if (m.get("metadata") or {}).get("event_payload"))
    stamps = {str(m.get("ts")) for m in state["slack"]}
    done = [row for row in outbox if row.action == "notify" and row.status == "done"]

    def delivered(row: OutboxRow) -> bool:
        # Batched into a digest (result digest:<channel>:<ts>): the digest message is the proof.
        if (row.result or "").startswith("digest:"):
            return (row.result or "").rsplit(":", 1)[-1] in stamps
        return posted[row.idempotency_key] > 0

    missing = [row for row in done if not delivered(row)]
    return {"checked": len(done), "messages": sum(posted.values()),
            "duplicates": sum(n - 1 for n in posted.values() if n > 1), "lost": len(missing),
            "lost_sample": [(row.idempotency_key, row.result) for row in missing][:5]}
