"""Replay a scenario file for `sidecar policy test`: the demo's virtual-time run, then what it audited.

The run is the demo's (the same jobs, readers, writers and notifier against the emulated CRMs and
Slack); only the read-out differs: audit rows with the lead and reps named by their scenario keys,
so that `sidecar.policy.expectations` can compare them with the file's `expect:` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from connectors.emulators.demo import Demo, DemoOptions
from connectors.emulators.scenario import Scenario
from sidecar.policy.expectations import Observed
from sidecar.store.db import transaction
from sidecar.store.models import AuditRow, Lead

DEFAULT_DURATION = timedelta(days=1)


@dataclass(frozen=True)
class Replay:
    observed: list[Observed]
    names: dict[str, str]  # scenario lead key -> the lead's name


def replay(scenario: Scenario, policy: Path, workdir: Path, seed: int = 1) -> Replay:
    demo = Demo(DemoOptions(crm=scenario.crm, seed=seed, scenario=scenario, policy=policy,
                            duration=scenario.duration or DEFAULT_DURATION), workdir)
    try:
        demo.run()
        keys = {(t.crm, t.crm_id): key for key, t in demo.tracked.items()}
        with transaction(demo.sessions) as session:
            rows = session.execute(select(AuditRow, Lead).join(Lead, Lead.id == AuditRow.lead_id)
                                   .order_by(AuditRow.at, AuditRow.id)).all()
            observed: list[Observed] = []
            names: dict[str, str] = {}
            for row, lead in rows:
                key = keys.get((lead.crm, lead.crm_id))
                if key is None:
                    continue
                names[key] = lead.name
                person = demo.org.by_user.get(row.to_owner or "")
                observed.append(Observed(key, row.at, row.kind, row.rule_id, row.action,
                                         person.rep.key if person else row.to_owner,
                                         person.rep.team if person else None))
        return Replay(observed, names)
    finally:
        demo.close()
