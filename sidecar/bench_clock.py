"""An accelerated clock for test and benchmark runs of `sidecar run` (never for production).

`SIDECAR_CLOCK=virtual:START:ANCHOR:SPEED` makes the process's clock read
START + (wall - ANCHOR) x SPEED (START and ANCHOR in Unix seconds, SPEED a factor), so several
processes started with the same value (three `sidecar run` and the emulators in the chaos run,
scripts/chaos_run.py) share one virtual time that runs SPEED times faster than the wall clock.
Because it changes every decision the sidecar takes, it is refused unless
`SIDECAR_ALLOW_VIRTUAL_CLOCK=1` is set as well: a stray SIDECAR_CLOCK in a production `.env`
stops `sidecar run` with one line instead of escalating on invented time.

Only the clock the jobs and the web layer get changes; the scheduler still fires on the wall
clock, so job intervals are wall seconds and cover SPEED times as much virtual time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

CLOCK_ENV = "SIDECAR_CLOCK"
ALLOW_ENV = "SIDECAR_ALLOW_VIRTUAL_CLOCK"


class ClockSettingError(ValueError):
    """SIDECAR_CLOCK is malformed or not allowed; the message says what to fix."""


@dataclass(frozen=True)
class VirtualClock:
    start: float  # virtual Unix seconds at `anchor`
    anchor: float  # wall Unix seconds
    speed: float
    wall: Callable[[], float]

    def epoch(self) -> float:
        return self.start + (self.wall() - self.anchor) * self.speed

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.epoch(), UTC)

    def setting(self) -> str:
        return f"virtual:{self.start:.3f}:{self.anchor:.3f}:{self.speed:g}"


def parse(value: str, wall: Callable[[], float]) -> VirtualClock:
    kind, _, rest = value.partition(":")
    parts = rest.split(":")
    if kind != "virtual" or len(parts) != 3:
        raise ClockSettingError(f"{CLOCK_ENV}={value!r} is not virtual:START:ANCHOR:SPEED (Unix seconds, "
                                "Unix seconds, factor); unset it to run on the wall clock")
    try:
        start, anchor, speed = (float(part) for part in parts)
    except ValueError:
        raise ClockSettingError(f"{CLOCK_ENV}={value!r}: START, ANCHOR and SPEED must be numbers") from None
    if not speed > 0:
        raise ClockSettingError(f"{CLOCK_ENV}={value!r}: SPEED must be above 0")
    return VirtualClock(start, anchor, speed, wall)


def from_env(environ: Mapping[str, str], wall: Callable[[], float]) -> VirtualClock | None:
    """The virtual clock SIDECAR_CLOCK asks for, None when unset; refused unless explicitly allowed."""
    value = environ.get(CLOCK_ENV, "").strip()
    if not value:
        return None
    if environ.get(ALLOW_ENV) != "1":
        raise ClockSettingError(f"{CLOCK_ENV} is a test/benchmark setting (an accelerated clock) and is refused "
                                f"unless {ALLOW_ENV}=1; remove {CLOCK_ENV} from the environment or .env")
    return parse(value, wall)
