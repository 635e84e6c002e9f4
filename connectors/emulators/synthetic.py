"""A seeded synthetic sales org: three markets, teams with reps who behave differently, and a
stream of leads. Same seed, same org, same leads, same behaviour.

Reps act on leads through the emulators' APIs (see `reps.py`), so the sidecar sees the same
traffic it would see from a real org: some reps answer fast, some late, some never, some are away.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sidecar.calendar import BusinessCalendar

Behaviour = Literal["fast", "late", "never"]
SOURCES = (("web_form", 30), ("paid_social", 20), ("partner", 15), ("cold_list", 20), ("webinar", 15))
FIRST = ("Aisha", "Ravi", "Priya", "Jonas", "Lena", "Marcus", "Sofia", "Kenji", "Amara", "Diego", "Chloe",
         "Omar", "Nina", "Felix", "Leah", "Arjun", "Mia", "Tom", "Zara", "Ivan")
LAST = ("Al-Mansoori", "Iyer", "Nair", "Becker", "Schulz", "Reed", "Costa", "Tanaka", "Okafor", "Lopez",
        "Martin", "Haddad", "Petrova", "Wagner", "Cohen", "Mehta", "Jensen", "Baker", "Khan", "Novak")
COMPANIES = ("Emirates Group", "Tata Digital", "Nimbus Labs", "Bavaria Motors", "Alpine Foods", "Hudson Bank",
             "Lakeside Health", "Orbit Logistics", "Kestrel Energy", "Vantage Retail", "Quartz Media",
             "Helios Solar", "Granite Insurance", "Cobalt Systems", "Juniper Travel")


@dataclass(frozen=True)
class MarketSpec:
    code: str
    tz: str
    hours: dict[str, list[tuple[str, str]]]
    team_name: str
    channel: str
    leads_per_day: int


MARKETS = (
    MarketSpec("IN", "Asia/Kolkata", {"mon-fri": [("09:30", "13:00"), ("14:00", "18:30")]},
               "India inside sales", "#sales-india", 14),
    MarketSpec("US-East", "America/New_York", {"mon-fri": [("08:00", "18:00")]},
               "US East", "#sales-us-east", 14),
    MarketSpec("DACH", "Europe/Berlin", {"mon-fri": [("08:30", "17:30")]}, "DACH", "#sales-dach", 10),
)


@dataclass(frozen=True)
class SynthRep:
    key: str
    name: str
    email: str
    team: str
    role: Literal["rep", "manager", "vp"]
    seniority: int
    capacity: int
    behaviour: Behaviour
    pto: tuple[date, ...] = ()


@dataclass(frozen=True)
class SynthTeam:
    key: str
    name: str
    market: str
    tz: str
    channel: str
    manager: str


@dataclass(frozen=True)
class SynthLead:
    key: str
    at: datetime
    first_name: str
    last_name: str
    company: str
    email: str
    market: str
    team: str
    source: str
    score: int
    tier: str
    deal_size: int
    flags: tuple[str, ...]
    rescore: tuple[timedelta, int] | None = None  # (after, new score): the score rises later, in the CRM
    on_hold: bool = False  # the owner puts it on hold ("call me next quarter") when they first reach it


@dataclass(frozen=True)
class SyntheticOrg:
    seed: int
    teams: tuple[SynthTeam, ...]
    reps: tuple[SynthRep, ...]
    leads: tuple[SynthLead, ...]

    def team_reps(self, team: str) -> list[SynthRep]:
        return [rep for rep in self.reps if rep.team == team and rep.role == "rep"]


def generate(seed: int, start: datetime, duration: timedelta) -> SyntheticOrg:
    rng = random.Random(seed)
    teams: list[SynthTeam] = []
    reps: list[SynthRep] = []
    leads: list[SynthLead] = []
    behaviours: tuple[Behaviour, ...] = ("fast", "fast", "late", "never")
    for spec in MARKETS:
        team = spec.code.lower()
        manager = f"{team}-lead"
        teams.append(SynthTeam(team, spec.team_name, spec.code, spec.tz, spec.channel, manager))
        reps.append(SynthRep(manager, _name(rng), f"{manager}@example.com", team, "manager", 5, 10, "fast"))
        for i, behaviour in enumerate(behaviours):
            key = f"{team}-rep{i + 1}"
            # The second fast rep takes the second day off: reassignment must skip them.
            pto = ((start + timedelta(days=1)).date(),) if i == 1 else ()
            reps.append(SynthRep(key, _name(rng), f"{key}@example.com", team, "rep", 1 + (i * 2) % 5,
                                 rng.choice((25, 40, 60)), behaviour, pto))
        calendar = BusinessCalendar(spec.tz, spec.hours)
        leads.extend(_arrivals(rng, spec, team, calendar, start, duration, len(leads)))
    reps.append(SynthRep("vp-global", _name(rng), "vp@example.com", "", "vp", 9, 0, "fast"))
    leads.sort(key=lambda lead: (lead.at, lead.key))
    return SyntheticOrg(seed, tuple(teams), tuple(reps), tuple(_stories(leads)))


def _stories(leads: list[SynthLead]) -> list[SynthLead]:
    """Every pattern shows in any run of a day or more, whatever the dice said: early leads get a
    strategic account, a sanctions match, a churn flag, a score that rises past the high-value line
    and an on-hold answer (the random ones above come on top, at realistic rates)."""
    stories: dict[int, dict[str, Any]] = {
        2: {"tier": "strategic"}, 4: {"flags": ("sanctions_match",)}, 6: {"flags": ("usage_drop",)},
        8: {"score": 62, "rescore": (timedelta(hours=3), 91)}, 10: {"on_hold": True}}
    return [dataclasses.replace(lead, **stories[i]) if i in stories else lead for i, lead in enumerate(leads)]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _arrivals(rng: random.Random, spec: MarketSpec, team: str, calendar: BusinessCalendar,
              start: datetime, duration: timedelta, numbered_from: int) -> list[SynthLead]:
    """Leads arrive mostly in business hours (forms at night happen too), per market."""
    count = round(spec.leads_per_day * duration / timedelta(days=1))
    open_span = calendar.elapsed(start, start + duration)
    leads = []
    for i in range(count):
        if rng.random() < 0.15 or open_span <= timedelta(0):
            at = start + duration * rng.random()
        else:
            at = calendar.add(start, open_span * rng.random())
        at = at.replace(second=0, microsecond=0)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = rng.choice(COMPANIES)
        signals = (("sanctions_match", 0.02), ("usage_drop", 0.03))
        flags = tuple(flag for flag, p in signals if rng.random() < p)
        # High value means rare: ~1.5 % score 85+ at arrival, ~1 % strategic, ~1.5 % deals of 150k; ~5 %
        # more rise past 85 hours later (a pricing-page visit), and ~5 % are put on hold when reached.
        rises = rng.random() < 0.05
        score = rng.randint(85, 99) if rng.random() < 0.015 and not rises else rng.randint(20, 80)
        rescore = (timedelta(minutes=rng.randint(60, 1800)), rng.randint(86, 97)) if rises else None
        leads.append(SynthLead(
            key=f"L{numbered_from + i + 1:04d}", at=at, first_name=first, last_name=last, company=company,
            email=f"{first}.{last}@{company.split()[0]}.example".lower(), market=spec.code, team=team,
            source=rng.choices([s for s, _ in SOURCES], [w for _, w in SOURCES])[0],
            score=score, tier="strategic" if rng.random() < 0.01 else "standard",
            deal_size=rng.choices((5_000, 20_000, 50_000, 150_000), (350, 350, 285, 15))[0], flags=flags,
            rescore=rescore, on_hold=rng.random() < 0.05))
    return leads


def response_delay(seed: int, lead_key: str, rep: SynthRep) -> timedelta | None:
    """How long (business time) this rep takes to log a first call on this lead; None = never."""
    digest = hashlib.sha256(f"{seed}:{lead_key}:{rep.key}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 2**32
    if rep.behaviour == "fast":
        return timedelta(minutes=5 + 30 * fraction)
    if rep.behaviour == "late":
        return timedelta(minutes=50 + 60 * fraction)  # around the 80-150 % marks of a 1 h window
    return None
