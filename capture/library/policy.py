"""The library policy (``library.policy`` in the configuration): how long calibration frames
and masters stay valid, what else invalidates them, and the tolerances for matching.

Validity of one cell (the frames of a run's cell) or one master, first reason wins:

1. *invalidated*: an invalidation recorded after it was taken matches it (``calibd library
   invalidate --kind flats --filter Ha``; kind, camera, filter and gain, each optional);
2. *camera changed*: its camera (by name) has since delivered frames with another
   ``CAMERAID`` (serial number); a firmware change is recorded with ``library invalidate``;
3. *replaced*: flats only: a newer flat set of the same camera, filter, binning, gain and
   offset exists (a master flat, or a run's complete flat cell);
4. *expired*: older than ``max_age_days`` of its kind; flats with ``"session"`` are valid
   until the next local noon after they were taken (mean solar time at the site's longitude,
   UTC without a site): one imaging session.

Dates are ``DATE-OBS`` of the newest frame (of the master: its ``DATE-OBS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StrictBool

KINDS = ("bias", "dark", "darkflat", "flat", "bpm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Days = Annotated[float, Field(gt=0, le=3650)]


class MaxAge(_Strict):
    """Days each kind stays valid; flats may instead last one imaging ``"session"``."""

    bias: Days = 180.0
    dark: Days = 180.0
    darkflat: Days = 30.0
    flat: Days | Literal["session"] = 30.0
    bpm: Days = 180.0

    def for_kind(self, kind: str) -> float | Literal["session"]:
        value: float | Literal["session"] = getattr(self, kind)
        return value


class LibraryPolicy(_Strict):
    max_age_days: MaxAge = MaxAge()
    setpoint_tolerance_c: float = Field(1.0, ge=0, le=10)  # matching lights to masters
    exposure_tolerance_pct: float = Field(0.1, ge=0, le=10)
    invalidate_on_camera_change: StrictBool = True


@dataclass(frozen=True)
class Invalidation:
    """A recorded invalidation: what it covers (None = any) and when it was made."""

    time_utc: str
    reason: str
    kind: str | None = None
    camera: str | None = None
    filter: str | None = None
    gain: int | None = None

    def covers(self, kind: str, camera: str | None, filt: str | None, gain: int | None) -> bool:
        return ((self.kind is None or self.kind == kind)
                and (self.camera is None or self.camera == camera)
                and (self.filter is None or self.filter == filt)
                and (self.gain is None or self.gain == gain))


@dataclass(frozen=True)
class Item:
    """What validity is judged on: a run's cell or a master."""

    kind: str
    camera: str | None
    camera_id: str | None
    gain: int | None
    offset: int | None
    binning: int | None
    filter: str | None
    date_obs: str | None  # newest frame (or the master's DATE-OBS), UTC ISO 8601
    run_id: int | None = None

    def flat_key(self) -> tuple[Any, ...]:
        return (self.camera, self.filter, self.binning, self.gain, self.offset)


@dataclass(frozen=True)
class Verdict:
    valid: bool | None  # None: nothing taken yet
    reason: str | None
    age_days: float | None
    expires_utc: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "reason": self.reason,
                "age_days": None if self.age_days is None else round(self.age_days, 2),
                "expires_utc": self.expires_utc}


def parse_utc(text: str | None) -> datetime | None:
    """An index or header time (``…Z``, ``+00:00`` or naive = UTC), else None."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def session_end(taken: datetime, longitude_deg: float | None) -> datetime:
    """The next local (mean solar) noon after ``taken``."""
    shift = timedelta(hours=(longitude_deg or 0.0) / 15.0)
    local = taken + shift
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= local:
        noon += timedelta(days=1)
    return noon - shift


def judge(item: Item, policy: LibraryPolicy, now: datetime, *,
          invalidations: list[Invalidation], current_ids: dict[str, str],
          flat_sets: dict[tuple[Any, ...], list[tuple[int | None, str]]],
          longitude_deg: float | None = None) -> Verdict:
    """The validity of ``item`` at ``now``. ``current_ids``: camera name -> its newest
    ``CAMERAID``; ``flat_sets``: flat key -> (run, newest frame date) of each run's flats."""
    taken = parse_utc(item.date_obs)
    if taken is None:
        return Verdict(None, "nothing taken yet", None, None)
    age = max(0.0, (now - taken).total_seconds() / 86400.0)
    limit = policy.max_age_days.for_kind(item.kind) if item.kind in KINDS else None
    if limit == "session":
        expires = session_end(taken, longitude_deg)
    elif limit is not None:
        expires = taken + timedelta(days=float(limit))
    else:
        expires = None
    exp_text = expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else None

    def bad(reason: str) -> Verdict:
        return Verdict(False, reason, age, exp_text)

    for inv in invalidations:
        at = parse_utc(inv.time_utc)
        if at is not None and at > taken and inv.covers(item.kind, item.camera, item.filter,
                                                        item.gain):
            return bad(f"invalidated on {inv.time_utc}: {inv.reason}")
    if policy.invalidate_on_camera_change and item.camera and item.camera_id:
        current = current_ids.get(item.camera)
        if current is not None and current != item.camera_id:
            return bad(f"camera {item.camera} changed: taken with serial {item.camera_id}, "
                       f"now {current}")
    if item.kind == "flat":
        for run_id, date in flat_sets.get(item.flat_key(), []):
            later = parse_utc(date)
            if run_id != item.run_id and later is not None and later > taken:
                return bad(f"flat set replaced by run {run_id}'s, taken {date}")
    if expires is not None and now >= expires:
        what = "its imaging session ended" if limit == "session" else \
            f"{age:.0f} days old, the policy keeps {item.kind} {float(limit):g} days"  # type: ignore[arg-type]
        return bad(f"expired: {what}")
    return Verdict(True, None, age, exp_text)
